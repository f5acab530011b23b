"""The daemon: one process, one root task group, every part wired here.

Task tree (cancellation and shutdown flow down it):

    root ── timers (the one deadline heap) ── signals ── watchdog
     └── work ── scheduler (every try runs in its task group; the alert outbox)
          └── intake ── DAG folder watch ── trigger loop ── admission ── reconcile
                     ── deadlines ── HTTP API

Rules:
1. The store is the truth. On start the daemon reads the paused flags, each DAG's
   latest scheduled run (the trigger engine's memory) and the queued and running
   runs it drives; everything in memory here is rebuilt from those.
2. Inputs in, firings out: the trigger engine turns the time and dataset updates
   (``_datasets``; events and sensor results with their issues) into firings. Every run,
   fired or asked for (API, a task), is made by the one run intake, stored
   (queued) before anything acts on it, then handed to admission, which starts
   queued runs in order while the DAG is under ``max_active_runs`` and not paused.
   The engine is told how much room each DAG has, so a catch-up creates runs as
   earlier ones finish.
3. Shutdown: the first SIGTERM/SIGINT cancels intake (no new runs, no API), stops
   dispatching tries, waits ``shutdown_grace`` seconds for running ones, then
   cancels the rest; the store keeps what a restart needs. A second signal exits
   at once.
4. Runs driven by a CLI process (``dags test``, ``dags backfill``) carry a driver
   and are left alone.
"""

from __future__ import annotations

import contextlib
import functools
import gc
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from orchestrator._aio import unless_set, unwrap_single
from orchestrator._clock import Clock, SystemClock
from orchestrator._settings import Settings, make_private_dir
from orchestrator.api import serve_api
from orchestrator.authoring._dag import DAG
from orchestrator.core._admission import Admission
from orchestrator.core._steps import Resumption
from orchestrator.daemon._alerts import AlertFeed
from orchestrator.daemon._control import ControlPlaneParts
from orchestrator.daemon._datasets import DatasetFeed
from orchestrator.daemon._events import EventFeed
from orchestrator.daemon._file import daemon_file, write_daemon_file
from orchestrator.daemon._metrics import Metrics
from orchestrator.daemon._pools import PoolBalance
from orchestrator.daemon._runs import RunParts
from orchestrator.daemon._shares import Shares
from orchestrator.daemon._signals import handle_signals
from orchestrator.daemon._sqs import QueueReader, queue_readers
from orchestrator.dagfiles._folder import DagFolder, FolderChange
from orchestrator.dagfiles._plugins import use_plugins
from orchestrator.dagfiles._trial import ParseWorker
from orchestrator.errors import StoreUnavailable
from orchestrator.resources._services import Services
from orchestrator.runtime._executors import make_executor
from orchestrator.runtime._intake import RunIntake
from orchestrator.runtime._scheduler import Scheduler
from orchestrator.runtime._timers import TimerHandle, Timers
from orchestrator.runtime._watchdog import LoopWatchdog
from orchestrator.store import Store, open_store
from orchestrator.web import ChangeHub, ui_routes
from triggers._engine import CreateRun, Firing, ResumeTask, TimePassed, TriggerEngine
from triggers._timetable import RunInfo

if TYPE_CHECKING:
    from orchestrator.dagfiles._s3 import S3DagSync

__all__ = ["Daemon"]

log = structlog.get_logger("orchestrator.daemon")


class Daemon(RunParts, ControlPlaneParts):
    """The service (see the module's rules); the API's ``ControlPlane``."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.metrics = Metrics()
        self.engine = TriggerEngine()
        self.ready = anyio.Event()
        self.changes = ChangeHub()  # what the UI's pages watch
        self.changes.on_active = self._own_events
        self.api_url = ""
        self.mirrors: list[S3DagSync] = []  # DAGs and plugins in S3
        if "s3://" in (settings.dags[:5], settings.plugins[:5]):
            from orchestrator.dagfiles._s3 import s3_mirrors  # aiobotocore only when needed

            self.mirrors = s3_mirrors(settings)
        use_plugins(settings.plugins_location)
        self.folder = DagFolder(
            settings.dags_folder,
            ParseWorker(settings.dag_import_timeout, size=settings.dag_import_parallelism),
            plugins=settings.plugins_location,
        )
        self.admission = Admission()
        self.shares = Shares(settings.ha_takeover)
        self.shares.on_change = self._share_changed
        self.shares.on_notice = self._noticed
        self._notice = anyio.Event()
        self.datasets = DatasetFeed(
            self.engine, self.clock, wake=self._wake_trigger, is_paused=self.is_paused
        )
        self.datasets.listeners.append(lambda _: self.metrics.dataset_events.inc())
        self.events = EventFeed(
            self.engine, self.clock, wake=self._wake_trigger, metrics=self.metrics
        )
        self.datasets.listeners.append(self.events.own)
        self.events.stored = lambda n: self.changes.publish("event", count=n)
        self.datasets.listeners.append(lambda e: self.changes.publish("dataset", at=e["time"]))
        self.datasets.listeners.append(lambda _: self.shares.notify("datasets"))
        self.queues: list[QueueReader] = []
        self._last: dict[str, RunInfo] = {}  # each DAG's latest scheduled run
        self._dirty: set[str] = set()  # DAGs whose queue admission should look at
        self._admit_wake = anyio.Event()
        self._trigger_wake = anyio.Event()
        self._engine_timer: TimerHandle | None = None
        self._stop = anyio.Event()
        self._store: Store | None = None
        self._scheduler: Scheduler | None = None
        self._intake: RunIntake | None = None
        self.pools: PoolBalance | None = None

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def store(self) -> Store:
        assert self._store is not None, "the daemon is not running"
        return self._store

    @property
    def scheduler(self) -> Scheduler:
        assert self._scheduler is not None, "the daemon is not running"
        return self._scheduler

    @property
    def intake(self) -> RunIntake:
        assert self._intake is not None, "the daemon is not running"
        return self._intake

    def request_stop(self) -> None:
        """Begin a graceful shutdown (what the first SIGTERM/SIGINT does)."""
        self._stop.set()

    async def run(self) -> None:
        """Serve until asked to stop; returns after the graceful shutdown."""
        make_private_dir(self.settings.home)
        timers = Timers(self.clock)
        async with open_store(self.settings.db_url, clock=self.clock) as store:
            await self.shares.join(store, self.settings.db_url)
            self._store = store
            self.events.open(store)
            self._intake = RunIntake(
                store,
                self.clock,
                dags=lambda dag_id: self.folder.dags.get(dag_id),
                on_created=self._on_created,
            )
            services = Services(self.settings, store, self._intake)
            executor = make_executor(
                services, thread_slots=self.settings.parallelism, driver=self.shares.tag or ""
            )
            self._scheduler = Scheduler(
                store,
                executor,
                self.clock,
                parallelism=self.settings.parallelism,
                logs_dir=self.settings.logs_dir,
                timers=timers,
                on_run_end=self._on_run_end,
                on_dataset_events=self.datasets.emitted,
                dags=self.folder.dags.get,
            )
            self.alerts = AlertFeed(
                self.scheduler.alerts,
                store,
                self.clock,
                self.metrics,
                dags=self.folder.dags.get,
                api_url=lambda: self.api_url,
                quiet=self.scheduler.quiet,
                retention_days=self.settings.alert_retention_days,
            )
            if self.shares.membership is not None:  # pools shared with the other daemons
                interval = max(0.1, self.settings.ha_takeover / 5)
                self.pools = PoolBalance(self.shares.membership, self.scheduler, interval)
            self.scheduler.sensors.on_lateness = self.metrics.poke_lateness.observe
            self.scheduler.alerts.orphans = self.shares.owns
            watchdog = LoopWatchdog(on_lag=self.metrics.loop_lag.observe)
            try:
                with unwrap_single():  # a lost lease ends the daemon as itself
                    await self._run_parts(timers, watchdog)
            finally:
                with anyio.CancelScope(shield=True):
                    await self.folder.worker.close()
        with contextlib.suppress(FileNotFoundError):
            daemon_file(self.settings).unlink()
        log.info("daemon stopped")

    async def _run_parts(self, timers: Timers, watchdog: LoopWatchdog) -> None:
        async with anyio.create_task_group() as root:
            await root.start(timers.run)
            root.start_soon(handle_signals, self.request_stop)
            await root.start(watchdog.run)
            await root.start(self.shares.serve)
            async with anyio.create_task_group() as work:
                await work.start(self.alerts.sender.serve)
                await work.start(self.scheduler.serve)
                if self.pools is not None:
                    await work.start(self.pools.serve)
                await self._serve()
                detached = self.scheduler.executor.detach()  # tries on workers run on
                idle = await self.scheduler.drain(0 if detached else self.settings.shutdown_grace)
                await self.alerts.settle(min(5.0, self.settings.shutdown_grace))
                if detached:
                    log.info("shutdown: tries left to run on workers", tries=self.scheduler.running)
                else:
                    log.info(
                        "shutdown: tries finished" if idle else "shutdown: grace period over",
                        still_running=self.scheduler.running,
                    )
                work.cancel_scope.cancel()
            await self.shares.leave()
            root.cancel_scope.cancel()

    async def _serve(self) -> None:
        await self._load_state()
        async with anyio.create_task_group() as intake:
            intake.start_soon(self._trigger_loop)
            intake.start_soon(self._admission_loop)
            intake.start_soon(self._reconcile_loop)
            intake.start_soon(self._notice_loop)
            intake.start_soon(self.shares.listen)
            intake.start_soon(self.events.serve_own)
            intake.start_soon(self.alerts.deadlines.serve)
            for reader in self._queue_readers():
                intake.start_soon(reader.run)
            # The API answers while the DAG files load (health says "loading"); a DAG is
            # known to it as soon as its own file is in; a stop does not wait for the load.
            self.api_url = await intake.start(
                functools.partial(
                    serve_api,
                    self,
                    self.store,
                    host=self.settings.api_host,
                    port=self.settings.api_port,
                    token=self.settings.api_token,
                    allowed_hosts=self.settings.api_allowed_hosts,
                    max_body=self.settings.api_max_body,
                    routes=ui_routes(self, self.store, self.changes, token=self.settings.api_token),
                )
            )
            self.shares.serving(self.api_url)
            log.info("API serving", api=self.api_url)
            for mirror in self.mirrors:
                # Before the folder's first scan, so the first load sees the files; bounded,
                # so a slow S3 delays readiness by at most that (files land whole either way).
                with anyio.move_on_after(30) as scope:
                    try:
                        await mirror.sync_with(self.store, self.settings)
                    except Exception as exc:
                        log.error("DAGs sync from S3 failed", url=mirror.url, error=repr(exc))
                if scope.cancelled_caught:
                    log.error("DAGs sync from S3 took over 30 s; going on", url=mirror.url)
                intake.start_soon(mirror.keep_in_sync, self.store, self.settings)
            load = functools.partial(intake.start, self.folder.watch, self._on_folder_change)
            if await unless_set(self._stop, load, on_set=self.folder.stop):
                await self.events.loaded()
                await self.alerts.ready()
                write_daemon_file(self.settings, self.api_url)
                self.ready.set()
                # What the load made (modules, DAGs) lives as long as the process: kept out
                # of the collector's sweeps, and young objects collected 20,000 at a time,
                # so 10,000 waiting sensors' pokes do not spend a tenth of a core on it.
                gc.freeze()
                gc.set_threshold(20_000, 20, 10)
                log.info(
                    "daemon ready",
                    api=self.api_url,
                    dags=len(self.folder.dags),
                    import_errors=len(self.folder.errors),
                    db=self.store.dialect,
                )
                await self._stop.wait()
            log.info("shutdown: no new work", grace_s=self.settings.shutdown_grace)
            self.folder.stop()
            self.changes.close()
            intake.cancel_scope.cancel()

    # -- DAGs -----------------------------------------------------------------------------

    async def _on_folder_change(self, change: FolderChange) -> None:
        default = self.settings.dags_paused_at_creation
        for dag in change.upserted:
            if not self.admission.knows_paused(dag.dag_id):
                self.admission.set_paused(dag.dag_id, dag.paused_on_creation(default))
        await self.store.upsert_dags(
            [
                (d.dag_id, d.fileloc, d.schedule.text, d.tags, self.is_paused(d.dag_id))
                for d in change.upserted
            ]
        )
        for dag in change.upserted:
            self._register(dag)
            self._dirty.add(dag.dag_id)
        for dag_id in change.removed:
            self.engine.remove(dag_id)
            log.info("DAG removed", dag_id=dag_id)
        mine = [d for d in change.upserted if self.shares.owns(d.dag_id)]
        others = [d.dag_id for d in change.upserted if not self.shares.owns(d.dag_id)]
        await self.datasets.dags_changed(mine, [*change.removed, *others])
        self.events.dags_changed(change.upserted, change.removed, self.is_paused)
        self.alerts.deadlines.dags_changed(change.upserted)
        self._own_events()
        self.changes.publish("dags", errors=len(self.folder.errors))
        self._admit_wake.set()

    def _wake_trigger(self) -> None:
        self._trigger_wake.set()

    def _own_events(self, _: bool = False) -> None:
        """Have the scheduler tell of state changes while a pattern or a UI page wants them."""
        if self._scheduler is not None:
            wanted = self.events.wants_own or self.changes.watched
            self.scheduler.on_change = self._state_changed if wanted else None

    def _queue_readers(self) -> list[QueueReader]:
        self.queues = queue_readers(
            self.settings,
            self.store,
            self.events,
            self.datasets,
            self.metrics,
            self.clock,
            on_event=self._mirror_changed if self.mirrors else None,
        )
        return self.queues

    def _mirror_changed(self, event: dict[str, Any]) -> None:
        for mirror in self.mirrors:
            mirror.changed(event)

    def _register(self, dag: DAG) -> None:
        """(Re)arm the DAG's time schedule in the trigger engine, unless it is paused or
        another daemon schedules it."""
        timetable = dag.timetable
        if timetable is None or self.is_paused(dag.dag_id) or not self.shares.owns(dag.dag_id):
            self.engine.remove(dag.dag_id)
            return
        self.engine.set_timetable(
            dag.dag_id,
            timetable,
            last=self._last.get(dag.dag_id),
            now=self.clock.now(),
            free=self._room(dag),
        )

    def _room(self, dag: DAG) -> int:
        return self.admission.room(dag.dag_id, dag.max_active_runs)

    def _apply_paused(self, dag_id: str, paused: bool) -> None:
        self.admission.set_paused(dag_id, paused)
        self.datasets.paused(dag_id, paused)
        self.events.paused(dag_id, paused)
        self._own_events()
        self.changes.publish("dags", dag_id=dag_id, paused=paused)
        log.info("DAG paused" if paused else "DAG unpaused", dag_id=dag_id)
        dag = self.folder.dags.get(dag_id)
        if dag is not None:
            self._register(dag)
        self._dirty.add(dag_id)
        self._admit_wake.set()
        self._trigger_wake.set()

    # -- runs -----------------------------------------------------------------------------

    async def _trigger_loop(self) -> None:
        """Feed the engine the time whenever its deadline passes or a DAG changes."""
        while True:
            await self._trigger_wake.wait()
            self._trigger_wake = anyio.Event()
            now = self.clock.now()
            firings = [f for u in self.datasets.take(now) for f in self.engine.feed(u)]
            received = self.events.take(now)
            firings += [f for e in received for f in self.engine.feed(e)]
            firings += self.engine.feed(TimePassed(now))
            if firings:
                await self._fire(firings)
            if received:
                await self.events.handled(received)
            deadline = self.engine.next_deadline()
            if self._engine_timer is not None:
                self._engine_timer.cancel()
                self._engine_timer = None
            if deadline is not None:
                self._engine_timer = self.scheduler.timers.call_at(deadline, self._trigger_wake.set)

    async def _fire(self, firings: list[Firing]) -> None:
        """Carry out the engine's firings: runs through the intake, resumptions to the
        scheduler. The runs of one batch cost one read and one write."""
        runs = [f for f in firings if isinstance(f, CreateRun)]
        for firing in runs:
            if firing.run_type == "scheduled":
                self._last[firing.dag_id] = firing.run
        while runs:  # the firings are taken from the engine: they wait for the store
            try:
                self.datasets.fired(runs, await self.intake.fired(runs))
                break
            except StoreUnavailable as exc:
                log.warning("store unavailable: fired runs wait", runs=len(runs), error=str(exc))
        for resume in firings:
            if isinstance(resume, ResumeTask):
                await self.scheduler.resume(
                    (resume.dag_id, resume.run_id),
                    resume.task_id,
                    Resumption(resume.outcome),
                    error=resume.error,
                    xcoms=dict(resume.xcoms),
                )
