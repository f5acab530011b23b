"""The run driver: every decision about one DAG run, from its first task to its end.

``RunDriver.feed(input, now) -> Step``: an input (a try ended, a retry is due, the
run timed out...) and the time go in; the driver updates the run's state and
answers with the step's commands (records to write, instances now ready, tries to
stop, timers, alerts, the run's end). It reads no clock, opens no socket and
spawns nothing: the scheduler's shell feeds it and carries the commands out. The
state is updated in place rather than copied, because a run of a thousand tasks
would otherwise copy its state on every input.

Rules:
1. Everything the driver changes is in the step's ``writes``; the shell commits
   them as one unit before it acts on the step's other commands.
2. Each task keeps counts of its upstream states, so an input costs O(the task's
   downstream), not O(the DAG).
3. A try holds a slot from ``Queued`` until it ends or defers. ``deferred`` is a
   waiting state: it holds no slot, is not a lost try when the run is started
   again, keeps the run from counting as stuck, and a stop fails it.
4. The run ends in the step whose input finishes its last instance (the run's
   record is in that step's writes), or, once stopped, in the step after which no
   try is in flight. With instances unfinished and none able to move, it fails:
   "no task can make progress", naming what blocks each.
5. After a stop, a try that fails is not retried, and its error is the stop's
   reason when it has none of its own.
6. Every end of a try raises its task alert: one seen here (``TryEnded``,
   ``Resumed``), a try found lost when a run starts again (the process that ran it was
   killed: its failure or retry is alerted after the restart), and an instance failed
   before it could start.
7. A try that succeeds emits one dataset event per outlet of its task, in the writes
   that record its success (so in the same transaction); its id names the try, so a
   task cleared and run again emits anew, and a repeated write is one event.
8. A sensor's wait (``SensorWaitRecord``, the ``Deferred`` input's trigger) is written
   with the instance's ``deferred`` state and cleared in the step that ends the wait.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from orchestrator.core._cascade import Cascade, clear_instance
from orchestrator.core._records import (
    DatasetEventRecord,
    RunRecord,
    SensorWaitCleared,
    SensorWaitRecord,
    TaskInstanceRecord,
    TryRecord,
    XComRecord,
    XComsCleared,
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
    Clear,
    DagSpec,
    Defer,
    Deferred,
    Input,
    NotStarted,
    PastRun,
    Queued,
    Resumed,
    Resumption,
    RetryDue,
    Start,
    Step,
    Stop,
    TimedOut,
    Timer,
    TryEnded,
    TryOutcome,
    TryStarted,
)
from triggers._dataset import DatasetEvent

__all__ = ["RunDriver", "outlet_event_id"]

_CLEARABLE = FINISHED_STATES | {TaskState.UP_FOR_RETRY}
_TASK_ALERTS = {
    TaskState.SUCCESS: AlertEvent.TASK_SUCCESS,
    TaskState.FAILED: AlertEvent.TASK_FAILURE,
    TaskState.UP_FOR_RETRY: AlertEvent.TASK_RETRY,
}


def outlet_event_id(ti: TaskInstanceRecord, uri: str) -> str:
    """The id of the event a try of ``ti`` emits for ``uri``: the same for the same try."""
    key = "\x00".join((ti.dag_id, ti.run_id, ti.task_id, str(ti.try_number), uri))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class RunDriver:
    """One run's state and its decisions (see the module's rules)."""

    def __init__(
        self, dag: DagSpec, run: RunRecord, tis: Iterable[TaskInstanceRecord] = ()
    ) -> None:
        self.dag = dag
        self.run = run
        self.tis: dict[str, TaskInstanceRecord] = {ti.task_id: ti for ti in tis}
        self.errors: dict[str, str] = {}  # task id (or "<run>") -> why it failed
        self.blocked: dict[str, str] = {}  # task id -> why it cannot run (depends_on_past)
        self.stop_reason: str | None = None
        self.ended = False
        self._graph = Cascade(dag, self.key, self.tis, self.blocked)
        self._in_flight: set[str] = set()  # queued or running: holding a slot
        self._tries: dict[str, TryRecord] = {}  # the open try of running, deferred instances
        self._handlers: dict[type, Callable[[Any, datetime, Step], None]] = {
            Start: self._start,
            Queued: self._queued,
            TryStarted: self._try_started,
            TryEnded: self._try_ended,
            NotStarted: self._not_started,
            RetryDue: self._retry_due,
            TimedOut: self._timed_out,
            Stop: self._stop,
            Clear: self._clear,
            Deferred: self._deferred,
            Resumed: self._resumed,
        }

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

    def feed(self, event: Input, now: datetime) -> Step:
        step = Step()
        self._handlers[type(event)](event, now, step)
        return step

    # -- inputs ------------------------------------------------------------------------

    def _start(self, event: Start, now: datetime, step: Step) -> None:
        dag, run = self.dag, self.run
        for task_id, task in dag.task_dict.items():
            if task_id not in self.tis:
                ti = self.tis[task_id] = TaskInstanceRecord(
                    dag_id=dag.dag_id,
                    run_id=run.run_id,
                    task_id=task_id,
                    max_tries=task.retries,
                    pool=task.pool,
                    priority_weight=task.priority_weight,
                    operator=task.task_type,
                )
                step.writes.append(ti)
        for task_id, ti in self.tis.items():
            if task_id not in dag.task_dict and ti.state not in FINISHED_STATES:
                ti.state = apply(ti.state, TaskEvent.REMOVE, self._graph.where(task_id))
                step.writes.append(ti)
        if event.past is not None:
            self._block_by_past(event.past)
        if run.state != RunState.RUNNING or run.start_date is None:
            run.state = RunState.RUNNING
            run.start_date = run.start_date or now
            run.end_date = None
        step.writes.append(run)
        self._graph.recount()
        self._tries.update(event.open_tries)
        self._recover(now, step)
        self._evaluate(dag.topological_order(), now, step)
        if dag.dagrun_timeout is not None:
            step.timers.append(Timer("run_timeout", None, run.start_date + dag.dagrun_timeout))
        self._maybe_end(now, step)

    def _queued(self, event: Queued, now: datetime, step: Step) -> None:
        ti = self.tis[event.task_id]
        ti.state = apply(ti.state, TaskEvent.QUEUE, self._graph.where(ti.task_id))
        self._in_flight.add(ti.task_id)
        step.writes.append(ti)

    def _try_started(self, event: TryStarted, now: datetime, step: Step) -> None:
        ti = self.tis[event.task_id]
        ti.state = apply(ti.state, TaskEvent.START, self._graph.where(ti.task_id))
        resumed = self._tries.get(ti.task_id)
        if resumed is not None:  # a deferred try runs on, as the same try
            resumed.state = TaskState.RUNNING
            step.writes += [ti, resumed]
            return
        ti.try_number += 1
        ti.max_tries = self.dag.task_dict[ti.task_id].retries
        ti.start_date = now
        ti.end_date = None
        ti.duration = None
        ti.next_retry_at = None
        attempt = self._tries[ti.task_id] = TryRecord(
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            try_number=ti.try_number,
            state=TaskState.RUNNING,
            start_date=now,
            hostname=event.hostname,
            log_path=event.log_path,
        )
        step.writes += [ti, attempt]

    def _try_ended(self, event: TryEnded, now: datetime, step: Step) -> None:
        self._in_flight.discard(event.task_id)
        self._end_try(
            self.tis[event.task_id],
            event.outcome,
            event.error,
            retryable=event.retryable,
            xcoms=event.xcoms,
            skip=event.skip,
            outlet_extras=event.outlet_extras,
            alert=True,
            now=now,
            step=step,
        )
        self._maybe_end(now, step)

    def _not_started(self, event: NotStarted, now: datetime, step: Step) -> None:
        ti = self.tis[event.task_id]
        where = self._graph.where(ti.task_id)
        for move in (TaskEvent.QUEUE, TaskEvent.START, TaskEvent.FAIL):
            ti.state = apply(ti.state, move, where)
        ti.end_date = now
        self.errors[ti.task_id] = event.reason
        step.writes.append(ti)
        step.alerts.append(Alert(AlertEvent.TASK_FAILURE, ti.task_id, ti.try_number, event.reason))
        self._graph.finished(ti)
        self._evaluate(sorted(self.dag.task_dict[ti.task_id].downstream_task_ids), now, step)
        self._maybe_end(now, step)

    def _retry_due(self, event: RetryDue, now: datetime, step: Step) -> None:
        ti = self.tis.get(event.task_id)
        if ti is None or ti.state != TaskState.UP_FOR_RETRY:
            return  # cleared or stopped since the timer was armed
        ti.state = apply(ti.state, TaskEvent.SCHEDULE, self._graph.where(ti.task_id))
        step.writes.append(ti)
        step.ready.append(ti.task_id)

    def _timed_out(self, event: TimedOut, now: datetime, step: Step) -> None:
        reason = f"dagrun_timeout: the run took longer than {self.dag.dagrun_timeout}"
        self._stop(Stop(reason), now, step)

    def _stop(self, event: Stop, now: datetime, step: Step) -> None:
        if self.ended or self.stop_reason is not None:
            return
        self.stop_reason = event.reason
        for task_id in self.dag.task_dict:
            ti = self.tis[task_id]
            if ti.state in (TaskState.NONE, TaskState.SCHEDULED, TaskState.UP_FOR_RETRY):
                if ti.state == TaskState.SCHEDULED:
                    step.unready.append(task_id)
                elif ti.state == TaskState.UP_FOR_RETRY:
                    step.cancel_timers.append(("retry", task_id))
                ti.state = apply(ti.state, TaskEvent.SKIP, self._graph.where(task_id))
                ti.end_date = now
                self._graph.finished(ti)
                step.writes.append(ti)
            elif ti.state == TaskState.DEFERRED:
                step.withdraw.append(task_id)
                step.writes.append(SensorWaitCleared(ti.dag_id, ti.run_id, task_id))
                self._end_try(ti, TryOutcome.FAILED, event.reason, now=now, step=step)
            elif task_id in self._in_flight:
                step.cancel.append(task_id)
        step.cancel_timers.append(("run_timeout", None))
        self._maybe_end(now, step)

    def _clear(self, event: Clear, now: datetime, step: Step) -> None:
        cleared = False
        for task_id in sorted(event.task_ids & self.dag.task_dict.keys()):
            ti = self.tis[task_id]
            if ti.state not in _CLEARABLE:
                continue  # waiting already, or in flight
            if ti.state == TaskState.UP_FOR_RETRY:
                step.cancel_timers.append(("retry", task_id))
            clear_instance(ti, self._graph.where(task_id))
            self.errors.pop(task_id, None)
            step.writes += [ti, XComsCleared(ti.dag_id, ti.run_id, task_id)]
            cleared = True
        if not cleared:
            return
        if self.ended:
            self.ended = False
            self.run.state = RunState.RUNNING
            self.run.end_date = None
            self.errors.pop("<run>", None)
            step.writes.append(self.run)
        self.stop_reason = None
        self._graph.recount()
        self._evaluate(self.dag.topological_order(), now, step)
        self._maybe_end(now, step)

    def _deferred(self, event: Deferred, now: datetime, step: Step) -> None:
        ti = self.tis[event.task_id]
        ti.state = apply(ti.state, TaskEvent.DEFER, self._graph.where(ti.task_id))
        self._in_flight.discard(ti.task_id)
        attempt = self._tries[ti.task_id]
        attempt.state = TaskState.DEFERRED
        step.writes += [ti, attempt]
        if isinstance(event.trigger, SensorWaitRecord):  # rule 8
            step.writes.append(event.trigger)
        step.defer.append(Defer(ti.task_id, event.trigger))
        self._maybe_end(now, step)

    def _resumed(self, event: Resumed, now: datetime, step: Step) -> None:
        ti = self.tis.get(event.task_id)
        if ti is None or ti.state != TaskState.DEFERRED:
            return  # stopped or cleared while it waited
        step.writes.append(SensorWaitCleared(ti.dag_id, ti.run_id, ti.task_id))
        if event.outcome is Resumption.RUN:
            ti.state = apply(ti.state, TaskEvent.RESUME, self._graph.where(ti.task_id))
            step.writes.append(ti)
            step.ready.append(ti.task_id)
            return
        outcome = TryOutcome(event.outcome.value)
        self._end_try(
            ti,
            outcome,
            event.error,
            xcoms=event.xcoms,
            retryable=event.retryable,
            alert=True,
            now=now,
            step=step,
        )
        self._maybe_end(now, step)

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
        where = self._graph.where(ti.task_id)
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
                seed=f"{(ti.dag_id, ti.run_id, ti.task_id)}",
            )
        else:
            ti.state = apply(ti.state, TaskEvent.FAIL, where)
        if error:
            self.errors[ti.task_id] = error
        step.writes.append(ti)
        attempt = self._tries.pop(ti.task_id, None)
        if attempt is not None:
            attempt.state = TaskState.FAILED if ti.state == TaskState.UP_FOR_RETRY else ti.state
            attempt.end_date = now
            attempt.duration = (
                (now - attempt.start_date).total_seconds() if attempt.start_date else None
            )
            attempt.error = error
            step.writes.append(attempt)
        step.writes += [
            XComRecord(ti.dag_id, ti.run_id, ti.task_id, key, value)
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
            step.timers.append(Timer("retry", ti.task_id, ti.next_retry_at))
        else:
            self._graph.finished(ti)
            downstream = set(task.downstream_task_ids)
            if skip:
                downstream |= self._graph.skip(skip, now, step)
            self._evaluate(sorted(downstream), now, step)
        if alert:
            event = _TASK_ALERTS.get(ti.state)
            if event is not None:
                step.alerts.append(Alert(event, ti.task_id, ti.try_number, error))

    def _recover(self, now: datetime, step: Step) -> None:
        """Instances a stopped process left queued or running: requeued, or a lost try."""
        for task_id in self.dag.task_dict:
            ti = self.tis[task_id]
            if ti.state == TaskState.QUEUED:
                ti.state = apply(ti.state, TaskEvent.REQUEUE, self._graph.where(task_id))
                step.writes.append(ti)
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
        states = {tid: self.tis[tid].state for tid in self.dag.task_dict}
        state = decide_run_state(states, self.dag.leaves)
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
        for task_id, task in self.dag.task_dict.items():
            state = past.states.get(task_id)
            if (
                task.depends_on_past
                and state is not None
                and state not in (TaskState.SUCCESS, TaskState.SKIPPED)
            ):
                self.blocked[task_id] = f"depends_on_past: in run {past.run_id!r} it ended {state}"
