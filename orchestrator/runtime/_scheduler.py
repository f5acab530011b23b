"""The scheduler: the async shell around the run drivers and the ready queue.

It decides nothing. Each run has a :class:`~orchestrator.core.RunDriver`; the shell
feeds it inputs (a try started or ended, a timer fired, a stop) and carries out the
commands of the step it answers. Which instance starts next is the
:class:`~orchestrator.core.ReadyQueue`'s answer.

Rules:
1. A step's writes are submitted as one unit before any of its other commands is
   carried out; a try's code starts only once its ``running`` write is acknowledged.
   The writer commits units in order, so that ack also covers every earlier step.
2. A try's end is submitted in the same moment its slot is given back, so when
   ``drain`` sees no try running, every ended try's writes (and its run's end) are
   on their way to the store: a shutdown never leaves a finished run ``running``.
3. Everything the shell does after an ack (notifying listeners, handing the step's
   alerts to the outbox, telling ``on_dataset_events`` of the events a success
   emitted, the run's end) happens in the coroutine that fed the input, or in a task
   of the scheduler's own group.
4. A deferrable sensor's try starts deferred, in the step that takes it from the ready
   queue: it never holds a slot; the sensor hub (``_sensing``) makes all its pokes.
5. A step's alerts become outbox deliveries written in the step's own unit; the outbox
   delivers them in its own tasks, never in the way of a try or of this loop.
6. A step's XComs join the run's in memory as the step is submitted; a mapped task the
   step readied is answered with its length (``Expanded``) from them, in the same unit.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from orchestrator._clock import Clock
from orchestrator.alerts._outbox import Outbox
from orchestrator.alerts._plan import plan_alerts
from orchestrator.authoring._dag import DAG
from orchestrator.core import (
    AlertRecord,
    Clear,
    DatasetEventRecord,
    Input,
    NotStarted,
    Queued,
    ReadyItem,
    ReadyQueue,
    Resumed,
    Resumption,
    RetryDue,
    RunDriver,
    RunRecord,
    Start,
    Step,
    Stop,
    TaskState,
    TimedOut,
    Timer,
    TryStarted,
)
from orchestrator.runtime._executor import Executor, TryResult
from orchestrator.runtime._live import (
    ChangeListener,
    Deferrals,
    LiveRun,
    RunKey,
    Snapshot,
    alert_contexts,
    expansion,
    fold_xcoms,
    open_tries_of,
    past_run,
    ready_item,
    rebuilt_context,
    run_info,
    running_tries,
    try_ended,
    try_request,
)
from orchestrator.runtime._live import written as written_by
from orchestrator.runtime._sensing import SensorHub
from orchestrator.runtime._timers import Timers
from orchestrator.store import Ack, Store
from triggers._dataset import DatasetEvent

__all__ = ["Scheduler"]

log = structlog.get_logger("orchestrator.scheduler")
_HOSTNAME = socket.gethostname()


class Scheduler:
    def __init__(
        self,
        store: Store,
        executor: Executor,
        clock: Clock,
        *,
        parallelism: int,
        logs_dir: Path,
        on_change: ChangeListener | None = None,
        timers: Timers | None = None,
        on_run_end: Callable[[LiveRun], None] | None = None,
        deferrals: Deferrals | None = None,
        on_dataset_events: Callable[[list[DatasetEvent]], None] | None = None,
        dags: Callable[[str], DAG | None] | None = None,
    ) -> None:
        self.store = store
        self.executor = executor
        self.clock = clock
        self.logs_dir = logs_dir
        self.on_change = on_change
        self.on_run_end = on_run_end
        self.sensors = SensorHub(self)
        self.deferrals: Deferrals = deferrals if deferrals is not None else self.sensors
        self.on_dataset_events = on_dataset_events
        self.queue = ReadyQueue(parallelism)
        self.timers = timers if timers is not None else Timers(clock)
        self._owns_timers = timers is None
        self._runs: dict[RunKey, LiveRun] = {}
        self._due: list[tuple[RunKey, Input]] = []
        self._due_wake = anyio.Event()
        self._draining = False
        self._idle = anyio.Event()
        self._tg: TaskGroup | None = None
        self._dags = dags
        self._driven: dict[str, DAG] = {}  # the DAG of each run driven here, latest
        self.alerts = Outbox(
            executor.services,
            clock,
            self.timers.call_at,
            logs_dir=logs_dir,
            dags=self.dag_of,
            contexts=functools.partial(
                rebuilt_context, store, executor, logs_dir, self.dag_of, self._runs.get
            ),
        )

    # -- lifecycle ---------------------------------------------------------------------

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the task group in which every try runs; returns when cancelled."""
        self.queue.pools = await self.store.get_pools()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            if self._owns_timers:
                await tg.start(self.timers.run)
            tg.start_soon(self.sensors.serve)
            tg.start_soon(self.executor.serve)
            await tg.start(self.alerts.serve)
            task_status.started()
            try:
                await self._timer_pump()
            finally:
                with anyio.CancelScope(shield=True):
                    await self.executor.services.clients.aclose()

    @property
    def running(self) -> int:
        """Tries queued or running in this process."""
        return self.queue.running

    @property
    def ready(self) -> int:
        """Instances waiting in the ready queue."""
        return self.queue.waiting

    async def quiet(self) -> None:
        """Return once no try is running here, not even one the last to end made ready."""
        while self.queue.running:
            await self._idle.wait()

    async def drain(self, grace: float) -> bool:
        """Start no more tries; wait up to ``grace`` seconds for running ones. True if idle."""
        self._draining = True
        if self.queue.running == 0:
            return True
        with anyio.move_on_after(grace):
            await self._idle.wait()
        return self.queue.running == 0

    # -- inputs from outside -----------------------------------------------------------------

    async def start_run(self, dag: DAG, record: RunRecord) -> LiveRun:
        """Load a run (and its task instances) from the store and start driving it."""
        assert self._tg is not None, "serve() must be running"
        tis = await self.store.task_instances(dag.dag_id, record.run_id)
        driver = RunDriver(dag, record, tis)
        self._driven[dag.dag_id] = dag
        live = LiveRun(dag, driver, run_info(record))
        live.xcoms = await self.store.xcoms(dag.dag_id, record.run_id)
        if dag.schedule.datasets is not None:
            live.info.triggering_events = await self.store.triggering_dataset_events(
                dag.dag_id, record.run_id
            )
        past = await past_run(self.store, driver.run) if driver.wants_past else None
        open_tries = await open_tries_of(self.store, tis)
        adopted = await self.executor.adoptable(running_tries(driver, open_tries))
        self._runs[live.key] = live
        live.adopted.update(adopted)
        step = driver.feed(Start(past, open_tries, frozenset(adopted)), self.clock.now())
        ack, (written,) = self._apply([(live, step)])
        await self._settle(live, step, ack, written)
        return live

    async def stop_run(self, dag_id: str, run_id: str, reason: str) -> None:
        """Fail a run now: waiting instances are skipped, running tries stopped."""
        await self._feed((dag_id, run_id), Stop(reason))

    async def clear(self, dag_id: str, run_id: str, keys: frozenset[str]) -> None:
        """Run these finished instances of a run driven here again (the driver's Clear)."""
        await self._feed((dag_id, run_id), Clear(keys))

    async def resume(
        self,
        run: RunKey,
        task_id: str,
        outcome: Resumption,
        *,
        error: str | None = None,
        xcoms: dict[str, str] | None = None,
        retryable: bool = True,
    ) -> None:
        """End a deferred instance's wait (the sensor hub, a firing of the trigger engine)."""
        live = self._runs.get(run)
        if live is None:
            return
        resumed = Resumed(task_id, outcome, error, xcoms or {}, retryable)
        step = live.driver.feed(resumed, self.clock.now())
        ended = None
        if step.alerts:  # the try ended here: its callbacks get the try's context
            request = try_request(live, task_id, live.tis[task_id].try_number, self.logs_dir)
            ended = TryResult(outcome.value, error, context=self.executor.context_of(request))
        ack, (written,) = self._apply([(live, step)])
        await self._settle(live, step, ack, written, result=ended)

    async def _feed(self, run: RunKey, event: Input) -> None:
        live = self._runs.get(run)
        if live is not None:
            step = live.driver.feed(event, self.clock.now())
            ack, (written,) = self._apply([(live, step)])
            await self._settle(live, step, ack, written)

    def dag_of(self, dag_id: str) -> DAG | None:
        """The DAG as this process knows it: loaded, or of a run driven here."""
        dag = self._dags(dag_id) if self._dags is not None else None
        return dag if dag is not None else self._driven.get(dag_id)

    def set_pools(self, limits: dict[str, int]) -> None:
        """What the tries here may hold of each pool (its size, or beside other daemons
        this one's limit in it: ``core._slots``); what now fits starts."""
        self.queue.pools = limits
        if self._tg is not None:
            self._dispatch()

    def live(self, run: RunKey) -> LiveRun | None:
        """The run driven here under that key, if any."""
        return self._runs.get(run)

    # -- carrying out steps ------------------------------------------------------------------

    def _apply(
        self, steps: list[tuple[LiveRun, Step]], *, dispatch: bool = True
    ) -> tuple[Ack, list[list[Snapshot]]]:
        """Submit the steps' writes as one unit, then carry out their other commands."""
        limit = self.executor.services.settings.max_map_length
        for live, step in steps:
            fold_xcoms(live, step.writes)  # rule 6
            while step.expand:
                later = live.driver.feed(
                    expansion(live, step.expand.pop(0), limit), self.clock.now()
                )
                fold_xcoms(live, later.writes)
                step.merge(later)
            if step.alerts:  # rule 5
                step.writes += plan_alerts(
                    live.dag, live.key, step.alerts, self.clock.now(), seal=self.alerts.seal
                )
        ack = self.store.write_nowait(
            self.store.statements([w for _, step in steps for w in step.writes])
        )
        snapshots = [written_by(live, step) if self.on_change else [] for live, step in steps]
        for live, step in steps:
            self._carry_out(live, step)
        if dispatch:
            self._dispatch()
        return ack, snapshots

    def _carry_out(self, live: LiveRun, step: Step) -> None:
        for task_id in step.unready:
            self.queue.discard(live.key, task_id)
        for task_id in step.adopt:
            item = ready_item(live, task_id)
            self.queue.occupy(item)
            assert self._tg is not None
            self._tg.start_soon(self._run_try, live, item, live.adopted.pop(task_id))
        for task_id in step.ready:
            if live.tis[task_id].state == TaskState.SCHEDULED:  # not skipped later in the step
                self.queue.push(ready_item(live, task_id))
        for timer_key in step.cancel_timers:
            handle = live.timers.pop(timer_key, None)
            if handle is not None:
                handle.cancel()
        for timer in step.timers:
            self._arm(live, timer)
        for task_id in step.cancel:
            scope = live.scopes.get(task_id)
            if scope is not None:  # a try not started yet sees the stop and does not run
                scope.cancel()
        for task_id in step.withdraw:
            if self.deferrals is not None:
                self.deferrals.withdraw(live.key, task_id)
        for defer in step.defer:
            if self.deferrals is not None:
                self.deferrals.defer(live.key, defer.task_id, defer.trigger)
            else:
                log.warning(
                    "deferred task waits with no trigger engine to resume it",
                    dag_id=live.key[0],
                    run_id=live.key[1],
                    task_id=defer.task_id,
                )
        if step.ended is not None:
            self._runs.pop(live.key, None)
            for handle in live.timers.values():
                handle.cancel()

    def _arm(self, live: LiveRun, timer: Timer) -> None:
        event: Input = RetryDue(timer.task_id) if timer.task_id is not None else TimedOut()
        previous = live.timers.pop(timer.key, None)
        if previous is not None:
            previous.cancel()

        def due() -> None:
            self._due.append((live.key, event))
            self._due_wake.set()

        live.timers[timer.key] = self.timers.call_at(timer.at, due)

    async def _timer_pump(self) -> None:
        """Feed what timers made due (retries, run timeouts), a batch at a time."""
        while True:
            await self._due_wake.wait()
            self._due_wake = anyio.Event()
            batch, self._due = self._due, []
            now = self.clock.now()
            steps: list[tuple[LiveRun, Step]] = []
            for run, event in batch:
                live = self._runs.get(run)
                if live is not None:
                    steps.append((live, live.driver.feed(event, now)))
            if not steps:
                continue
            ack, snapshots = self._apply(steps)
            assert self._tg is not None
            for (live, step), written in zip(steps, snapshots, strict=True):
                self._tg.start_soon(self._settle, live, step, ack, written)

    async def _settle(
        self,
        live: LiveRun,
        step: Step,
        ack: Ack,
        snapshots: list[Snapshot],
        result: TryResult | None = None,
    ) -> None:
        """After the ack: listeners, the try's callbacks, and the run's end if it came."""
        await ack.wait()
        emitted: list[DatasetEvent] = []
        alerts: list[AlertRecord] = []
        for record in step.writes:
            if isinstance(record, DatasetEventRecord):
                emitted.append(record.event)
            elif isinstance(record, AlertRecord):
                alerts.append(record)
        if emitted and self.on_dataset_events is not None:
            self.on_dataset_events(emitted)
        self.sensors.changed(live.dag.dag_id)
        self._notify(live, snapshots)
        if result is not None:
            live.last_context = result.context
        if alerts:
            excerpt = result.log_excerpt if result is not None else None
            self.alerts.submit(alerts, alert_contexts(live, alerts, result), log_excerpt=excerpt)
        if step.ended is not None:
            await self._finish_run(live)

    # -- dispatch and tries -------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start ready instances while the queue allows, highest priority first."""
        if self._draining:
            return
        assert self._tg is not None
        now = self.clock.now()
        queued = []
        deferring: list[tuple[LiveRun, Step]] = []
        while (popped := self.queue.pop()) is not None:
            item, problem = popped
            live = self._runs.get(item.run)
            if live is None or live.tis[item.task_id].state != TaskState.SCHEDULED:
                # The driver withdraws what stops being ready; this would be a bug there.
                log.error("stale ready entry dropped", run=item.run, task_id=item.task_id)
                if problem is None:
                    self.queue.release(item)
                continue
            if problem is not None:
                step = live.driver.feed(NotStarted(item.task_id, problem), now)
                log.error(
                    "task cannot run",
                    dag_id=item.run[0],
                    run_id=item.run[1],
                    task_id=item.task_id,
                    reason=problem,
                )
                ack, (written,) = self._apply([(live, step)], dispatch=False)  # the loop goes on
                self._tg.start_soon(self._settle, live, step, ack, written)
                continue
            queued += live.driver.feed(Queued(item.task_id), now).writes
            sensor = self.sensors.sensor_of(live, item.task_id)
            if sensor is not None and sensor.deferrable:
                deferring += self.sensors.start(live, item.task_id, sensor, now)
                self.queue.release(item)  # rule 4: a wait holds no slot, not even to start
                continue
            self._tg.start_soon(self._run_try, live, item)
        if queued:
            self.store.write_nowait(self.store.statements(queued))
        if deferring:
            ack, snapshots = self._apply(deferring, dispatch=False)
            for (live, step), written in zip(deferring, snapshots, strict=True):
                self._tg.start_soon(self._settle, live, step, ack, written)

    async def _run_try(self, live: LiveRun, item: ReadyItem, adopted: str | None = None) -> None:
        """Run a try of the instance and feed its end; or, ``adopted``, wait for the try
        that was already running on a worker when the run was loaded."""
        ti = live.tis[item.task_id]
        number = ti.try_number if adopted else live.driver.next_try(item.task_id)
        request = try_request(live, item.task_id, number, self.logs_dir)
        if adopted is None:
            started = live.driver.feed(
                TryStarted(item.task_id, _HOSTNAME, str(request.log_path)), self.clock.now()
            )
            await self.store.write(self.store.statements(started.writes))
            # The queued write was submitted before this one, so it is committed too.
            self._notify(live, [replace(ti, state=TaskState.QUEUED), ti])
        result = TryResult("failed", None, retryable=False)
        with anyio.CancelScope() as scope:
            live.scopes[item.task_id] = scope
            if adopted is not None:
                result = await self.executor.adopt(request, adopted)
            elif live.driver.stop_reason is None:
                result = await self.executor.run(request)
        live.scopes.pop(item.task_id, None)
        if scope.cancelled_caught:
            result = TryResult("failed", None, retryable=False)
        ended = live.driver.feed(try_ended(item.task_id, result), self.clock.now())
        if result.state == "failed":
            log.warning(
                "task try failed",
                dag_id=live.key[0],
                run_id=live.key[1],
                task_id=item.task_id,
                try_number=ti.try_number,
                error=live.errors.get(item.task_id),
                state=str(ti.state),
            )
        ack, (written,) = self._apply([(live, ended)], dispatch=False)  # rule 2: before release
        self._release(item)
        await self._settle(live, ended, ack, written, result=result)

    def _release(self, item: ReadyItem) -> None:
        self.queue.release(item)
        if self.queue.running == 0:
            self._idle.set()
            self._idle = anyio.Event()
        self._dispatch()

    # -- the end of a run --------------------------------------------------------

    async def _finish_run(self, live: LiveRun) -> None:
        """The run's end is committed (its alerts handed to the outbox): listeners, waiters."""
        record = live.record
        reason = live.errors.get("<run>")
        if reason:
            log.error("run failed", dag_id=record.dag_id, run_id=record.run_id, reason=reason)
        if self.on_run_end is not None:
            self.on_run_end(live)
        live.done.set()

    # -- listeners ------------------------------------------------------------------------------

    def _notify(self, live: LiveRun, snapshots: list[Snapshot]) -> None:
        if self.on_change is not None:
            for snapshot in snapshots:
                self.on_change(live, snapshot)
