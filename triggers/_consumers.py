"""Dataset consumers: the events each DAG has received and not yet consumed.

Pure bookkeeping for the trigger engine. A consumer is a DAG whose schedule names
datasets. Each event of one of its datasets joins its *pending* events, in the
order they arrive; a run consumes pending events, and an event is consumed once.

Rules:
1. ``batch``: when the condition holds over the URIs of all pending events, one run
   takes every one of them. ``each``: runs take pending events in order, each the
   shortest run of them, oldest first, over which the condition holds (for a
   one-dataset or ``|`` condition: one run per event).
2. An event a consumer already holds or has consumed is not taken again, however
   often it is given (the store, the scheduler and reconciling may all tell of it).
3. When a consumer's condition changes, it keeps the pending events of the datasets
   its new condition still names.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from triggers._dataset import DatasetCondition, DatasetEvent

__all__ = ["ConsumedLog", "Consumer"]


@dataclass(slots=True)
class Consumer:
    condition: DatasetCondition
    each: bool = False
    timed: bool = False  # DatasetAndTime: runs only at its time instants
    uris: frozenset[str] = frozenset()
    pending: dict[str, DatasetEvent] = field(default_factory=dict)  # id -> event, arrival order
    busy: bool = False  # a run it fired is queued or running
    paused: bool = False
    updated: Counter[str] = field(default_factory=Counter)  # the pending events' URIs

    def __post_init__(self) -> None:
        self.uris = self.condition.uris()

    def add(self, event: DatasetEvent) -> None:
        self.pending[event.id] = event
        self.updated[event.uri] += 1

    def remove(self, event_id: str) -> None:
        event = self.pending.pop(event_id, None)
        if event is not None:
            self.updated[event.uri] -= 1
            if not self.updated[event.uri]:
                del self.updated[event.uri]

    def same_definition(self, other: Consumer) -> bool:
        return (self.condition, self.each, self.timed) == (other.condition, other.each, other.timed)

    def take(self) -> list[DatasetEvent] | None:
        """The events the next run consumes (rule 1), or None while the condition fails."""
        # & and | are monotone: when all the pending events do not satisfy the condition,
        # no part of them does, so a consumer waiting for one dataset costs O(1) an event.
        if not self.pending or not self.condition.evaluate(self.updated.keys()):
            return None
        if not self.each:
            return list(self.pending.values())
        taken: list[DatasetEvent] = []
        updated = set()
        for event in self.pending.values():
            taken.append(event)
            updated.add(event.uri)
            if self.condition.evaluate(updated):
                return taken
        return None


class ConsumedLog:
    """The (consumer, event id) pairs consumed lately: at most ``size`` of them."""

    def __init__(self, size: int = 100_000) -> None:
        self._size = size
        self._pairs: OrderedDict[tuple[str, str], None] = OrderedDict()

    def __contains__(self, pair: tuple[str, str]) -> bool:
        return pair in self._pairs

    def add(self, pair: tuple[str, str]) -> None:
        self._pairs[pair] = None
        if len(self._pairs) > self._size:
            self._pairs.popitem(last=False)
