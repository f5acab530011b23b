"""Tries run by workers: the try's life in the store, whatever carries its message.

The daemon that drives a run writes each try it sends to a worker as a ``try_work`` row
in state ``queued``, with an id of its own; the broker carries only that id. Rules:

1. A worker runs a try only after its claim, ``queued`` -> ``running`` with its name,
   changed one row: a message delivered twice, or sent again, finds the row taken and
   runs nothing.
2. While it runs the try, the worker's heartbeat moves ``heartbeat_at`` (the database's
   clock) on the condition that the row is still ``running``, still its own and not asked
   to stop (``cancel``); when that changes no row, the worker kills the try's processes.
3. The try ends with one conditional write of its outcome by the worker that claimed it
   (``running`` and its name): a zombie's late result changes nothing.
4. A try whose heartbeat lapsed, or that stayed ``queued`` too long, is made ``lost`` by
   the daemon with a write conditional on that lapse, on the database's clock: a
   heartbeat that came in between wins, and a lost try never becomes a success.
5. The try's output goes to ``try_log`` in numbered chunks before ``logged`` (how many)
   moves, so a reader that saw ``logged`` finds every chunk up to it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.store._backend import Backend, Statement

__all__ = [
    "OPEN",
    "Work",
    "adopt_work",
    "cancel_work",
    "claim_work",
    "finish_work",
    "heartbeat_work",
    "lose_work",
    "queued_work",
    "sent_again",
    "watch_work",
    "work_chunks",
    "work_log",
    "work_of",
]

OPEN = ("queued", "running")

_NOW = {
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
    "postgresql": "extract(epoch from clock_timestamp())::float8",
}


def _sql(backend: Backend, sql: str) -> str:
    return sql.replace("{now}", _NOW[backend.dialect])


@dataclass(frozen=True, slots=True)
class Work:
    """A try's row as its daemon watches it; ages in seconds on the database's clock."""

    id: str
    state: str
    worker: str | None
    queued_for: float
    silent_for: float | None  # since the last heartbeat, while running
    sent: int
    logged: int
    result: dict[str, Any] | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> Work:
        now = float(row["now"])
        beat = row["heartbeat_at"]
        return cls(
            id=row["id"],
            state=row["state"],
            worker=row["worker"],
            queued_for=now - float(row["created_at"]),
            silent_for=None if beat is None else now - float(beat),
            sent=int(row["sent"]),
            logged=int(row["logged"]),
            result=json.loads(row["result"]) if row["result"] else None,
        )


def queued_work(
    dialect: str,
    work_id: str,
    key: tuple[str, str, str, int, int],
    *,
    queue: str,
    driver: str,
    spec: dict[str, Any],
    pool: tuple[str, int] = ("default_pool", 1),
) -> Statement:
    """The row of a try about to be sent: ``queued``, nobody's yet (written again after a
    lost commit, it stays as it was); ``pool``: the pool and the slots it holds."""
    dag_id, run_id, task_id, map_index, try_number = key
    sql = (
        "INSERT INTO try_work (id, dag_id, run_id, task_id, map_index, try_number, queue, "
        "driver, pool, pool_slots, spec, state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
        f"?, ?, ?, 'queued', {_NOW[dialect]}) ON CONFLICT (id) DO NOTHING"
    )
    params = (work_id, dag_id, run_id, task_id, map_index, try_number, queue, driver, *pool)
    return Statement("try_work", sql, (*params, json.dumps(spec)))


async def adopt_work(backend: Backend, work_id: str, driver: str) -> None:
    """The try is now waited for by the daemon of ``driver`` (its pool slots counted by
    it, no longer as a gone daemon's)."""
    await backend.change(
        _sql(backend, "UPDATE try_work SET driver = ? WHERE id = ?"), (driver, work_id)
    )


_COLUMNS = "id, state, worker, created_at, heartbeat_at, sent, logged, result, {now} AS now"


async def watch_work(backend: Backend, ids: Sequence[str]) -> list[Work]:
    """These tries' rows, as they stand."""
    if not ids:
        return []
    param: Any
    if backend.dialect == "postgresql":
        where, param = "id = ANY(?::text[])", list(ids)
    else:
        where, param = "id IN (SELECT value FROM json_each(?))", json.dumps(list(ids))
    rows = await backend.fetch(
        _sql(backend, f"SELECT {_COLUMNS} FROM try_work WHERE {where}"), [param]
    )
    return [Work.of(row) for row in rows]


async def work_of(backend: Backend, key: tuple[str, str, str, int, int]) -> Work | None:
    """The latest row of a task instance's try, if it was sent to a worker."""
    rows = await backend.fetch(
        _sql(
            backend,
            f"SELECT {_COLUMNS} FROM try_work WHERE dag_id = ? AND run_id = ? AND task_id = ? "
            "AND map_index = ? AND try_number = ? ORDER BY created_at DESC LIMIT 1",
        ),
        key,
    )
    return Work.of(rows[0]) if rows else None


async def work_chunks(backend: Backend, work_id: str, after: int) -> list[tuple[int, str]]:
    """The try's output chunks numbered above ``after``, in order."""
    rows = await backend.fetch(
        "SELECT seq, data FROM try_log WHERE work_id = ? AND seq > ? ORDER BY seq",
        (work_id, after),
    )
    return [(int(r["seq"]), r["data"]) for r in rows]


async def lose_work(backend: Backend, work_id: str, state: str, after: float, reason: str) -> bool:
    """Rule 4: the try is ``lost`` if it is still ``state`` and silent (running: since its
    last heartbeat; queued: since it was written) for more than ``after`` seconds."""
    since = "heartbeat_at" if state == "running" else "created_at"
    result = json.dumps({"kind": "lost", "error": reason})
    changed = await backend.change(
        _sql(
            backend,
            "UPDATE try_work SET state = 'lost', result = ?, finished_at = {now} "
            f"WHERE id = ? AND state = ? AND {since} < {{now}} - ?",
        ),
        (result, work_id, state, after),
    )
    return changed == 1


async def cancel_work(backend: Backend, work_id: str, reason: str) -> bool:
    """Stop the try: a queued one ends here (its claim will fail); a running one is asked
    to stop, which its worker sees at its next heartbeat. True if it was still queued."""
    result = json.dumps({"kind": "cancelled", "error": reason})
    ended = await backend.change(
        _sql(
            backend,
            "UPDATE try_work SET state = 'cancelled', result = ?, finished_at = {now} "
            "WHERE id = ? AND state = 'queued'",
        ),
        (result, work_id),
    )
    if ended:
        return True
    await backend.change(
        "UPDATE try_work SET cancel = 1 WHERE id = ? AND state = 'running'", (work_id,)
    )
    return False


async def sent_again(backend: Backend, work_id: str) -> None:
    """Count a message sent again for a try still queued."""
    await backend.change(
        "UPDATE try_work SET sent = sent + 1 WHERE id = ? AND state = 'queued'", (work_id,)
    )


# -- the worker's side ---------------------------------------------------------------------


async def claim_work(
    backend: Backend, work_id: str, worker: str, pid: int
) -> dict[str, Any] | None:
    """Rule 1: the try's spec if this worker claimed it; None if it was taken or ended."""
    changed = await backend.change(
        _sql(
            backend,
            "UPDATE try_work SET state = 'running', worker = ?, pid = ?, claimed_at = {now}, "
            "heartbeat_at = {now} WHERE id = ? AND state = 'queued' AND cancel = 0",
        ),
        (worker, pid, work_id),
    )
    if changed != 1:
        return None
    rows = await backend.fetch("SELECT spec FROM try_work WHERE id = ?", (work_id,))
    spec: dict[str, Any] = json.loads(rows[0]["spec"])
    return spec


async def heartbeat_work(backend: Backend, work_id: str, worker: str) -> str | None:
    """Rule 2: None while the try is still this worker's to run; else why it must stop."""
    changed = await backend.change(
        _sql(
            backend,
            "UPDATE try_work SET heartbeat_at = {now} "
            "WHERE id = ? AND state = 'running' AND worker = ? AND cancel = 0",
        ),
        (work_id, worker),
    )
    if changed == 1:
        return None
    rows = await backend.fetch(
        "SELECT state, worker, cancel FROM try_work WHERE id = ?", (work_id,)
    )
    if rows and rows[0]["state"] == "running" and rows[0]["worker"] == worker:
        return "cancelled"
    return "lost" if rows else "gone"


async def work_log(backend: Backend, work_id: str, first: int, chunks: Sequence[str]) -> None:
    """Rule 5: chunks numbered from ``first``, then the count."""
    if not chunks:
        return
    values = ", ".join(["(?, ?, ?)"] * len(chunks))
    params: list[Any] = []
    for seq, data in enumerate(chunks, start=first):
        params += [work_id, seq, data]
    await backend.change(
        f"INSERT INTO try_log (work_id, seq, data) VALUES {values} ON CONFLICT DO NOTHING",
        params,
    )
    await backend.change(
        "UPDATE try_work SET logged = ? WHERE id = ? AND logged < ?",
        (first + len(chunks) - 1, work_id, first + len(chunks) - 1),
    )


async def finish_work(
    backend: Backend, work_id: str, worker: str, state: str, result: dict[str, Any]
) -> bool:
    """Rule 3: the outcome, if the try is still this worker's; False if it is not."""
    changed = await backend.change(
        _sql(
            backend,
            "UPDATE try_work SET state = ?, result = ?, finished_at = {now} "
            "WHERE id = ? AND state = 'running' AND worker = ?",
        ),
        (state, json.dumps(result), work_id, worker),
    )
    return changed == 1
