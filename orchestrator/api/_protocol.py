"""What the HTTP API may ask and command: the two protocols it depends on.

The API knows no daemon. It is given a :class:`ControlPlane` (the live DAGs, their
paused flags and next runs, health and metrics; triggering, pausing, dataset
updates) and :class:`RunQueries` (the store's reads of runs, task instances, tries
and datasets, which the store itself provides).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from orchestrator.authoring._dag import DAG
from orchestrator.core import RunRecord, TaskInstanceRecord, TryRecord
from orchestrator.dagfiles._loader import ImportErrorRecord
from orchestrator.errors import NotFound
from orchestrator.store._datasets import DatasetInfo
from triggers._dataset import DatasetEvent
from triggers._timetable import RunInfo

__all__ = ["ControlPlane", "RunQueries", "dag_or_404"]


class ControlPlane(Protocol):
    @property
    def dags(self) -> Mapping[str, DAG]:
        """The DAGs loaded now, by id."""

    @property
    def import_errors(self) -> Sequence[ImportErrorRecord]: ...

    def is_paused(self, dag_id: str) -> bool: ...

    def next_run(self, dag_id: str) -> RunInfo | None:
        """The next run the DAG's schedule will create, if any."""

    def pending_dataset_events(self, dag_id: str) -> list[DatasetEvent]:
        """The dataset events a consumer has received and no run of it has consumed."""

    def health(self) -> dict[str, Any]:
        """Counts for ``GET /health`` (beside its status)."""

    async def metrics_text(self) -> bytes:
        """The Prometheus exposition of ``/metrics``."""

    async def trigger(
        self,
        dag_id: str,
        *,
        conf: dict[str, Any],
        run_id: str | None,
        logical_date: datetime | None,
    ) -> RunRecord:
        """Create a manual run; NotFound for an unknown DAG, Conflict for a taken run id."""

    async def set_paused(self, dag_id: str, paused: bool) -> None: ...

    async def clear_tasks(
        self,
        dag_id: str,
        run_id: str,
        task_ids: Collection[str],
        *,
        map_indexes: Collection[int] = (),
        downstream: bool = False,
    ) -> list[str]:
        """Run finished instances again (none named: all); the instance keys cleared.
        InvalidRequest for a task the DAG lacks, Conflict for a run driven elsewhere."""

    async def mark_run(self, dag_id: str, run_id: str, state: str) -> RunRecord:
        """Mark a finished run ``success`` or ``failed``; a running one only ``failed``,
        which stops it. Conflict otherwise."""

    async def mark_task(
        self, dag_id: str, run_id: str, task_id: str, map_index: int, state: str
    ) -> TaskInstanceRecord:
        """Mark a finished instance of a finished run; Conflict otherwise."""

    async def update_dataset(self, uri: object, extra: object) -> tuple[DatasetEvent, list[str]]:
        """Record an update from outside; InvalidRequest (nothing written) for a bad URI or
        extra. Answers the event and the DAGs it was delivered to."""

    async def put_events(self, entries: object) -> dict[str, Any]:
        """A PutEvents request's entries: each stored, or refused with its error code;
        InvalidRequest (nothing stored) when ``entries`` is not a list of 1 to 10."""

    async def list_alerts(
        self, *, state: str | None = None, dag_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Outbox alerts, newest first (``state="failed"``: the dead letters)."""

    async def retry_alert(self, alert_id: str) -> dict[str, Any]:
        """Make a dead letter pending and deliver it now; NotFound, or Conflict if the
        alert is not failed."""

    async def deadline_misses(
        self, *, dag_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Missed run deadlines, newest first."""


class RunQueries(Protocol):
    async def list_runs(
        self, dag_id: str | None = None, state: str | None = None, limit: int = 1000
    ) -> list[RunRecord]: ...

    async def resolve_run(self, run_id: str, dag_id: str | None, *, hint: str) -> RunRecord: ...

    async def task_instances(self, dag_id: str, run_id: str) -> list[TaskInstanceRecord]: ...

    async def tries(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1
    ) -> list[TryRecord]: ...

    async def list_datasets(self) -> list[DatasetInfo]: ...

    async def dataset_events(
        self, uri: str | None = None, limit: int = 100
    ) -> list[tuple[DatasetEvent, list[tuple[str, str]]]]: ...

    async def list_events(
        self, *, source: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[tuple[dict[str, Any], str, list[tuple[str, str]]]], str | None]: ...


def dag_or_404(control: ControlPlane, dag_id: str) -> DAG:
    """The loaded DAG ``dag_id``; NotFound (404) naming it when there is none."""
    dag = control.dags.get(dag_id)
    if dag is None:
        raise NotFound(f"DAG {dag_id!r} not found")
    return dag
