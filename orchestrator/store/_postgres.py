"""PostgreSQL through asyncpg: a dedicated writer connection and a small read pool.

SQL arrives with ``?`` placeholders and is rewritten to ``$n`` once per text.
Migrations hold an advisory lock, so several daemons can start at once.
The daemon's claim on a store is a session advisory lock on the writer
connection, keyed by the schema; the server drops it when that session ends.

A session left idle inside a transaction for 5 s (its process frozen mid-write) is
ended by the server. A lost connection (a server restart, a failover, a terminated
session, that one) is
``StoreUnavailable``: the writer connection is made again before the next batch
(taking the daemon's claim again), and reads are tried again for a few seconds
on the pool, which replaces its dead connections itself.
"""

from __future__ import annotations

import functools
import os
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import asyncpg

from orchestrator.errors import StoreError, StoreUnavailable
from orchestrator.store._backend import ClaimLost, Group, collapse_upserts, upsert_shape
from orchestrator.store._members import FENCE, LeaseLost, fence
from orchestrator.store._migrations import Migration
from orchestrator.store._pgerrors import CLIENT_ERRORS as _CLIENT_ERRORS
from orchestrator.store._pgerrors import LOST as _LOST

__all__ = ["PostgresBackend"]

_MIGRATION_LOCK = 0x6F7263  # an arbitrary, fixed advisory lock id
_READ_RETRY_FOR = 10.0  # seconds a read keeps trying a lost connection
_CLOSE_WITHIN = 5.0  # seconds for a polite close before connections are dropped


@functools.lru_cache(maxsize=512)
def _numbered(sql: str) -> str:
    counter = iter(range(1, 10_000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


class PostgresBackend:
    dialect = "postgresql"

    def __init__(self, url: str, writer: Any, pool: Any) -> None:
        self._url = url
        self._writer = writer
        self._pool = pool
        self._types: dict[tuple[str, str], str] = {}
        self._holder: str | None = None  # the daemon's claim, taken again on reconnect
        self._claimed = False  # the holder's claim is held by the current writer session
        self.fence_epoch: int | None = None  # every write checks this lease (_members)

    @classmethod
    async def open(cls, url: str) -> PostgresBackend:
        try:
            writer = await asyncpg.connect(url, server_settings=_SESSION)
            pool = await asyncpg.create_pool(url, min_size=1, max_size=4, server_settings=_SESSION)
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {_safe(url)}: {exc}") from exc
        return cls(url, writer, pool)

    async def _connected_writer(self) -> Any:
        """The writer connection, made again if it was lost (and the claim with it)."""
        if self._writer.is_closed():
            self._claimed = False
            try:
                self._writer = await asyncpg.connect(self._url, server_settings=_SESSION)
            except (*_LOST, asyncpg.PostgresError) as exc:
                raise StoreUnavailable(
                    f"PostgreSQL unreachable at {_safe(self._url)}: {exc}"
                ) from exc
        if self._holder is not None and not self._claimed and self.fence_epoch is None:
            other = await self.lock_for_daemon(self._holder)
            if other == self._holder:
                # Our own old session, which the server has not noticed is gone yet.
                raise StoreUnavailable("waiting for the server to end this daemon's old session")
            if other is not None:
                raise ClaimLost(f"the store was claimed by {other} while the connection was down")
        return self._writer

    async def execute_batch(self, groups: Sequence[Group]) -> None:
        writer = await self._connected_writer()
        try:
            single = await self._as_one_statement(groups)
            if single is not None:
                # One statement is atomic on its own: no BEGIN/COMMIT round trips.
                if self.fence_epoch is None:
                    await self._writer.execute(single[0], *single[1])
                elif not await self._writer.fetchval(single[0], *single[1]):
                    raise LeaseLost.of(self.fence_epoch)
                return
            async with self._writer.transaction():
                if self.fence_epoch is not None:
                    await fence(self._writer, self.fence_epoch)
                for group in groups:
                    if len(group.rows) == 1:
                        await self._writer.execute(_numbered(group.sql), *group.rows[0])
                    else:
                        await self._writer.executemany(_numbered(group.sql), group.rows)
        except (asyncpg.PostgresError, *_CLIENT_ERRORS) as exc:
            raise _writer_error(writer, "write", exc) from exc

    async def _as_one_statement(self, groups: Sequence[Group]) -> tuple[str, list[Any]] | None:
        """The batch as one statement, when every group is an upsert of its own table.

        Each group becomes ``INSERT ... SELECT * FROM unnest(<one array per column>)``,
        a data-modifying CTE of one statement: one round trip for the whole batch,
        one plan per table instead of one per row. A key may appear only once in such
        an INSERT, hence collapse_upserts, which keeps the last row of each key.
        """
        shapes = [upsert_shape(group.sql) for group in groups]
        tables = [group.table for group in groups]
        if len(set(tables)) != len(tables) or any(shape is None for shape in shapes):
            return None
        parts: list[str] = []
        args: list[Any] = []
        fenced = self.fence_epoch is not None
        if fenced:  # the lease's check, in the same statement; the count says it held
            args.append(self.fence_epoch)
        gate = " WHERE EXISTS (SELECT 1 FROM f)" if fenced else ""
        for group, shape in zip(groups, shapes, strict=True):
            assert shape is not None
            rows = collapse_upserts(shape, group.rows)
            arrays = []
            for index, name in enumerate(shape.columns):
                arrays.append(f"${len(args) + 1}::{await self._type(group.table, name)}[]")
                args.append([row[index] for row in rows])
            parts.append(
                f"{shape.insert} SELECT * FROM unnest({', '.join(arrays)}){gate}{shape.tail}"
            )
        if fenced:
            ctes = ", ".join(f"w{i} AS ({part})" for i, part in enumerate(parts))
            fence_cte = f"f AS ({FENCE})"
            return f"WITH {fence_cte}, {ctes} SELECT (SELECT COUNT(*) FROM f)", args
        if len(parts) == 1:
            return parts[0], args
        ctes = ", ".join(f"w{i} AS ({part})" for i, part in enumerate(parts))
        return f"WITH {ctes} SELECT 1", args

    async def _type(self, table: str, column: str) -> str:
        if not self._types:
            rows = await self._writer.fetch(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema()"
            )
            self._types = {(r["table_name"], r["column_name"]): r["data_type"] for r in rows}
        return self._types[(table, column)]

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        rows = await _retrying_read(lambda: self._pool.fetch(_numbered(sql), *params))
        return [dict(row) for row in rows]

    async def change(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                if self.fence_epoch is not None:
                    await fence(conn, self.fence_epoch)
                status = await conn.execute(_numbered(sql), *params)
        except (*_LOST, *_CLIENT_ERRORS) as exc:
            raise StoreUnavailable(f"PostgreSQL connection lost during a write: {exc}") from exc
        except asyncpg.PostgresError as exc:
            raise StoreError(f"PostgreSQL write failed: {exc}") from exc
        return int(status.rsplit(" ", 1)[-1])

    async def migrate(self, migrations: Sequence[Migration], applied_at: str) -> list[int]:
        applied = []
        try:
            async with self._writer.transaction():
                await self._writer.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                await self._writer.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations "
                    "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
                )
                done = {
                    r[0] for r in await self._writer.fetch("SELECT version FROM schema_migrations")
                }
                for migration in migrations:
                    if migration.version in done:
                        continue
                    await self._writer.execute(migration.sql)
                    await self._writer.execute(
                        "INSERT INTO schema_migrations VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        applied_at,
                    )
                    applied.append(migration.version)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StoreError(f"PostgreSQL migration failed: {exc}") from exc
        return applied

    async def lock_for_daemon(self, holder: str) -> str | None:
        try:
            key = await self._writer.fetchval(
                "SELECT hashtextextended('orchestrator.daemon:' || current_schema(), 0)"
            )
            await self._writer.execute("SELECT set_config('application_name', $1, false)", holder)
            if await self._writer.fetchval("SELECT pg_try_advisory_lock($1)", key):
                self._holder, self._claimed = holder, True
                return None
            other = await self._writer.fetchval(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                "AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid",
                (key >> 32) & 0xFFFFFFFF,
                key & 0xFFFFFFFF,
            )
        except (asyncpg.PostgresError, *_CLIENT_ERRORS) as exc:
            raise _writer_error(self._writer, "lock", exc) from exc
        return other or "another session"

    async def close(self) -> None:
        # A polite close waits for the server; a lost one must not hold up the exit.
        with anyio.move_on_after(_CLOSE_WITHIN) as scope:
            await self._pool.close()
            await self._writer.close()
        if scope.cancelled_caught:
            self._pool.terminate()
            self._writer.terminate()


# A transaction left open by a process frozen mid-way (stopped, its machine suspended) is
# ended by the server after this long idle in it, so that its locks (the fence of its
# lease, which a takeover waits for) hold the other daemons up no longer.
_SESSION = {
    "application_name": f"orchestrator pid {os.getpid()} on {socket.gethostname()}",
    "idle_in_transaction_session_timeout": "5000",
}


def _writer_error(writer: Any, doing: str, exc: BaseException) -> StoreError:
    """StoreError for an error of the SQL; else the session is dropped: StoreUnavailable."""
    if isinstance(exc, (*_LOST, *_CLIENT_ERRORS)) or writer.is_closed():
        writer.terminate()  # a half-broken session is never used again
        return StoreUnavailable(f"PostgreSQL connection lost during a {doing}: {exc}")
    return StoreError(f"PostgreSQL {doing} failed: {exc}")


async def _retrying_read(read: Callable[[], Awaitable[Any]]) -> Any:
    """``read()``, tried again with backoff for a while when the connection is lost."""
    delay, waited = 0.05, 0.0
    while True:
        try:
            return await read()
        except (*_LOST, *_CLIENT_ERRORS) as exc:  # the pool replaces a dead connection
            if waited >= _READ_RETRY_FOR:
                raise StoreUnavailable(f"PostgreSQL unreachable: {exc}") from exc
        except asyncpg.PostgresError as exc:
            raise StoreError(f"PostgreSQL query failed: {exc}") from exc
        await anyio.sleep(delay)
        waited += delay
        delay = min(delay * 2, 1.0)


def _safe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
