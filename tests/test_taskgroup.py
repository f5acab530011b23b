"""Task groups: prefixed ids, nesting, per-group default_args, group dependencies,
@task_group, and a run of a grouped DAG, as in Airflow."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import DAG, TaskGroup, task, task_group
from orchestrator._settings import Settings
from orchestrator.errors import DagDefinitionError
from orchestrator.operators import EmptyOperator
from orchestrator.runtime._drive import run_dag_once


def upstream(dag: DAG) -> dict[str, list[str]]:
    return {t: sorted(dag.task_dict[t].upstream_task_ids) for t in sorted(dag.task_dict)}


def test_tasks_in_groups_get_prefixed_ids_and_groups_connect_by_roots_and_leaves() -> None:
    with DAG("grouped") as dag:
        start = EmptyOperator(task_id="start")
        with TaskGroup("extract") as extract:
            a = EmptyOperator(task_id="a")
            a >> EmptyOperator(task_id="b")
            with TaskGroup("inner"):
                EmptyOperator(task_id="c")
        with TaskGroup("flat", prefix_group_id=False) as flat:
            EmptyOperator(task_id="d")
        end = EmptyOperator(task_id="end")
        start >> extract >> flat >> end
    assert upstream(dag) == {
        "d": ["extract.b", "extract.inner.c"],
        "end": ["d"],
        "extract.a": ["start"],
        "extract.b": ["extract.a"],
        "extract.inner.c": ["start"],
        "start": [],
    }
    assert [t.task_id for t in extract.tasks] == ["extract.a", "extract.b", "extract.inner.c"]
    assert sorted(dag.task_group_dict) == ["extract", "extract.inner", "flat"]
    assert dag.task_dict["extract.inner.c"].task_group is dag.task_group_dict["extract.inner"]


def test_group_default_args_sit_between_the_dags_and_the_tasks_own() -> None:
    with DAG("defaults", default_args={"retries": 1, "owner": "dag"}) as dag:
        with TaskGroup("g", default_args={"retries": 3}):
            EmptyOperator(task_id="from_group")
            EmptyOperator(task_id="own", retries=5)
            with TaskGroup("inner", default_args={"owner": "inner"}):
                EmptyOperator(task_id="nested")
        EmptyOperator(task_id="outside")
    got = {t: (task.retries, task.owner) for t, task in dag.task_dict.items()}
    assert got == {
        "g.from_group": (3, "dag"),
        "g.own": (5, "dag"),
        "g.inner.nested": (3, "inner"),
        "outside": (1, "dag"),
    }


def test_a_task_group_function_makes_a_group_per_call() -> None:
    with DAG("decorated") as dag:

        @task
        def extract() -> int:
            return 1

        @task
        def double(v: int) -> int:
            return v * 2

        @task_group
        def transform(value: Any) -> object:
            return double(double(value))

        @task_group(group_id="quiet")
        def nothing() -> None:
            EmptyOperator(task_id="noop")

        first = transform(extract())
        transform(first)
        group = nothing()
    assert isinstance(group, TaskGroup)
    assert group.group_id == "quiet"
    assert upstream(dag) == {
        "extract": [],
        "quiet.noop": [],
        "transform.double": ["extract"],
        "transform.double__1": ["transform.double"],
        "transform__1.double": ["transform.double__1"],
        "transform__1.double__1": ["transform__1.double"],
    }


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TaskGroup("a.b"), "DAG 'd', task group 'a.b': group_id must be"),
        (lambda: [TaskGroup("g"), TaskGroup("g")], "duplicate task group id 'g'"),
        (
            lambda: TaskGroup("g", default_args=[1]),  # type: ignore[arg-type]
            "default_args must be a mapping",
        ),
    ],
)
def test_a_bad_group_fails_the_dag_naming_it(make: object, message: str) -> None:
    with pytest.raises(DagDefinitionError, match=message.replace(".", r"\.")), DAG("d"):
        make()  # type: ignore[operator]


def test_a_group_outside_a_dag_is_refused() -> None:
    with pytest.raises(DagDefinitionError, match="task group 'g' is declared outside a DAG"):
        TaskGroup("g")


async def test_a_grouped_dag_runs_with_the_prefixed_ids(settings: Settings) -> None:
    with DAG("run_grouped") as dag:

        @task_group
        def pipeline() -> object:
            @task
            def produce() -> int:
                return 20

            @task
            def consume(v: int) -> int:
                return v + 1

            return consume(produce())

        pipeline() >> EmptyOperator(task_id="done")
    live = await run_dag_once(settings, dag)
    assert {t: str(ti.state) for t, ti in live.tis.items()} == {
        "pipeline.produce": "success",
        "pipeline.consume": "success",
        "done": "success",
    }
    assert live.xcoms[("pipeline.consume", "return_value")] == "21"


def test_labels_name_edges_and_display_names_are_kept() -> None:
    """``a >> Label("x") >> b`` is the edge a -> b, labelled; display names default to
    the ids (Airflow's ``dag_display_name``, ``task_display_name``)."""
    from orchestrator import Label

    with DAG("labelled", dag_display_name="Labelled DAG") as dag:
        a, b, c, d = (EmptyOperator(task_id=x) for x in "abcd")
        a >> Label("valid") >> [b, c]
        [b, c] >> Label("merge") >> d
        EmptyOperator(task_id="shown", task_display_name="Shown task")
    assert upstream(dag) == {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "shown": []}
    assert dag.edge_info == {
        ("a", "b"): {"label": "valid"},
        ("a", "c"): {"label": "valid"},
        ("b", "d"): {"label": "merge"},
        ("c", "d"): {"label": "merge"},
    }
    assert (dag.dag_display_name, dag.task_dict["a"].task_display_name) == ("Labelled DAG", "a")
    assert dag.task_dict["shown"].task_display_name == "Shown task"
