"""Read a benchmark's store from outside the process under test: SQLite or PostgreSQL.

Both stores keep instants as ISO text, so one SQL text serves both when its
values are written inline (the benchmarks only inline values they made).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg
from anyio.from_thread import start_blocking_portal

PG_URL = os.environ.get("ORCHESTRATOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


class Rows:
    """``rows(sql)`` on one open connection to the store at ``url`` (a path for SQLite)."""

    def __init__(self, url: str | Path) -> None:
        self._stack = contextlib.ExitStack()
        self._sqlite: sqlite3.Connection | None = None
        self._pg: asyncpg.Connection | None = None
        if isinstance(url, Path):
            self._sqlite = self._stack.enter_context(contextlib.closing(sqlite3.connect(url)))
        else:
            self._portal = self._stack.enter_context(start_blocking_portal())
            self._pg = self._portal.call(asyncpg.connect, url)
            self._stack.callback(self._portal.call, self._pg.close)

    def __call__(self, sql: str) -> list[tuple[Any, ...]]:
        if self._sqlite is not None:
            return self._sqlite.execute(sql).fetchall()
        assert self._pg is not None
        return [tuple(r) for r in self._portal.call(self._pg.fetch, sql)]

    def close(self) -> None:
        self._stack.close()


def _pg_execute(sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    anyio.run(run)


@contextlib.contextmanager
def pg_schema(prefix: str) -> Iterator[str]:
    """A fresh schema on the benchmark's PostgreSQL, dropped after; yields its store URL."""
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _pg_execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?search_path={schema}"
    finally:
        _pg_execute(f"DROP SCHEMA {schema} CASCADE")
