"""The store's datasets: events, deliveries to consumers, references from DAGs.

Rules (besides the store's):
1. An event is written with its deliveries (one per consumer ``dataset_ref`` names) in
   one transaction (``_rows.dataset_event_statements``); a run's consumption of its
   events is written in the transaction that inserts the run.
2. A DAG's references are replaced whole when its file is loaded; the deliveries it
   has not consumed for a URI it no longer consumes are dropped with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestrator._clock import Clock, iso, parse_iso
from orchestrator.store._backend import Backend, Statement
from orchestrator.store._rows import EVENT_COLUMNS, dataset_event_statements, event_from_row
from triggers._dataset import DatasetEvent

__all__ = ["DatasetInfo", "DatasetRefs", "DatasetRows", "event_json"]

_EVENT_SELECT = ", ".join(f"e.{c.strip()}" for c in EVENT_COLUMNS.split(","))


@dataclass(frozen=True, slots=True)
class DatasetRefs:
    """What one DAG's file says of datasets: the URIs it consumes and produces."""

    dag_id: str
    consumes: frozenset[str] = frozenset()
    produces: frozenset[str] = frozenset()


@dataclass(slots=True)
class DatasetInfo:
    """One dataset as ``datasets list`` shows it."""

    uri: str
    last_updated: datetime | None = None
    consumers: list[str] = field(default_factory=list)
    producers: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "last_updated": iso(self.last_updated),
            "consumers": self.consumers,
            "producers": self.producers,
        }


class DatasetRows:
    """The dataset half of ``Store`` (a mixin: ``Store`` gives the backend and the writer)."""

    backend: Backend
    clock: Clock

    async def write(self, statements: Sequence[Statement]) -> None:
        raise NotImplementedError

    async def set_dataset_refs(self, refs: Sequence[DatasetRefs]) -> None:
        """Replace these DAGs' references, as one unit (rule 2)."""
        now = iso(self.clock.now())
        statements: list[Statement] = []
        for ref in refs:
            statements.append(
                Statement("dataset_ref", "DELETE FROM dataset_ref WHERE dag_id = ?", (ref.dag_id,))
            )
            for kind, uris in (("consumer", ref.consumes), ("producer", ref.produces)):
                for uri in sorted(uris):
                    statements.append(
                        Statement(
                            "dataset_ref",
                            "INSERT INTO dataset_ref (uri, dag_id, kind) VALUES (?, ?, ?) "
                            "ON CONFLICT DO NOTHING",
                            (uri, ref.dag_id, kind),
                        )
                    )
                    statements.append(
                        Statement(
                            "dataset",
                            "INSERT INTO dataset (uri, created_at) VALUES (?, ?) "
                            "ON CONFLICT DO NOTHING",
                            (uri, now),
                        )
                    )
            kept = sorted(ref.consumes)
            marks = ", ".join("?" * len(kept))
            statements.append(
                Statement(
                    "dataset_delivery",
                    "DELETE FROM dataset_delivery WHERE dag_id = ? AND run_id IS NULL"
                    + (f" AND uri NOT IN ({marks})" if kept else ""),
                    (ref.dag_id, *kept),
                )
            )
        await self.write(statements)

    async def dataset_refs(self) -> dict[str, DatasetRefs]:
        """Every DAG's stored references, by DAG id."""
        found: dict[str, tuple[set[str], set[str]]] = {}
        for row in await self.backend.fetch("SELECT uri, dag_id, kind FROM dataset_ref"):
            consumes, produces = found.setdefault(row["dag_id"], (set(), set()))
            (consumes if row["kind"] == "consumer" else produces).add(row["uri"])
        return {
            dag_id: DatasetRefs(dag_id, frozenset(c), frozenset(p))
            for dag_id, (c, p) in found.items()
        }

    async def record_dataset_events(self, events: Sequence[DatasetEvent]) -> None:
        """Store events from outside (a command, the API), delivered as any event is."""
        await self.write([st for event in events for st in dataset_event_statements(event)])

    async def dataset_consumers(self, uri: str) -> list[str]:
        rows = await self.backend.fetch(
            "SELECT dag_id FROM dataset_ref WHERE uri = ? AND kind = 'consumer' ORDER BY dag_id",
            (uri,),
        )
        return [r["dag_id"] for r in rows]

    async def pending_dataset_events(
        self, dag_ids: Sequence[str] | None = None, *, since: datetime | None = None
    ) -> dict[str, list[DatasetEvent]]:
        """Each consumer's delivered, unconsumed events, oldest first (of every consumer
        when ``dag_ids`` is None; only events stamped ``since`` or later when given)."""
        found: dict[str, list[DatasetEvent]] = {}
        chunks: list[Sequence[str] | None] = (
            [None]
            if dag_ids is None
            else [dag_ids[i : i + 500] for i in range(0, len(dag_ids), 500)]
        )
        for chunk in chunks:
            where = "d.run_id IS NULL"
            params: tuple[str | None, ...] = ()
            if chunk is not None:
                if not chunk:
                    continue
                where += f" AND d.dag_id IN ({', '.join('?' * len(chunk))})"
                params = tuple(chunk)
            if since is not None:
                where += " AND e.timestamp >= ?"
                params = (*params, iso(since))
            rows = await self.backend.fetch(
                f"SELECT d.dag_id AS consumer, {_EVENT_SELECT} FROM dataset_delivery d "
                f"JOIN dataset_event e ON e.id = d.event_id WHERE {where} "
                "ORDER BY e.timestamp, e.id",
                params,
            )
            for row in rows:
                found.setdefault(row["consumer"], []).append(event_from_row(row))
        return found

    async def triggering_dataset_events(self, dag_id: str, run_id: str) -> list[DatasetEvent]:
        """The events the run consumed, oldest first."""
        rows = await self.backend.fetch(
            f"SELECT {_EVENT_SELECT} FROM dataset_delivery d JOIN dataset_event e "
            "ON e.id = d.event_id WHERE d.dag_id = ? AND d.run_id = ? ORDER BY e.timestamp, e.id",
            (dag_id, run_id),
        )
        return [event_from_row(row) for row in rows]

    async def list_datasets(self) -> list[DatasetInfo]:
        rows = await self.backend.fetch(
            "SELECT uri, last_updated FROM dataset ORDER BY uri LIMIT 100000"
        )
        infos = {r["uri"]: DatasetInfo(r["uri"], parse_iso(r["last_updated"])) for r in rows}
        for ref in await self.backend.fetch(
            "SELECT uri, dag_id, kind FROM dataset_ref ORDER BY uri, dag_id"
        ):
            info = infos.setdefault(ref["uri"], DatasetInfo(ref["uri"]))
            (info.consumers if ref["kind"] == "consumer" else info.producers).append(ref["dag_id"])
        return [infos[uri] for uri in sorted(infos)]

    async def dataset_events(
        self, uri: str | None = None, limit: int = 100
    ) -> list[tuple[DatasetEvent, list[tuple[str, str]]]]:
        """Recent events (newest first), each with the (dag_id, run_id) of the runs it
        triggered."""
        where, params = ("WHERE e.uri = ? ", (uri,)) if uri is not None else ("", ())
        rows = await self.backend.fetch(
            f"SELECT {_EVENT_SELECT} FROM dataset_event e {where}"
            f"ORDER BY e.timestamp DESC, e.id DESC LIMIT {int(limit)}",
            params,
        )
        events = [event_from_row(row) for row in rows]
        runs: dict[str, list[tuple[str, str]]] = {}
        ids = [event.id for event in events]
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            for row in await self.backend.fetch(
                "SELECT event_id, dag_id, run_id FROM dataset_delivery WHERE run_id IS NOT NULL "
                f"AND event_id IN ({', '.join('?' * len(chunk))}) ORDER BY dag_id, run_id",
                chunk,
            ):
                runs.setdefault(row["event_id"], []).append((row["dag_id"], row["run_id"]))
        return [(event, runs.get(event.id, [])) for event in events]


def event_json(event: DatasetEvent, runs: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """An event as the API and ``--json`` show it."""
    shown = event.to_json()
    shown["timestamp"] = iso(event.timestamp)
    shown["triggered_runs"] = [{"dag_id": d, "run_id": r} for d, r in runs]
    return shown
