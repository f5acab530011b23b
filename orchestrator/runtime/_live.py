"""A run driven here (its driver, and what the shell keeps beside it) and its callbacks.

The callbacks are the alerts of the driver's steps as this process delivers them
today: the task's and the DAG's own Python callbacks, with the try's context. A
run's callback comes after every task callback of the run has returned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

from orchestrator.alerts import run_callback
from orchestrator.authoring._dag import DAG
from orchestrator.core import (
    AlertEvent,
    PastRun,
    RunDriver,
    RunRecord,
    RunState,
    Step,
    TaskInstanceRecord,
)
from orchestrator.runtime._context import DagRunInfo
from orchestrator.runtime._executor import TryResult
from orchestrator.runtime._timers import TimerHandle
from orchestrator.store import Store

__all__ = [
    "ChangeListener",
    "Deferrals",
    "LiveRun",
    "RunKey",
    "Snapshot",
    "past_run",
    "run_callbacks",
    "run_info",
    "task_callbacks",
]

RunKey = tuple[str, str]


@dataclass(eq=False)
class LiveRun:
    """A run driven here: its driver, and what the shell keeps beside it."""

    dag: DAG
    driver: RunDriver
    info: DagRunInfo
    xcoms: dict[tuple[str, str], str] = field(default_factory=dict)
    done: anyio.Event = field(default_factory=anyio.Event)
    last_context: dict[str, Any] = field(default_factory=dict)
    scopes: dict[str, anyio.CancelScope] = field(default_factory=dict)  # running tries
    timers: dict[tuple[str, str | None], TimerHandle] = field(default_factory=dict)
    callbacks: int = 0  # task callbacks still running (rule 3)
    callbacks_idle: anyio.Event = field(default_factory=anyio.Event)

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
    return PastRun(previous.run_id, {ti.task_id: ti.state for ti in tis})


async def task_callbacks(live: LiveRun, step: Step, result: TryResult) -> None:
    """Run the callbacks of the step's task alerts, with the try's context."""
    callbacks = []
    for alert in step.alerts:
        if alert.task_id is not None:
            task = live.dag.task_dict[alert.task_id]
            callback = {
                AlertEvent.TASK_SUCCESS: task.on_success_callback,
                AlertEvent.TASK_FAILURE: task.on_failure_callback,
                AlertEvent.TASK_RETRY: task.on_retry_callback,
            }.get(alert.event)
            if callback is not None:
                callbacks.append((alert, callback))
    if not callbacks:
        return
    live.callbacks += 1
    try:
        for alert, callback in callbacks:
            context = {**result.context, "exception": result.error}
            await run_callback(callback, context, kind=alert.event.value)
    finally:
        live.callbacks -= 1
        if live.callbacks == 0:
            live.callbacks_idle.set()
            live.callbacks_idle = anyio.Event()


async def run_callbacks(live: LiveRun) -> None:
    """The DAG's callback for the run's end, once no task callback of it is running."""
    while live.callbacks:
        await live.callbacks_idle.wait()
    record = live.record
    reason = live.errors.get("<run>")
    success = record.state == RunState.SUCCESS
    callback = live.dag.on_success_callback if success else live.dag.on_failure_callback
    if callback is not None:
        context = {
            **live.last_context,
            "dag": live.dag,
            "dag_run": live.info,
            "run_id": record.run_id,
            "reason": reason or ("success" if success else "task_failure"),
        }
        await run_callback(callback, context, kind=f"run {record.state}")


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
