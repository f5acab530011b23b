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
9. A mapped task expands when its trigger rule lets it run: the step asks the shell for
   its length (``Step.expand``), and ``Expanded`` makes that many instances in place of
   the placeholder (a length of 0 skips it; an error fails it). Instances are keyed
   ``t[i]`` everywhere a task id keys an instance. Cleared entirely, a mapped task
   expands again (its extra instances are removed); cleared in part, it runs the
   cleared instances.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from orchestrator.core._cascade import clear_instance
from orchestrator.core._records import (
    InstanceDropped,
    RunRecord,
    SensorWaitCleared,
    SensorWaitRecord,
    TaskInstanceRecord,
    TryRecord,
    XComsCleared,
    instance_key,
    split_key,
)
from orchestrator.core._runstate import CLEARABLE, DriverState, outlet_event_id
from orchestrator.core._state import (
    FINISHED_STATES,
    RunState,
    TaskEvent,
    TaskState,
    apply,
)
from orchestrator.core._steps import (
    Clear,
    DagSpec,
    Defer,
    Deferred,
    Expanded,
    Input,
    NotStarted,
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

__all__ = ["RunDriver", "outlet_event_id"]


class RunDriver(DriverState):
    """One run's state and its decisions (see the module's rules)."""

    def __init__(
        self, dag: DagSpec, run: RunRecord, tis: Iterable[TaskInstanceRecord] = ()
    ) -> None:
        super().__init__(dag, run, tis)
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
            Expanded: self._expanded,
        }

    def feed(self, event: Input, now: datetime) -> Step:
        step = Step()
        self._handlers[type(event)](event, now, step)
        return step

    # -- inputs ------------------------------------------------------------------------

    def _start(self, event: Start, now: datetime, step: Step) -> None:
        dag, run = self.dag, self.run
        mapped = {ti.task_id for ti in self.tis.values() if ti.map_index >= 0}
        for task_id, task in dag.task_dict.items():
            if task_id not in self.tis and not (task.is_mapped and task_id in mapped):
                step.writes.append(self._new_instance(task_id, -1))
        for key, ti in self.tis.items():
            spec = dag.task_dict.get(ti.task_id)
            gone = spec is None or (ti.map_index >= 0 and not spec.is_mapped)
            if gone and ti.state not in FINISHED_STATES:
                ti.state = apply(ti.state, TaskEvent.REMOVE, self._graph.where(key))
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
        self._recover(now, step, event.adopted)
        self._evaluate(dag.topological_order(), now, step)
        if dag.dagrun_timeout is not None:
            step.timers.append(Timer("run_timeout", None, run.start_date + dag.dagrun_timeout))
        self._maybe_end(now, step)

    def _queued(self, event: Queued, now: datetime, step: Step) -> None:
        ti = self.tis[event.task_id]
        ti.state = apply(ti.state, TaskEvent.QUEUE, self._graph.where(ti.key))
        self._in_flight.add(ti.key)
        step.writes.append(ti)

    def _try_started(self, event: TryStarted, now: datetime, step: Step) -> None:
        ti = self.tis[event.task_id]
        ti.state = apply(ti.state, TaskEvent.START, self._graph.where(ti.key))
        resumed = self._tries.get(ti.key)
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
        attempt = self._tries[ti.key] = TryRecord(
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            try_number=ti.try_number,
            state=TaskState.RUNNING,
            start_date=now,
            hostname=event.hostname,
            log_path=event.log_path,
            map_index=ti.map_index,
        )
        step.writes += [ti, attempt]

    def _try_ended(self, event: TryEnded, now: datetime, step: Step) -> None:
        self._in_flight.discard(event.task_id)
        if event.map_label is not None:
            self.tis[event.task_id].rendered_map_index = event.map_label
        if event.rendered is not None and event.task_id in self._tries:
            self._tries[event.task_id].rendered = event.rendered
        if event.hostname and event.task_id in self._tries:  # a worker ran it
            self._tries[event.task_id].hostname = event.hostname
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
        self._fail_unstarted(ti, event.reason, now, step)
        self._evaluate(sorted(self.dag.task_dict[ti.task_id].downstream_task_ids), now, step)
        self._maybe_end(now, step)

    def _retry_due(self, event: RetryDue, now: datetime, step: Step) -> None:
        ti = self.tis.get(event.task_id)
        if ti is None or ti.state != TaskState.UP_FOR_RETRY:
            return  # cleared or stopped since the timer was armed
        ti.state = apply(ti.state, TaskEvent.SCHEDULE, self._graph.where(ti.key))
        step.writes.append(ti)
        step.ready.append(ti.key)

    def _timed_out(self, event: TimedOut, now: datetime, step: Step) -> None:
        reason = f"dagrun_timeout: the run took longer than {self.dag.dagrun_timeout}"
        self._stop(Stop(reason), now, step)

    def _stop(self, event: Stop, now: datetime, step: Step) -> None:
        if self.ended or self.stop_reason is not None:
            return
        self.stop_reason = event.reason
        self._graph.expanding.clear()
        for ti in list(self._graph.all()):
            key = ti.key
            if ti.state in (TaskState.NONE, TaskState.SCHEDULED, TaskState.UP_FOR_RETRY):
                if ti.state == TaskState.SCHEDULED:
                    step.unready.append(key)
                elif ti.state == TaskState.UP_FOR_RETRY:
                    step.cancel_timers.append(("retry", key))
                ti.state = apply(ti.state, TaskEvent.SKIP, self._graph.where(key))
                ti.end_date = now
                self._graph.finished(ti)
                step.writes.append(ti)
            elif ti.state == TaskState.DEFERRED:
                step.withdraw.append(key)
                step.writes.append(
                    SensorWaitCleared(ti.dag_id, ti.run_id, ti.task_id, ti.map_index)
                )
                self._end_try(ti, TryOutcome.FAILED, event.reason, now=now, step=step)
            elif key in self._in_flight:
                step.cancel.append(key)
        step.cancel_timers.append(("run_timeout", None))
        self._maybe_end(now, step)

    def _clear(self, event: Clear, now: datetime, step: Step) -> None:
        cleared = False
        chosen: list[TaskInstanceRecord] = []
        for key in sorted(event.task_ids):
            task_id, map_index = split_key(key)
            if task_id not in self.dag.task_dict:
                continue
            chosen += [
                ti for ti in self._graph.instances(task_id) if map_index < 0 or ti.key == key
            ]
        for ti in chosen:
            if ti.state not in CLEARABLE:
                continue  # waiting already, or in flight
            if ti.state == TaskState.UP_FOR_RETRY:
                step.cancel_timers.append(("retry", ti.key))
            clear_instance(ti, self._graph.where(ti.key))
            self.errors.pop(ti.key, None)
            step.writes += [ti, XComsCleared(ti.dag_id, ti.run_id, ti.task_id, ti.map_index)]
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
        ti.state = apply(ti.state, TaskEvent.DEFER, self._graph.where(ti.key))
        self._in_flight.discard(ti.key)
        attempt = self._tries[ti.key]
        attempt.state = TaskState.DEFERRED
        step.writes += [ti, attempt]
        if isinstance(event.trigger, SensorWaitRecord):  # rule 8
            step.writes.append(event.trigger)
        step.defer.append(Defer(ti.key, event.trigger))
        self._maybe_end(now, step)

    def _resumed(self, event: Resumed, now: datetime, step: Step) -> None:
        ti = self.tis.get(event.task_id)
        if ti is None or ti.state != TaskState.DEFERRED:
            return  # stopped or cleared while it waited
        step.writes.append(SensorWaitCleared(ti.dag_id, ti.run_id, ti.task_id, ti.map_index))
        if event.outcome is Resumption.RUN:
            ti.state = apply(ti.state, TaskEvent.RESUME, self._graph.where(ti.key))
            step.writes.append(ti)
            step.ready.append(ti.key)
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

    def _expanded(self, event: Expanded, now: datetime, step: Step) -> None:
        """Rule 9: the mapped task's instances, ``event.length`` of them."""
        task_id = event.task_id
        if task_id not in self._graph.expanding:
            return  # stopped since it was asked for
        self._graph.expanding.discard(task_id)
        current = self._graph.instances(task_id)
        if event.error is not None or event.length == 0:
            for ti in current:
                if event.error is not None:
                    self._fail_unstarted(ti, event.error, now, step)
                else:
                    ti.state = apply(ti.state, TaskEvent.SKIP, self._graph.where(ti.key))
                    ti.end_date = now
                    self._graph.finished(ti)
                    step.writes.append(ti)
            self._evaluate(sorted(self.dag.task_dict[task_id].downstream_task_ids), now, step)
            self._maybe_end(now, step)
            return
        placeholder = self.tis.pop(task_id, None)
        if placeholder is not None:
            step.writes.append(InstanceDropped(self.run.dag_id, self.run.run_id, task_id))
        for map_index in range(event.length):
            found = self.tis.get(instance_key(task_id, map_index))
            ti = found if found is not None else self._new_instance(task_id, map_index)
            if ti.state == TaskState.REMOVED:
                clear_instance(ti, self._graph.where(ti.key))
            ti.state = apply(ti.state, TaskEvent.SCHEDULE, self._graph.where(ti.key))
            step.writes.append(ti)
            step.ready.append(ti.key)
        for ti in current:
            if ti.map_index >= event.length:  # the expansion shrank since it last ran
                ti.state = apply(ti.state, TaskEvent.REMOVE, self._graph.where(ti.key))
                step.writes.append(ti)
        self._graph.recount()
        self._maybe_end(now, step)
