"""The seam between the store and a database driver, and the batch planner.

A backend runs batches of statements in one transaction and answers queries; it
knows nothing of runs or tasks. SQL is written once with ``?`` placeholders.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

__all__ = ["Backend", "Group", "Statement", "plan_groups"]


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

    async def migrate(self, migrations: Sequence[Any], applied_at: str) -> list[int]: ...

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
