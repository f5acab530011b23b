"""LatestOnlyOperator, BranchDayOfWeekOperator and BaseHook, as Airflow users write them."""

from __future__ import annotations

import json
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


# -- what Airflow's example DAGs use ---------------------------------------------------


async def test_a_datetime_branch_follows_the_window_its_logical_date_is_in(
    settings: Settings,
) -> None:
    from datetime import time

    from orchestrator.operators import BranchDateTimeOperator

    with DAG("datetime_branch") as dag:
        branch = BranchDateTimeOperator(
            task_id="window",
            follow_task_ids_if_true="inside",
            follow_task_ids_if_false="outside",
            target_lower=time(22, 0),
            target_upper=time(2, 0),  # across midnight
            use_task_logical_date=True,
        )
        branch >> [EmptyOperator(task_id="inside"), EmptyOperator(task_id="outside")]
    late = await run_dag_once(settings, dag, logical_date=datetime(2026, 3, 10, 23, tzinfo=UTC))
    assert (late.tis["inside"].state, late.tis["outside"].state) == ("success", "skipped")
    noon = await run_dag_once(settings, dag, logical_date=datetime(2026, 3, 10, 12, tzinfo=UTC))
    assert (noon.tis["inside"].state, noon.tis["outside"].state) == ("skipped", "success")
    with DAG("datetime_branch_bad"), pytest.raises(DagDefinitionError, match="target_lower"):
        BranchDateTimeOperator(
            task_id="w", follow_task_ids_if_true="a", follow_task_ids_if_false="b"
        )


async def test_time_day_bash_and_python_sensors(settings: Settings) -> None:
    from datetime import time

    from sensors import BashSensor, DayOfWeekSensor, PythonSensor, TimeSensor

    with DAG("more_sensors") as dag:
        TimeSensor(task_id="past", target_time=time(0, 0), poke_interval=1)
        BashSensor(task_id="bash_ok", bash_command="echo checked; exit 0")
        BashSensor(task_id="bash_no", bash_command="exit 1", timeout=0.2, soft_fail=True)
        PythonSensor(task_id="py_ok", python_callable=lambda n: n == 3, op_args=[3])
        today = WeekDay(datetime.now(UTC).isoweekday())
        DayOfWeekSensor(task_id="today", week_day=today)
    live = await run_dag_once(settings, dag)
    states = {t: str(ti.state) for t, ti in live.tis.items()}
    assert states == {
        "past": "success",
        "bash_ok": "success",
        "bash_no": "skipped",
        "py_ok": "success",
        "today": "success",
    }


async def test_outlet_extras_by_yield_and_hooks_around_execute(settings: Settings) -> None:
    from orchestrator import Dataset, task
    from orchestrator.operators import BashOperator, Metadata
    from orchestrator.store import open_store

    target = Dataset(uri="s3://bucket/out.csv", name="out")
    calls: list[Any] = []

    with DAG("yield_and_hooks") as dag:

        @task(outlets=[target])
        def produce() -> Any:
            yield Metadata(target, {"rows": 7})

        produce()
        BashOperator(
            task_id="bash",
            bash_command='echo \'{"a": 1, "b": "two"}\'',
            output_processor=json.loads,
            multiple_outputs=True,
            pre_execute=lambda context: calls.append("pre"),
            post_execute=lambda context, result: calls.append(("post", result)),
        )
    assert target.name == "out"
    live = await run_dag_once(settings, dag)
    assert live.record.state == "success"
    assert calls == ["pre", ("post", {"a": 1, "b": "two"})]
    assert live.xcoms[("bash", "b")] == '"two"'
    async with open_store(settings.db_url) as store:
        [(event, _)] = await store.dataset_events("s3://bucket/out.csv", 5)
    assert event.extra == {"rows": 7}


async def test_render_template_and_templates_exts(settings: Settings, tmp_path: Any) -> None:
    from orchestrator import get_current_context, task

    seen: list[Any] = []
    (tmp_path / "q.sql").write_text("select '{{ ds }}'")

    with DAG("rendering", default_args={}) as dag:

        @task(templates_exts=[".sql"])
        def show(sql: str) -> None:
            context = get_current_context()
            seen.append(sql)
            seen.append(context["task"].render_template("run {{ run_id }}", context))

        show(sql="q.sql")
    dag.fileloc = str(tmp_path / "rendering.py")
    live = await run_dag_once(settings, dag, logical_date=datetime(2026, 3, 10, tzinfo=UTC))
    assert live.record.state == "success", live.errors
    assert seen == ["select '2026-03-10'", f"run {live.record.run_id}"]


async def test_a_trigger_takes_a_templated_logical_date(settings: Settings) -> None:
    from orchestrator.operators import TriggerDagRunOperator

    with DAG("trigger_templated"):
        op = TriggerDagRunOperator(
            task_id="t",
            trigger_dag_id="other",
            logical_date="{{ logical_date }}",
            reset_dag_run=True,
            deferrable=True,
        )
    assert "logical_date" in op.template_fields
    assert (op.reset_dag_run, op.deferrable) == (True, True)
