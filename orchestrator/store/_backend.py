"""The seam between the store and a database driver, and the batch planner.

A backend runs batches of statements in one transaction and answers queries; it
knows nothing of runs or tasks. SQL is written once with ``?`` placeholders.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from orchestrator.errors import StoreError

__all__ = [
    "Backend",
    "ClaimLost",
    "Group",
    "Statement",
    "UpsertShape",
    "collapse_upserts",
    "plan_groups",
    "upsert_shape",
]


class ClaimLost(StoreError):
    """Another daemon took the store while this one's connection was down: it must stop."""


class Statement(NamedTuple):
    """One write: ``sql`` with its parameters; ``table`` is the one table it touches."""

    table: str
    sql: str
    params: tuple[Any, ...]


class Group(NamedTuple):
    """Statements sharing one SQL text, run with a single executemany."""

    table: str
    sql: str
    rows: list[tuple[Any, ...]]


class Backend(Protocol):
    dialect: str

    async def execute_batch(self, groups: Sequence[Group]) -> None:
        """Run the groups in order in one transaction and commit; StoreError on failure."""

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    async def change(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement in a transaction of its own (fenced, for a daemon on
        PostgreSQL); how many rows it changed."""

    async def migrate(self, migrations: Sequence[Any], applied_at: str) -> list[int]: ...

    async def lock_for_daemon(self, holder: str) -> str | None:
        """Claim the store for one daemon until close; None, or who holds it already."""

    async def close(self) -> None: ...


def plan_groups(statements: Sequence[Statement]) -> list[Group]:
    """Merge statements into as few executemany groups as keeps the same outcome.

    A statement joins the last group with the same SQL when no later group touches
    its table: statements on different tables commute (the schema has no foreign
    keys or triggers), and statements on one table keep their order.
    """
    groups: list[Group] = []
    last_for_table: dict[str, int] = {}
    open_for_sql: dict[str, int] = {}
    for st in statements:
        index = open_for_sql.get(st.sql)
        if index is not None and last_for_table.get(st.table) == index:
            groups[index].rows.append(st.params)
            continue
        groups.append(Group(st.table, st.sql, [st.params]))
        index = len(groups) - 1
        open_for_sql[st.sql] = index
        last_for_table[st.table] = index
    return groups


_UPSERT = re.compile(
    r"^INSERT INTO (\w+) \(([^)]*)\) VALUES \((\?(?:, \?)*)\) "
    r"ON CONFLICT \(([^)]*)\) (?:DO UPDATE SET (.*)|DO NOTHING)$",
    re.DOTALL,
)


class UpsertShape(NamedTuple):
    insert: str  # "INSERT INTO t (a, b)"
    columns: tuple[str, ...]  # ("a", "b")
    tail: str  # " ON CONFLICT (a) DO UPDATE SET ..." or " ON CONFLICT (a) DO NOTHING"
    key_positions: tuple[int, ...]
    first_wins: bool = False  # DO NOTHING: the first row of a key is the one that stays


@functools.lru_cache(maxsize=256)
def upsert_shape(sql: str) -> UpsertShape | None:
    """The parts of a one-row upsert whose SET covers every non-key column, or of a
    one-row insert-if-absent on a named key, else None.

    Only for such a statement is "apply the rows in order" the same as "apply the
    last (or, if absent, the first) row of each key", which lets a batch become one
    statement.
    """
    match = _UPSERT.match(sql)
    if match is None:
        return None
    table, columns_text, _, keys_text, sets_text = match.groups()
    columns = tuple(c.strip() for c in columns_text.split(","))
    keys = [k.strip() for k in keys_text.split(",")]
    if not set(keys) <= set(columns):
        return None
    if sets_text is not None:
        sets = {part.split("=")[0].strip() for part in sets_text.split(",")}
        if sets != set(columns) - set(keys):
            return None
    insert = f"INSERT INTO {table} ({columns_text})"
    tail = sql[sql.index(" ON CONFLICT") :]
    positions = tuple(columns.index(k) for k in keys)
    return UpsertShape(insert, columns, tail, positions, first_wins=sets_text is None)


def collapse_upserts(shape: UpsertShape, rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The row that applying them in order leaves for each key (the last; the first for
    an insert-if-absent), in the order of those rows."""
    kept: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for row in rows:
        key = tuple(row[i] for i in shape.key_positions)
        if shape.first_wins:
            kept.setdefault(key, row)
        else:
            kept.pop(key, None)
            kept[key] = row
    return list(kept.values())
