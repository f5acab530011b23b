"""PostgreSQL through asyncpg: a dedicated writer connection and a small read pool.

SQL arrives with ``?`` placeholders and is rewritten to ``$n`` once per text.
Migrations hold an advisory lock, so several daemons can start at once.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import asyncpg

from orchestrator.errors import StoreError
from orchestrator.store._backend import Group
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
            async with self._writer.transaction():
                for group in groups:
                    sql = _numbered(group.sql)
                    if len(group.rows) == 1:
                        await self._writer.execute(sql, *group.rows[0])
                    else:
                        await self._writer.executemany(sql, group.rows)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StoreError(f"PostgreSQL write failed: {exc}") from exc

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

    async def close(self) -> None:
        await self._pool.close()
        await self._writer.close()


def _safe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
