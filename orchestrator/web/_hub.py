"""What changed, for the UI's live pages: one numbered feed, read by each page's stream.

Rules:
1. ``publish`` never blocks and never fails the publisher (the scheduler's step, the
   intake): it numbers the change, keeps it among the last ``keep`` for reconnects, and
   hands it to each subscriber whose filter takes it.
2. A change is a small dict: ``kind`` ("run", "ti", "dags", "dataset", "event",
   "alert") and the ids it concerns; never a whole view.
3. A subscriber that falls ``limit`` changes behind, or reconnects from a number older
   than those kept, is told to reload instead (``Feed.reload``): nothing is silently
   skipped.
4. The hub says when its first subscriber comes and its last goes (``on_active``), so
   the daemon reports state changes only while a page watches.
5. ``close`` (the daemon's shutdown) wakes every subscriber to end its stream cleanly,
   so no page's stream holds the server's shutdown up.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio

__all__ = ["Change", "ChangeHub", "Feed"]

Change = dict[str, Any]


class Feed:
    """One subscriber's pending changes (rule 3)."""

    def __init__(self, dag_id: str | None, limit: int, kinds: frozenset[str] | None) -> None:
        self.dag_id = dag_id
        self.kinds = kinds
        self.limit = limit
        self.pending: list[Change] = []
        self.reload = False
        self.wake = anyio.Event()

    def takes(self, change: Change) -> bool:
        if self.kinds is not None and change["kind"] not in self.kinds:
            return False
        dag_id = change.get("dag_id")
        return self.dag_id is None or dag_id is None or dag_id == self.dag_id

    def put(self, change: Change) -> None:
        if self.reload:
            return
        if len(self.pending) >= self.limit:
            self.pending.clear()
            self.reload = True
        else:
            self.pending.append(change)
        self.wake.set()

    def take(self) -> tuple[list[Change], bool]:
        """The changes since the last take, and whether to reload instead."""
        changes, reload = self.pending, self.reload
        self.pending, self.reload = [], False
        self.wake = anyio.Event()
        return changes, reload


class ChangeHub:
    """The numbered feed of changes (see the module's rules)."""

    def __init__(self, *, keep: int = 2000, limit: int = 5000) -> None:
        self.keep = keep
        self.limit = limit
        self.on_active: Callable[[bool], None] | None = None
        self._ids = itertools.count(1)
        self._recent: deque[Change] = deque(maxlen=keep)
        self._feeds: set[Feed] = set()
        self.closed = False

    def close(self) -> None:
        """Rule 5."""
        self.closed = True
        for feed in self._feeds:
            feed.wake.set()

    @property
    def version(self) -> int:
        """The number of the latest change (0: none yet)."""
        return self._recent[-1]["id"] if self._recent else 0

    @property
    def watched(self) -> bool:
        return bool(self._feeds)

    def publish(self, kind: str, **ids: Any) -> None:
        change = {"id": next(self._ids), "kind": kind, **ids}
        self._recent.append(change)
        for feed in self._feeds:
            if feed.takes(change):
                feed.put(change)

    @contextmanager
    def subscribe(
        self,
        dag_id: str | None = None,
        since: int | None = None,
        kinds: frozenset[str] | None = None,
    ) -> Iterator[Feed]:
        """A feed of the changes from now (or after ``since``, when still kept) of one DAG
        (and those of no DAG) and of ``kinds``; None: all."""
        feed = Feed(dag_id, self.limit, kinds)
        if since is not None and since < self.version:
            oldest = self._recent[0]["id"]
            if since + 1 < oldest:
                feed.reload = True
                feed.wake.set()
            else:
                for change in self._recent:
                    if change["id"] > since and feed.takes(change):
                        feed.put(change)
        self._feeds.add(feed)
        if len(self._feeds) == 1 and self.on_active is not None:
            self.on_active(True)
        try:
            yield feed
        finally:
            self._feeds.discard(feed)
            if not self._feeds and self.on_active is not None:
                self.on_active(False)
