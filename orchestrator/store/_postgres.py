"""PostgreSQL through asyncpg: a dedicated writer connection and a small read pool.

SQL arrives with ``?`` placeholders and is rewritten to ``$n`` once per text.
Migrations hold an advisory lock, so several daemons can start at once.
The daemon's claim on a store is a session advisory lock on the writer
connection, keyed by the schema; the server drops it when that session ends.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import asyncpg

from orchestrator.errors import StoreError
from orchestrator.store._backend import Group, collapse_upserts, upsert_shape
from orchestrator.store._migrations import Migration

__all__ = ["PostgresBackend"]

_MIGRATION_LOCK = 0x6F7263  # an arbitrary, fixed advisory lock id


@functools.lru_cache(maxsize=512)
def _numbered(sql: str) -> str:
    counter = iter(range(1, 10_000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


class PostgresBackend:
    dialect = "postgresql"

    def __init__(self, writer: Any, pool: Any) -> None:
        self._writer = writer
        self._pool = pool
        self._types: dict[tuple[str, str], str] = {}

    @classmethod
    async def open(cls, url: str) -> PostgresBackend:
        try:
            writer = await asyncpg.connect(url)
            pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {_safe(url)}: {exc}") from exc
        return cls(writer, pool)

    async def execute_batch(self, groups: Sequence[Group]) -> None:
        try:
            single = await self._as_one_statement(groups)
            if single is not None:
                # One statement is atomic on its own: no BEGIN/COMMIT round trips.
                await self._writer.execute(single[0], *single[1])
                return
            async with self._writer.transaction():
                for group in groups:
                    if len(group.rows) == 1:
                        await self._writer.execute(_numbered(group.sql), *group.rows[0])
                    else:
                        await self._writer.executemany(_numbered(group.sql), group.rows)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StoreError(f"PostgreSQL write failed: {exc}") from exc

    async def _as_one_statement(
        self, groups: Sequence[Group]
    ) -> tuple[str, list[list[Any]]] | None:
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
        args: list[list[Any]] = []
        for group, shape in zip(groups, shapes, strict=True):
            assert shape is not None
            rows = collapse_upserts(shape, group.rows)
            arrays = []
            for index, name in enumerate(shape.columns):
                arrays.append(f"${len(args) + 1}::{await self._type(group.table, name)}[]")
                args.append([row[index] for row in rows])
            parts.append(f"{shape.insert} SELECT * FROM unnest({', '.join(arrays)}){shape.tail}")
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
        try:
            rows = await self._pool.fetch(_numbered(sql), *params)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StoreError(f"PostgreSQL query failed: {exc}") from exc
        return [dict(row) for row in rows]

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
                return None
            other = await self._writer.fetchval(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                "AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid",
                (key >> 32) & 0xFFFFFFFF,
                key & 0xFFFFFFFF,
            )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StoreError(f"PostgreSQL lock failed: {exc}") from exc
        return other or "another session"

    async def close(self) -> None:
        await self._pool.close()
        await self._writer.close()


def _safe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
