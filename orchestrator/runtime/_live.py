"""A run driven here (its driver, and what the shell keeps beside it), and the contexts
its alerts' callbacks get: the try's own when the try ended here, else rebuilt from the
store.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import anyio

from orchestrator._logging import task_log_path
from orchestrator.authoring._dag import DAG
from orchestrator.authoring._mapping import expand_length
from orchestrator.core import (
    AlertRecord,
    Expanded,
    PastRun,
    ReadyItem,
    Record,
    RunDriver,
    RunRecord,
    Step,
    TaskInstanceRecord,
    TaskState,
    TryEnded,
    TryOutcome,
    TryRecord,
    XComRecord,
    XComsCleared,
    instance_key,
    split_key,
)
from orchestrator.runtime._context import DagRunInfo, pull_xcom
from orchestrator.runtime._executor import Executor, TryRequest, TryResult
from orchestrator.runtime._timers import TimerHandle
from orchestrator.runtime._tryspec import TryKey
from orchestrator.store import Store

__all__ = [
    "ChangeListener",
    "Deferrals",
    "LiveRun",
    "RunKey",
    "Snapshot",
    "alert_contexts",
    "expansion",
    "fold_xcoms",
    "past_run",
    "ready_item",
    "rebuilt_context",
    "run_context",
    "run_info",
    "try_request",
    "written",
]

RunKey = tuple[str, str]


@dataclass(eq=False)
class LiveRun:
    """A run driven here: its driver, and what the shell keeps beside it."""

    dag: DAG
    driver: RunDriver
    info: DagRunInfo
    xcoms: dict[tuple[str, str], str] = field(default_factory=dict)  # (instance key, key)
    done: anyio.Event = field(default_factory=anyio.Event)
    last_context: dict[str, Any] = field(default_factory=dict)
    scopes: dict[str, anyio.CancelScope] = field(default_factory=dict)  # running tries
    timers: dict[tuple[str, str | None], TimerHandle] = field(default_factory=dict)
    adopted: dict[str, str] = field(default_factory=dict)  # instance key -> its worker try

    @property
    def key(self) -> RunKey:
        return self.driver.key

    @property
    def record(self) -> RunRecord:
        return self.driver.run

    @property
    def tis(self) -> dict[str, TaskInstanceRecord]:
        return self.driver.tis

    @property
    def errors(self) -> dict[str, str]:
        return self.driver.errors


ChangeListener = Callable[[LiveRun, TaskInstanceRecord | None], None]
Snapshot = TaskInstanceRecord | None  # None: the run itself changed


class Deferrals(Protocol):
    """Where deferred instances' waits go (the trigger engine's sensor input)."""

    def defer(self, run: RunKey, task_id: str, trigger: object) -> None: ...

    def withdraw(self, run: RunKey, task_id: str) -> None: ...


async def past_run(store: Store, run: RunRecord) -> PastRun | None:
    """The run before ``run`` (by logical date), for depends_on_past."""
    logical = run.logical_date
    earlier = [
        r
        for r in await store.list_runs(dag_id=run.dag_id)
        if r.logical_date is not None and logical is not None and r.logical_date < logical
    ]
    if not earlier:
        return None
    previous = max(earlier, key=lambda r: r.logical_date or r.queued_at)
    tis = await store.task_instances(previous.dag_id, previous.run_id)
    return PastRun(previous.run_id, {ti.key: ti.state for ti in tis})


def written(live: LiveRun, step: Step) -> list[Snapshot]:
    """What the step wrote, as written (later steps may move the instances on)."""
    unique = {
        id(w): w
        for w in step.writes
        if isinstance(w, TaskInstanceRecord) and w.state != TaskState.NONE
    }  # an instance written twice in a step (made, then scheduled) is told once
    tis: list[Snapshot] = [replace(w) for w in unique.values()]
    if live.record not in step.writes:
        return tis
    return [*tis, None] if step.ended is not None else [None, *tis]


def try_request(live: LiveRun, key: str, try_number: int, logs_dir: Path) -> TryRequest:
    """What the executor needs to run a try of the run's task instance ``key``."""
    return _request(live.dag, key, live.info, live.xcoms, try_number, logs_dir)


def _request(
    dag: DAG,
    key: str,
    info: DagRunInfo,
    xcoms: dict[tuple[str, str], str],
    try_number: int,
    logs_dir: Path,
) -> TryRequest:
    task_id, map_index = split_key(key)
    task = dag.task_dict[task_id]
    return TryRequest(
        dag=dag,
        task=task,
        run=info,
        try_number=try_number,
        max_tries=task.retries + 1,
        xcoms=xcoms,
        log_path=task_log_path(logs_dir, dag.dag_id, info.run_id, task_id, try_number, map_index),
        map_index=map_index,
    )


def ready_item(live: LiveRun, key: str) -> ReadyItem:
    """The ready queue's entry for the instance ``key``, with the limits it is under."""
    ti = live.tis[key]
    task = live.dag.task_dict[ti.task_id]
    per_dag, per_run = task.max_active_tis_per_dag, task.max_active_tis_per_dagrun
    return ReadyItem(
        live.key,
        key,
        ti.pool,
        task.pool_slots,
        ti.priority_weight,
        live.dag.max_active_tasks,
        ti.task_id if per_dag is not None or per_run is not None else "",
        per_dag,
        per_run,
    )


def fold_xcoms(live: LiveRun, records: list[Record]) -> None:
    """Keep the run's XComs (in memory, by instance key) as ``records`` change them."""
    for record in records:
        if isinstance(record, XComRecord):
            live.xcoms[(instance_key(record.task_id, record.map_index), record.key)] = record.value
        elif isinstance(record, XComsCleared):
            key = instance_key(record.task_id, record.map_index)
            for gone in [k for k in live.xcoms if k[0] == key]:
                del live.xcoms[gone]


def expansion(live: LiveRun, task_id: str, limit: int) -> Expanded:
    """How many instances the mapped task expands to in this run, or why it cannot."""
    task = live.dag.task_dict[task_id]
    try:
        length = expand_length(task, functools.partial(pull_xcom, live.dag, live.xcoms))
    except Exception as exc:  # what it maps over is not a list or dict, or is missing
        return Expanded(task_id, 0, f"cannot expand: {exc}")
    if length > limit:
        return Expanded(
            task_id,
            0,
            f"cannot expand task {task_id!r} to {length} instances: the limit is {limit} "
            "(ORCHESTRATOR_MAX_MAP_LENGTH)",
        )
    return Expanded(task_id, length)


def alert_contexts(
    live: LiveRun, records: list[AlertRecord], result: TryResult | None
) -> dict[str, dict[str, Any]]:
    """The contexts a step's callbacks get, by alert id: the try's own (with
    ``exception``), and for the run's end the run's. The rest are rebuilt on delivery."""
    contexts: dict[str, dict[str, Any]] = {}
    for record in records:
        if record.kind != "callback":
            continue
        if record.task_id is None:
            contexts[record.id] = run_context(live.dag, live.info, live.last_context, record)
        elif result is not None:
            contexts[record.id] = {**result.context, "exception": result.error}
    return contexts


def run_context(
    dag: DAG, info: DagRunInfo, last: dict[str, Any], record: AlertRecord
) -> dict[str, Any]:
    """A DAG-level callback's context: the last try's, with the run and why it ended."""
    state = record.payload.get("state")
    return {
        **last,
        "dag": dag,
        "dag_run": info,
        "run_id": info.run_id,
        "reason": record.payload.get("error")
        or ("success" if state == "success" else "task_failure"),
    }


async def rebuilt_context(
    store: Store,
    executor: Executor,
    logs_dir: Path,
    dag_of: Callable[[str], DAG | None],
    live_of: Callable[[RunKey], LiveRun | None],
    record: AlertRecord,
) -> dict[str, Any] | None:
    """A callback's context built again from the store (after a restart, or for a try whose
    process is gone): the run, its XComs, the task instance of the alert's try."""
    dag = dag_of(record.dag_id)
    if dag is None:
        return None
    live = live_of((record.dag_id, record.run_id))
    if live is not None:
        info, xcoms = live.info, live.xcoms
    else:
        run = await store.find_run(record.dag_id, record.run_id)
        if run is None:
            return None
        info, xcoms = run_info(run), await store.xcoms(record.dag_id, record.run_id)
    if record.task_id is None:
        return run_context(dag, info, {}, record)
    if record.task_id not in dag.task_dict:
        return None
    key = instance_key(record.task_id, int(record.payload.get("map_index", -1)))
    request = _request(dag, key, info, xcoms, max(1, record.try_number), logs_dir)
    return {**executor.context_of(request), "exception": record.payload.get("error")}


def run_info(record: RunRecord) -> DagRunInfo:
    """The context's ``dag_run`` for a stored run."""
    logical = record.logical_date or record.queued_at
    return DagRunInfo(
        dag_id=record.dag_id,
        run_id=record.run_id,
        run_type=record.run_type,
        logical_date=logical,
        data_interval_start=record.data_interval_start or logical,
        data_interval_end=record.data_interval_end or logical,
        conf=dict(record.conf),
        start_date=record.start_date,
    )


async def open_tries_of(store: Store, tis: Sequence[TaskInstanceRecord]) -> dict[str, TryRecord]:
    """The stored tries of a run's instances left running or deferred, by instance key."""
    return {
        ti.key: t
        for ti in tis
        if ti.state in (TaskState.RUNNING, TaskState.DEFERRED)
        for t in await store.tries(ti.dag_id, ti.run_id, ti.task_id, ti.map_index)
        if t.try_number == ti.try_number
    }


def running_tries(driver: RunDriver, open_tries: Mapping[str, TryRecord]) -> dict[str, TryKey]:
    """Of those, the tries left running: what an executor may adopt."""
    return {
        key: (t.dag_id, t.run_id, t.task_id, t.map_index, t.try_number)
        for key, t in open_tries.items()
        if driver.tis[key].state == TaskState.RUNNING
    }


def try_ended(task_id: str, result: TryResult) -> TryEnded:
    """The driver's input for a try's end, from the executor's report."""
    return TryEnded(
        task_id,
        TryOutcome(result.state),
        result.error,
        result.retryable,
        result.pushed,
        frozenset(result.skip_task_ids),
        result.outlet_extras,
        result.map_label,
        result.rendered,
        result.hostname,
    )
