"""The records a run is made of: the run, its task instances and their tries.

Plain data. The core decides on them, the store persists them, the API and the
CLI show them (``to_json`` is the shape of SPEC section 6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestrator._clock import iso
from orchestrator.core._state import RunState, TaskState
from triggers._dataset import DatasetEvent

__all__ = [
    "AlertRecord",
    "DatasetEventRecord",
    "InstanceDropped",
    "Record",
    "RunRecord",
    "SensorWaitCleared",
    "SensorWaitRecord",
    "TaskInstanceRecord",
    "TryRecord",
    "XComRecord",
    "XComsCleared",
    "instance_key",
    "split_key",
]


@dataclass(slots=True)
class RunRecord:
    dag_id: str
    run_id: str
    state: RunState
    run_type: str
    logical_date: datetime | None
    queued_at: datetime
    data_interval_start: datetime | None = None
    data_interval_end: datetime | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    conf: dict[str, Any] = field(default_factory=dict)
    trigger_key: str | None = None
    # None: a daemon, when alone on its store, or not started yet; "daemon:{epoch}": that
    # daemon, one of several; "cli:{host}:{pid}": a `dags test` or `dags backfill` process.
    driver: str | None = None

    @property
    def by_cli(self) -> bool:
        """Whether a CLI process drives the run (the daemons leave it alone)."""
        return self.driver is not None and not self.driver.startswith("daemon:")

    def to_json(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "state": str(self.state),
            "run_type": self.run_type,
            "logical_date": iso(self.logical_date),
            "start_date": iso(self.start_date),
            "end_date": iso(self.end_date),
            "conf": self.conf,
        }


@dataclass(slots=True)
class TaskInstanceRecord:
    dag_id: str
    run_id: str
    task_id: str
    state: TaskState = TaskState.NONE
    try_number: int = 0
    max_tries: int = 0
    start_date: datetime | None = None
    end_date: datetime | None = None
    duration: float | None = None
    pool: str = "default_pool"
    priority_weight: int = 1
    operator: str = ""
    next_retry_at: datetime | None = None
    map_index: int = -1  # its place in a mapped task's expansion; -1: not mapped
    rendered_map_index: str | None = None  # its map_index_template, rendered

    @property
    def key(self) -> str:
        """The instance's key within its run (``t``, or ``t[3]`` for a mapped instance)."""
        return instance_key(self.task_id, self.map_index)

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "map_index": self.map_index,
            "rendered_map_index": self.rendered_map_index,
            "state": str(self.state),
            "try_number": self.try_number,
            "start_date": iso(self.start_date),
            "end_date": iso(self.end_date),
            "duration": self.duration,
        }


@dataclass(slots=True)
class TryRecord:
    dag_id: str
    run_id: str
    task_id: str
    try_number: int
    state: TaskState
    start_date: datetime | None = None
    end_date: datetime | None = None
    duration: float | None = None
    hostname: str = ""
    log_path: str = ""
    error: str | None = None
    map_index: int = -1
    rendered: str | None = None  # its templated fields as rendered (JSON), when rendered


@dataclass(frozen=True, slots=True)
class XComRecord:
    """One XCom a try pushed: its value as JSON text."""

    dag_id: str
    run_id: str
    task_id: str
    key: str
    value: str
    map_index: int = -1


@dataclass(frozen=True, slots=True)
class XComsCleared:
    """Every XCom of a task instance, removed (it was cleared to run again)."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1


@dataclass(frozen=True, slots=True)
class DatasetEventRecord:
    """A dataset event, stored with its delivery to each consumer the store knows of."""

    event: DatasetEvent


@dataclass(frozen=True, slots=True)
class SensorWaitRecord:
    """A deferred sensor's wait (``core._sensing.WaitState`` as JSON in ``state``)."""

    dag_id: str
    run_id: str
    task_id: str
    next_poke: datetime
    pokes: int
    deadline: datetime
    state: str
    map_index: int = -1


@dataclass(frozen=True, slots=True)
class SensorWaitCleared:
    """A deferred instance's wait is over (resumed, stopped)."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1


@dataclass(frozen=True, slots=True)
class InstanceDropped:
    """A mapped task's placeholder instance (map index -1), replaced by its expansion."""

    dag_id: str
    run_id: str
    task_id: str


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One delivery of an alert to one notifier, for the outbox (stored in the unit of the
    state change that raised it; written once per ``id``, its idempotency key)."""

    id: str
    kind: str  # "email", "webhook" or "callback"
    event: str  # an AlertEvent's value, or "deadline_missed"
    dag_id: str
    run_id: str
    task_id: str | None
    try_number: int
    target: str  # addresses, a URL, or which callback ("task:on_failure_callback:0")
    payload: dict[str, Any]
    created_at: datetime
    seq: int = 0  # its place among the alerts written in the same moment


Record = (
    RunRecord
    | TaskInstanceRecord
    | TryRecord
    | XComRecord
    | XComsCleared
    | DatasetEventRecord
    | SensorWaitRecord
    | SensorWaitCleared
    | AlertRecord
    | InstanceDropped
)


def instance_key(task_id: str, map_index: int) -> str:
    """A task instance's key within its run: the task id, with ``[i]`` for a mapped one.

    Task ids never hold brackets, so the key is unambiguous."""
    return task_id if map_index < 0 else f"{task_id}[{map_index}]"


def split_key(key: str) -> tuple[str, int]:
    """``(task_id, map_index)`` of an instance key."""
    if key.endswith("]"):
        task_id, _, index = key[:-1].rpartition("[")
        return task_id, int(index)
    return key, -1
