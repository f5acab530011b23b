"""Param: JSON-schema checked params; a trigger's bad conf is refused naming the field
and makes no run (SPEC §8)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import DAG, Param
from orchestrator._clock import SystemClock
from orchestrator._settings import Settings
from orchestrator.errors import DagDefinitionError, InvalidRequest
from orchestrator.operators import PythonOperator
from orchestrator.runtime._drive import register_dags, run_dag_once
from orchestrator.runtime._intake import RunIntake
from orchestrator.store import open_store
from tests.helpers import run_cli


def params_dag() -> DAG:
    with DAG(
        "with_params",
        params={
            "rows": Param(100, type="integer", minimum=1, maximum=1000),
            "mode": Param("full", enum=["full", "delta"]),
            "plain": "kept",
        },
    ) as dag:
        PythonOperator(task_id="show", python_callable=lambda params: dict(params))
    return dag


async def test_tasks_see_the_params_values_with_conf_over_defaults(settings: Settings) -> None:
    dag = params_dag()
    live = await run_dag_once(settings, dag)
    assert live.xcoms[("show", "return_value")] == ('{"rows":100,"mode":"full","plain":"kept"}')
    live = await run_dag_once(settings, dag, conf={"rows": 5, "extra": True})
    shown = live.xcoms[("show", "return_value")]
    assert '"rows":5' in shown
    assert '"extra":true' in shown


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"rows": 5000}, "conf.rows: 5000 is greater than the maximum of 1000"),
        ({"rows": "many"}, "conf.rows: 'many' is not of type 'integer'"),
        ({"mode": "half"}, "conf.mode: 'half' is not one of ['full', 'delta']"),
    ],
)
async def test_a_bad_conf_is_refused_naming_the_field_and_makes_no_run(
    settings: Settings, conf: dict[str, Any], message: str
) -> None:
    dag = params_dag()
    async with open_store(settings.db_url) as store:
        await register_dags(store, [dag])
        intake = RunIntake(store, SystemClock(), dags={dag.dag_id: dag}.get)
        with pytest.raises(InvalidRequest) as refused:
            await intake.manual(dag.dag_id, conf=conf)
        assert str(refused.value) == message
        assert await store.list_runs(dag_id=dag.dag_id) == []


def test_a_required_param_needs_a_value_and_a_bad_default_fails_the_dag() -> None:
    from orchestrator.authoring._param import resolve_params

    with pytest.raises(InvalidRequest, match=r"^params.day: required, and given no value$"):
        resolve_params({"day": Param(type="string")}, {})
    assert resolve_params({"day": Param(type="string")}, {"day": "mon"}) == {"day": "mon"}
    with pytest.raises(
        DagDefinitionError, match=r"DAG 'bad': params.rows: default -1 is less than the minimum"
    ):
        DAG("bad", params={"rows": Param(-1, type="integer", minimum=0)})


def test_the_cli_refuses_a_bad_conf_naming_the_field(settings: Settings, dag_file: Any) -> None:
    dag_file(
        "p.py",
        """
        from orchestrator import DAG, Param
        from orchestrator.operators import EmptyOperator
        with DAG("cli_params", params={"rows": Param(1, type="integer", maximum=10)}):
            EmptyOperator(task_id="t")
        """,
    )
    done = run_cli("dags", "test", "cli_params", "--conf", '{"rows": 11}', db=settings.db_url)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "conf.rows: 11 is greater than the maximum of 10" in done.stderr
    listed = run_cli("runs", "list", "--dag", "cli_params", "--json", db=settings.db_url)
    assert listed.stdout.strip() == "[]"
