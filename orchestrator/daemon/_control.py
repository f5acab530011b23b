"""The daemon's answers to the API (its ``ControlPlane``): reads of its live state, and
the commands that go through its parts (dataset updates, events)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio

from orchestrator._clock import Clock
from orchestrator.authoring._dag import DAG
from orchestrator.core import RunRecord, RunState, TaskInstanceRecord
from orchestrator.core._admission import Admission
from orchestrator.core._runstate import CLEARABLE
from orchestrator.daemon._alerts import AlertFeed
from orchestrator.daemon._datasets import DatasetFeed
from orchestrator.daemon._events import EventFeed
from orchestrator.daemon._metrics import Metrics
from orchestrator.daemon._shares import Shares
from orchestrator.dagfiles._folder import DagFolder
from orchestrator.dagfiles._loader import ImportErrorRecord
from orchestrator.errors import Conflict, DrivenElsewhere, NotFound
from orchestrator.runtime._actions import (
    clear_stored,
    clearable,
    mark_stored_run,
    mark_stored_task,
)
from orchestrator.store import Store
from orchestrator.store._shards import driver_tag
from orchestrator.web import ChangeHub, run_changed, state_changed
from triggers._dataset import DatasetEvent
from triggers._engine import TriggerEngine
from triggers._timetable import RunInfo

if TYPE_CHECKING:
    from orchestrator.daemon._sqs import QueueReader
    from orchestrator.runtime._intake import RunIntake
    from orchestrator.runtime._live import LiveRun
    from orchestrator.runtime._scheduler import Scheduler

__all__ = ["ControlPlaneParts"]


class ControlPlaneParts:
    """What the ``Daemon`` answers the API with (a mixin over the daemon's parts)."""

    folder: DagFolder
    engine: TriggerEngine
    datasets: DatasetFeed
    events: EventFeed
    queues: list[QueueReader]
    admission: Admission
    shares: Shares
    _last: dict[str, RunInfo]
    alerts: AlertFeed
    metrics: Metrics
    ready: anyio.Event
    clock: Clock
    changes: ChangeHub

    @property
    def store(self) -> Store:
        raise NotImplementedError

    @property
    def scheduler(self) -> Scheduler:
        raise NotImplementedError

    @property
    def intake(self) -> RunIntake:
        raise NotImplementedError

    def _enqueue(self, record: RunRecord) -> None:
        raise NotImplementedError

    def _apply_paused(self, dag_id: str, paused: bool) -> None:
        raise NotImplementedError

    def is_paused(self, dag_id: str) -> bool:
        return self.admission.is_paused(dag_id)

    async def set_paused(self, dag_id: str, paused: bool) -> None:
        self.dag(dag_id)
        await self.store.set_paused(dag_id, paused)
        self.shares.notify("dags")
        self._apply_paused(dag_id, paused)

    def _state_changed(self, live: LiveRun, ti: TaskInstanceRecord | None) -> None:
        """The scheduler's change listener while a pattern or a UI page wants changes."""
        if self.events.wants_own:
            self.events.state_changed(live, ti)
        state_changed(self.changes, live.record, ti)

    def _elsewhere(self, run: RunRecord) -> None:
        """DrivenElsewhere if another live daemon drives ``run``: its API answers."""
        if run.driver is None or run.driver == self.shares.tag:
            return
        for daemon in self.shares.members:
            if daemon["state"] == "alive" and run.driver == driver_tag(daemon["epoch"]):
                raise DrivenElsewhere(
                    f"run {run.run_id!r} of DAG {run.dag_id!r} is driven by daemon "
                    f"{daemon['epoch']} ({daemon['name']})",
                    daemon["api_url"],
                )

    def dag(self, dag_id: str) -> DAG:
        dag = self.folder.dags.get(dag_id)
        if dag is None:
            raise NotFound(f"DAG {dag_id!r} not found")
        return dag

    async def trigger(
        self,
        dag_id: str,
        *,
        conf: dict[str, Any] | None = None,
        run_id: str | None = None,
        logical_date: datetime | None = None,
    ) -> RunRecord:
        """Create a manual run (queued); it starts as soon as the DAG has room."""
        self.dag(dag_id)
        return await self.intake.manual(dag_id, conf=conf, run_id=run_id, logical_date=logical_date)

    async def clear_tasks(
        self,
        dag_id: str,
        run_id: str,
        task_ids: Collection[str],
        *,
        map_indexes: Collection[int] = (),
        downstream: bool = False,
    ) -> list[str]:
        """Run finished instances again (no task ids: every one); the keys cleared. A run
        driven here is cleared through its driver, a finished one in the store and queued."""
        dag = self.dag(dag_id)
        run = await self.store.get_run(dag_id, run_id)
        live = self.scheduler.live((dag_id, run_id))
        if live is not None:
            chosen = clearable(
                dag,
                list(live.tis.values()),
                task_ids,
                map_indexes=map_indexes,
                downstream=downstream,
            )
            live_keys = frozenset(ti.key for ti in chosen if ti.state in CLEARABLE)
            await self.scheduler.clear(dag_id, run_id, live_keys)
            return sorted(live_keys)
        if run.state in (RunState.QUEUED, RunState.RUNNING):
            self._elsewhere(run)
            by = f"driven by {run.driver}" if run.driver else "not started yet"
            raise Conflict(f"run {run_id!r} of DAG {dag_id!r} is {run.state}, {by}")
        keys = await clear_stored(
            self.store, dag, run, task_ids, map_indexes=map_indexes, downstream=downstream
        )
        self._enqueue(run)
        run_changed(self.changes, run, cleared=keys)
        return keys

    async def mark_run(self, dag_id: str, run_id: str, state: str) -> RunRecord:
        """Mark a finished run success or failed; marking a run driven here failed stops it."""
        run = await self.store.get_run(dag_id, run_id)
        if self.scheduler.live((dag_id, run_id)) is not None and state == "failed":
            await self.scheduler.stop_run(dag_id, run_id, "marked failed by a user")
            return await self.store.get_run(dag_id, run_id)
        if run.state in (RunState.QUEUED, RunState.RUNNING) and state == "failed":
            self._elsewhere(run)
        marked = await mark_stored_run(self.store, run, state)
        run_changed(self.changes, marked)
        return marked

    async def mark_task(
        self, dag_id: str, run_id: str, task_id: str, map_index: int, state: str
    ) -> TaskInstanceRecord:
        """Mark a finished instance of a finished run; the run's state follows."""
        run = await self.store.get_run(dag_id, run_id)
        ti = await mark_stored_task(
            self.store, self.dag(dag_id), run, task_id, map_index, state, self.clock
        )
        state_changed(self.changes, run, ti)
        run_changed(self.changes, run)
        return ti

    @property
    def dags(self) -> Mapping[str, DAG]:
        return self.folder.dags

    @property
    def import_errors(self) -> Sequence[ImportErrorRecord]:
        return self.folder.import_errors

    def next_run(self, dag_id: str) -> RunInfo | None:
        """The next run the DAG's time schedule makes; for a DAG another daemon schedules,
        the one after its latest scheduled run as last read (``RunParts._reconcile_loop``)."""
        pending = self.engine.pending(dag_id)
        dag = self.folder.dags.get(dag_id)
        if pending is not None or self.shares.owns(dag_id) or dag is None:
            return pending
        if dag.timetable is None or self.is_paused(dag_id):
            return None
        return dag.timetable.next_run(self._last.get(dag_id), self.clock.now())

    def pending_dataset_events(self, dag_id: str) -> list[DatasetEvent]:
        return self.engine.pending_events(dag_id)

    async def update_dataset(self, uri: object, extra: object) -> tuple[DatasetEvent, list[str]]:
        return await self.datasets.update(uri, extra)

    async def put_events(self, entries: object) -> dict[str, Any]:
        return await self.events.put_entries(entries)

    def health(self) -> dict[str, Any]:
        health: dict[str, Any] = {
            "dags": len(self.folder.dags),
            "import_errors": len(self.folder.errors),
            "running_tasks": self.scheduler.running,
            "loading": not self.ready.is_set(),
        }
        if self.queues:
            health["sqs"] = {q.url: q.status() for q in self.queues}
        if self.shares.shared:
            health["daemon"] = self.shares.health()
        return health

    async def list_alerts(
        self, *, state: str | None = None, dag_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        return await self.alerts.list(state=state, dag_id=dag_id, limit=limit)

    async def retry_alert(self, alert_id: str) -> dict[str, Any]:
        return await self.alerts.retry(alert_id)

    async def deadline_misses(
        self, *, dag_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        return await self.store.deadline_misses(dag_id=dag_id, limit=limit)

    async def metrics_text(self) -> bytes:
        runs, tasks = await self.store.count_states()
        m = self.metrics
        m.set_states(runs, tasks)
        m.queued_runs.set(self.admission.queued_count)
        m.ready_tasks.set(self.scheduler.ready)
        m.running_tasks.set(self.scheduler.running)
        m.sensors_waiting.set(self.scheduler.sensors.waiting)
        m.dags.set(len(self.folder.dags))
        m.import_errors.set(len(self.folder.errors))
        m.set_alerts(await self.alerts.counts())
        if self.shares.shared:
            alive = [d for d in self.shares.members if d["state"] == "alive"]
            m.daemons.set(len(alive))
            m.shards.set(len(self.shares.owned))
            m.takeovers.set(self.shares.takeovers)
        return m.render()
