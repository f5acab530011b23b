"""The daemon's events: every source stores, then the trigger loop matches and fires.

Rules:
1. An event is stored before it is acknowledged (the API's reply, an SQS delete). The
   store keeps one event per id, and a run's trigger key ``event:{id}`` makes one event
   start at most one run of each DAG, whoever tells of it and however often.
2. Stored events reach the engine through one queue that only the trigger loop
   empties, and only once the DAG files have loaded (patterns of DAGs not yet loaded
   would miss them). After their runs are stored they are marked handled; on start the
   events not handled are queued again.
3. The orchestrator's own events (a run's or a task's state change, a dataset update)
   are stored only when some DAG's pattern matches them, so an orchestrator with no
   such DAG writes nothing more than before; the scheduler tells of state changes only
   while some pattern can match ``source: orchestrator`` (``wants_own``).
4. Paused DAGs' patterns are set aside: an event meanwhile starts none of their runs,
   as a disabled EventBridge rule matches nothing.
5. With several daemons on one store, each matches every DAG's pattern, so the daemon
   that receives an event makes all its runs (each run is then driven by its DAG's
   daemon); an event one of them stored but did not handle is matched by the others
   after a while (``sweep``), and the trigger key keeps that from making a second run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import anyio
import structlog

from orchestrator._clock import Clock
from orchestrator.authoring._dag import DAG
from orchestrator.core import TaskInstanceRecord
from orchestrator.core._intake import check_conf
from orchestrator.daemon._metrics import Metrics
from orchestrator.errors import InvalidRequest, StoreUnavailable
from orchestrator.runtime._live import LiveRun
from orchestrator.store import Store
from triggers._engine import EventReceived, TriggerEngine
from triggers._events import (
    OWN_SOURCE,
    EntryError,
    dag_run_state_change,
    from_entry,
    task_state_change,
)

__all__ = ["MAX_ENTRIES", "EventFeed", "checked_event"]

log = structlog.get_logger("orchestrator.events")

MAX_ENTRIES = 10  # PutEvents' limit per request


def checked_event(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` if it is standard JSON that can be a run's conf (InvalidRequest naming
    the field otherwise)."""
    check_conf(event, "event")
    return event


class EventFeed:
    """See the module's rules."""

    def __init__(
        self,
        engine: TriggerEngine,
        clock: Clock,
        *,
        wake: Callable[[], None],
        metrics: Metrics,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.wake = wake
        self.metrics = metrics
        self.ready = False
        self.stored: Callable[[int], None] | None = None  # told how many events were stored
        self._store: Store | None = None
        self._incoming: list[dict[str, Any]] = []
        self._own: list[dict[str, Any]] = []
        self._own_wake = anyio.Event()
        self._pruned: datetime | None = None

    @property
    def store(self) -> Store:
        assert self._store is not None, "the daemon is not running"
        return self._store

    def open(self, store: Store) -> None:
        self._store = store

    async def loaded(self) -> None:
        """The DAG files are in: queue the events not handled, then let the loop take (rule 2)."""
        pending = await self.store.unhandled_events()
        if pending:
            log.info("events not handled before the restart are matched again", events=len(pending))
        self._incoming[:0] = pending
        self.ready = True
        self.wake()

    async def sweep(self, before: datetime) -> None:
        """Events another daemon stored before ``before`` and has not handled: matched here
        too, in case it died before it could (rule 5)."""
        if not self.ready:
            return
        queued = {e["id"] for e in self._incoming}
        late = [e for e in await self.store.unhandled_events(before) if e["id"] not in queued]
        if late:
            log.info("events another daemon did not handle are matched here", events=len(late))
            self._incoming += late
            self.wake()

    # -- DAGs ------------------------------------------------------------------------------

    def dags_changed(
        self, upserted: Sequence[DAG], removed: Iterable[str], is_paused: Callable[[str], bool]
    ) -> None:
        for dag in upserted:
            self.engine.set_pattern(dag.dag_id, dag.schedule.event, paused=is_paused(dag.dag_id))
        for dag_id in removed:
            self.engine.set_pattern(dag_id, None)

    def paused(self, dag_id: str, paused: bool) -> None:
        self.engine.set_pattern_paused(dag_id, paused)

    @property
    def wants_own(self) -> bool:
        """Whether some pattern may match one of the orchestrator's own events (rule 3)."""
        return self.engine.patterns.may_match(("source",), OWN_SOURCE)

    # -- sources ---------------------------------------------------------------------------

    async def put_entries(self, entries: object) -> dict[str, Any]:
        """A PutEvents request: each entry stored or refused; the PutEvents reply."""
        if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_ENTRIES:
            raise InvalidRequest(f"Entries: must be a list of 1 to {MAX_ENTRIES} entries")
        now = self.clock.now()
        results: list[dict[str, str]] = []
        events: list[dict[str, Any]] = []
        for i, entry in enumerate(entries):
            try:
                event = from_entry(entry, now)
                checked_event(event)
            except EntryError as exc:
                results.append({"ErrorCode": exc.code, "ErrorMessage": f"Entries[{i}]: {exc}"})
                continue
            except InvalidRequest as exc:
                results.append(
                    {"ErrorCode": "MalformedDetail", "ErrorMessage": f"Entries[{i}]: {exc}"}
                )
                continue
            events.append(event)
            results.append({"EventId": event["id"]})
        if events:
            await self.receive(events, "api")
        failed = sum(1 for r in results if "ErrorCode" in r)
        if failed:
            self.metrics.events_rejected.labels(origin="api").inc(failed)
        return {"FailedEntryCount": failed, "Entries": results}

    async def receive(self, events: Sequence[dict[str, Any]], origin: str) -> None:
        """Store complete events (``triggers._events``), then queue them (rules 1, 2).

        Once the DAGs are loaded, an event no pattern matches is stored handled and not
        queued: it starts nothing, and the trigger loop has nothing to do for it.
        """
        matching = [e for e in events if self.engine.patterns.match(e)] if self.ready else events
        handled = {e["id"] for e in events} - {e["id"] for e in matching}
        await self.store.record_events(events, origin, handled=handled)
        self.metrics.events_received.labels(origin=origin.partition(":")[0]).inc(len(events))
        if self.stored is not None:
            self.stored(len(events))
        if matching:
            self._incoming += matching
            self.wake()

    def own(self, event: Mapping[str, Any]) -> None:
        """One of the orchestrator's own events: kept only if a pattern matches it (rule 3)."""
        if self.engine.patterns.match(event):
            self._own.append(dict(event))
            self._own_wake.set()

    async def serve_own(self) -> None:
        """Store the orchestrator's own events that matched, a batch at a time."""
        while True:
            await self._own_wake.wait()
            self._own_wake = anyio.Event()
            batch, self._own = self._own, []
            try:
                await self.receive(batch, OWN_SOURCE)
            except StoreUnavailable as exc:
                log.warning("store unavailable: own events wait", events=len(batch), error=str(exc))
                self._own[:0] = batch
                await anyio.sleep(1)
                self._own_wake.set()

    def state_changed(self, live: LiveRun, ti: TaskInstanceRecord | None) -> None:
        """The scheduler's change listener, set while ``wants_own``: a run's state when
        ``ti`` is None, else a task instance's, as the orchestrator's own events."""
        now = self.clock.now()
        record = live.record
        if ti is None:
            self.own(dag_run_state_change(record.dag_id, record.run_id, str(record.state), now))
        else:
            self.own(
                task_state_change(
                    ti.dag_id, ti.run_id, ti.task_id, str(ti.state), ti.try_number, now
                )
            )

    async def prune(self, retention_days: float) -> None:
        """Forget handled events past their retention, once an hour."""
        now = self.clock.now()
        if self._pruned is not None and now - self._pruned < timedelta(hours=1):
            return
        self._pruned = now
        await self.store.prune_events(now - timedelta(days=retention_days))

    # -- the trigger loop's part -----------------------------------------------------------

    def take(self, now: datetime) -> list[EventReceived]:
        if not self.ready or not self._incoming:
            return []
        incoming, self._incoming = self._incoming, []
        return [EventReceived(event, now) for event in incoming]

    async def handled(self, received: Sequence[EventReceived]) -> None:
        try:
            await self.store.events_handled([r.event["id"] for r in received])
        except StoreUnavailable as exc:  # matched again after a restart: harmless (rule 1)
            log.warning("store unavailable: events not marked handled", error=str(exc))
