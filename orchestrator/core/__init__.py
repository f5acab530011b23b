"""Pure decisions: the task and run state machine, trigger rules and retry delays.

Nothing here does I/O or reads a clock: every function takes what it needs and
returns a decision that the runtime carries out.
"""

from orchestrator.core._records import RunRecord, TaskInstanceRecord, TryRecord
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

__all__ = [
    "FINISHED_STATES",
    "TASK_TRANSITIONS",
    "RunRecord",
    "RunState",
    "TaskEvent",
    "TaskInstanceRecord",
    "TaskState",
    "TriggerRule",
    "TryRecord",
    "UpstreamCounts",
    "Verdict",
    "apply",
    "decide_run_state",
    "evaluate_trigger_rule",
    "retry_delay",
]
