"""The trigger engine: definitions and inputs in, firings out.

Pure: it reads no clock and does no I/O. The daemon gives it definitions (a DAG's
timetable, its dataset condition), room (how many more runs each DAG may start) and
state rebuilt from the store (each DAG's latest scheduled run, its pending dataset
events). Then ``feed(input)`` takes one of the :data:`EngineInput` union and answers
with a list of the :data:`Firing` union: "create a run of DAG d" and "resume task
instance t". ``next_deadline`` says when the engine must next be fed the time.

Inputs: the time (:class:`TimePassed`), a dataset update (:class:`DatasetUpdated`) and
an event (:class:`EventReceived`), each answered with firings of the same two kinds.

Rules:
1. One heap orders every DAG's next due instant. Entries are never removed in
   place: an entry whose sequence number no longer matches its slot is stale and
   dropped when it surfaces.
2. A DAG fires only while it may start more runs (``max_active_runs`` less its
   active runs). At zero its due run is parked and re-queued when room opens, so a
   long catch-up creates runs as earlier ones finish, not all at once.
3. Each firing is computed from the latest run and ``now`` at the moment it fires,
   so after a stall a ``catchup=False`` DAG fires only its latest interval.
4. A dataset consumer (``triggers._consumers``) fires a ``dataset_triggered`` run
   when its condition holds over its pending events, unless it is paused or a run it
   fired is still queued or running (``busy``): events that arrive meanwhile wait
   for the next run, which the daemon's ``release`` (the run ended) or ``unpause``
   lets fire at the next input. The run consumes its events (``CreateRun.consumes``);
   its logical date is the firing time (later than its previous one), its data
   interval spans its events' timestamps, its trigger key names its first event.
5. ``DatasetAndTime``: at each time instant, a run is made only if the condition
   holds over the pending events, and it consumes them; otherwise the instant passes
   without a run.
6. An event fires one ``event_triggered`` run of each DAG whose pattern it matches
   (one ``PatternSet`` for all of them), unless that DAG is paused. The run's trigger key
   is ``event:{id}``, so an event told twice (a redelivery, a restart) makes no second
   run; its conf is ``{"event": event}``; its logical date is the firing time (later
   than the DAG's previous firing), its data interval empty at that instant.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from triggers._consumers import ConsumedLog, Consumer
from triggers._dataset import DatasetCondition, DatasetEvent
from triggers._eventpattern import EventPattern
from triggers._patternset import PatternSet
from triggers._timetable import RunInfo, Timetable

__all__ = [
    "CreateRun",
    "DatasetUpdated",
    "EngineInput",
    "EventReceived",
    "Firing",
    "ResumeTask",
    "TimePassed",
    "TriggerEngine",
]


@dataclass(frozen=True, slots=True)
class TimePassed:
    """The clock reached ``now``: everything due by then fires."""

    now: datetime


@dataclass(frozen=True, slots=True)
class DatasetUpdated:
    """A dataset event was stored at ``now``.

    ``consumers``, when set, are the only DAGs it was delivered to (an event found in
    the store); None means every consumer of its URI (an event just written).
    """

    event: DatasetEvent
    now: datetime
    consumers: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class EventReceived:
    """An event (the EventBridge envelope, with its ``id``) was stored at ``now``."""

    event: Mapping[str, Any]
    now: datetime


EngineInput = TimePassed | DatasetUpdated | EventReceived


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
    consumes: tuple[DatasetEvent, ...] = ()  # the dataset events this run takes


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
        self._consumers: dict[str, Consumer] = {}
        self._by_uri: dict[str, set[str]] = {}
        self._consumed = ConsumedLog()
        self._due: set[str] = set()  # consumers to look at with the next input
        self._logical: dict[str, datetime] = {}  # each consumer's latest firing
        self.patterns = PatternSet()  # the patterns of DAGs not paused
        self._event_patterns: dict[str, EventPattern] = {}

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
        """Forget ``key``'s time schedule (deleted or paused DAG); its heap entry goes stale."""
        self._slots.pop(key, None)

    def remove_datasets(self, key: str) -> None:
        """Forget ``key`` as a dataset consumer (its DAG is gone or has no datasets now)."""
        consumer = self._consumers.pop(key, None)
        if consumer is not None:
            for uri in consumer.uris:
                self._by_uri.get(uri, set()).discard(key)

    # -- dataset consumers -------------------------------------------------------------------

    def set_datasets(
        self,
        key: str,
        condition: DatasetCondition,
        *,
        each: bool = False,
        timed: bool = False,
        pending: Iterable[DatasetEvent] = (),
        busy: bool = False,
        paused: bool = False,
    ) -> None:
        """Register (or redefine) ``key`` as a consumer of ``condition``'s datasets.

        ``pending`` are events stored for it and not consumed; they join what it holds
        (a redefinition keeps the pending events its new condition still names).
        """
        fresh = Consumer(condition, each=each, timed=timed, busy=busy, paused=paused)
        old = self._consumers.get(key)
        if old is not None:
            fresh.busy = old.busy or busy
            for event in old.pending.values():
                if event.uri in fresh.uris:
                    fresh.add(event)
            for uri in old.uris - fresh.uris:
                self._by_uri.get(uri, set()).discard(key)
        self._consumers[key] = fresh
        for uri in fresh.uris:
            self._by_uri.setdefault(uri, set()).add(key)
        for event in pending:
            self._hold(key, fresh, event)
        self._due.add(key)

    def set_dataset_paused(self, key: str, paused: bool) -> None:
        """A paused consumer keeps receiving events and fires once it is unpaused."""
        consumer = self._consumers.get(key)
        if consumer is not None:
            consumer.paused = paused
            self._due.add(key)

    def release(self, key: str) -> None:
        """The dataset-triggered run ``key`` fired has ended: it may fire again."""
        consumer = self._consumers.get(key)
        if consumer is not None:
            consumer.busy = False
            self._due.add(key)

    def pending_events(self, key: str) -> list[DatasetEvent]:
        """The events ``key`` holds and has not consumed, oldest first."""
        consumer = self._consumers.get(key)
        return list(consumer.pending.values()) if consumer is not None else []

    def knows_consumer(self, key: str) -> bool:
        return key in self._consumers

    def consumers_of(self, uri: str) -> frozenset[str]:
        return frozenset(self._by_uri.get(uri, ()))

    def _hold(self, key: str, consumer: Consumer, event: DatasetEvent) -> bool:
        if event.uri not in consumer.uris or event.id in consumer.pending:
            return False
        if (key, event.id) in self._consumed:
            return False
        consumer.add(event)
        return True

    def _dataset_updated(self, update: DatasetUpdated) -> list[Firing]:
        event = update.event
        keys = self._by_uri.get(event.uri, set())
        if update.consumers is not None:
            keys = keys & update.consumers
        for key in keys:
            if self._hold(key, self._consumers[key], event):
                self._due.add(key)
        return self._fire_consumers(update.now)

    def _fire_consumers(self, now: datetime) -> list[Firing]:
        fired: list[Firing] = []
        due, self._due = self._due, set()
        for key in sorted(due):
            consumer = self._consumers.get(key)
            if consumer is None or consumer.timed or consumer.busy or consumer.paused:
                continue
            taken = consumer.take()
            if taken is None:
                continue
            logical = self._next_logical(key, now)
            times = [event.timestamp for event in taken]
            info = RunInfo(logical, min(times), max(times))
            trigger_key = f"dataset:{taken[0].id}"
            fired.append(
                CreateRun(key, "dataset_triggered", info, trigger_key, consumes=tuple(taken))
            )
            self._consume(key, consumer, taken)
            consumer.busy = True
        return fired

    def _consume(self, key: str, consumer: Consumer, taken: list[DatasetEvent]) -> None:
        for event in taken:
            consumer.remove(event.id)
            self._consumed.add((key, event.id))

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
        if isinstance(event, DatasetUpdated):
            return self._dataset_updated(event)
        if isinstance(event, EventReceived):
            return self._event_received(event)
        return self._time_passed(event.now) + self._fire_consumers(event.now)

    # -- event patterns (rule 6) ---------------------------------------------------------------

    def set_pattern(self, key: str, pattern: EventPattern | None, *, paused: bool = False) -> None:
        """Register (or replace, or with None forget) ``key``'s event pattern."""
        self.patterns.remove(key)
        self._event_patterns.pop(key, None)
        if pattern is not None:
            self._event_patterns[key] = pattern
            self.set_pattern_paused(key, paused)

    def set_pattern_paused(self, key: str, paused: bool) -> None:
        """A paused DAG's pattern is set aside: events meanwhile start none of its runs."""
        pattern = self._event_patterns.get(key)
        if pattern is None:
            return
        if paused:
            self.patterns.remove(key)
        elif key not in self.patterns:
            self.patterns.add(key, pattern)

    def _event_received(self, received: EventReceived) -> list[Firing]:
        event, now = received.event, received.now
        fired: list[Firing] = []
        for key in sorted(self.patterns.match(event)):
            logical = self._next_logical(key, now)
            fired.append(
                CreateRun(
                    key,
                    "event_triggered",
                    RunInfo(logical, logical, logical),
                    f"event:{event['id']}",
                    payload={"event": dict(event)},
                )
            )
        return fired

    def _next_logical(self, key: str, now: datetime) -> datetime:
        """``now``, or just after ``key``'s previous firing (logical dates are unique)."""
        logical = now
        previous = self._logical.get(key)
        if previous is not None and logical <= previous:
            logical = previous + timedelta(microseconds=1)
        self._logical[key] = logical
        return logical

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
            consumer = self._consumers.get(key)
            consumes: tuple[DatasetEvent, ...] = ()
            if consumer is not None and consumer.timed:
                taken = consumer.take()
                if taken is None:  # rule 5: this instant passes without a run
                    slot.last = slot.pending
                    slot.pending = slot.timetable.next_run(slot.last, now)
                    self._push(key, slot)
                    continue
                self._consume(key, consumer, taken)
                consumes = tuple(taken)
            fired.append(CreateRun(key, "scheduled", slot.pending, consumes=consumes))
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
