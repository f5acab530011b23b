"""The run driver's vocabulary: what it reads of a DAG, its inputs, a step's commands.

Plain data, as h11's events are: the driver (``_driver``) takes an input and
answers with a :class:`Step`; the scheduler's shell feeds the inputs and carries
out the commands.

An input's or a command's ``task_id`` names a task *instance* by its key: the task id,
or ``t[3]`` for instance 3 of a mapped task ``t`` (``_records.instance_key``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from orchestrator.core._records import Record, TryRecord
from orchestrator.core._state import RunState, TaskState, TriggerRule
from triggers._dataset import Dataset

__all__ = [
    "LOST_TRY",
    "Alert",
    "AlertEvent",
    "Clear",
    "DagSpec",
    "Defer",
    "Deferred",
    "Expanded",
    "Input",
    "NotStarted",
    "PastRun",
    "Queued",
    "Resumed",
    "Resumption",
    "RetryDue",
    "Start",
    "Step",
    "Stop",
    "TaskSpec",
    "TimedOut",
    "Timer",
    "TryEnded",
    "TryOutcome",
    "TryStarted",
]

LOST_TRY = "the process running this try stopped"


class TaskSpec(Protocol):
    """What the driver reads of a task (``BaseOperator`` is one)."""

    @property
    def task_id(self) -> str: ...
    @property
    def upstream_task_ids(self) -> Set[str]: ...
    @property
    def downstream_task_ids(self) -> Set[str]: ...
    @property
    def trigger_rule(self) -> TriggerRule: ...
    @property
    def retries(self) -> int: ...
    @property
    def retry_delay(self) -> timedelta | None: ...
    @property
    def retry_exponential_backoff(self) -> bool: ...
    @property
    def max_retry_delay(self) -> timedelta | None: ...
    @property
    def depends_on_past(self) -> bool: ...
    @property
    def pool(self) -> str: ...
    @property
    def priority_weight(self) -> int: ...
    @property
    def task_type(self) -> str: ...
    @property
    def outlets(self) -> Sequence[Dataset]: ...
    @property
    def is_mapped(self) -> bool: ...
    @property
    def is_setup(self) -> bool: ...
    @property
    def is_teardown(self) -> bool: ...


class DagSpec(Protocol):
    """What the driver reads of a DAG (``DAG`` is one)."""

    @property
    def dag_id(self) -> str: ...
    @property
    def task_dict(self) -> Mapping[str, TaskSpec]: ...
    @property
    def run_leaves(self) -> list[str]: ...
    @property
    def dagrun_timeout(self) -> timedelta | None: ...
    def topological_order(self) -> list[str]: ...


# -- inputs ------------------------------------------------------------------------------


class TryOutcome(enum.StrEnum):
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"
    LOST = "lost"  # the process running the try went away


@dataclass(frozen=True, slots=True)
class PastRun:
    """The run before this one, for ``depends_on_past``: its id and its task states."""

    run_id: str
    states: Mapping[str, TaskState]


@dataclass(frozen=True, slots=True)
class Start:
    """Drive the run from its stored state: a new run, or one a stopped process left.

    ``open_tries`` are the stored tries of instances left running or deferred.
    """

    past: PastRun | None = None
    open_tries: Mapping[str, TryRecord] = field(default_factory=dict)
    # running instances whose try runs on elsewhere (a worker): waited for, not lost
    adopted: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Queued:
    """The shell took the instance from the ready queue to start it (it holds a slot)."""

    task_id: str


@dataclass(frozen=True, slots=True)
class TryStarted:
    """The try is about to run here."""

    task_id: str
    hostname: str = ""
    log_path: str = ""


@dataclass(frozen=True, slots=True)
class TryEnded:
    """The try's work returned (or was stopped); ``xcoms`` are the values it pushed."""

    task_id: str
    outcome: TryOutcome
    error: str | None = None
    retryable: bool = True
    xcoms: Mapping[str, str] = field(default_factory=dict)
    skip: frozenset[str] = frozenset()  # downstream task ids a branch did not follow
    outlet_extras: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # uri -> extra
    map_label: str | None = None  # a mapped instance's map_index_template, rendered
    rendered: str | None = None  # the try's templated fields as rendered (JSON)
    hostname: str | None = None  # the host that ran it, when not the one that started it


@dataclass(frozen=True, slots=True)
class NotStarted:
    """The instance cannot start at all (its pool does not exist): it fails without a try."""

    task_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class RetryDue:
    task_id: str


@dataclass(frozen=True, slots=True)
class TimedOut:
    """The run's ``dagrun_timeout`` passed."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Fail the run now: waiting instances are skipped, tries in flight stopped."""

    reason: str


@dataclass(frozen=True, slots=True)
class Clear:
    """Run these finished instances again (with the cascade downstream of them)."""

    task_ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class Deferred:
    """The running try hands its wait to the trigger engine (``trigger`` says for what)."""

    task_id: str
    trigger: object = None


class Resumption(enum.StrEnum):
    RUN = "run"  # run the task again (as the same try), e.g. to finish its work
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Resumed:
    """The trigger engine ended a deferred instance's wait."""

    task_id: str
    outcome: Resumption
    error: str | None = None
    xcoms: Mapping[str, str] = field(default_factory=dict)
    retryable: bool = True  # False: a failure is final (a sensor's timeout)


@dataclass(frozen=True, slots=True)
class Expanded:
    """How many instances a mapped task expands to (the shell's answer to ``Step.expand``),
    or why it cannot expand."""

    task_id: str
    length: int
    error: str | None = None


Input = (
    Start
    | Queued
    | TryStarted
    | TryEnded
    | NotStarted
    | RetryDue
    | TimedOut
    | Stop
    | Clear
    | Deferred
    | Resumed
    | Expanded
)


# -- commands ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timer:
    """At ``at``, feed ``RetryDue(task_id)`` (kind "retry") or ``TimedOut()`` ("run_timeout")."""

    kind: str
    task_id: str | None
    at: datetime

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.kind, self.task_id)


@dataclass(frozen=True, slots=True)
class Defer:
    """Hand the instance's wait to the trigger engine; ``trigger`` None: the stored wait."""

    task_id: str
    trigger: object = None


class AlertEvent(enum.StrEnum):
    TASK_SUCCESS = "task_success"
    TASK_FAILURE = "task_failure"
    TASK_RETRY = "task_retry"
    RUN_SUCCESS = "run_success"
    RUN_FAILURE = "run_failure"


@dataclass(frozen=True, slots=True)
class Alert:
    event: AlertEvent
    task_id: str | None = None
    try_number: int = 0
    error: str | None = None
    map_index: int = -1


@dataclass(slots=True, init=False)
class Step:
    """The commands of one input, carried out by the shell in this order."""

    writes: list[Record]  # one unit, committed first
    ready: list[str]  # now scheduled: into the ready queue
    unready: list[str]  # no longer scheduled: out of it
    cancel: list[str]  # tries in flight to stop
    timers: list[Timer]
    cancel_timers: list[tuple[str, str | None]]
    defer: list[Defer]
    withdraw: list[str]  # deferred instances whose wait the engine must drop
    alerts: list[Alert]
    expand: list[str]  # mapped tasks ready to run: the shell answers each with ``Expanded``
    adopt: list[str]  # running instances whose try the shell waits for where it runs
    ended: RunState | None  # the run ended (its record is in ``writes``)

    def __init__(self) -> None:
        # Written out: a step is made for every input, on the hot path.
        self.writes = []
        self.ready = []
        self.unready = []
        self.cancel = []
        self.timers = []
        self.cancel_timers = []
        self.defer = []
        self.withdraw = []
        self.alerts = []
        self.expand = []
        self.adopt = []
        self.ended = None

    def merge(self, later: Step) -> None:
        """Append the commands of ``later``, a step fed before this one was carried out."""
        self.writes += later.writes
        self.ready += later.ready
        self.unready += later.unready
        self.cancel += later.cancel
        self.timers += later.timers
        self.cancel_timers += later.cancel_timers
        self.defer += later.defer
        self.withdraw += later.withdraw
        self.alerts += later.alerts
        self.expand += later.expand
        self.adopt += later.adopt
        self.ended = later.ended or self.ended
