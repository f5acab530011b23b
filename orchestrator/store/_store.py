"""The metadata store: the one interface over both backends.

Rules:
1. Every write is an upsert or insert-if-absent on a natural key, so repeating it
   is harmless: (dag_id, run_id), (dag_id, run_id, task_id[, try_number|key]).
2. Writes go through the group-commit writer; reads go straight to the backend and
   see only committed data.
3. Times are stored as ISO 8601 UTC text, JSON as text.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio

from orchestrator._aio import unwrap_single
from orchestrator._clock import Clock, SystemClock, iso, parse_iso
from orchestrator.core._records import (
    Record,
    RunRecord,
    TaskInstanceRecord,
    TryRecord,
    instance_key,
    split_key,
)
from orchestrator.core._state import TaskState
from orchestrator.errors import Conflict, NotFound, StoreError
from orchestrator.store._alerts import AlertRows
from orchestrator.store._backend import Backend, Statement
from orchestrator.store._datasets import DatasetRows
from orchestrator.store._events import EventRows
from orchestrator.store._migrations import MIGRATIONS
from orchestrator.store._rows import (
    RUN_COLUMNS,
    TI_COLUMNS,
    ConnectionRecord,
    conn_from_row,
    notice_statement,
    run_from_row,
    run_statement,
    statements,
    ti_from_row,
    ti_statement,
    try_statement,
    xcoms_cleared,
)
from orchestrator.store._views import ViewRows
from orchestrator.store._writer import Ack, GroupCommitWriter

__all__ = ["ConnectionRecord", "Store", "open_store"]


class Store(DatasetRows, EventRows, AlertRows, ViewRows):
    """Runs, task instances and their tries, XComs, variables, connections and pools."""

    def __init__(self, backend: Backend, writer: GroupCommitWriter, clock: Clock) -> None:
        self.backend = backend
        self.writer = writer
        self.clock = clock
        self.owner: int | None = None  # this daemon's epoch, when several share the store

    @property
    def dialect(self) -> str:
        return self.backend.dialect

    async def migrate(self) -> list[int]:
        return await self.backend.migrate(MIGRATIONS, iso(self.clock.now()) or "")

    async def lock_for_daemon(self, holder: str) -> None:
        """Claim the store for this daemon while it is open; before any write.

        One daemon per store: a second one would take the first one's running tries
        for lost ones and run every task twice.
        """
        other = await self.backend.lock_for_daemon(holder)
        if other is not None:
            raise StoreError(
                f"another daemon is running on this store ({other}); "
                "stop it first, or give this one a store of its own with --db"
            )

    # -- statement builders: compose them into one atomic unit ------------------------

    ti_statement = staticmethod(ti_statement)
    try_statement = staticmethod(try_statement)
    run_statement = staticmethod(run_statement)

    def statements(self, records: Iterable[Record]) -> list[Statement]:
        """The statements that persist ``records``, in their order."""
        return statements(records, self.clock.now(), self.owner)

    # -- writes --------------------------------------------------------------------------

    async def write(self, statements: Sequence[Statement]) -> None:
        await self.writer.submit(statements)

    def write_nowait(self, statements: Sequence[Statement]) -> Ack:
        return self.writer.submit_nowait(statements)

    async def notify_daemons(self, kind: str) -> None:
        """Wake the daemons sharing a PostgreSQL store to read it now (store._members,
        rule 6): what a CLI process wrote for them. Nothing to do on SQLite."""
        if self.dialect == "postgresql":
            await self.write([notice_statement(f"{kind}:cli")])

    async def insert_runs(self, runs: Sequence[RunRecord], also: Sequence[Statement] = ()) -> None:
        """Insert each run that is absent, on both its keys, as one unit (see
        ``run_statement``), with ``also`` (what the runs consume) in the same unit."""
        await self.write([*(self.run_statement(run, insert_only=True) for run in runs), *also])

    async def clear_task_instances(self, run: RunRecord, tis: Sequence[TaskInstanceRecord]) -> None:
        """Reset ``tis`` to run again (keeping their try history) and requeue the run."""
        statements = [self.run_statement(run)]
        for ti in tis:
            statements.append(self.ti_statement(ti))
            statements.append(xcoms_cleared(ti.dag_id, ti.run_id, ti.task_id, ti.map_index))
        await self.write(statements)

    async def upsert_dags(self, rows: Sequence[tuple[str, str, str, list[str], bool]]) -> None:
        """Record (dag_id, file, schedule, tags, paused_on_creation); keeps is_paused."""
        now = iso(self.clock.now())
        await self.write(
            [
                Statement(
                    "dag",
                    "INSERT INTO dag (dag_id, fileloc, is_paused, schedule, tags, last_parsed) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (dag_id) DO UPDATE SET "
                    "fileloc = excluded.fileloc, schedule = excluded.schedule, "
                    "tags = excluded.tags, last_parsed = excluded.last_parsed",
                    (dag_id, file, int(paused), schedule, json.dumps(tags), now),
                )
                for dag_id, file, schedule, tags, paused in rows
            ]
        )

    async def set_paused(self, dag_id: str, paused: bool) -> None:
        await self.write(
            [
                Statement(
                    "dag",
                    "INSERT INTO dag (dag_id, is_paused) VALUES (?, ?) "
                    "ON CONFLICT (dag_id) DO UPDATE SET is_paused = excluded.is_paused",
                    (dag_id, int(paused)),
                )
            ]
        )

    async def set_variable(self, key: str, value: str, *, encrypted: bool = False) -> None:
        await self.write(
            [
                Statement(
                    "variable",
                    "INSERT INTO variable (key, val, is_encrypted) VALUES (?, ?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET val = excluded.val, "
                    "is_encrypted = excluded.is_encrypted",
                    (key, value, int(encrypted)),
                )
            ]
        )

    async def delete_variable(self, key: str) -> bool:
        if await self.get_variable(key) is None:
            return False
        await self.write([Statement("variable", "DELETE FROM variable WHERE key = ?", (key,))])
        return True

    async def set_connection(self, conn: ConnectionRecord) -> None:
        await self.write(
            [
                Statement(
                    "connection",
                    "INSERT INTO connection (conn_id, conn_type, host, login, password, "
                    "schema_name, port, extra, description) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (conn_id) DO UPDATE SET conn_type = excluded.conn_type, "
                    "host = excluded.host, login = excluded.login, password = excluded.password, "
                    "schema_name = excluded.schema_name, port = excluded.port, "
                    "extra = excluded.extra, description = excluded.description",
                    (
                        conn.conn_id,
                        conn.conn_type,
                        conn.host,
                        conn.login,
                        conn.password,
                        conn.schema,
                        conn.port,
                        conn.extra,
                        conn.description,
                    ),
                )
            ]
        )

    async def delete_connection(self, conn_id: str) -> bool:
        if await self.get_connection(conn_id) is None:
            return False
        await self.write(
            [Statement("connection", "DELETE FROM connection WHERE conn_id = ?", (conn_id,))]
        )
        return True

    async def set_pool(self, name: str, slots: int, description: str = "") -> None:
        await self.write(
            [
                Statement(
                    "pool",
                    "INSERT INTO pool (name, slots, description) VALUES (?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET slots = excluded.slots, "
                    "description = excluded.description",
                    (name, slots, description),
                )
            ]
        )

    async def delete_pool(self, name: str) -> bool:
        if name == "default_pool":
            raise StoreError("default_pool cannot be deleted")
        if name not in await self.get_pools():
            return False
        await self.write([Statement("pool", "DELETE FROM pool WHERE name = ?", (name,))])
        return True

    # -- reads ---------------------------------------------------------------------------

    async def find_run(self, dag_id: str, run_id: str) -> RunRecord | None:
        rows = await self.backend.fetch(
            f"SELECT {RUN_COLUMNS} FROM dag_run WHERE dag_id = ? AND run_id = ?",
            (dag_id, run_id),
        )
        return run_from_row(rows[0]) if rows else None

    async def get_run(self, dag_id: str, run_id: str) -> RunRecord:
        run = await self.find_run(dag_id, run_id)
        if run is None:
            raise NotFound(f"DAG {dag_id!r} has no run {run_id!r}")
        return run

    async def resolve_run(self, run_id: str, dag_id: str | None, *, hint: str) -> RunRecord:
        """The run ``run_id`` of ``dag_id``, or of whichever DAG has one by that id.

        NotFound when there is none; Conflict, ending with ``hint`` (how to name the
        DAG), when several DAGs use the id.
        """
        if dag_id is not None:
            return await self.get_run(dag_id, run_id)
        runs = await self.runs_with_id(run_id)
        if not runs:
            raise NotFound(f"no run with id {run_id!r}")
        if len(runs) > 1:
            dags = ", ".join(r.dag_id for r in runs)
            raise Conflict(f"run id {run_id!r} exists in several DAGs ({dags}); {hint}")
        return runs[0]

    async def runs_with_id(self, run_id: str) -> list[RunRecord]:
        rows = await self.backend.fetch(
            f"SELECT {RUN_COLUMNS} FROM dag_run WHERE run_id = ? ORDER BY dag_id", (run_id,)
        )
        return [run_from_row(row) for row in rows]

    async def list_runs(
        self, dag_id: str | None = None, state: str | None = None, limit: int = 1000
    ) -> list[RunRecord]:
        where, params = [], []
        if dag_id is not None:
            where.append("dag_id = ?")
            params.append(dag_id)
        if state is not None:
            where.append("state = ?")
            params.append(state)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = await self.backend.fetch(
            f"SELECT {RUN_COLUMNS} FROM dag_run {clause}"
            f"ORDER BY queued_at DESC, dag_id, run_id LIMIT {int(limit)}",
            params,
        )
        return [run_from_row(row) for row in rows]

    async def taken_runs(self, runs: Sequence[RunRecord]) -> set[tuple[str, str]]:
        """The (dag_id, run_id) of each of ``runs`` whose run id or trigger key is stored."""
        by_id = {(r.dag_id, r.run_id) for r in runs}
        by_key = {(r.dag_id, r.trigger_key): (r.dag_id, r.run_id) for r in runs if r.trigger_key}
        taken: set[tuple[str, str]] = set()
        for column, wanted in (("run_id", by_id), ("trigger_key", set(by_key))):
            values = sorted({value for _, value in wanted})
            for i in range(0, len(values), 500):
                chunk = values[i : i + 500]
                marks = ", ".join("?" * len(chunk))
                rows = await self.backend.fetch(
                    f"SELECT dag_id, {column} AS v FROM dag_run WHERE {column} IN ({marks})",
                    chunk,
                )
                found = {(r["dag_id"], r["v"]) for r in rows} & wanted
                taken |= found if column == "run_id" else {by_key[k] for k in found}
        return taken

    async def unfinished_runs(self) -> list[RunRecord]:
        """Queued and running runs daemons drive (no CLI driver), oldest first."""
        rows = await self.backend.fetch(
            f"SELECT {RUN_COLUMNS} FROM dag_run WHERE state IN ('queued', 'running') "
            "AND (driver IS NULL OR driver LIKE 'daemon:%') ORDER BY queued_at, dag_id, run_id"
        )
        return [run_from_row(row) for row in rows]

    async def latest_scheduled(self) -> dict[str, RunRecord]:
        """Each DAG's scheduled run with the latest data interval (the engine's ``last``)."""
        rows = await self.backend.fetch(
            f"SELECT {RUN_COLUMNS} FROM dag_run r WHERE run_type = 'scheduled' AND "
            "data_interval_end = (SELECT MAX(data_interval_end) FROM dag_run x "
            "WHERE x.dag_id = r.dag_id AND x.run_type = 'scheduled')"
        )
        return {row["dag_id"]: run_from_row(row) for row in rows}

    async def count_states(self) -> tuple[dict[str, int], dict[str, int]]:
        """Runs by state and task instances by state, for metrics."""
        runs = await self.backend.fetch("SELECT state, COUNT(*) AS n FROM dag_run GROUP BY state")
        tis = await self.backend.fetch(
            "SELECT state, COUNT(*) AS n FROM task_instance GROUP BY state"
        )
        return {r["state"]: r["n"] for r in runs}, {r["state"]: r["n"] for r in tis}

    async def task_instances(self, dag_id: str, run_id: str) -> list[TaskInstanceRecord]:
        rows = await self.backend.fetch(
            f"SELECT {TI_COLUMNS} FROM task_instance WHERE dag_id = ? AND run_id = ? "
            "ORDER BY start_date, task_id, map_index",
            (dag_id, run_id),
        )
        return [ti_from_row(row) for row in rows]

    async def tries(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1
    ) -> list[TryRecord]:
        rows = await self.backend.fetch(
            "SELECT dag_id, run_id, task_id, try_number, state, start_date, end_date, duration, "
            "hostname, log_path, error, map_index, rendered FROM task_try WHERE dag_id = ? "
            "AND run_id = ? "
            "AND task_id = ? AND map_index = ? ORDER BY try_number",
            (dag_id, run_id, task_id, map_index),
        )
        return [
            TryRecord(
                dag_id=r["dag_id"],
                run_id=r["run_id"],
                task_id=r["task_id"],
                try_number=r["try_number"],
                state=TaskState(r["state"]),
                start_date=parse_iso(r["start_date"]),
                end_date=parse_iso(r["end_date"]),
                duration=r["duration"],
                hostname=r["hostname"],
                log_path=r["log_path"],
                error=r["error"],
                map_index=r["map_index"],
                rendered=r["rendered"],
            )
            for r in rows
        ]

    async def xcoms(self, dag_id: str, run_id: str) -> dict[tuple[str, str], str]:
        """Every XCom of a run as ``{(instance key, key): value_json}`` (``instance_key``)."""
        rows = await self.backend.fetch(
            "SELECT task_id, map_index, key, value FROM xcom WHERE dag_id = ? AND run_id = ?",
            (dag_id, run_id),
        )
        return {(instance_key(r["task_id"], r["map_index"]), r["key"]): r["value"] for r in rows}

    async def get_variable(self, key: str) -> tuple[str, bool] | None:
        rows = await self.backend.fetch(
            "SELECT val, is_encrypted FROM variable WHERE key = ?", (key,)
        )
        return (rows[0]["val"], bool(rows[0]["is_encrypted"])) if rows else None

    async def list_variables(self) -> list[tuple[str, str, bool]]:
        rows = await self.backend.fetch("SELECT key, val, is_encrypted FROM variable ORDER BY key")
        return [(r["key"], r["val"], bool(r["is_encrypted"])) for r in rows]

    async def get_connection(self, conn_id: str) -> ConnectionRecord | None:
        rows = await self.backend.fetch(
            "SELECT conn_id, conn_type, host, login, password, schema_name, port, extra, "
            "description FROM connection WHERE conn_id = ?",
            (conn_id,),
        )
        return conn_from_row(rows[0]) if rows else None

    async def list_connections(self) -> list[ConnectionRecord]:
        rows = await self.backend.fetch(
            "SELECT conn_id, conn_type, host, login, password, schema_name, port, extra, "
            "description FROM connection ORDER BY conn_id"
        )
        return [conn_from_row(r) for r in rows]

    async def sensor_wait(self, dag_id: str, run_id: str, key: str) -> str | None:
        """A deferred sensor's stored wait (``WaitState`` JSON) for the instance ``key``."""
        task_id, map_index = split_key(key)
        rows = await self.backend.fetch(
            "SELECT state FROM sensor_wait WHERE dag_id = ? AND run_id = ? AND task_id = ? "
            "AND map_index = ?",
            (dag_id, run_id, task_id, map_index),
        )
        return str(rows[0]["state"]) if rows else None

    async def get_pools(self) -> dict[str, int]:
        rows = await self.backend.fetch("SELECT name, slots FROM pool ORDER BY name")
        return {r["name"]: r["slots"] for r in rows}

    async def dag_rows(self) -> dict[str, dict[str, Any]]:
        rows = await self.backend.fetch(
            "SELECT dag_id, fileloc, is_paused, schedule, tags FROM dag ORDER BY dag_id"
        )
        return {r["dag_id"]: r for r in rows}


async def _open_backend(url: str) -> Backend:
    if url.startswith(("postgresql://", "postgres://")):
        from orchestrator.store._postgres import PostgresBackend

        return await PostgresBackend.open(url)
    if url.startswith("sqlite:///"):
        from pathlib import Path

        from orchestrator.store._sqlite import SqliteBackend

        return await SqliteBackend.open(Path(url.removeprefix("sqlite:///")))
    raise StoreError(
        f"unsupported database URL {url.split('://')[0]}://...: "
        "use sqlite:///PATH or postgresql://user@host:port/db"
    )


@asynccontextmanager
async def open_store(
    url: str, *, clock: Clock | None = None, migrate: bool = True
) -> AsyncIterator[Store]:
    """Open the store at ``url``, migrated; its writer runs until the block ends."""
    backend = await _open_backend(url)
    try:
        store = Store(backend, GroupCommitWriter(backend), clock or SystemClock())
        if migrate:
            await store.migrate()
        with unwrap_single():
            async with anyio.create_task_group() as tg:
                tg.start_soon(store.writer.run)
                try:
                    yield store
                finally:
                    store.writer.close()
    finally:
        with anyio.CancelScope(shield=True):
            await backend.close()
