"""The daemon's answers to the API (its ``ControlPlane``): reads of its live state, and
the commands that go through its parts (dataset updates, events)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio

from orchestrator.authoring._dag import DAG
from orchestrator.core import RunRecord
from orchestrator.core._admission import Admission
from orchestrator.daemon._alerts import AlertFeed
from orchestrator.daemon._datasets import DatasetFeed
from orchestrator.daemon._events import EventFeed
from orchestrator.daemon._metrics import Metrics
from orchestrator.dagfiles._folder import DagFolder
from orchestrator.dagfiles._loader import ImportErrorRecord
from orchestrator.errors import NotFound
from orchestrator.store import Store
from triggers._dataset import DatasetEvent
from triggers._engine import TriggerEngine
from triggers._timetable import RunInfo

if TYPE_CHECKING:
    from orchestrator.daemon._sqs import QueueReader
    from orchestrator.runtime._intake import RunIntake
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
    alerts: AlertFeed
    metrics: Metrics
    ready: anyio.Event

    @property
    def store(self) -> Store:
        raise NotImplementedError

    @property
    def scheduler(self) -> Scheduler:
        raise NotImplementedError

    @property
    def intake(self) -> RunIntake:
        raise NotImplementedError

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

    @property
    def dags(self) -> Mapping[str, DAG]:
        return self.folder.dags

    @property
    def import_errors(self) -> Sequence[ImportErrorRecord]:
        return self.folder.import_errors

    def next_run(self, dag_id: str) -> RunInfo | None:
        return self.engine.pending(dag_id)

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
        return m.render()
