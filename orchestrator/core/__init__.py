"""Pure decisions: no I/O, no clock reads; every function takes what it needs.

- ``_state``: the task state machine, trigger rules, retry delays, a run's outcome.
- ``_records``: the records a run is made of (what the store persists).
- ``_steps`` and ``_driver``: the run driver, ``(run state, input, now) -> step``.
- ``_cascade``: upstream counts and the trigger-rule cascade, for the driver.
- ``_ready``: the ready queue and the limits on starting tries.
"""

from orchestrator.core._cascade import clear_instance, with_downstream
from orchestrator.core._driver import RunDriver
from orchestrator.core._ready import ReadyItem, ReadyQueue
from orchestrator.core._records import (
    Record,
    RunRecord,
    TaskInstanceRecord,
    TryRecord,
    XComRecord,
    XComsCleared,
)
from orchestrator.core._state import (
    FINISHED_STATES,
    TASK_TRANSITIONS,
    RunState,
    TaskEvent,
    TaskState,
    TriggerRule,
    UpstreamCounts,
    Verdict,
    apply,
    decide_run_state,
    evaluate_trigger_rule,
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
    TaskSpec,
    TimedOut,
    Timer,
    TryEnded,
    TryOutcome,
    TryStarted,
)

__all__ = [
    "FINISHED_STATES",
    "LOST_TRY",
    "TASK_TRANSITIONS",
    "Alert",
    "AlertEvent",
    "Clear",
    "DagSpec",
    "Defer",
    "Deferred",
    "Input",
    "NotStarted",
    "PastRun",
    "Queued",
    "ReadyItem",
    "ReadyQueue",
    "Record",
    "Resumed",
    "Resumption",
    "RetryDue",
    "RunDriver",
    "RunRecord",
    "RunState",
    "Start",
    "Step",
    "Stop",
    "TaskEvent",
    "TaskInstanceRecord",
    "TaskSpec",
    "TaskState",
    "TimedOut",
    "Timer",
    "TriggerRule",
    "TryEnded",
    "TryOutcome",
    "TryRecord",
    "TryStarted",
    "UpstreamCounts",
    "Verdict",
    "XComRecord",
    "XComsCleared",
    "apply",
    "clear_instance",
    "decide_run_state",
    "evaluate_trigger_rule",
    "retry_delay",
    "with_downstream",
]
