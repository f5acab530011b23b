"""The store's events: each stored once by id, listed newest first, pruned after retention.

Rules (besides the store's):
1. An event is written if absent on its id, so a redelivered message or a repeated
   request stores nothing new; the first body wins.
2. ``handled`` is set once the runs the event starts are stored (or it matched none):
   on start the daemon matches again the events not handled, and the runs' trigger key
   (``event:{id}``) makes that harmless for the ones already made.
3. The runs an event started are found by that trigger key, not stored twice.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence, Set
from datetime import datetime
from typing import Any

from orchestrator._clock import Clock, iso
from orchestrator.errors import InvalidRequest
from orchestrator.store._backend import Backend, Statement

__all__ = ["EventRows", "stored_event_json"]


def stored_event_json(
    event: dict[str, Any], received_at: str, runs: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """A stored event as the API and ``events list --json`` show it."""
    return {
        **event,
        "received_at": received_at,
        "runs": [{"dag_id": d, "run_id": r} for d, r in runs],
    }


def _cursor(received_at: str, event_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([received_at, event_id]).encode()).decode()


def _uncursor(cursor: str) -> tuple[str, str]:
    try:
        received_at, event_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if isinstance(received_at, str) and isinstance(event_id, str):
            return received_at, event_id
    except (ValueError, TypeError):
        pass
    raise InvalidRequest(f"cursor: not a cursor this API gave: {cursor[:40]!r}")


class EventRows:
    """The event half of ``Store`` (a mixin: ``Store`` gives the backend and the writer)."""

    backend: Backend
    clock: Clock

    async def write(self, statements: Sequence[Statement]) -> None:
        raise NotImplementedError

    async def record_events(
        self, events: Sequence[dict[str, Any]], origin: str, *, handled: Set[str] = frozenset()
    ) -> None:
        """Store each event unless its id is stored (rule 1), as one unit; those in
        ``handled`` are stored handled (they start no run)."""
        now = iso(self.clock.now())
        await self.write(
            [
                Statement(
                    "event",
                    "INSERT INTO event (id, source, detail_type, time, received_at, origin, body, "
                    "handled) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (
                        e["id"],
                        e["source"],
                        e["detail-type"],
                        e["time"],
                        now,
                        origin,
                        json.dumps(e, separators=(",", ":")),
                        int(e["id"] in handled),
                    ),
                )
                for e in events
            ]
        )

    async def events_handled(self, ids: Sequence[str]) -> None:
        await self.write(
            [Statement("event", "UPDATE event SET handled = 1 WHERE id = ?", (i,)) for i in ids]
        )

    async def unhandled_events(self, before: datetime | None = None) -> list[dict[str, Any]]:
        """The events whose runs may not all be made (rule 2), oldest first; with
        ``before``, only those received before it."""
        since = "" if before is None else "AND received_at < ? "
        rows = await self.backend.fetch(
            f"SELECT body FROM event WHERE handled = 0 {since}ORDER BY received_at, id "
            "LIMIT 100000",
            () if before is None else (iso(before),),
        )
        return [json.loads(r["body"]) for r in rows]

    async def list_events(
        self, *, source: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[tuple[dict[str, Any], str, list[tuple[str, str]]]], str | None]:
        """Events newest first, each with when it was received and the (dag_id, run_id) of
        the runs it started; and the cursor of the next page (None at the end)."""
        where: list[str] = []
        params: list[Any] = []
        if source is not None:
            where.append("source = ?")
            params.append(source)
        if cursor is not None:
            received_at, event_id = _uncursor(cursor)
            where.append("(received_at < ? OR (received_at = ? AND id < ?))")
            params += [received_at, received_at, event_id]
        rows = await self.backend.fetch(
            "SELECT id, body, received_at FROM event"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + f" ORDER BY received_at DESC, id DESC LIMIT {int(limit) + 1}",
            params,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        runs: dict[str, list[tuple[str, str]]] = {}
        keys = [f"event:{r['id']}" for r in rows]
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            for run in await self.backend.fetch(
                "SELECT dag_id, run_id, trigger_key FROM dag_run WHERE trigger_key IN "
                f"({', '.join('?' * len(chunk))}) ORDER BY dag_id, run_id",
                chunk,
            ):
                runs.setdefault(run["trigger_key"][len("event:") :], []).append(
                    (run["dag_id"], run["run_id"])
                )
        found = [(json.loads(r["body"]), r["received_at"], runs.get(r["id"], [])) for r in rows]
        last = rows[-1] if rows else None
        return found, (_cursor(last["received_at"], last["id"]) if more and last else None)

    async def prune_events(self, before: datetime) -> None:
        """Forget the handled events received before ``before`` (the retention)."""
        await self.write(
            [
                Statement(
                    "event",
                    "DELETE FROM event WHERE handled = 1 AND received_at < ?",
                    (iso(before),),
                )
            ]
        )
