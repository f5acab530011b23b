"""The run driver's state and the decisions its inputs share (see ``_driver``'s rules).

Kept apart from ``_driver``, which holds one handler per input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from orchestrator.core._cascade import Cascade
from orchestrator.core._records import (
    DatasetEventRecord,
    RunRecord,
    TaskInstanceRecord,
    TryRecord,
    XComRecord,
    instance_key,
    split_key,
)
from orchestrator.core._state import (
    FINISHED_STATES,
    RunState,
    TaskEvent,
    TaskState,
    apply,
    decide_run_state,
    retry_delay,
)
from orchestrator.core._steps import (
    LOST_TRY,
    Alert,
    AlertEvent,
    DagSpec,
    Defer,
    PastRun,
    Step,
    Timer,
    TryOutcome,
)
from triggers._dataset import DatasetEvent

__all__ = ["CLEARABLE", "DriverState", "outlet_event_id"]

CLEARABLE = FINISHED_STATES | {TaskState.UP_FOR_RETRY}  # what the driver's Clear takes
_E = TaskEvent
_TO_FAILED = {  # from a state before any try, the moves to failed
    TaskState.NONE: (_E.SCHEDULE, _E.QUEUE, _E.START, _E.FAIL),
    TaskState.SCHEDULED: (_E.QUEUE, _E.START, _E.FAIL),
    TaskState.QUEUED: (_E.START, _E.FAIL),
}
_TASK_ALERTS = {
    TaskState.SUCCESS: AlertEvent.TASK_SUCCESS,
    TaskState.FAILED: AlertEvent.TASK_FAILURE,
    TaskState.UP_FOR_RETRY: AlertEvent.TASK_RETRY,
}


def outlet_event_id(ti: TaskInstanceRecord, uri: str) -> str:
    """The id of the event a try of ``ti`` emits for ``uri``: the same for the same try."""
    key = "\x00".join((ti.dag_id, ti.run_id, ti.key, str(ti.try_number), uri))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class DriverState:
    """One run's state, and the decisions every input shares."""

    def __init__(
        self, dag: DagSpec, run: RunRecord, tis: Iterable[TaskInstanceRecord] = ()
    ) -> None:
        self.dag = dag
        self.run = run
        self.tis: dict[str, TaskInstanceRecord] = {ti.key: ti for ti in tis}
        self.errors: dict[str, str] = {}  # instance key (or "<run>") -> why it failed
        self.blocked: dict[str, str] = {}  # task id -> why it cannot run (depends_on_past)
        self.stop_reason: str | None = None
        self.ended = False
        self._graph = Cascade(dag, self.key, self.tis, self.blocked)
        self._in_flight: set[str] = set()  # queued or running: holding a slot
        self._tries: dict[str, TryRecord] = {}  # the open try of running, deferred instances

    @property
    def key(self) -> tuple[str, str]:
        return (self.run.dag_id, self.run.run_id)

    @property
    def in_flight(self) -> int:
        """Tries queued or running (each holding a slot)."""
        return len(self._in_flight)

    @property
    def wants_past(self) -> bool:
        """Whether ``Start`` needs the previous run (some task depends on its past)."""
        return self.run.logical_date is not None and any(
            t.depends_on_past for t in self.dag.task_dict.values()
        )

    def next_try(self, task_id: str) -> int:
        """The number of the try the instance's next ``TryStarted`` starts (or continues)."""
        attempt = self._tries.get(task_id)
        return attempt.try_number if attempt is not None else self.tis[task_id].try_number + 1

    def instances(self, task_id: str) -> list[TaskInstanceRecord]:
        """The task's instances in this run (a mapped task's, in map order)."""
        return self._graph.instances(task_id)

    def _fail_unstarted(
        self, ti: TaskInstanceRecord, reason: str, now: datetime, step: Step
    ) -> None:
        """Fail an instance that never ran a try (ready but unable to start, or waiting to
        expand): through the states a try would have passed, so each move is a legal one."""
        where = self._graph.where(ti.key)
        for move in _TO_FAILED[ti.state]:
            ti.state = apply(ti.state, move, where)
        ti.end_date = now
        self.errors[ti.key] = reason
        step.writes.append(ti)
        step.alerts.append(
            Alert(AlertEvent.TASK_FAILURE, ti.task_id, ti.try_number, reason, ti.map_index)
        )
        self._graph.finished(ti)

    # -- decisions ---------------------------------------------------------------------

    def _end_try(
        self,
        ti: TaskInstanceRecord,
        outcome: TryOutcome,
        error: str | None,
        *,
        now: datetime,
        step: Step,
        retryable: bool = True,
        xcoms: Mapping[str, str] | None = None,
        skip: frozenset[str] = frozenset(),
        outlet_extras: Mapping[str, Mapping[str, Any]] | None = None,
        alert: bool = False,
        retry_at: datetime | None = None,
    ) -> None:
        """End the instance's open try as ``outcome``: retry, finish and cascade."""
        task = self.dag.task_dict[ti.task_id]
        where = self._graph.where(ti.key)
        ti.end_date = now
        ti.duration = (now - ti.start_date).total_seconds() if ti.start_date else None
        if outcome is TryOutcome.LOST:
            error = error or LOST_TRY
        elif outcome is TryOutcome.FAILED and self.stop_reason is not None:
            error = error or self.stop_reason
        if outcome is TryOutcome.SUCCESS:
            ti.state = apply(ti.state, TaskEvent.SUCCEED, where)
        elif outcome is TryOutcome.SKIPPED:
            ti.state = apply(ti.state, TaskEvent.SKIP, where)
        elif retryable and self.stop_reason is None and ti.try_number <= task.retries:
            ti.state = apply(ti.state, TaskEvent.RETRY, where)
            ti.next_retry_at = retry_at or now + retry_delay(
                ti.try_number,
                task.retry_delay or timedelta(0),
                exponential=task.retry_exponential_backoff,
                max_delay=task.max_retry_delay,
                seed=f"{(ti.dag_id, ti.run_id, ti.key)}",
            )
        else:
            ti.state = apply(ti.state, TaskEvent.FAIL, where)
        if error:
            self.errors[ti.key] = error
        step.writes.append(ti)
        attempt = self._tries.pop(ti.key, None)
        if attempt is not None:
            attempt.state = TaskState.FAILED if ti.state == TaskState.UP_FOR_RETRY else ti.state
            attempt.end_date = now
            attempt.duration = (
                (now - attempt.start_date).total_seconds() if attempt.start_date else None
            )
            attempt.error = error
            step.writes.append(attempt)
        step.writes += [
            XComRecord(ti.dag_id, ti.run_id, ti.task_id, key, value, ti.map_index)
            for key, value in (xcoms or {}).items()
        ]
        if ti.state == TaskState.SUCCESS:
            for outlet in task.outlets:  # rule 7
                step.writes.append(
                    DatasetEventRecord(
                        DatasetEvent(
                            id=outlet_event_id(ti, outlet.uri),
                            uri=outlet.uri,
                            timestamp=now,
                            extra=dict((outlet_extras or {}).get(outlet.uri, {})),
                            source_dag_id=ti.dag_id,
                            source_run_id=ti.run_id,
                            source_task_id=ti.task_id,
                        )
                    )
                )
        if ti.state == TaskState.UP_FOR_RETRY:
            assert ti.next_retry_at is not None
            step.timers.append(Timer("retry", ti.key, ti.next_retry_at))
        else:
            self._graph.finished(ti)
            downstream = set(task.downstream_task_ids)
            if skip:
                downstream |= self._graph.skip(skip, now, step)
            self._evaluate(sorted(downstream), now, step)
        if alert:
            event = _TASK_ALERTS.get(ti.state)
            if event is not None:
                step.alerts.append(Alert(event, ti.task_id, ti.try_number, error, ti.map_index))

    def _recover(self, now: datetime, step: Step, adopted: frozenset[str] = frozenset()) -> None:
        """Instances a stopped process left queued or running: requeued, a lost try, or
        (``adopted``) a try that runs on where it was sent, waited for again."""
        for ti in list(self._graph.all()):
            task_id = ti.key
            if ti.state == TaskState.QUEUED:
                ti.state = apply(ti.state, TaskEvent.REQUEUE, self._graph.where(task_id))
                step.writes.append(ti)
            elif ti.state == TaskState.RUNNING and task_id in adopted:
                self._in_flight.add(task_id)
                step.adopt.append(task_id)
            elif ti.state == TaskState.RUNNING:
                # A lost try is retried at once, whatever the task's retry_delay.
                self._end_try(
                    ti, TryOutcome.LOST, None, now=now, step=step, retry_at=now, alert=True
                )
            elif ti.state == TaskState.DEFERRED:
                step.defer.append(Defer(task_id))
            elif ti.state == TaskState.UP_FOR_RETRY and ti.next_retry_at is not None:
                step.timers.append(Timer("retry", task_id, ti.next_retry_at))
            if ti.state == TaskState.SCHEDULED:
                step.ready.append(task_id)

    def _evaluate(self, task_ids: Sequence[str], now: datetime, step: Step) -> None:
        if self.stop_reason is None:  # a stopped run schedules nothing (the stop skipped all)
            self._graph.evaluate(task_ids, now, step)

    def _maybe_end(self, now: datetime, step: Step) -> None:
        if self.ended:
            return
        if self.stop_reason is not None:
            if not self._in_flight:
                self._end(RunState.FAILED, self.stop_reason, now, step)
            return
        if self._graph.unfinished > 0:
            # A step that readied an instance has one on its way: no need to look for one.
            if not self._in_flight and not step.ready and not self._graph.has_pending():
                self._end(RunState.FAILED, self._graph.deadlock_reason(), now, step)
            return
        states = {ti.key: ti.state for ti in self._graph.all()}
        leaves = [key for leaf in self.dag.run_leaves for key in self._graph.keys(leaf)]
        state = decide_run_state(states, leaves)
        assert state is not None
        self._end(state, None, now, step)

    def _end(self, state: RunState, reason: str | None, now: datetime, step: Step) -> None:
        self.ended = True
        self.run.state = state
        self.run.end_date = now
        if reason:
            self.errors["<run>"] = reason
        step.writes.append(self.run)
        step.cancel_timers.append(("run_timeout", None))
        step.ended = state
        event = AlertEvent.RUN_SUCCESS if state == RunState.SUCCESS else AlertEvent.RUN_FAILURE
        step.alerts.append(Alert(event, error=reason))

    def _block_by_past(self, past: PastRun) -> None:
        for key, state in sorted(past.states.items()):
            task_id = split_key(key)[0]
            task = self.dag.task_dict.get(task_id)
            if (
                task is not None
                and task.depends_on_past
                and state not in (TaskState.SUCCESS, TaskState.SKIPPED, TaskState.REMOVED)
                and task_id not in self.blocked
            ):
                what = "it" if key == task_id else key
                self.blocked[task_id] = (
                    f"depends_on_past: in run {past.run_id!r} {what} ended {state}"
                )

    def _new_instance(self, task_id: str, map_index: int) -> TaskInstanceRecord:
        task = self.dag.task_dict[task_id]
        ti = self.tis[instance_key(task_id, map_index)] = TaskInstanceRecord(
            dag_id=self.run.dag_id,
            run_id=self.run.run_id,
            task_id=task_id,
            max_tries=task.retries,
            pool=task.pool,
            priority_weight=task.priority_weight,
            operator=task.task_type,
            map_index=map_index,
        )
        return ti
