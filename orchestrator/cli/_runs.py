"""``orchestrator runs``: list and show."""

from __future__ import annotations

import argparse
import json
from typing import Any

from orchestrator._settings import Settings
from orchestrator.cli._common import (
    Subcommands,
    command,
    print_json,
    resolve_run,
    table,
    with_store,
)
from orchestrator.store import Store

__all__ = ["register"]


def cmd_runs_list(settings: Settings, args: argparse.Namespace) -> int:
    runs = with_store(
        settings, lambda store: store.list_runs(dag_id=args.dag, state=args.state, limit=args.limit)
    )
    items = [r.to_json() for r in runs]
    if args.json:
        print_json(items)
    else:
        table(
            ["dag_id", "run_id", "state", "run_type", "logical_date", "start_date", "end_date"],
            [
                [
                    i["dag_id"],
                    i["run_id"],
                    i["state"],
                    i["run_type"],
                    i["logical_date"],
                    i["start_date"],
                    i["end_date"],
                ]
                for i in items
            ],
        )
    return 0


def cmd_runs_show(settings: Settings, args: argparse.Namespace) -> int:
    async def body(store: Store) -> dict[str, Any]:
        run = await resolve_run(store, args.run_id, args.dag)
        tis = await store.task_instances(run.dag_id, run.run_id)
        return {**run.to_json(), "tasks": [ti.to_json() for ti in tis]}

    doc = with_store(settings, body)
    if args.json:
        print_json(doc)
        return 0
    for key in ("dag_id", "run_id", "state", "run_type", "logical_date", "start_date", "end_date"):
        print(f"{key}: {doc[key]}")
    print(f"conf: {json.dumps(doc['conf'])}\n")
    table(
        ["task_id", "map_index", "state", "try_number", "start_date", "end_date", "duration"],
        [
            [
                t["task_id"],
                (t["rendered_map_index"] or t["map_index"]) if t["map_index"] >= 0 else "",
                t["state"],
                t["try_number"],
                t["start_date"],
                t["end_date"],
                f"{t['duration']:.3f}s" if t["duration"] is not None else "",
            ]
            for t in doc["tasks"]
        ],
    )
    return 0


def register(groups: Subcommands) -> None:
    runs = groups.add_parser("runs", help="DAG runs").add_subparsers(dest="action", required=True)
    p = command(runs, "list", cmd_runs_list)
    p.add_argument("--dag")
    p.add_argument("--state", choices=["queued", "running", "success", "failed"])
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p = command(runs, "show", cmd_runs_show)
    p.add_argument("run_id")
    p.add_argument("--dag", help="the DAG, when the run id is used by several")
    p.add_argument("--json", action="store_true")
