"""``orchestrator tasks``: logs, test, clear."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import anyio

from orchestrator._clock import iso
from orchestrator._settings import Settings
from orchestrator.cli._common import (
    Subcommands,
    command,
    date_arg,
    fail,
    find_dag,
    resolve_run,
    with_store,
)
from orchestrator.runtime._actions import clear_stored
from orchestrator.store import Store

__all__ = ["register"]


def cmd_tasks_logs(settings: Settings, args: argparse.Namespace) -> int:
    async def body(store: Store) -> tuple[list[Any], list[int]]:
        run = await resolve_run(store, args.run_id, args.dag_id)
        tis = await store.task_instances(run.dag_id, run.run_id)
        indexes = sorted(ti.map_index for ti in tis if ti.task_id == args.task_id)
        tries = await store.tries(args.dag_id, args.run_id, args.task_id, args.map_index)
        return tries, indexes

    tries, indexes = with_store(settings, body)
    if args.map_index not in indexes and indexes:
        if args.map_index < 0:
            fail(f"task {args.task_id!r} is mapped: give --map-index ({indexes[0]}..{indexes[-1]})")
        fail(f"task {args.task_id!r} has no map index {args.map_index}")
    if not tries:
        fail(f"task {args.task_id!r} of run {args.run_id!r} has not run yet")
    if args.try_number is not None:
        tries = [t for t in tries if t.try_number == args.try_number]
        if not tries:
            fail(f"task {args.task_id!r} has no try {args.try_number}")
    for attempt in tries:
        took = f", {attempt.duration:.3f}s" if attempt.duration is not None else ""
        print(
            f"*** try {attempt.try_number}: {attempt.state} "
            f"(started {iso(attempt.start_date)}{took}; {attempt.log_path})"
        )
        if attempt.error:
            print(f"*** error: {attempt.error}")
        path = Path(attempt.log_path)
        if path.exists():
            sys.stdout.write(path.read_text(encoding="utf-8", errors="replace"))
        else:
            print("*** (no output)")
    return 0


def cmd_tasks_test(settings: Settings, args: argparse.Namespace) -> int:
    from orchestrator.runtime._drive import run_task_alone

    logical = date_arg(args.date, "--date")
    dag = find_dag(settings, args.dag_id)
    if args.task_id not in dag.task_dict:
        fail(f"DAG {args.dag_id!r} has no task {args.task_id!r}")
    result = anyio.run(lambda: run_task_alone(settings, dag, args.task_id, logical_date=logical))
    print(f"\ntask {args.task_id}: {result.state}" + (f" ({result.error})" if result.error else ""))
    return 0 if result.state in ("success", "skipped") else 1


def cmd_tasks_clear(settings: Settings, args: argparse.Namespace) -> int:
    dag = find_dag(settings, args.dag_id)
    unknown = [t for t in args.task_ids if t not in dag.task_dict]
    if unknown:
        fail(f"DAG {args.dag_id!r} has no task(s) {', '.join(unknown)}")

    async def body(store: Store) -> list[str]:
        run = await resolve_run(store, args.run_id, args.dag_id)
        cleared = await clear_stored(
            store,
            dag,
            run,
            args.task_ids,
            map_indexes=args.map_index or (),
            downstream=args.downstream,
        )
        await store.notify_daemons("runs")
        return cleared

    cleared = with_store(settings, body)
    print(f"cleared {len(cleared)} task instance(s): {', '.join(sorted(cleared)) or '-'}")
    print("the run is queued again; the daemon picks it up")
    return 0


def register(groups: Subcommands) -> None:
    tasks = groups.add_parser("tasks", help="task instances").add_subparsers(
        dest="action", required=True
    )
    p = command(tasks, "logs", cmd_tasks_logs)
    p.add_argument("dag_id")
    p.add_argument("run_id")
    p.add_argument("task_id")
    p.add_argument("--try", dest="try_number", type=int)
    p.add_argument("--map-index", type=int, default=-1, help="the instance of a mapped task")
    p = command(tasks, "test", cmd_tasks_test, help="run one task alone; nothing is recorded")
    p.add_argument("dag_id")
    p.add_argument("task_id")
    p.add_argument("--date", help="logical date, ISO 8601")
    p = command(tasks, "clear", cmd_tasks_clear, help="reset task instances so they run again")
    p.add_argument("dag_id")
    p.add_argument("run_id")
    p.add_argument("task_ids", nargs="*")
    p.add_argument("--downstream", action="store_true", help="also clear what depends on them")
    p.add_argument(
        "--map-index",
        type=int,
        action="append",
        help="only these instances of the named mapped tasks (repeatable)",
    )
