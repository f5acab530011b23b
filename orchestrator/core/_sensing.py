"""A sensor's wait, decided: when to poke next, when to give up, what a poke's result means.

Pure: the time is an argument. The shell (``runtime._sensing``) pokes when a wait is
due and feeds the result here; what comes back is either the next wait, to store and
arm, or the end of the wait, to hand to the run driver as ``Resumed``.

Rules (Airflow's sensor semantics):
1. ``timeout`` counts from the try's first poke, across restarts (it is stored). A poke
   that finds the condition false once the timeout has passed ends the wait: failed,
   not retried, or skipped with ``soft_fail``. The last poke comes at the deadline.
2. The wait after an unsuccessful poke is ``poke_interval``; with
   ``exponential_backoff`` it doubles with each poke, from ``[interval*2**(n-1),
   interval*2**n)`` after poke *n* (the place fixed by a hash of the instance, as a
   retry's backoff is), never above ``max_wait``.
3. A poke that raises (or outlives ``poke_timeout``) ends the try as failed: the
   task's retries apply (not after ``FailTask``), and a retry starts with a fresh wait.
   A poke that raises ``SkipTask`` ends it as skipped.
4. Waits are spread: a wait's first due instant is moved later by up to a tenth of its
   interval (at most one second), fixed by a hash of the instance, so sensors
   deferred together do not all poke in the same instant ever after.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from orchestrator._clock import iso, parse_iso
from orchestrator.core._records import SensorWaitRecord, split_key
from orchestrator.core._state import retry_delay
from orchestrator.core._steps import Resumption

__all__ = [
    "EndWait",
    "PokeResult",
    "SensorPolicy",
    "WaitState",
    "after_poke",
    "deferred_at_once",
    "first_wait",
    "sensor_seed",
]


def sensor_seed(dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
    """What fixes a try's spread and backoff (rules 2 and 4): the same after a restart."""
    return f"{dag_id}#{run_id}#{task_id}#{try_number}"


@dataclass(frozen=True, slots=True)
class SensorPolicy:
    """A sensor's timing, from its arguments."""

    poke_interval: timedelta
    timeout: timedelta
    soft_fail: bool = False
    exponential_backoff: bool = False
    max_wait: timedelta | None = None
    poke_timeout: timedelta | None = None


@dataclass(frozen=True, slots=True)
class WaitState:
    """One try's wait, as stored: what a restart resumes from."""

    try_number: int
    first_poke: datetime
    pokes: int  # pokes made so far, all unsuccessful
    next_poke: datetime

    def deadline(self, policy: SensorPolicy) -> datetime:
        return self.first_poke + policy.timeout

    def record(self, dag_id: str, run_id: str, key: str, policy: SensorPolicy) -> SensorWaitRecord:
        """The stored wait of the instance ``key`` (``t``, or ``t[3]`` for a mapped one)."""
        task_id, map_index = split_key(key)
        return SensorWaitRecord(
            dag_id,
            run_id,
            task_id,
            self.next_poke,
            self.pokes,
            self.deadline(policy),
            self.to_json(),
            map_index,
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "try_number": self.try_number,
                "first_poke": iso(self.first_poke),
                "pokes": self.pokes,
                "next_poke": iso(self.next_poke),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> WaitState:
        doc: dict[str, Any] = json.loads(text)
        first, following = parse_iso(doc["first_poke"]), parse_iso(doc["next_poke"])
        assert first is not None
        assert following is not None
        return cls(int(doc["try_number"]), first, int(doc["pokes"]), following)


@dataclass(frozen=True, slots=True)
class PokeResult:
    """What one poke found: done (with the XCom it returns, as JSON text), or an error."""

    done: bool
    xcom: str | None = None
    error: str | None = None
    retryable: bool = True  # False: the poke raised FailTask
    skipped: bool = False  # the poke raised SkipTask (``error`` says why)
    ready_at: datetime | None = None  # not done, but will be then (a time sensor knows)


@dataclass(frozen=True, slots=True)
class EndWait:
    """The wait is over: resume the instance as ``outcome``."""

    outcome: Resumption
    error: str | None = None
    retryable: bool = True
    xcoms: dict[str, str] | None = None


def _spread(policy: SensorPolicy, seed: str) -> timedelta:
    """Rule 4's offset: up to a tenth of the interval, at most one second."""
    most = min(policy.poke_interval.total_seconds() / 10, 1.0)
    fraction = int(hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest()[:8], 16)
    return timedelta(seconds=most * fraction / 0xFFFFFFFF)


def _next_wait(policy: SensorPolicy, pokes: int, seed: str) -> timedelta:
    if not policy.exponential_backoff:
        wait = policy.poke_interval
    else:
        wait = retry_delay(pokes, policy.poke_interval, exponential=True, seed=seed)
    if policy.max_wait is not None:
        wait = min(wait, policy.max_wait)
    return wait


def first_wait(policy: SensorPolicy, try_number: int, first_poke: datetime, seed: str) -> WaitState:
    """The wait after a try's first poke found the condition false (rule 4's spread)."""
    wait = _next_wait(policy, 1, seed) + _spread(policy, seed)
    due = min(first_poke + wait, first_poke + policy.timeout)
    return WaitState(try_number, first_poke, 1, due)


def deferred_at_once(policy: SensorPolicy, try_number: int, now: datetime, seed: str) -> WaitState:
    """The wait of a try deferred before its first poke, which comes within rule 4's
    spread (so sensors made ready together do not poke together ever after)."""
    return WaitState(try_number, now, 0, now + _spread(policy, seed))


def after_poke(
    policy: SensorPolicy, state: WaitState, result: PokeResult, now: datetime, seed: str
) -> WaitState | EndWait:
    """The next wait, or the end of this one (rules 1 to 3)."""
    if result.skipped:
        return EndWait(Resumption.SKIPPED, result.error, retryable=False)
    if result.error is not None:
        return EndWait(Resumption.FAILED, result.error, retryable=result.retryable)
    if result.done:
        xcoms = {"return_value": result.xcom} if result.xcom is not None else {}
        return EndWait(Resumption.SUCCESS, xcoms=xcoms)
    deadline = state.deadline(policy)
    if now >= deadline:
        message = f"sensor timed out: not done {policy.timeout} after its first poke"
        if policy.soft_fail:
            return EndWait(Resumption.SKIPPED, message, retryable=False)
        return EndWait(Resumption.FAILED, message, retryable=False)
    pokes = state.pokes + 1
    due = min(now + _next_wait(policy, pokes, seed), deadline)
    if result.ready_at is not None:  # poked when it will hold, not up to an interval late
        due = min(due, max(result.ready_at, now))
    return WaitState(state.try_number, state.first_poke, pokes, due)
