"""The store's reads for the web UI's views: each view's data in one query.

Rules (besides the store's):
1. One view, one query: the DAG list's recent runs and counts, a grid's runs with
   their task instances. Rows come back as plain dicts of the columns the view shows.
2. Runs are ordered newest first by logical date (the queue time when there is none),
   then by run id, the order a grid's columns read in (reversed).
"""

from __future__ import annotations

from typing import Any

from orchestrator.store._backend import Backend

__all__ = ["ViewRows"]

_RUN_ORDER = "COALESCE(logical_date, queued_at) DESC, run_id DESC"


class ViewRows:
    """The web UI's half of ``Store`` (a mixin: ``Store`` gives the backend)."""

    backend: Backend

    async def dag_summaries(
        self, per_dag: int, dag_id: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """Each DAG with runs (or only ``dag_id``): its ``per_dag`` newest runs (newest
        first), and how many of all its runs are running and failed."""
        rows = await self.backend.fetch(
            "SELECT dag_id, run_id, state, run_type, logical_date, start_date, end_date, "
            "running, failed FROM (SELECT dag_id, run_id, state, run_type, logical_date, "
            "queued_at, start_date, end_date, "
            f"ROW_NUMBER() OVER (PARTITION BY dag_id ORDER BY {_RUN_ORDER}) AS n, "
            "SUM(CASE WHEN state = 'running' THEN 1 ELSE 0 END) "
            "OVER (PARTITION BY dag_id) AS running, "
            "SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END) "
            "OVER (PARTITION BY dag_id) AS failed FROM dag_run"
            + (" WHERE dag_id = ?" if dag_id is not None else "")
            + ") x WHERE n <= ? ORDER BY dag_id, n",
            (*([dag_id] if dag_id is not None else []), int(per_dag)),
        )
        found: dict[str, dict[str, Any]] = {}
        for row in rows:
            summary = found.setdefault(
                row["dag_id"],
                {"running": int(row["running"]), "failed": int(row["failed"]), "runs": []},
            )
            summary["runs"].append(
                {
                    "run_id": row["run_id"],
                    "state": row["state"],
                    "run_type": row["run_type"],
                    "logical_date": row["logical_date"],
                    "start_date": row["start_date"],
                    "end_date": row["end_date"],
                }
            )
        return found

    async def grid_rows(self, dag_id: str, runs: int) -> list[dict[str, Any]]:
        """The DAG's ``runs`` newest runs, newest first, each with its task instances as
        one string, ``task_id:state:map_index`` separated by spaces (task ids hold no
        space or colon): a row per run, not per instance, for a grid of 100,000 cells."""
        join = "string_agg" if self.backend.dialect == "postgresql" else "group_concat"
        return await self.backend.fetch(
            "SELECT r.run_id, r.state AS run_state, r.run_type, r.logical_date, "
            "r.start_date AS run_start, r.end_date AS run_end, "
            f"(SELECT {join}(t.task_id || ':' || t.state || ':' || "
            "CAST(t.map_index AS TEXT), ' ') FROM task_instance t "
            "WHERE t.dag_id = ? AND t.run_id = r.run_id) AS tis "
            "FROM (SELECT run_id, state, run_type, logical_date, queued_at, start_date, "
            f"end_date FROM dag_run WHERE dag_id = ? ORDER BY {_RUN_ORDER} LIMIT ?) r "
            "ORDER BY COALESCE(r.logical_date, r.queued_at) DESC, r.run_id DESC",
            (dag_id, dag_id, int(runs)),
        )

    async def sensor_wait_row(
        self, dag_id: str, run_id: str, task_id: str, map_index: int
    ) -> dict[str, Any] | None:
        """A deferred sensor's stored wait: next poke, pokes so far, deadline."""
        rows = await self.backend.fetch(
            "SELECT next_poke_at, attempt, deadline, state FROM sensor_wait WHERE dag_id = ? "
            "AND run_id = ? AND task_id = ? AND map_index = ?",
            (dag_id, run_id, task_id, map_index),
        )
        return rows[0] if rows else None

    async def daemons(self) -> list[dict[str, Any]]:
        """The daemons sharing this store, alive or ended within a day (``_members``);
        none on a store of one daemon (SQLite), which keeps no such rows."""
        if self.backend.dialect != "postgresql":
            return []
        from orchestrator.store._members import DAEMONS_SQL, daemon_json

        return [daemon_json(row) for row in await self.backend.fetch(DAEMONS_SQL)]
