"""Setup and teardown tasks, with Airflow's semantics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator import DAG, TaskGroup, setup, task, teardown
from orchestrator._settings import Settings
from orchestrator.core import RunState, TriggerRule
from orchestrator.errors import DagDefinitionError
from orchestrator.operators import BashOperator, EmptyOperator, PythonOperator
from orchestrator.runtime._drive import run_dag_once
from orchestrator.runtime._live import LiveRun
from tests.helpers import run_cli


def states(live: LiveRun) -> dict[str, str]:
    return {key: str(ti.state) for key, ti in sorted(live.tis.items())}


def boom() -> None:
    raise RuntimeError("work failed")


async def test_a_teardown_runs_after_failed_work_and_the_run_fails_for_the_work(
    settings: Settings,
) -> None:
    with DAG("st_fail") as dag:
        s = EmptyOperator(task_id="create").as_setup()
        work = PythonOperator(task_id="work", python_callable=boom)
        after = EmptyOperator(task_id="after_work")
        t = EmptyOperator(task_id="delete").as_teardown(setups=s)
        s >> work >> after >> t
    assert t.trigger_rule == TriggerRule.ALL_DONE_SETUP_SUCCESS
    assert (s.is_setup, t.is_teardown) == (True, True)
    live = await run_dag_once(settings, dag)
    assert states(live) == {
        "after_work": "upstream_failed",
        "create": "success",
        "delete": "success",
        "work": "failed",
    }
    assert live.record.state == RunState.FAILED


async def test_a_failed_teardown_does_not_fail_the_run_unless_it_says_so(
    settings: Settings,
) -> None:
    for fail_run in (False, True):
        with DAG(f"st_teardown_fails_{fail_run}") as dag:
            s = EmptyOperator(task_id="s").as_setup()
            t = PythonOperator(task_id="t", python_callable=boom).as_teardown(
                setups=s, on_failure_fail_dagrun=fail_run
            )
            s >> EmptyOperator(task_id="work") >> t
        live = await run_dag_once(settings, dag)
        assert live.tis["t"].state == "failed"
        assert live.record.state == (RunState.FAILED if fail_run else RunState.SUCCESS)


async def test_a_teardown_whose_setup_did_not_succeed_does_not_run(settings: Settings) -> None:
    with DAG("st_setup_fails") as dag:
        failed = PythonOperator(task_id="failed_setup", python_callable=boom).as_setup()
        skipped = EmptyOperator(task_id="skipped_setup").as_setup()
        t1 = EmptyOperator(task_id="t1").as_teardown(setups=failed)
        t2 = EmptyOperator(task_id="t2").as_teardown(setups=skipped)
        failed >> EmptyOperator(task_id="w1") >> t1
        gate = PythonOperator(task_id="gate", python_callable=lambda: None)
        gate >> skipped >> t2
        cond = EmptyOperator(task_id="cond", trigger_rule=TriggerRule.ALL_FAILED)
        gate >> cond >> skipped
    live = await run_dag_once(settings, dag)
    assert live.tis["t1"].state == "upstream_failed"
    assert live.tis["skipped_setup"].state == "skipped"
    assert live.tis["t2"].state == "skipped"


async def test_decorators_and_the_teardown_context_manager(settings: Settings) -> None:
    ran: list[Any] = []

    with DAG("st_taskflow") as dag:

        @setup
        def make_cluster() -> str:
            ran.append("setup")
            return "cluster-1"

        @teardown
        def drop_cluster(cluster_id: str) -> None:
            ran.append(("teardown", cluster_id))

        @task
        def use(cluster_id: str) -> None:
            ran.append(("work", cluster_id))
            raise RuntimeError("work failed")

        @task
        def other() -> None:
            ran.append("other")

        cluster = make_cluster()
        with drop_cluster(cluster):
            use(cluster)
            other()

    assert dag.task_dict["make_cluster"].is_setup
    assert dag.task_dict["drop_cluster"].is_teardown
    assert dag.task_dict["other"].upstream_task_ids == {"make_cluster"}
    assert dag.task_dict["drop_cluster"].upstream_task_ids == {"make_cluster", "use", "other"}
    live = await run_dag_once(settings, dag)
    assert ran[0] == "setup"
    assert ran[-1] == ("teardown", "cluster-1")
    assert live.record.state == RunState.FAILED  # the work failed; the teardown ran


async def test_airflows_setup_teardown_example_runs(settings: Settings) -> None:
    """The shape of Airflow's example_setup_teardown: a group's leaves skip its teardown."""
    with DAG("st_groups") as dag:
        root_setup = BashOperator(task_id="root_setup", bash_command="echo hi").as_setup()
        root_normal = BashOperator(task_id="normal", bash_command="echo normal")
        root_teardown = BashOperator(task_id="root_teardown", bash_command="echo bye")
        root_teardown.as_teardown(setups=root_setup)
        root_setup >> root_normal >> root_teardown
        with TaskGroup("section_1") as section_1:
            inner_setup = BashOperator(task_id="taskgroup_setup", bash_command="echo s").as_setup()
            inner_normal = BashOperator(task_id="normal", bash_command="echo n")
            inner_teardown = BashOperator(task_id="taskgroup_teardown", bash_command="echo t")
            inner_teardown.as_teardown(setups=inner_setup)
            inner_setup >> inner_normal >> inner_teardown
        root_normal >> section_1
    assert [t.task_id for t in section_1.get_leaves()] == ["section_1.normal"]
    live = await run_dag_once(settings, dag)
    assert live.record.state == RunState.SUCCESS
    assert set(states(live).values()) == {"success"}


def test_bad_setup_teardown_arguments_fail_the_dag() -> None:
    with DAG("st_bad"), pytest.raises(DagDefinitionError) as caught:
        EmptyOperator(task_id="t").as_teardown(setups="nope")
    assert "task 't'" in str(caught.value)
    assert "setups" in str(caught.value)


def test_clearing_a_work_task_clears_its_setup_and_teardown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "st_dags"
    folder.mkdir()
    (folder / "st_clear.py").write_text(
        "from airflow.sdk import DAG\n"
        "from airflow.providers.standard.operators.empty import EmptyOperator\n"
        "with DAG('st_clear'):\n"
        "    s = EmptyOperator(task_id='create').as_setup()\n"
        "    w = EmptyOperator(task_id='work')\n"
        "    t = EmptyOperator(task_id='delete').as_teardown(setups=s)\n"
        "    s >> w >> t\n"
        "    EmptyOperator(task_id='apart')\n"
    )
    monkeypatch.setenv("ORCHESTRATOR_DAGS", str(folder))
    assert run_cli("dags", "test", "st_clear").returncode == 0
    runs = json.loads(run_cli("runs", "list", "--json").stdout)
    done = run_cli("tasks", "clear", "st_clear", runs[0]["run_id"], "work")
    assert "cleared 3 task instance(s): create, delete, work" in done.stdout
