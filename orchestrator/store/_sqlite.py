"""SQLite through aiosqlite: one writer connection, one reader connection, WAL.

``synchronous=FULL`` makes each commit durable across power loss, not only across
a crash of the process; group commit keeps that affordable.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from orchestrator.errors import StoreError
from orchestrator.store._backend import Group
from orchestrator.store._migrations import Migration

__all__ = ["SqliteBackend"]

_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=10000",
)


class SqliteBackend:
    dialect = "sqlite"

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader

    @classmethod
    async def open(cls, path: Path) -> SqliteBackend:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            writer = await aiosqlite.connect(path, isolation_level=None)
            for pragma in _PRAGMAS:
                await writer.execute(pragma)
            reader = await aiosqlite.connect(path, isolation_level=None)
            await reader.execute("PRAGMA busy_timeout=10000")
            reader.row_factory = aiosqlite.Row
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {path}: {exc}") from exc
        return cls(writer, reader)

    async def execute_batch(self, groups: Sequence[Group]) -> None:
        # The whole transaction runs as one call on aiosqlite's connection thread.
        # Each await of a separate execute() would wait for a turn of the busy event
        # loop, and a batch of four statements would then take four turns; done in
        # one call it takes one. aiosqlite has no public way to run a function on its
        # thread, so this uses the private ``_execute`` that all its methods use.
        writer = self._writer

        def transaction() -> None:
            conn = writer._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                for group in groups:
                    for sql, params in _statements(group):
                        conn.execute(sql, params)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        try:
            await writer._execute(transaction)  # type: ignore[no-untyped-call]
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite write failed: {exc}") from exc

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        try:
            async with self._reader.execute(sql, tuple(params)) as cursor:
                rows = await cursor.fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite query failed: {exc}") from exc
        return [dict(row) for row in rows]

    async def migrate(self, migrations: Sequence[Migration], applied_at: str) -> list[int]:
        try:
            await self._writer.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                async with self._writer.execute("SELECT version FROM schema_migrations") as cur:
                    done = {row[0] for row in await cur.fetchall()}
                applied = []
                for migration in migrations:
                    if migration.version in done:
                        continue
                    for statement in _split(migration.sql):
                        await self._writer.execute(statement)
                    await self._writer.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                        (migration.version, migration.name, applied_at),
                    )
                    applied.append(migration.version)
                await self._writer.execute("COMMIT")
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite migration failed: {exc}") from exc
        return applied

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()


_VALUES = re.compile(r"^(INSERT INTO .+? VALUES )(\(\?(?:, \?)*\))(.*)$", re.DOTALL)
_MAX_PARAMS = 32766  # SQLite's default limit on bound parameters per statement


@functools.lru_cache(maxsize=256)
def _multi_row(sql: str, rows: int) -> str | None:
    """``sql`` with ``rows`` VALUES tuples, or None if it is not a one-row INSERT."""
    match = _VALUES.match(sql)
    if match is None:
        return None
    head, values, tail = match.groups()
    return head + ", ".join([values] * rows) + tail


def _statements(group: Group) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """The group as few statements: multi-row INSERTs where possible.

    One statement per chunk instead of one per row: each sqlite3 step releases the
    GIL and must win it back from the busy event loop thread, so fewer steps make a
    batch much faster. SQLite applies the rows of one INSERT in order, so an upsert
    of the same key twice in a chunk leaves the last row, as executemany would.
    """
    rows = group.rows
    width = len(rows[0])
    chunk = max(1, min(500, _MAX_PARAMS // max(width, 1)))
    if len(rows) == 1 or _multi_row(group.sql, 1) is None:
        for row in rows:
            yield group.sql, row
        return
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        sql = _multi_row(group.sql, len(part))
        assert sql is not None
        yield sql, tuple(value for row in part for value in row)


def _split(script: str) -> list[str]:
    return [part.strip() for part in script.split(";") if part.strip()]
