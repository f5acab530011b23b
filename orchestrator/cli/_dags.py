"""``orchestrator dags``: list, test, trigger, pause and unpause, backfill."""

from __future__ import annotations

import argparse
import contextlib
import sys
from datetime import UTC, datetime
from typing import Any

import anyio

from orchestrator._settings import Settings
from orchestrator.authoring._dag import DAG
from orchestrator.cli._common import (
    Subcommands,
    command,
    date_arg,
    fail,
    find_dag,
    find_dag_in_bag,
    json_arg,
    load_dags_of,
    print_json,
    table,
    via_daemon,
    with_store,
)
from orchestrator.core import TaskInstanceRecord
from orchestrator.core._state import TaskState
from orchestrator.store import Store

__all__ = ["register"]


def cmd_dags_list(settings: Settings, args: argparse.Namespace) -> int:
    bag = load_dags_of(settings)

    async def paused(store: Store) -> dict[str, Any]:
        return await store.dag_rows()

    rows = with_store(settings, paused)
    items: list[dict[str, Any]] = [
        d.to_json(
            bool(rows[d.dag_id]["is_paused"])
            if d.dag_id in rows
            else d.paused_on_creation(settings.dags_paused_at_creation)
        )
        for d in sorted(bag.dags.values(), key=lambda d: d.dag_id)
    ]
    if args.json:
        print_json(items)
    else:
        table(
            ["dag_id", "file", "schedule", "paused", "tags"],
            [
                [i["dag_id"], i["file"], i["schedule"], i["is_paused"], ",".join(i["tags"])]
                for i in items
            ],
        )
    return 0


def cmd_dags_test(settings: Settings, args: argparse.Namespace) -> int:
    from orchestrator.runtime._drive import run_dag_once
    from orchestrator.runtime._live import LiveRun

    conf = json_arg(args.conf, "--conf")
    logical = date_arg(args.date, "--date")
    dag, bag = find_dag_in_bag(settings, args.dag_id)
    width = max(len(t) for t in dag.task_dict) if dag.task_dict else 10
    last: dict[str, str] = {}
    reader_gone = False

    def on_change(live: LiveRun, ti: TaskInstanceRecord | None) -> None:
        nonlocal reader_gone
        if reader_gone:
            return
        try:
            show(live, ti)
        except BrokenPipeError:  # `dags test ... | head`: stop printing, keep running
            reader_gone = True

    def show(live: LiveRun, ti: TaskInstanceRecord | None) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
        if ti is None:
            print(f"[{stamp}] run {live.record.run_id}: {live.record.state}", flush=True)
            return
        label = f"{ti.state}"
        if ti.state in (TaskState.RUNNING, TaskState.UP_FOR_RETRY, TaskState.FAILED):
            label += f" (try {ti.try_number}/{ti.max_tries + 1})"
        if last.get(ti.task_id) == label:
            return
        last[ti.task_id] = label
        error = (
            live.errors.get(ti.key)
            if ti.state in (TaskState.FAILED, TaskState.UP_FOR_RETRY)
            else None
        )
        suffix = f"  {error}" if error else ""
        print(f"[{stamp}] {ti.key.ljust(width)}  {label}{suffix}", flush=True)

    live = anyio.run(
        lambda: run_dag_once(
            settings, dag, conf=conf, logical_date=logical, on_change=on_change, dags=bag.dags
        )
    )
    code = 0 if live.record.state == "success" else 1
    if "<run>" in live.errors:
        print(f"reason: {live.errors['<run>']}", file=sys.stderr)
    if not reader_gone:
        with contextlib.suppress(BrokenPipeError):
            _summary(dag, live)
    return code


def _summary(dag: DAG, live: Any) -> None:
    print()
    table(
        ["task_id", "state", "tries", "duration"],
        [
            [
                ti.key,
                ti.state,
                ti.try_number,
                f"{ti.duration:.3f}s" if ti.duration is not None else "",
            ]
            for tid in dag.topological_order()
            for ti in live.driver.instances(tid)
        ],
    )
    record = live.record
    took = (
        (record.end_date - record.start_date).total_seconds()
        if record.end_date and record.start_date
        else 0.0
    )
    print(f"\nrun {record.run_id}: {record.state} in {took:.3f}s", flush=True)


def cmd_dags_trigger(settings: Settings, args: argparse.Namespace) -> int:
    conf = json_arg(args.conf, "--conf")
    logical = date_arg(args.logical_date, "--logical-date")
    body: dict[str, Any] = {"conf": conf}
    if args.run_id is not None:
        body["run_id"] = args.run_id
    if logical is not None:
        body["logical_date"] = logical.isoformat()
    doc = via_daemon(settings, "POST", f"/api/v1/dags/{args.dag_id}/runs", body)
    if doc is None:
        doc = _trigger_in_store(
            settings, find_dag(settings, args.dag_id), conf, args.run_id, logical
        )
        print("no daemon running: the run is queued in the store", file=sys.stderr)
    if args.json:
        print_json(doc)
    else:
        print(f"triggered {doc['dag_id']} run {doc['run_id']} ({doc['state']})")
    return 0


def _trigger_in_store(
    settings: Settings, dag: DAG, conf: dict[str, Any], run_id: str | None, logical: Any
) -> dict[str, Any]:
    from orchestrator._clock import SystemClock
    from orchestrator.runtime._intake import RunIntake

    async def body(store: Store) -> dict[str, Any]:
        intake = RunIntake(store, SystemClock(), dags={dag.dag_id: dag}.get)
        record = await intake.manual(dag.dag_id, conf=conf, run_id=run_id, logical_date=logical)
        await store.notify_daemons("runs")
        return record.to_json()

    return with_store(settings, body)


def cmd_dags_pause(settings: Settings, args: argparse.Namespace) -> int:
    paused = args.action == "pause"
    doc = via_daemon(settings, "PATCH", f"/api/v1/dags/{args.dag_id}", {"is_paused": paused})
    if doc is None:
        find_dag(settings, args.dag_id)

        async def pause(store: Store) -> None:
            await store.set_paused(args.dag_id, paused)
            await store.notify_daemons("dags")

        with_store(settings, pause)
    print(f"DAG {args.dag_id} {'paused' if paused else 'unpaused'}")
    return 0


def cmd_dags_backfill(settings: Settings, args: argparse.Namespace) -> int:
    from orchestrator.runtime._backfill import backfill

    start = date_arg(args.start, "--start")
    end = date_arg(args.end, "--end")
    assert start is not None
    assert end is not None
    if end < start:
        fail("--end is before --start")
    dag = find_dag(settings, args.dag_id)
    if dag.timetable is None:
        fail(f"DAG {dag.dag_id!r} has no time schedule: there are no intervals to backfill")
    states = anyio.run(lambda: backfill(settings, dag, start, end, out=sys.stdout))
    return 0 if all(s == "success" for s in states.values()) else 1


def register(groups: Subcommands) -> None:
    dags = groups.add_parser("dags", help="list and run DAGs").add_subparsers(
        dest="action", required=True
    )
    p = command(dags, "list", cmd_dags_list, help="list DAGs (import errors on stderr)")
    p.add_argument("--json", action="store_true")
    p = command(
        dags, "trigger", cmd_dags_trigger, help="queue a manual run (through a running daemon)"
    )
    p.add_argument("dag_id")
    p.add_argument("--conf", help="run conf, a JSON object")
    p.add_argument("--run-id")
    p.add_argument("--logical-date", help="ISO 8601 (default: now)")
    p.add_argument("--json", action="store_true")
    for action in ("pause", "unpause"):
        p = command(dags, action, cmd_dags_pause, help=f"{action} a DAG's schedule")
        p.add_argument("dag_id")
    p = command(dags, "backfill", cmd_dags_backfill, help="run the intervals between two dates")
    p.add_argument("dag_id")
    p.add_argument("--start", required=True, help="ISO 8601")
    p.add_argument("--end", required=True, help="ISO 8601")
    p = command(dags, "test", cmd_dags_test, help="run a DAG once, in this process")
    p.add_argument("dag_id")
    p.add_argument("--conf", help="run conf, a JSON object")
    p.add_argument("--date", help="logical date, ISO 8601")
