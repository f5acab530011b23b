"""The UI's view data: states as text and codes, the grid's compact JSON, schedules in words.

Rules:
1. A state is shown by a symbol and its name as well as a colour (``STATES``); the grid
   sends one character per cell (``code``), the page maps it back.
2. A task group's cell, and a mapped task's, shows the state that matters most among its
   instances (``_PRIORITY``: a failure first, success last but for skips), with a count
   of instances for a mapped task.
3. The grid's runs read oldest to newest, left to right, as Airflow's do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from orchestrator.authoring._dag import DAG
from orchestrator.web._graph import ranks

__all__ = [
    "STATES",
    "grid_json",
    "rows_of",
    "schedule_words",
    "symbol",
    "task_order",
    "worst",
]

# state: (code, symbol) -- rule 1
STATES: dict[str, tuple[str, str]] = {
    "success": ("s", "✓"),
    "failed": ("f", "✗"),
    "running": ("r", "▶"),
    "queued": ("q", "…"),
    "scheduled": ("c", "◷"),
    "up_for_retry": ("u", "↻"),
    "upstream_failed": ("U", "⊘"),
    "skipped": ("k", "»"),
    "deferred": ("d", "⏸"),
    "removed": ("x", "\u2212"),  # minus sign
    "none": ("n", "·"),
}
NO_INSTANCE = "-"
_PRIORITY = [
    "failed",
    "upstream_failed",
    "up_for_retry",
    "running",
    "deferred",
    "queued",
    "scheduled",
    "none",
    "success",
    "skipped",
    "removed",
]
_RANK = {STATES[s][0]: i for i, s in enumerate(_PRIORITY)}


def symbol(state: str | None) -> str:
    return STATES.get(state or "none", ("", "?"))[1]


def worst(codes: Iterable[str]) -> str:
    """Rule 2 over state codes (NO_INSTANCE when there are none)."""
    present = [c for c in codes if c != NO_INSTANCE]
    return min(present, key=lambda c: _RANK.get(c, 99)) if present else NO_INSTANCE


def rows_of(dag: DAG) -> list[dict[str, Any]]:
    """The grid's rows: task groups (before their tasks) and tasks, upstream first."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for task_id in task_order(dag):
        task = dag.task_dict[task_id]
        chain = []
        group = task.task_group
        while group is not None and getattr(group, "group_id", None):
            chain.append(group)
            group = group.parent_group
        parent = None
        for depth, grp in enumerate(reversed(chain)):
            if grp.group_id not in seen:
                seen.add(grp.group_id)
                rows.append(
                    {
                        "id": grp.group_id,
                        "label": grp.group_id.rpartition(".")[2],
                        "depth": depth,
                        "group": True,
                        "parent": parent,
                    }
                )
            parent = grp.group_id
        label = task.task_display_name
        if parent is not None and label == task_id:
            label = task_id.removeprefix(parent + ".")
        rows.append(
            {
                "id": task_id,
                "label": label,
                "depth": len(chain),
                "group": False,
                "parent": parent,
                "mapped": bool(task.is_mapped),
                "operator": type(task).__name__,
            }
        )
    return _grouped(rows)


def task_order(dag: DAG) -> list[str]:
    """Task ids by depth from the roots, then as the file defines them."""
    edges = [(t.task_id, d) for t in dag.task_dict.values() for d in t.downstream_task_ids]
    rank = ranks(dag.task_ids, edges)
    index = {task_id: i for i, task_id in enumerate(dag.task_ids)}
    return sorted(dag.task_ids, key=lambda t: (rank[t], index[t]))


def _grouped(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each group's rows right under it (the topological order may interleave groups)."""
    children: dict[str | None, list[dict[str, Any]]] = {}
    for row in rows:
        children.setdefault(row["parent"], []).append(row)
    out: list[dict[str, Any]] = []

    def walk(parent: str | None) -> None:
        for row in children.get(parent, []):
            out.append(row)
            if row["group"]:
                walk(row["id"])

    walk(None)
    return out


def grid_json(dag: DAG, stored: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The grid of ``dag`` from ``ViewRows.grid_rows`` (newest run first, its instances in
    one string): runs oldest
    first, rows, and per row one state code per run, with instance counts for mapped
    tasks (rules 2, 3)."""
    runs: list[dict[str, Any]] = []
    seen: list[tuple[int, str]] = []  # (column, the run's instances), oldest first
    for row in reversed(stored):
        seen.append((len(runs), row["tis"] or ""))
        runs.append(
            {
                "run_id": row["run_id"],
                "state": row["run_state"],
                "run_type": row["run_type"],
                "logical_date": row["logical_date"],
                "start_date": row["run_start"],
                "end_date": row["run_end"],
            }
        )
    width = len(runs)
    rows = rows_of(dag)
    mapped = {r["id"] for r in rows if not r["group"] and r["mapped"]}
    codes: dict[str, list[str]] = {r["id"]: [NO_INSTANCE] * width for r in rows if not r["group"]}
    many: dict[tuple[str, int], list[str]] = {}
    for col, tis in seen:
        for item in tis.split():
            task_id, state, _ = item.split(":")
            where = codes.get(task_id)
            if where is None:  # a task the DAG no longer has
                continue
            code = _CODE.get(state, "n")
            if task_id in mapped:
                many.setdefault((task_id, col), []).append(code)
            else:
                where[col] = code
    counts: dict[str, list[int]] = {task_id: [0] * width for task_id in mapped}
    for (task_id, col), found in many.items():
        codes[task_id][col] = worst(found)
        counts[task_id][col] = len(found)
    cells = {task_id: "".join(found) for task_id, found in codes.items()}
    for row in reversed(rows):  # inner groups first
        if row["group"]:
            members = [cells[r["id"]] for r in rows if r["parent"] == row["id"]]
            cells[row["id"]] = _worst_per_column(members, width)
    return {"dag_id": dag.dag_id, "runs": runs, "rows": rows, "cells": cells, "counts": counts}


_CODE = {state: code for state, (code, _) in STATES.items()}
# Rank characters ordered as _PRIORITY (NO_INSTANCE last), so a column's min is its worst.
_TO_RANK = str.maketrans({c: chr(65 + r) for c, r in {**_RANK, NO_INSTANCE: 90}.items()})
_FROM_RANK = {chr(65 + r): c for c, r in {**_RANK, NO_INSTANCE: 90}.items()}


def _worst_per_column(members: list[str], width: int) -> str:
    """Rule 2 for each run at once over the members' code strings."""
    if not members:
        return NO_INSTANCE * width
    ranked = [m.translate(_TO_RANK) for m in members]
    return "".join(_FROM_RANK[min(column)] for column in zip(*ranked, strict=True))


def schedule_words(dag: DAG) -> str:
    """The DAG's schedule as a person says it."""
    schedule = dag.schedule
    parts = []
    time = schedule.time
    if isinstance(time, timedelta):
        parts.append(f"every {_span(time)}")
    elif time is not None:
        expression = getattr(time, "expression", None) or str(time)
        parts.append(_cron_words(expression))
    elif schedule.once:
        parts.append("once")
    if schedule.datasets is not None:
        parts.append(f"on datasets {schedule.datasets}")
    if schedule.event is not None:
        parts.append("on matching events")
    if not parts:
        return "manual only"
    return f" {schedule.combine or 'or'} ".join(parts)


_PRESETS = {
    "@hourly": "hourly, at minute 0",
    "@daily": "daily at 00:00",
    "@midnight": "daily at 00:00",
    "@weekly": "weekly, Sunday at 00:00",
    "@monthly": "monthly, on day 1 at 00:00",
    "@yearly": "yearly, on 1 January at 00:00",
    "@annually": "yearly, on 1 January at 00:00",
}
_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


def _cron_words(expression: str) -> str:
    if expression in _PRESETS:
        return _PRESETS[expression]
    fields = expression.split()
    if len(fields) != 5:
        return f"cron {expression}"
    minute, hour, dom, month, dow = fields
    if (dom, month) != ("*", "*"):
        return f"cron {expression}"
    if minute.startswith("*/") and hour == "*" and dow == "*":
        return f"every {minute[2:]} minutes"
    if minute == "*" and hour == "*" and dow == "*":
        return "every minute"
    if minute.isdigit() and hour == "*" and dow == "*":
        return f"hourly, at minute {int(minute)}"
    if minute.isdigit() and hour.isdigit():
        at = f"at {int(hour):02d}:{int(minute):02d}"
        if dow == "*":
            return f"daily {at}"
        if dow == "1-5":
            return f"weekdays {at}"
        if dow.isdigit() and int(dow) < 7:
            return f"{_DAYS[int(dow)]}s {at}"
    return f"cron {expression}"


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}" if n != 1 else unit
    return f"{seconds} seconds"
