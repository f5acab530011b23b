"""The trigger engine: definitions and inputs in, firings out.

Pure: it reads no clock and does no I/O. The daemon gives it definitions (a DAG's
timetable), room (how many more runs each DAG may start) and state rebuilt from the
store (each DAG's latest scheduled run). Then ``feed(input)`` takes one of the
:data:`EngineInput` union and answers with a list of the :data:`Firing` union:
"create a run of DAG d" and "resume task instance t". ``next_deadline`` says when
the engine must next be fed the time.

Time is the one input wired today (:class:`TimePassed`). Dataset updates, events
and sensor results join the union with their own issues, each answered with
firings of the same two kinds.

Rules:
1. One heap orders every DAG's next due instant. Entries are never removed in
   place: an entry whose sequence number no longer matches its slot is stale and
   dropped when it surfaces.
2. A DAG fires only while it may start more runs (``max_active_runs`` less its
   active runs). At zero its due run is parked and re-queued when room opens, so a
   long catch-up creates runs as earlier ones finish, not all at once.
3. Each firing is computed from the latest run and ``now`` at the moment it fires,
   so after a stall a ``catchup=False`` DAG fires only its latest interval.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from triggers._timetable import RunInfo, Timetable

__all__ = ["CreateRun", "EngineInput", "Firing", "ResumeTask", "TimePassed", "TriggerEngine"]


@dataclass(frozen=True, slots=True)
class TimePassed:
    """The clock reached ``now``: everything due by then fires."""

    now: datetime


EngineInput = TimePassed


@dataclass(frozen=True, slots=True)
class CreateRun:
    """Create a run of ``dag_id``.

    ``run`` holds its logical date and data interval; ``trigger_key``, when set,
    makes the firing idempotent beyond the run id (an event id, say); ``payload``
    becomes the run's conf.
    """

    dag_id: str
    run_type: str
    run: RunInfo
    trigger_key: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ResumeTask:
    """End the wait of a deferred task instance: run it again, or end its try as ``outcome``."""

    dag_id: str
    run_id: str
    task_id: str
    outcome: str  # "run", "success", "failed" or "skipped"
    error: str | None = None
    xcoms: Mapping[str, str] = field(default_factory=dict)  # key -> JSON text


Firing = CreateRun | ResumeTask


@dataclass(slots=True)
class _Slot:
    timetable: Timetable
    last: RunInfo | None
    pending: RunInfo | None
    free: int
    seq: int | None = None  # the live heap entry, None when parked or done


class TriggerEngine:
    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}
        self._heap: list[tuple[datetime, int, str]] = []
        self._seq = itertools.count()

    def __contains__(self, key: str) -> bool:
        return key in self._slots

    def set_timetable(
        self,
        key: str,
        timetable: Timetable,
        *,
        last: RunInfo | None,
        now: datetime,
        free: int = 1,
    ) -> None:
        """Register (or replace) ``key``'s time schedule; ``last`` is its latest scheduled run."""
        slot = _Slot(timetable, last, timetable.next_run(last, now), free)
        self._slots[key] = slot
        self._push(key, slot)

    def remove(self, key: str) -> None:
        """Forget ``key`` (deleted or paused DAG); its heap entry goes stale."""
        self._slots.pop(key, None)

    def last_run(self, key: str) -> RunInfo | None:
        slot = self._slots.get(key)
        return slot.last if slot is not None else None

    def pending(self, key: str) -> RunInfo | None:
        """The next run ``key`` will fire, if any."""
        slot = self._slots.get(key)
        return slot.pending if slot is not None else None

    def set_free(self, key: str, free: int) -> None:
        """How many more runs ``key`` may start now; a parked run is re-queued when > 0."""
        slot = self._slots.get(key)
        if slot is None:
            return
        slot.free = free
        if free > 0 and slot.seq is None:
            self._push(key, slot)

    def next_deadline(self) -> datetime | None:
        """When the engine next has something to fire, if it knows of anything."""
        while self._heap:
            due, seq, key = self._heap[0]
            slot = self._slots.get(key)
            if slot is not None and slot.seq == seq:
                return due
            heapq.heappop(self._heap)
        return None

    def feed(self, event: EngineInput) -> list[Firing]:
        """The firings ``event`` causes, in order."""
        return self._time_passed(event.now)

    def _time_passed(self, now: datetime) -> list[Firing]:
        """Every firing due at ``now``, in due order."""
        fired: list[Firing] = []
        while self._heap and self._heap[0][0] <= now:
            _, seq, key = heapq.heappop(self._heap)
            slot = self._slots.get(key)
            if slot is None or slot.seq != seq:
                continue
            slot.seq = None
            if slot.timetable.skips_missed:
                fresh = slot.timetable.next_run(slot.last, now)
                if fresh != slot.pending:  # after a stall: skip to the latest interval
                    slot.pending = fresh
                    self._push(key, slot)
                    continue
            if slot.free <= 0 or slot.pending is None:
                continue  # parked until set_free
            fired.append(CreateRun(key, "scheduled", slot.pending))
            slot.free -= 1
            slot.last = slot.pending
            slot.pending = slot.timetable.next_run(slot.last, now)
            self._push(key, slot)
        return fired

    def _push(self, key: str, slot: _Slot) -> None:
        if slot.pending is None:
            slot.seq = None
            return
        slot.seq = next(self._seq)
        heapq.heappush(self._heap, (slot.pending.due, slot.seq, key))
