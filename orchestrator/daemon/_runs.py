"""The daemon's runs: read from the store, admitted, started, ended; and its share.

Rules (with the daemon's):
1. A daemon admits and drives the runs of the DAGs it schedules (``Shares.owns``), and
   only runs it claimed: none that another live daemon drives, which count against
   their DAG's ``max_active_runs`` all the same. A run made here for a DAG another
   daemon schedules is stored and left to it (it reads it at once when told, else at
   its next reconcile).
2. When the share grows, the new DAGs' latest scheduled runs are read again (another
   daemon fired them until now), their schedules armed, and their runs read; when it
   shrinks, their schedules and queued runs are dropped here before the shards are
   given back. Runs already driven here are driven to their end.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
import structlog

from orchestrator.authoring._dag import DAG
from orchestrator.core import RunRecord
from orchestrator.core._admission import Admission
from orchestrator.daemon._alerts import AlertFeed
from orchestrator.daemon._datasets import DatasetFeed
from orchestrator.daemon._events import EventFeed
from orchestrator.daemon._metrics import Metrics
from orchestrator.daemon._shares import Shares
from orchestrator.dagfiles._folder import DagFolder
from orchestrator.errors import StoreUnavailable
from orchestrator.store._shards import shard_of
from orchestrator.web import ChangeHub, run_changed
from triggers._engine import TriggerEngine
from triggers._timetable import RunInfo

if TYPE_CHECKING:
    from orchestrator._clock import Clock
    from orchestrator._settings import Settings
    from orchestrator.daemon._pools import PoolBalance
    from orchestrator.runtime._live import LiveRun
    from orchestrator.runtime._scheduler import Scheduler
    from orchestrator.store import Store

__all__ = ["RunParts"]

log = structlog.get_logger("orchestrator.daemon")

# An event another daemon stored but has not handled after this long is matched here too
# (its runs' trigger keys make a second match harmless): that daemon may have died.
_SWEEP_AFTER = timedelta(seconds=10)
_OTHERS_EVERY = timedelta(seconds=30)  # how stale another daemon's DAG's next run may be


class RunParts:
    """What the ``Daemon`` does with runs (a mixin over the daemon's parts)."""

    settings: Settings
    clock: Clock
    folder: DagFolder
    engine: TriggerEngine
    admission: Admission
    shares: Shares
    pools: PoolBalance | None
    datasets: DatasetFeed
    events: EventFeed
    alerts: AlertFeed
    metrics: Metrics
    changes: ChangeHub
    _last: dict[str, RunInfo]
    _dirty: set[str]
    _admit_wake: anyio.Event
    _trigger_wake: anyio.Event
    _notice: anyio.Event

    @property
    def store(self) -> Store:
        raise NotImplementedError

    @property
    def scheduler(self) -> Scheduler:
        raise NotImplementedError

    def _register(self, dag: DAG) -> None:
        raise NotImplementedError

    def _room(self, dag: DAG) -> int:
        raise NotImplementedError

    # -- state from the store ----------------------------------------------------------------

    async def _load_state(self) -> None:
        for dag_id, row in (await self.store.dag_rows()).items():
            self.admission.set_paused(dag_id, bool(row["is_paused"]))
        await self._read_last()
        unfinished = await self.store.unfinished_runs()
        self._take_runs(unfinished, found=False)
        mine = [r for r in unfinished if self.shares.owns(r.dag_id)]
        await self.datasets.open(self.store, mine)
        await self.alerts.open(mine)

    async def _read_last(self, dag_ids: set[str] | None = None) -> None:
        """Each DAG's latest scheduled run (the trigger engine's memory), as stored."""
        for dag_id, run in (await self.store.latest_scheduled()).items():
            if dag_ids is not None and dag_id not in dag_ids:
                continue
            if run.logical_date and run.data_interval_start and run.data_interval_end:
                info = RunInfo(run.logical_date, run.data_interval_start, run.data_interval_end)
                last = self._last.get(dag_id)
                if last is None or last.data_interval_end < info.data_interval_end:
                    self._last[dag_id] = info

    def _count_elsewhere(self, unfinished: list[RunRecord], alive: set[str]) -> None:
        """Rule 1: the runs of this daemon's DAGs that other live daemons drive."""
        if not self.shares.shared:
            return
        elsewhere: dict[str, set[str]] = {}
        for run in unfinished:
            others = run.driver in alive and run.driver != self.shares.tag
            if others and self.shares.owns(run.dag_id):
                elsewhere.setdefault(run.dag_id, set()).add(run.run_id)
        self.admission.set_elsewhere(elsewhere)

    async def _reconcile_loop(self) -> None:
        """Pick up what other processes wrote: triggered or cleared runs, paused flags; and
        now and then, the latest scheduled runs of the DAGs other daemons schedule."""
        others_read = self.clock.now()
        while True:
            await anyio.sleep(self.settings.reconcile_interval)
            try:
                await self._reconcile()
                if self.pools is None:  # alone: pools resized count now (else: PoolBalance)
                    pools = await self.store.get_pools()
                    if pools != self.scheduler.queue.pools:
                        self.scheduler.set_pools(pools)
                if self.shares.shared and self.clock.now() - others_read > _OTHERS_EVERY:
                    others_read = self.clock.now()
                    await self._read_last({d for d in self.folder.dags if not self.shares.owns(d)})
                await self.datasets.reconcile()
                await self.events.prune(self.settings.event_retention_days)
                if self.shares.shared:
                    await self.events.sweep(self.clock.now() - _SWEEP_AFTER)
                await self.alerts.reconcile()
            except StoreUnavailable as exc:
                log.warning("store unavailable: reconcile skipped", error=str(exc))

    def _noticed(self, payload: str) -> None:
        """Another daemon wrote something this one may have to act on (``Shares.listen``)."""
        if self.pools is not None and payload.startswith("pools:"):
            self.pools.wake()
            return
        self._notice.set()

    async def _notice_loop(self) -> None:
        """Read the store at once when told to, a notice (or a burst of them) at a time."""
        while True:
            await self._notice.wait()
            self._notice = anyio.Event()
            try:
                await self._reconcile()
                await self.datasets.reconcile()
            except StoreUnavailable as exc:
                log.warning("store unavailable: notice not acted on", error=str(exc))

    def _take_runs(self, unfinished: list[RunRecord], *, found: bool) -> None:
        """Queue the stored unfinished runs this daemon is to drive and does not know yet
        (logged as found, but on start); count the ones other daemons drive (rule 1)."""
        alive = self.shares.alive_tags()
        for run in unfinished:
            if self.shares.drives(run, alive) and not self.admission.knows(run.dag_id, run.run_id):
                if found:
                    log.info("run found in the store", dag_id=run.dag_id, run_id=run.run_id)
                self._enqueue(run)
        self._count_elsewhere(unfinished, alive)

    async def _reconcile(self) -> None:
        self._take_runs(await self.store.unfinished_runs(), found=True)
        for dag_id, row in (await self.store.dag_rows()).items():
            paused = bool(row["is_paused"])
            known = self.admission.knows_paused(dag_id)
            was = self.admission.is_paused(dag_id)
            if dag_id in self.folder.dags and (not known or was != paused):
                self._apply_paused(dag_id, paused)

    def _apply_paused(self, dag_id: str, paused: bool) -> None:
        raise NotImplementedError

    # -- the share -----------------------------------------------------------------------

    async def _share_changed(self, gained: frozenset[int], excess: frozenset[int]) -> None:
        """Rule 2."""
        given_back = [d for d in self.folder.dags.values() if shard_of(d.dag_id) in excess]
        for dag in given_back:
            self.engine.remove(dag.dag_id)
            self.admission.forget_queued(dag.dag_id)
        if given_back:
            await self.datasets.dags_changed([], [d.dag_id for d in given_back])
            self.alerts.deadlines.forget(d.dag_id for d in given_back)
        taken = [d for d in self.folder.dags.values() if shard_of(d.dag_id) in gained]
        if taken:
            await self._read_last({d.dag_id for d in taken})
            for dag in taken:
                self._register(dag)
            unfinished = await self.store.unfinished_runs()
            runs = [r for r in unfinished if shard_of(r.dag_id) in gained]
            for run in runs:
                self.datasets.run_created(run)  # a consumer with a run is busy
            await self.datasets.dags_changed(taken, [])
            await self.alerts.open(runs)
            self._take_runs(unfinished, found=True)
        self._admit_wake.set()
        self._trigger_wake.set()

    # -- runs -----------------------------------------------------------------------------

    def _on_created(self, record: RunRecord) -> None:
        """The intake stored a run: count it, and queue it for admission (rule 1)."""
        self.metrics.runs_created.labels(run_type=record.run_type).inc()
        if record.run_type == "scheduled" and record.data_interval_end is not None:
            late = self.clock.now() - record.data_interval_end
            log.info(
                "scheduled run created",
                dag_id=record.dag_id,
                run_id=record.run_id,
                late_ms=round(late.total_seconds() * 1000, 1),
            )
        else:
            log.info("run triggered", dag_id=record.dag_id, run_id=record.run_id)
        run_changed(self.changes, record)
        if self.shares.owns(record.dag_id):
            self.datasets.run_created(record)
            self.alerts.deadlines.watch(record)
        self._enqueue(record)

    def _enqueue(self, record: RunRecord) -> None:
        if not self.shares.owns(record.dag_id) and record.driver != self.shares.tag:
            self.shares.notify("runs")  # the DAG's daemon starts it
            return
        self.admission.add(record)
        dag = self.folder.dags.get(record.dag_id)
        if dag is not None:
            self.engine.set_free(record.dag_id, self._room(dag))
        self._dirty.add(record.dag_id)
        self._admit_wake.set()

    async def _admission_loop(self) -> None:
        """Start queued runs, oldest first, while their DAG has room and is not paused."""
        while True:
            await self._admit_wake.wait()
            self._admit_wake = anyio.Event()
            dirty, self._dirty = self._dirty, set()
            admitted: list[tuple[DAG, RunRecord]] = []
            for dag_id in sorted(dirty):
                dag = self.folder.dags.get(dag_id)
                if dag is not None:
                    admitted += [
                        (dag, r) for r in self.admission.admit(dag_id, dag.max_active_runs)
                    ]
            try:
                claimed = await self.shares.claim([r for _, r in admitted])
            except StoreUnavailable as exc:
                log.warning("store unavailable: runs wait to start", error=str(exc))
                claimed = []
            mine = {(r.dag_id, r.run_id) for r in claimed}
            for dag, record in admitted:
                if (record.dag_id, record.run_id) in mine:
                    await self._start(dag, record)
                else:  # another daemon drives it, or the store was away: read again later
                    self.admission.ended(record.dag_id, record.run_id)

    async def _start(self, dag: DAG, record: RunRecord) -> None:
        try:
            live = await self.scheduler.start_run(dag, record)
        except Exception:
            self.admission.ended(record.dag_id, record.run_id)
            log.exception("run could not start", dag_id=record.dag_id, run_id=record.run_id)
            return
        self.metrics.run_started(record, live.record.start_date or self.clock.now())

    def _on_run_end(self, live: LiveRun) -> None:
        dag_id, run_id = live.key
        self.admission.ended(dag_id, run_id)
        self.datasets.run_ended(live.record)
        self.alerts.deadlines.ended(dag_id, run_id)
        log.info("run ended", dag_id=dag_id, run_id=run_id, state=str(live.record.state))
        dag = self.folder.dags.get(dag_id)
        if dag is not None:
            self.engine.set_free(dag_id, self._room(dag))
        self._dirty.add(dag_id)
        self._admit_wake.set()
        self._trigger_wake.set()
