"""LatestOnlyOperator, BranchDayOfWeekOperator and BaseHook, as Airflow users write them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator import DAG, BaseHook
from orchestrator._settings import Settings
from orchestrator.errors import DagDefinitionError
from orchestrator.operators import (
    BranchDayOfWeekOperator,
    EmptyOperator,
    LatestOnlyOperator,
    WeekDay,
)
from orchestrator.runtime._context import DagRunInfo
from orchestrator.runtime._drive import run_dag_once


async def test_a_day_of_week_branch_follows_the_logical_dates_day(settings: Settings) -> None:
    with DAG("weekday") as dag:
        branch = BranchDayOfWeekOperator(
            task_id="is_tuesday",
            follow_task_ids_if_true="tuesday",
            follow_task_ids_if_false=["other"],
            week_day={"Tuesday", WeekDay.SATURDAY},
            use_task_logical_date=True,
        )
        branch >> [EmptyOperator(task_id="tuesday"), EmptyOperator(task_id="other")]
    tuesday = datetime(2026, 3, 10, tzinfo=UTC)
    live = await run_dag_once(settings, dag, logical_date=tuesday)
    assert {t: str(ti.state) for t, ti in live.tis.items()} == {
        "is_tuesday": "success",
        "tuesday": "success",
        "other": "skipped",
    }
    wednesday = await run_dag_once(settings, dag, logical_date=tuesday + timedelta(days=1))
    assert str(wednesday.tis["tuesday"].state) == "skipped"
    assert str(wednesday.tis["other"].state) == "success"


def test_a_bad_week_day_fails_the_dag_naming_it() -> None:
    with (
        pytest.raises(DagDefinitionError, match="week_day 'Funday' is not one of Monday"),
        DAG("d"),
    ):
        BranchDayOfWeekOperator(
            task_id="b",
            follow_task_ids_if_true="x",
            follow_task_ids_if_false="y",
            week_day="Funday",
        )


def _latest_only_skips(run_type: str, interval_end: datetime) -> set[str]:
    with DAG("hourly", schedule="@hourly", start_date=datetime(2026, 1, 1, tzinfo=UTC)) as dag:
        latest = LatestOnlyOperator(task_id="latest_only")
        latest >> EmptyOperator(task_id="after")
    start = interval_end - timedelta(hours=1)
    run = DagRunInfo("hourly", "r", run_type, start, start, interval_end)
    skipped: set[str] = set()
    context: dict[str, Any] = {
        "dag_run": run,
        "dag": dag,
        "ti": SimpleNamespace(skip_task_ids=skipped),
    }
    latest.execute(context)
    return skipped


def test_latest_only_skips_what_follows_unless_the_run_is_the_latest_scheduled_one() -> None:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    assert _latest_only_skips("scheduled", hour) == set()  # the latest interval
    assert _latest_only_skips("scheduled", hour - timedelta(hours=1)) == {"after"}
    assert _latest_only_skips("scheduled", hour - timedelta(days=3)) == {"after"}
    assert _latest_only_skips("manual", hour - timedelta(days=3)) == set()


def test_a_hook_reads_its_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_CONN_WAREHOUSE", "postgres://etl:pw@db.example:5432/dw")

    class WarehouseHook(BaseHook):
        def __init__(self, conn_id: str = "warehouse") -> None:
            self.conn_id = conn_id

        def get_conn(self) -> str:
            conn = self.get_connection(self.conn_id)
            return f"{conn.login}@{conn.host}:{conn.port}/{conn.schema}"

    assert WarehouseHook().get_conn() == "etl@db.example:5432/dw"
    with pytest.raises(NotImplementedError, match="BaseHook must define get_conn"):
        BaseHook().get_conn()


async def test_a_bash_task_runs_the_command_its_function_returns(settings: Settings) -> None:
    """``@task.bash``: the returned command is rendered with the context, its last line of
    output is the XCom, exit 99 skips, and a function that returns no command fails."""
    from orchestrator import task

    with DAG("bash_tasks") as dag:

        @task.bash
        def greet(name: str) -> str:
            return f"echo hello {name} on {{{{ ds }}}}"

        @task.bash(env={"WHO": "env"}, append_env=True)
        def from_env() -> str:
            return "echo $WHO"

        @task.bash
        def skip() -> str:
            return "exit 99"

        @task.bash
        def nothing() -> str:
            return ""

        greet("world")
        from_env()
        skip()
        nothing()
    day = datetime(2026, 3, 10, tzinfo=UTC)
    live = await run_dag_once(settings, dag, logical_date=day)
    assert {t: str(ti.state) for t, ti in live.tis.items()} == {
        "greet": "success",
        "from_env": "success",
        "skip": "skipped",
        "nothing": "failed",
    }
    assert live.xcoms[("greet", "return_value")] == '"hello world on 2026-03-10"'
    assert live.xcoms[("from_env", "return_value")] == '"env"'
    assert "must return a non-empty command" in live.errors["nothing"]
