"""The daemon's datasets: consumers registered with the trigger engine, updates fed to it.

Rules:
1. The store is the truth. A DAG's references (what it consumes and produces) are
   stored when its file loads, before it is registered as a consumer, so an event
   written from then on is delivered to it in the store; on registration it is given
   the deliveries it has not consumed, so nothing received before (a restart, a
   pause, a file that failed to load for a while) is lost.
2. Updates reach the engine through one queue that only the trigger loop empties:
   events a task's success emitted (told by the scheduler after their commit), events
   from outside (the API, a command through it), and, every reconcile, deliveries
   another process wrote. The engine counts an event once whoever tells of it.
3. A consumer is busy while a run it fired is queued or running; the run's end (or a
   firing that made no run) releases it.
4. Every update is also the orchestrator's own ``Dataset Updated`` event, handed to
   the listeners in ``listeners`` (the event feed, which keeps it if a pattern matches).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog

from orchestrator._clock import Clock, iso
from orchestrator.authoring._dag import DAG
from orchestrator.core import RunRecord
from orchestrator.core._intake import check_conf
from orchestrator.errors import InvalidRequest
from orchestrator.store import DatasetRefs, Store
from triggers._dataset import DatasetEvent, normalize_uri
from triggers._engine import CreateRun, DatasetUpdated, TriggerEngine
from triggers._s3events import s3_object_created

__all__ = ["DatasetFeed", "dataset_updated_event", "refs_of"]

log = structlog.get_logger("orchestrator.datasets")

Listener = Callable[[dict[str, Any]], None]
RECONCILE_WINDOW = timedelta(minutes=5)  # how late another process's event may commit


def refs_of(dag: DAG) -> DatasetRefs:
    consumes = dag.schedule.datasets.uris() if dag.schedule.datasets is not None else frozenset()
    produces = frozenset(o.uri for t in dag.task_dict.values() for o in t.outlets)
    return DatasetRefs(dag.dag_id, consumes, produces)


def _no_refs(ref: DatasetRefs) -> DatasetRefs:
    return DatasetRefs(ref.dag_id)


def dataset_updated_event(event: DatasetEvent) -> dict[str, Any]:
    """The orchestrator's own ``Dataset Updated`` event for ``event``, EventBridge-shaped."""
    return {
        "version": "0",
        "id": event.id,
        "source": "orchestrator",
        "detail-type": "Dataset Updated",
        "time": iso(event.timestamp),
        "resources": [event.uri],
        "detail": {
            "uri": event.uri,
            "extra": dict(event.extra),
            "source_dag_id": event.source_dag_id,
            "source_run_id": event.source_run_id,
            "source_task_id": event.source_task_id,
        },
    }


class DatasetFeed:
    """See the module's rules."""

    def __init__(
        self,
        engine: TriggerEngine,
        clock: Clock,
        *,
        wake: Callable[[], None],
        is_paused: Callable[[str], bool],
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.wake = wake
        self.is_paused = is_paused
        self.listeners: list[Listener] = []
        self._incoming: list[tuple[DatasetEvent, frozenset[str] | None]] = []
        self._active: dict[str, set[str]] = {}  # consumer -> its queued or running runs
        self._store: Store | None = None
        self._refs: dict[str, DatasetRefs] = {}  # as stored
        self._looked = clock.now()  # the previous reconcile's look at the store

    async def open(self, store: Store, unfinished: Iterable[RunRecord]) -> None:
        self._store = store
        self._refs = await store.dataset_refs()
        for run in unfinished:
            self.run_created(run)

    @property
    def store(self) -> Store:
        assert self._store is not None, "the daemon is not running"
        return self._store

    # -- DAGs ------------------------------------------------------------------------------

    async def dags_changed(self, upserted: Sequence[DAG], removed: Iterable[str]) -> None:
        """Store the loaded DAGs' references, then (re)register their consumers (rule 1)."""
        changed = [r for r in map(refs_of, upserted) if self._refs.get(r.dag_id, _no_refs(r)) != r]
        if changed:  # most loads change no DAG's references: nothing to write
            await self.store.set_dataset_refs(changed)
            self._refs.update((r.dag_id, r) for r in changed)
        fresh = [
            dag.dag_id
            for dag in upserted
            if dag.schedule.datasets is not None and not self.engine.knows_consumer(dag.dag_id)
        ]
        pending = await self.store.pending_dataset_events(fresh) if fresh else {}
        for dag in upserted:
            condition = dag.schedule.datasets
            if condition is None:
                self.engine.remove_datasets(dag.dag_id)
                continue
            self.engine.set_datasets(
                dag.dag_id,
                condition,
                each=dag.dataset_events == "each",
                timed=dag.schedule.combine == "and",
                pending=pending.get(dag.dag_id, ()),
                busy=bool(self._active.get(dag.dag_id)),
                paused=self.is_paused(dag.dag_id),
            )
        for dag_id in removed:  # its references stay: events keep being delivered to it
            self.engine.remove_datasets(dag_id)
        self.wake()

    def paused(self, dag_id: str, paused: bool) -> None:
        self.engine.set_dataset_paused(dag_id, paused)

    # -- runs ------------------------------------------------------------------------------

    def run_created(self, run: RunRecord) -> None:
        if run.run_type == "dataset_triggered":
            self._active.setdefault(run.dag_id, set()).add(run.run_id)

    def run_ended(self, run: RunRecord) -> None:
        active = self._active.get(run.dag_id)
        if active is None or run.run_id not in active:
            return
        active.discard(run.run_id)
        if not active:
            del self._active[run.dag_id]
            self.engine.release(run.dag_id)
            self.wake()

    def fired(self, firings: Sequence[CreateRun], stored: Sequence[RunRecord]) -> None:
        """Release a consumer whose firing made no run (its run was stored already)."""
        made = {r.dag_id for r in stored if r.run_type == "dataset_triggered"}
        for firing in firings:
            if firing.run_type == "dataset_triggered" and firing.dag_id not in made:
                log.warning(
                    "dataset firing made no run: its run id or trigger key is taken",
                    dag_id=firing.dag_id,
                    trigger_key=firing.trigger_key,
                )
                if not self._active.get(firing.dag_id):
                    self.engine.release(firing.dag_id)

    # -- updates ---------------------------------------------------------------------------

    def emitted(self, events: Sequence[DatasetEvent]) -> None:
        """Events now committed (a success's outlets, an update from outside): rule 2."""
        for event in events:
            self._incoming.append((event, None))
            for listener in self.listeners:
                try:
                    listener(dataset_updated_event(event))
                except Exception:
                    log.exception("a Dataset Updated listener failed", uri=event.uri)
        self.wake()

    def take(self, now: datetime) -> list[DatasetUpdated]:
        """The updates to feed the engine now (the trigger loop's part of rule 2)."""
        incoming, self._incoming = self._incoming, []
        return [DatasetUpdated(event, now, consumers) for event, consumers in incoming]

    async def update(
        self, uri: object, extra: object = None, *, event_id: str | None = None
    ) -> tuple[DatasetEvent, list[str]]:
        """An update from outside: checked, stored with its deliveries, fed to the engine.

        InvalidRequest (nothing written) when ``uri`` is not a dataset URI or ``extra``
        not a JSON object. Answers the event and the DAGs it was delivered to (none is
        not an error: the event is stored, and a consumer added later does not get it).
        """
        event = external_event(uri, extra, self.clock.now(), event_id=event_id)
        await self.store.record_dataset_events([event])
        consumers = await self.store.dataset_consumers(event.uri)
        log.info("dataset updated", uri=event.uri, consumers=len(consumers))
        self.emitted([event])
        return event, consumers

    async def from_s3(
        self, message: object, *, event_id: str | None = None
    ) -> list[tuple[DatasetEvent, list[str]]]:
        """An S3 object-created notification (either shape, ``triggers._s3events``) as
        updates of the ``s3://`` datasets it names. With ``event_id`` (the event that
        told of it) each update's id derives from it and the URI, so the same event told
        twice (a redelivered message) is one update."""
        return [
            await self.update(
                uri, extra, event_id=None if event_id is None else derived_id(event_id, uri)
            )
            for uri, extra in s3_object_created(message)
        ]

    async def reconcile(self) -> None:
        """Deliveries another process wrote (``dags test``, a command without the API).

        Only events stamped within ``RECONCILE_WINDOW`` before the previous look are read,
        so a large backlog (a paused consumer's) is not read again every time; what is
        older was given to its consumer when it was registered.
        """
        now = self.clock.now()
        since, self._looked = self._looked - RECONCILE_WINDOW, now
        pending = await self.store.pending_dataset_events(since=since)
        for dag_id, events in pending.items():
            if self.engine.knows_consumer(dag_id):
                mine = frozenset({dag_id})
                held = {e.id for e in self.engine.pending_events(dag_id)}
                self._incoming += [(e, mine) for e in events if e.id not in held]
        if self._incoming:
            self.wake()


def derived_id(event_id: str, uri: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{event_id} {uri}").hex


def external_event(
    uri: object, extra: object, now: datetime, *, event_id: str | None = None
) -> DatasetEvent:
    """A dataset event from outside, checked (InvalidRequest naming the field)."""
    try:
        normal = normalize_uri(uri)
    except ValueError as exc:
        raise InvalidRequest(f"uri: {exc}") from None
    if extra is None:
        extra = {}
    if not isinstance(extra, Mapping):
        raise InvalidRequest(f"extra: must be a JSON object, got {type(extra).__name__}")
    checked = check_conf(dict(extra), "extra")
    return DatasetEvent(event_id or uuid.uuid4().hex, normal, now, checked)
