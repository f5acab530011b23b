"""The task and run state machine, trigger rules and retry delays: pure code.

Rules of this module:

1. No I/O and no clock reads. Every function takes what it needs (``now``, the
   upstream counts) and returns a decision; the scheduler carries it out.
2. Transitions are data: ``TASK_TRANSITIONS[state][event] -> next state``. The one
   way to move a task instance is :func:`apply`, which raises
   :class:`~orchestrator.errors.IllegalTransition` naming the instance.
3. Trigger rules follow Airflow's semantics: a task with no upstream always runs;
   otherwise the rule may flag the task ``skipped`` or ``upstream_failed`` as soon
   as the outcome is certain, before every upstream task has finished.
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from orchestrator.errors import IllegalTransition

__all__ = [
    "FINISHED_STATES",
    "TASK_TRANSITIONS",
    "RunState",
    "TaskEvent",
    "TaskState",
    "TriggerRule",
    "UpstreamCounts",
    "Verdict",
    "apply",
    "decide_run_state",
    "evaluate_trigger_rule",
    "retry_delay",
]


class TaskState(enum.StrEnum):
    """The state of one task instance. ``none`` is the state before the first decision."""

    NONE = "none"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"
    UP_FOR_RETRY = "up_for_retry"
    DEFERRED = "deferred"
    REMOVED = "removed"


class RunState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


class TaskEvent(enum.StrEnum):
    SCHEDULE = "schedule"
    QUEUE = "queue"
    START = "start"
    SUCCEED = "succeed"
    FAIL = "fail"
    RETRY = "retry"
    SKIP = "skip"
    FLAG_UPSTREAM_FAILED = "flag_upstream_failed"
    DEFER = "defer"
    RESUME = "resume"
    REQUEUE = "requeue"
    CLEAR = "clear"
    REMOVE = "remove"
    MARK_SUCCESS = "mark_success"  # a user's mark of a finished instance
    MARK_FAILED = "mark_failed"


class TriggerRule(enum.StrEnum):
    ALL_SUCCESS = "all_success"
    ALL_FAILED = "all_failed"
    ALL_DONE = "all_done"
    ALL_SKIPPED = "all_skipped"
    ONE_SUCCESS = "one_success"
    ONE_FAILED = "one_failed"
    ONE_DONE = "one_done"
    NONE_FAILED = "none_failed"
    NONE_FAILED_MIN_ONE_SUCCESS = "none_failed_min_one_success"
    NONE_SKIPPED = "none_skipped"
    ALWAYS = "always"
    ALL_DONE_SETUP_SUCCESS = "all_done_setup_success"  # a teardown's


FINISHED_STATES = frozenset(
    {
        TaskState.SUCCESS,
        TaskState.FAILED,
        TaskState.SKIPPED,
        TaskState.UPSTREAM_FAILED,
        TaskState.REMOVED,
    }
)

_S = TaskState
_E = TaskEvent
_CLEARABLE = {_E.CLEAR: _S.NONE, _E.REMOVE: _S.REMOVED}
_FLAGS = {_E.SKIP: _S.SKIPPED, _E.FLAG_UPSTREAM_FAILED: _S.UPSTREAM_FAILED}
_MARKABLE = {**_CLEARABLE, _E.MARK_SUCCESS: _S.SUCCESS, _E.MARK_FAILED: _S.FAILED}

TASK_TRANSITIONS: Mapping[TaskState, Mapping[TaskEvent, TaskState]] = {
    _S.NONE: {_E.SCHEDULE: _S.SCHEDULED, **_FLAGS, _E.REMOVE: _S.REMOVED},
    _S.SCHEDULED: {_E.QUEUE: _S.QUEUED, **_FLAGS, **_CLEARABLE},
    _S.QUEUED: {_E.START: _S.RUNNING, _E.REQUEUE: _S.SCHEDULED, **_FLAGS, **_CLEARABLE},
    _S.RUNNING: {
        _E.SUCCEED: _S.SUCCESS,
        _E.FAIL: _S.FAILED,
        _E.RETRY: _S.UP_FOR_RETRY,
        _E.SKIP: _S.SKIPPED,
        _E.DEFER: _S.DEFERRED,
        **_CLEARABLE,
    },
    _S.DEFERRED: {
        _E.RESUME: _S.SCHEDULED,
        _E.SUCCEED: _S.SUCCESS,
        _E.FAIL: _S.FAILED,
        _E.RETRY: _S.UP_FOR_RETRY,
        _E.SKIP: _S.SKIPPED,
        **_CLEARABLE,
    },
    _S.UP_FOR_RETRY: {_E.SCHEDULE: _S.SCHEDULED, _E.FAIL: _S.FAILED, **_FLAGS, **_CLEARABLE},
    _S.SUCCESS: _MARKABLE,
    _S.FAILED: _MARKABLE,
    _S.SKIPPED: _MARKABLE,
    _S.UPSTREAM_FAILED: _MARKABLE,
    _S.REMOVED: {_E.CLEAR: _S.NONE},
}


def apply(state: TaskState, event: TaskEvent, key: object) -> TaskState:
    """The state after ``event``; raises IllegalTransition naming ``key`` if not allowed."""
    try:
        return TASK_TRANSITIONS[state][event]
    except KeyError:
        raise IllegalTransition(f"cannot {event} in state {state} for {key}") from None


@dataclass(frozen=True, slots=True)
class UpstreamCounts:
    """How many direct upstream tasks are in each finished state, out of ``total``."""

    total: int
    success: int = 0
    skipped: int = 0
    failed: int = 0
    upstream_failed: int = 0
    setups: int = 0  # of the upstream, how many are setup tasks
    setup_success: int = 0
    setup_skipped: int = 0

    @property
    def done(self) -> int:
        return self.success + self.skipped + self.failed + self.upstream_failed

    @classmethod
    def of(cls, states: Iterable[TaskState]) -> UpstreamCounts:
        listed = list(states)
        return cls(
            total=len(listed),
            success=listed.count(TaskState.SUCCESS),
            skipped=listed.count(TaskState.SKIPPED),
            failed=listed.count(TaskState.FAILED),
            upstream_failed=listed.count(TaskState.UPSTREAM_FAILED),
        )


class Verdict(enum.StrEnum):
    WAIT = "wait"
    RUN = "run"
    SKIP = "skip"
    UPSTREAM_FAILED = "upstream_failed"


def _flag(rule: TriggerRule, c: UpstreamCounts) -> Verdict | None:
    """Airflow's early flags: the outcome that is already certain, if any."""
    all_done = c.done >= c.total
    failures = c.failed + c.upstream_failed
    if rule is TriggerRule.ALL_SUCCESS:
        if failures:
            return Verdict.UPSTREAM_FAILED
        return Verdict.SKIP if c.skipped else None
    if rule is TriggerRule.ALL_FAILED:
        return Verdict.SKIP if c.success or c.skipped else None
    if rule is TriggerRule.ONE_SUCCESS and all_done and c.success == 0:
        return Verdict.SKIP if c.done == c.skipped else Verdict.UPSTREAM_FAILED
    if rule is TriggerRule.ONE_FAILED and all_done and not failures:
        return Verdict.SKIP
    if rule is TriggerRule.ONE_DONE and all_done and not (c.failed or c.success):
        return Verdict.SKIP
    if rule in (TriggerRule.NONE_FAILED, TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS) and failures:
        return Verdict.UPSTREAM_FAILED
    if rule is TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS and c.skipped == c.total:
        return Verdict.SKIP
    if rule is TriggerRule.NONE_SKIPPED and c.skipped:
        return Verdict.SKIP
    if rule is TriggerRule.ALL_SKIPPED and (c.success or failures):
        return Verdict.SKIP
    if rule is TriggerRule.ALL_DONE_SETUP_SUCCESS and all_done and c.setups:
        if c.setup_skipped >= c.setups:
            return Verdict.SKIP
        if c.setup_success == 0:
            return Verdict.UPSTREAM_FAILED
    return None


def _satisfied(rule: TriggerRule, c: UpstreamCounts) -> bool:
    failures = c.failed + c.upstream_failed
    match rule:
        case TriggerRule.ALL_SUCCESS:
            return c.success == c.total
        case TriggerRule.ALL_FAILED:
            return failures == c.total
        case TriggerRule.ALL_DONE | TriggerRule.ALL_DONE_SETUP_SUCCESS:
            return c.done >= c.total
        case TriggerRule.ALL_SKIPPED:
            return c.skipped == c.total
        case TriggerRule.ONE_SUCCESS:
            return c.success > 0
        case TriggerRule.ONE_FAILED:
            return failures > 0
        case TriggerRule.ONE_DONE:
            return c.success + c.failed > 0
        case TriggerRule.NONE_FAILED | TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS:
            return c.success + c.skipped == c.total
        case TriggerRule.NONE_SKIPPED:
            return c.done >= c.total and c.skipped == 0
        case TriggerRule.ALWAYS:
            return True
    raise AssertionError(rule)  # pragma: no cover - the match is exhaustive


def evaluate_trigger_rule(rule: TriggerRule, counts: UpstreamCounts) -> Verdict:
    """What a task whose upstream is in ``counts`` should do now under ``rule``."""
    if counts.total == 0:
        return Verdict.RUN
    flagged = _flag(rule, counts)
    if flagged is not None:
        return flagged
    return Verdict.RUN if _satisfied(rule, counts) else Verdict.WAIT


# timedelta cannot hold more than this many seconds; backoff is capped well below it.
_MAX_DELAY_SECONDS = 24 * 60 * 60 * 365


def retry_delay(
    failed_try: int,
    delay: timedelta,
    *,
    exponential: bool = False,
    max_delay: timedelta | None = None,
    seed: str = "",
) -> timedelta:
    """How long to wait after try ``failed_try`` (1-based) failed, before the next try.

    With exponential backoff the wait doubles with each failed try, as in Airflow:
    after try *n* it lies in ``[delay * 2**(n-1), delay * 2**n)``, the place in that
    range fixed by a hash of ``seed`` and *n* (so the same task instance always waits
    the same, and a herd of failing tasks does not retry in lockstep). The result is
    never above ``max_delay``.
    """
    if failed_try < 1:
        raise ValueError(f"failed_try must be >= 1, got {failed_try}")
    if exponential:
        exponent = min(failed_try - 1, 64)
        base = min(math.ceil(delay.total_seconds() * 2**exponent), _MAX_DELAY_SECONDS)
        if base <= 0:
            seconds = 0.0
        else:
            digest = hashlib.sha1(f"{seed}#{failed_try}".encode(), usedforsecurity=False)
            seconds = min(base + int(digest.hexdigest(), 16) % base, _MAX_DELAY_SECONDS)
        result = timedelta(seconds=seconds)
    else:
        result = delay
    if max_delay is not None:
        result = min(result, max_delay)
    return result


def decide_run_state(states: Mapping[str, TaskState], leaves: Iterable[str]) -> RunState | None:
    """The run's final state once every task instance has finished, else None.

    As in Airflow, a run fails when a leaf task failed or was flagged upstream_failed,
    and succeeds otherwise (leaves succeeded or were skipped).
    """
    if any(state not in FINISHED_STATES for state in states.values()):
        return None
    failed = {TaskState.FAILED, TaskState.UPSTREAM_FAILED}
    if any(states.get(leaf) in failed for leaf in leaves):
        return RunState.FAILED
    return RunState.SUCCESS
