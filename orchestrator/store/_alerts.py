"""The store's alert outbox and missed deadlines.

Rules (besides the store's):
1. An alert is written in the unit of the state change that raised it, once per id
   (``rows.alert_statement``); its ``next_attempt_at`` is a claim: the process that
   wrote it delivers it from memory, and a process delivering from the store takes
   only pending alerts whose time has come.
2. Each attempt's outcome is one write: delivered, pending again at a later time, or
   failed (a dead letter, kept until retried by hand).
3. A missed deadline is written once per (DAG, run, deadline), with its alert.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from orchestrator._clock import Clock, iso, parse_iso
from orchestrator.core._records import AlertRecord
from orchestrator.store._backend import Backend, Statement
from orchestrator.store._rows import alert_statement

__all__ = ["AlertRows", "alert_from_row", "alert_json"]

_COLUMNS = (
    "id, kind, event, dag_id, run_id, task_id, try_number, target, payload, state, attempts, "
    "next_attempt_at, created_at, seq, finished_at, last_error"
)


def _time(text: str) -> datetime:
    parsed = parse_iso(text)
    assert parsed is not None
    return parsed


def alert_from_row(row: dict[str, Any]) -> AlertRecord:
    return AlertRecord(
        id=row["id"],
        kind=row["kind"],
        event=row["event"],
        dag_id=row["dag_id"],
        run_id=row["run_id"],
        task_id=row["task_id"],
        try_number=int(row["try_number"]),
        target=row["target"],
        payload=json.loads(row["payload"]),
        created_at=_time(row["created_at"]),
        seq=int(row["seq"]),
    )


def alert_json(row: dict[str, Any]) -> dict[str, Any]:
    """An outbox row as ``alerts list --json`` and ``GET /api/v1/alerts`` show it."""
    payload = json.loads(row["payload"])
    return {
        "id": row["id"],
        "kind": row["kind"],
        "event": row["event"],
        "dag_id": row["dag_id"],
        "run_id": row["run_id"],
        "task_id": row["task_id"],
        "try_number": row["try_number"],
        "target": row["target"],
        "error": payload.get("error"),
        "state": row["state"],
        "attempts": row["attempts"],
        "next_attempt_at": row["next_attempt_at"] if row["state"] == "pending" else None,
        "created_at": row["created_at"],
        "finished_at": row["finished_at"],
        "last_error": row["last_error"],
    }


class AlertRows:
    """The alert half of ``Store`` (a mixin: ``Store`` gives the backend and the writer)."""

    backend: Backend
    owner: int | None
    clock: Clock

    async def write(self, statements: Sequence[Statement]) -> None:
        raise NotImplementedError

    async def due_alerts(
        self,
        now: datetime,
        limit: int = 1000,
        *,
        orphans: Callable[[str], bool] | None = None,
    ) -> list[tuple[AlertRecord, int]]:
        """Pending alerts whose time has come (rule 1), oldest first, with their attempts.

        With several daemons on the store (``owner`` set): only this daemon's alerts, and
        those no live daemon delivers whose DAG ``orphans`` accepts (its daemon's).
        """
        owned = ""
        params: list[Any] = [iso(now)]
        if self.owner is not None:
            owned = (
                "AND (owner = ? OR owner IS NULL OR owner NOT IN "
                "(SELECT epoch FROM daemon WHERE state = 'alive')) "
            )
            params.append(self.owner)
        rows = await self.backend.fetch(
            f"SELECT {_COLUMNS}, owner FROM alert_outbox WHERE state = 'pending' "
            f"AND next_attempt_at <= ? {owned}ORDER BY created_at, seq LIMIT {int(limit)}",
            params,
        )
        if self.owner is not None and orphans is not None:
            rows = [r for r in rows if r["owner"] == self.owner or orphans(r["dag_id"])]
        return [(alert_from_row(r), int(r["attempts"])) for r in rows]

    def alert_attempted(
        self,
        alert_id: str,
        *,
        attempts: int,
        state: str,
        at: datetime,
        next_attempt_at: datetime | None = None,
        error: str | None = None,
    ) -> Statement:
        """The outcome of one attempt (rule 2): ``delivered``, ``pending`` or ``failed``."""
        return Statement(
            "alert_outbox",
            "UPDATE alert_outbox SET state = ?, attempts = ?, next_attempt_at = ?, "
            "finished_at = ?, last_error = ?, owner = ? WHERE id = ?",
            (
                state,
                attempts,
                iso(next_attempt_at or at),
                None if state == "pending" else iso(at),
                error,
                self.owner,
                alert_id,
            ),
        )

    async def alert_row(self, alert_id: str) -> dict[str, Any] | None:
        rows = await self.backend.fetch(
            f"SELECT {_COLUMNS} FROM alert_outbox WHERE id = ?", (alert_id,)
        )
        return rows[0] if rows else None

    async def list_alerts(
        self, *, state: str | None = None, dag_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Outbox rows, newest first."""
        where, params = [], []
        if state is not None:
            where.append("state = ?")
            params.append(state)
        if dag_id is not None:
            where.append("dag_id = ?")
            params.append(dag_id)
        return await self.backend.fetch(
            f"SELECT {_COLUMNS} FROM alert_outbox"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + f" ORDER BY id DESC LIMIT {int(limit)}",
            params,
        )

    async def retry_alert(self, alert_id: str) -> AlertRecord | None:
        """Make a dead letter pending again, due now; None if no failed alert has that id."""
        row = await self.alert_row(alert_id)
        if row is None or row["state"] != "failed":
            return None
        now = self.clock.now()
        await self.write(
            [
                Statement(
                    "alert_outbox",
                    "UPDATE alert_outbox SET state = 'pending', attempts = 0, "
                    "next_attempt_at = ?, finished_at = NULL WHERE id = ? AND state = 'failed'",
                    (iso(now), alert_id),
                )
            ]
        )
        return alert_from_row(row)

    async def count_alerts(self) -> dict[str, int]:
        rows = await self.backend.fetch(
            "SELECT state, COUNT(*) AS n FROM alert_outbox GROUP BY state"
        )
        return {r["state"]: int(r["n"]) for r in rows}

    async def prune_alerts(self, before: datetime) -> None:
        """Forget delivered alerts finished before ``before`` (dead letters stay)."""
        await self.write(
            [
                Statement(
                    "alert_outbox",
                    "DELETE FROM alert_outbox WHERE state = 'delivered' AND finished_at < ?",
                    (iso(before),),
                )
            ]
        )

    async def record_deadline_miss(
        self,
        dag_id: str,
        run_id: str,
        position: int,
        deadline_at: datetime,
        reference: str,
        alert: AlertRecord,
    ) -> None:
        """The miss and its alert, as one unit (rule 3)."""
        now = self.clock.now()
        await self.write(
            [
                Statement(
                    "deadline_miss",
                    "INSERT INTO deadline_miss (dag_id, run_id, position, deadline_at, "
                    "missed_at, reference) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (dag_id, run_id, position, iso(deadline_at), iso(now), reference),
                ),
                alert_statement(alert, now, self.owner),
            ]
        )

    async def deadline_misses(
        self, *, dag_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Missed deadlines, newest first."""
        rows = await self.backend.fetch(
            "SELECT dag_id, run_id, position, deadline_at, missed_at, reference "
            "FROM deadline_miss"
            + (" WHERE dag_id = ?" if dag_id is not None else "")
            + f" ORDER BY missed_at DESC, dag_id, run_id LIMIT {int(limit)}",
            (dag_id,) if dag_id is not None else (),
        )
        return [dict(r) for r in rows]

    async def missed_deadlines(self, runs: Sequence[tuple[str, str]]) -> set[tuple[str, str, int]]:
        """Which deadlines of these runs are recorded as missed."""
        found: set[tuple[str, str, int]] = set()
        for dag_id, run_id in runs:
            for r in await self.backend.fetch(
                "SELECT position FROM deadline_miss WHERE dag_id = ? AND run_id = ?",
                (dag_id, run_id),
            ):
                found.add((dag_id, run_id, int(r["position"])))
        return found
