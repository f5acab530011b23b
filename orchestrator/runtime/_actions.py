"""A user's changes to a stored run that no process drives: clear tasks, mark tasks and runs.

Rules:
1. A run some process drives is changed through its driver (``Clear``, ``Stop``), never
   here; these change what is stored, for a run that has finished.
2. Clearing a task clears its setups and their teardowns (and, asked, everything
   downstream), as Airflow does; the run is queued again for the daemon.
3. Marking goes through the state machine (``MARK_SUCCESS``, ``MARK_FAILED`` of a finished
   instance); the run's state is decided again from its leaves, as the driver would.
4. Each change is one store write, run and instances together.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from orchestrator._clock import Clock
from orchestrator.authoring._dag import DAG
from orchestrator.core._cascade import clear_instance, with_downstream, with_setups_and_teardowns
from orchestrator.core._records import RunRecord, TaskInstanceRecord
from orchestrator.core._state import (
    FINISHED_STATES,
    RunState,
    TaskEvent,
    TaskState,
    apply,
    decide_run_state,
)
from orchestrator.errors import Conflict, InvalidRequest
from orchestrator.store import Store

__all__ = [
    "MARKS",
    "clear_choice",
    "clear_stored",
    "clearable",
    "mark_stored_run",
    "mark_stored_task",
]

MARKS = {"success": TaskEvent.MARK_SUCCESS, "failed": TaskEvent.MARK_FAILED}


def clear_choice(
    dag: DAG, task_ids: Collection[str], *, downstream: bool, present: Collection[str]
) -> set[str]:
    """The task ids a clear of ``task_ids`` (none: every task ``present``) takes (rule 2);
    InvalidRequest naming the tasks the DAG does not have."""
    unknown = sorted(t for t in task_ids if t not in dag.task_dict)
    if unknown:
        raise InvalidRequest(f"DAG {dag.dag_id!r} has no task(s) {', '.join(unknown)}")
    chosen = set(task_ids) or {t for t in present if t in dag.task_dict}
    if downstream:
        chosen = with_downstream(dag, chosen)
    return with_setups_and_teardowns(dag, chosen)


def _picked(ti: TaskInstanceRecord, asked: Collection[str], indexes: Collection[int]) -> bool:
    """A map index given narrows the tasks asked for, not what the cascade adds."""
    return not indexes or ti.map_index in indexes or ti.task_id not in asked


def clearable(
    dag: DAG,
    tis: Sequence[TaskInstanceRecord],
    task_ids: Collection[str],
    *,
    map_indexes: Collection[int] = (),
    downstream: bool = False,
) -> list[TaskInstanceRecord]:
    """The instances of ``tis`` a clear takes: chosen (rule 2) and started."""
    chosen = clear_choice(dag, task_ids, downstream=downstream, present={t.task_id for t in tis})
    return [
        ti
        for ti in tis
        if ti.task_id in chosen
        and ti.state != TaskState.NONE
        and _picked(ti, task_ids, map_indexes)
    ]


async def clear_stored(
    store: Store,
    dag: DAG,
    run: RunRecord,
    task_ids: Collection[str],
    *,
    map_indexes: Collection[int] = (),
    downstream: bool = False,
) -> list[str]:
    """Clear instances of ``run`` (rules 1, 2) and queue the run again; the instance keys
    cleared."""
    tis = await store.task_instances(run.dag_id, run.run_id)
    cleared = clearable(dag, tis, task_ids, map_indexes=map_indexes, downstream=downstream)
    for ti in cleared:
        clear_instance(ti, (run.dag_id, run.run_id, ti.key))
    run.state = RunState.QUEUED
    run.end_date = None
    run.driver = None  # whoever drove it before, the daemon runs it now
    await store.clear_task_instances(run, cleared)
    return sorted(ti.key for ti in cleared)


def _finished(run: RunRecord) -> None:
    if run.state not in (RunState.SUCCESS, RunState.FAILED):
        raise Conflict(
            f"run {run.run_id!r} of DAG {run.dag_id!r} is {run.state}: a run is marked "
            "once it has finished (a running run can be marked failed, which stops it)"
        )


async def mark_stored_run(store: Store, run: RunRecord, state: str) -> RunRecord:
    """Set a finished run's state (rules 1, 4)."""
    _finished(run)
    run.state = RunState(state)
    await store.write([store.run_statement(run)])
    return run


async def mark_stored_task(
    store: Store,
    dag: DAG,
    run: RunRecord,
    task_id: str,
    map_index: int,
    state: str,
    clock: Clock,
) -> TaskInstanceRecord:
    """Mark a finished instance of a finished run (rules 1, 3, 4); the run's state follows."""
    _finished(run)
    tis = await store.task_instances(run.dag_id, run.run_id)
    found = [ti for ti in tis if ti.task_id == task_id and ti.map_index == map_index]
    if not found:
        raise InvalidRequest(
            f"run {run.run_id!r} of DAG {run.dag_id!r} has no task {task_id!r}"
            + (f" with map_index {map_index}" if map_index >= 0 else "")
        )
    ti = found[0]
    if ti.state not in FINISHED_STATES or ti.state == TaskState.REMOVED:
        raise Conflict(f"task {ti.key!r} is {ti.state}: only a finished instance is marked")
    ti.state = apply(ti.state, MARKS[state], (run.dag_id, run.run_id, ti.key))
    ti.end_date = ti.end_date or clock.now()
    leaves = set(dag.run_leaves)
    decided = decide_run_state(
        {t.key: t.state for t in tis}, [t.key for t in tis if t.task_id in leaves]
    )
    if decided is not None:
        run.state = decided
    await store.write([store.run_statement(run), store.ti_statement(ti)])
    return ti
