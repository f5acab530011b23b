"""What the daemons sharing a PostgreSQL store agree on without asking it: which shard
a DAG falls in, how a run names the daemon driving it, and how shards are given back.
Kept apart from ``_members`` (the leases, over asyncpg), so a daemon on SQLite loads
no PostgreSQL driver."""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from orchestrator.store._backend import Statement

__all__ = ["SHARDS", "driver_tag", "release_statements", "shard_of"]

SHARDS = 256


def shard_of(dag_id: str) -> int:
    """The shard of a DAG: the same in every daemon and every release."""
    return zlib.crc32(dag_id.encode()) % SHARDS


def driver_tag(epoch: int) -> str:
    """What a run's ``driver`` column says while the daemon of ``epoch`` drives it."""
    return f"daemon:{epoch}"


def release_statements(epoch: int, shards: Iterable[int]) -> list[Statement]:
    """Give back shards the daemon of ``epoch`` has stopped scheduling (``_members``, rule
    3), as writes for its writer, so that every write it made before for them commits
    first."""
    return [
        Statement("shard", "UPDATE shard SET owner = NULL WHERE id = ? AND owner = ?", (s, epoch))
        for s in sorted(shards)
    ]
