"""Upstream counts and the trigger-rule cascade of one run's task graph."""

from __future__ import annotations

from datetime import UTC, datetime

from orchestrator import DAG
from orchestrator.core import Step, TaskInstanceRecord, TaskState, clear_instance, with_downstream
from orchestrator.core._cascade import Cascade
from orchestrator.operators import EmptyOperator

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def diamond() -> DAG:
    """a -> (b, c) -> d; e stands alone."""
    with DAG("g") as dag:
        a, b, c, d = (EmptyOperator(task_id=t) for t in "abcd")
        a >> [b, c] >> d
        EmptyOperator(task_id="e")
    return dag


def cascade_for(
    dag: DAG, blocked: dict[str, str] | None = None, **states: TaskState
) -> tuple[Cascade, dict[str, TaskInstanceRecord]]:
    tis = {
        t: TaskInstanceRecord("g", "r", t, state=states.get(t, TaskState.NONE))
        for t in dag.task_dict
    }
    graph = Cascade(dag, ("g", "r"), tis, blocked or {})
    graph.recount()
    return graph, tis


def test_recount_counts_the_unfinished() -> None:
    """Finished states do not count as unfinished; everything else does."""
    graph, _ = cascade_for(diamond(), a=TaskState.SUCCESS, e=TaskState.RUNNING)
    assert graph.unfinished == 4


def test_evaluate_schedules_what_may_run() -> None:
    """Roots run; a task whose upstream succeeded runs once its last upstream is counted."""
    graph, tis = cascade_for(diamond())
    step = Step()
    graph.evaluate(["a", "e"], T0, step)
    assert step.ready == ["a", "e"]
    tis["a"].state = TaskState.SUCCESS
    graph.finished(tis["a"])
    step = Step()
    graph.evaluate(["b", "c"], T0, step)
    assert step.ready == ["b", "c"]


def test_a_flag_cascades_to_every_descendant_in_one_call() -> None:
    """upstream_failed travels a -> b, c -> d in one evaluation, each written once."""
    graph, tis = cascade_for(diamond(), a=TaskState.RUNNING)
    tis["a"].state = TaskState.FAILED
    graph.finished(tis["a"])
    step = Step()
    graph.evaluate(["b", "c"], T0, step)
    written = sorted((t.task_id, t.state) for t in step.writes if isinstance(t, TaskInstanceRecord))
    assert written == [
        ("b", TaskState.UPSTREAM_FAILED),
        ("c", TaskState.UPSTREAM_FAILED),
        ("d", TaskState.UPSTREAM_FAILED),
    ]
    assert graph.unfinished == 1  # e


def test_a_blocked_task_is_never_evaluated() -> None:
    """What ``blocked`` names stays waiting, and the deadlock reason says why."""
    graph, _ = cascade_for(diamond(), blocked={"e": "depends_on_past"})
    step = Step()
    graph.evaluate(["a", "e"], T0, step)
    assert step.ready == ["a"]
    assert "e: depends_on_past" in graph.deadlock_reason()


def test_skip_takes_waiting_tasks_and_returns_their_downstream() -> None:
    """A branch's skip: scheduled ones leave the ready queue; running ones are left alone."""
    graph, tis = cascade_for(diamond(), b=TaskState.SCHEDULED, c=TaskState.RUNNING)
    step = Step()
    downstream = graph.skip({"b", "c"}, T0, step)
    assert (tis["b"].state, tis["c"].state) == (TaskState.SKIPPED, TaskState.RUNNING)
    assert step.unready == ["b"]
    assert downstream == {"d"}


def test_deferred_is_pending() -> None:
    """A deferred instance is on its way: the run is not stuck."""
    graph, _ = cascade_for(diamond(), e=TaskState.DEFERRED)
    assert graph.has_pending()
    graph, _ = cascade_for(diamond())
    assert not graph.has_pending()


def test_with_downstream_and_clear_instance() -> None:
    """Clearing keeps the try count; with_downstream closes over descendants."""
    dag = diamond()
    assert with_downstream(dag, ["b"]) == {"b", "d"}
    assert with_downstream(dag, ["a"]) == {"a", "b", "c", "d"}
    ti = TaskInstanceRecord("g", "r", "a", state=TaskState.FAILED, try_number=2, end_date=T0)
    clear_instance(ti, "a")
    assert (ti.state, ti.try_number, ti.end_date) == (TaskState.NONE, 2, None)
