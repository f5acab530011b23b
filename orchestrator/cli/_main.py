"""The ``orchestrator`` command.

Exit codes: 0 success; 1 the work failed (a DAG run or task failed); 2 bad usage or
bad input (unknown DAG, malformed JSON, broken DAG file, unreachable store).
``--json`` prints exactly one JSON document on stdout; messages go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import anyio

from orchestrator._clock import iso
from orchestrator._logging import configure_logging
from orchestrator._settings import Settings, load_settings
from orchestrator.authoring._dag import DAG
from orchestrator.core import RunRecord, TaskInstanceRecord
from orchestrator.core._state import TaskState
from orchestrator.dagfiles._loader import DagBag, load_dags
from orchestrator.errors import ConfigError, OrchestratorError
from orchestrator.resources._connections import Connection
from orchestrator.resources._secrets import cipher_for
from orchestrator.resources._variables import read_variable, write_variable
from orchestrator.store import Store, open_store

__all__ = ["main"]

T = TypeVar("T")


class UsageError(Exception):
    """Bad usage or input: printed, exit code 2."""


def _fail(message: str) -> NoReturn:
    raise UsageError(message)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line.rstrip())
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _json_arg(text: str | None, flag: str, *, want_object: bool = True) -> Any:
    if text is None:
        return {} if want_object else None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"{flag}: not valid JSON: {exc}")
    if want_object and not isinstance(value, dict):
        _fail(f"{flag}: must be a JSON object")
    return value


def _date_arg(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"{flag}: not an ISO 8601 date/time: {text!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _with_store(settings: Settings, op: Callable[[Store], Awaitable[T]]) -> T:
    async def body() -> T:
        async with open_store(settings.db_url) as store:
            return await op(store)

    return anyio.run(body)


def _load(settings: Settings, *, report: bool = True) -> DagBag:
    if settings.dags.startswith("s3://"):
        from orchestrator.dagfiles._s3 import S3DagSync

        mirror = S3DagSync(settings.dags, settings.dags_folder)
        _with_store(settings, lambda store: mirror.sync_with(store, settings))
    bag = load_dags(settings.dags_folder, timeout=settings.dag_import_timeout)
    if report:
        for err in bag.import_errors:
            print(f"import error: {err.file}: {err.message}", file=sys.stderr)
    return bag


def _dag(settings: Settings, dag_id: str) -> DAG:
    return _dag_in_bag(settings, dag_id)[0]


def _dag_in_bag(settings: Settings, dag_id: str) -> tuple[DAG, DagBag]:
    """The DAG, and every DAG of the folder (a run a task triggers takes its DAG's schedule)."""
    bag = _load(settings, report=False)
    dag = bag.get(dag_id)
    if dag is None:
        for err in bag.import_errors:
            print(f"import error: {err.file}: {err.message}", file=sys.stderr)
        _fail(f"DAG {dag_id!r} not found in {settings.dags}")
    return dag, bag


# -- dags --------------------------------------------------------------------------------


def cmd_dags_list(settings: Settings, args: argparse.Namespace) -> int:
    bag = _load(settings)

    async def paused(store: Store) -> dict[str, Any]:
        return await store.dag_rows()

    rows = _with_store(settings, paused)
    items: list[dict[str, Any]] = [
        d.to_json(
            bool(rows[d.dag_id]["is_paused"])
            if d.dag_id in rows
            else d.paused_on_creation(settings.dags_paused_at_creation)
        )
        for d in sorted(bag.dags.values(), key=lambda d: d.dag_id)
    ]
    if args.json:
        _print_json(items)
    else:
        _table(
            ["dag_id", "file", "schedule", "paused", "tags"],
            [
                [i["dag_id"], i["file"], i["schedule"], i["is_paused"], ",".join(i["tags"])]
                for i in items
            ],
        )
    return 0


def cmd_dags_test(settings: Settings, args: argparse.Namespace) -> int:
    from orchestrator.runtime._drive import run_dag_once
    from orchestrator.runtime._scheduler import LiveRun

    conf = _json_arg(args.conf, "--conf")
    logical = _date_arg(args.date, "--date")
    dag, bag = _dag_in_bag(settings, args.dag_id)
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
            live.errors.get(ti.task_id)
            if ti.state in (TaskState.FAILED, TaskState.UP_FOR_RETRY)
            else None
        )
        suffix = f"  {error}" if error else ""
        print(f"[{stamp}] {ti.task_id.ljust(width)}  {label}{suffix}", flush=True)

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
    _table(
        ["task_id", "state", "tries", "duration"],
        [
            [
                tid,
                live.tis[tid].state,
                live.tis[tid].try_number,
                f"{live.tis[tid].duration:.3f}s" if live.tis[tid].duration is not None else "",
            ]
            for tid in dag.topological_order()
        ],
    )
    record = live.record
    took = (
        (record.end_date - record.start_date).total_seconds()
        if record.end_date and record.start_date
        else 0.0
    )
    print(f"\nrun {record.run_id}: {record.state} in {took:.3f}s", flush=True)


# -- runs ----------------------------------------------------------------------------------


async def _resolve_run(store: Store, run_id: str, dag_id: str | None) -> RunRecord:
    return await store.resolve_run(run_id, dag_id, hint="pass --dag")


def cmd_runs_list(settings: Settings, args: argparse.Namespace) -> int:
    runs = _with_store(
        settings, lambda store: store.list_runs(dag_id=args.dag, state=args.state, limit=args.limit)
    )
    items = [r.to_json() for r in runs]
    if args.json:
        _print_json(items)
    else:
        _table(
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
        run = await _resolve_run(store, args.run_id, args.dag)
        tis = await store.task_instances(run.dag_id, run.run_id)
        return {**run.to_json(), "tasks": [ti.to_json() for ti in tis]}

    doc = _with_store(settings, body)
    if args.json:
        _print_json(doc)
        return 0
    for key in ("dag_id", "run_id", "state", "run_type", "logical_date", "start_date", "end_date"):
        print(f"{key}: {doc[key]}")
    print(f"conf: {json.dumps(doc['conf'])}\n")
    _table(
        ["task_id", "state", "try_number", "start_date", "end_date", "duration"],
        [
            [
                t["task_id"],
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


# -- tasks -----------------------------------------------------------------------------------


def cmd_tasks_logs(settings: Settings, args: argparse.Namespace) -> int:
    async def body(store: Store) -> list[Any]:
        await _resolve_run(store, args.run_id, args.dag_id)
        return await store.tries(args.dag_id, args.run_id, args.task_id)

    tries = _with_store(settings, body)
    if not tries:
        _fail(f"task {args.task_id!r} of run {args.run_id!r} has not run yet")
    if args.try_number is not None:
        tries = [t for t in tries if t.try_number == args.try_number]
        if not tries:
            _fail(f"task {args.task_id!r} has no try {args.try_number}")
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

    logical = _date_arg(args.date, "--date")
    dag = _dag(settings, args.dag_id)
    if args.task_id not in dag.task_dict:
        _fail(f"DAG {args.dag_id!r} has no task {args.task_id!r}")
    result = anyio.run(lambda: run_task_alone(settings, dag, args.task_id, logical_date=logical))
    print(f"\ntask {args.task_id}: {result.state}" + (f" ({result.error})" if result.error else ""))
    return 0 if result.state in ("success", "skipped") else 1


def cmd_tasks_clear(settings: Settings, args: argparse.Namespace) -> int:
    dag = _dag(settings, args.dag_id)
    unknown = [t for t in args.task_ids if t not in dag.task_dict]
    if unknown:
        _fail(f"DAG {args.dag_id!r} has no task(s) {', '.join(unknown)}")

    async def body(store: Store) -> list[str]:
        from orchestrator.core._state import RunState, TaskEvent, apply

        run = await _resolve_run(store, args.run_id, args.dag_id)
        tis = await store.task_instances(run.dag_id, run.run_id)
        chosen = set(args.task_ids) or {ti.task_id for ti in tis}
        if args.downstream:
            stack = list(chosen)
            while stack:
                for down in dag.task_dict[stack.pop()].downstream_task_ids:
                    if down not in chosen:
                        chosen.add(down)
                        stack.append(down)
        cleared = []
        for ti in tis:
            if ti.task_id in chosen and ti.state != TaskState.NONE:
                ti.state = apply(ti.state, TaskEvent.CLEAR, (run.dag_id, run.run_id, ti.task_id))
                ti.end_date = None
                ti.duration = None
                ti.next_retry_at = None
                cleared.append(ti)
        run.state = RunState.QUEUED
        run.end_date = None
        run.driver = None  # whoever drove it before, the daemon runs it now
        await store.clear_task_instances(run, cleared)
        return [ti.task_id for ti in cleared]

    cleared = _with_store(settings, body)
    print(f"cleared {len(cleared)} task instance(s): {', '.join(sorted(cleared)) or '-'}")
    print("the run is queued again; the daemon picks it up")
    return 0


# -- the daemon and what changes its work --------------------------------------------------


def cmd_daemon(settings: Settings, args: argparse.Namespace) -> int:
    from orchestrator.daemon._daemon import run_daemon

    return run_daemon(settings)


def _via_daemon(settings: Settings, method: str, path: str, body: Any = None) -> Any | None:
    """The API's answer if a daemon is up (a 4xx fails the command), else None."""
    import httpx

    from orchestrator.cli._client import find_daemon

    client = find_daemon(settings)
    if client is None:
        return None
    try:
        status, doc = client.request(method, path, body)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # the request was never sent
        print(f"daemon at {client.url} not reachable ({exc}); using the store", file=sys.stderr)
        return None
    except httpx.TransportError as exc:
        # Sent but unanswered: the daemon may still apply it, so writing to the store as
        # well could make a second run.
        _fail(
            f"daemon at {client.url} did not answer ({exc!r}); the change may still be "
            "applied: check with `orchestrator runs list`"
        )
    if status >= 400:
        _fail(str(doc.get("error", doc)) if isinstance(doc, dict) else str(doc))
    return doc


def cmd_dags_trigger(settings: Settings, args: argparse.Namespace) -> int:
    conf = _json_arg(args.conf, "--conf")
    logical = _date_arg(args.logical_date, "--logical-date")
    body: dict[str, Any] = {"conf": conf}
    if args.run_id is not None:
        body["run_id"] = args.run_id
    if logical is not None:
        body["logical_date"] = logical.isoformat()
    doc = _via_daemon(settings, "POST", f"/api/v1/dags/{args.dag_id}/runs", body)
    if doc is None:
        doc = _trigger_in_store(settings, _dag(settings, args.dag_id), conf, args.run_id, logical)
        print("no daemon running: the run is queued in the store", file=sys.stderr)
    if args.json:
        _print_json(doc)
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
        return record.to_json()

    return _with_store(settings, body)


def cmd_dags_pause(settings: Settings, args: argparse.Namespace) -> int:
    paused = args.action == "pause"
    doc = _via_daemon(settings, "PATCH", f"/api/v1/dags/{args.dag_id}", {"is_paused": paused})
    if doc is None:
        _dag(settings, args.dag_id)
        _with_store(settings, lambda store: store.set_paused(args.dag_id, paused))
    print(f"DAG {args.dag_id} {'paused' if paused else 'unpaused'}")
    return 0


def cmd_dags_backfill(settings: Settings, args: argparse.Namespace) -> int:
    from orchestrator.runtime._backfill import backfill

    start = _date_arg(args.start, "--start")
    end = _date_arg(args.end, "--end")
    assert start is not None
    assert end is not None
    if end < start:
        _fail("--end is before --start")
    dag = _dag(settings, args.dag_id)
    if dag.timetable is None:
        _fail(f"DAG {dag.dag_id!r} has no time schedule: there are no intervals to backfill")
    states = anyio.run(lambda: backfill(settings, dag, start, end, out=sys.stdout))
    return 0 if all(s == "success" for s in states.values()) else 1


# -- variables, connections, pools --------------------------------------------------------


def cmd_variables(settings: Settings, args: argparse.Namespace) -> int:
    action = args.variables_action
    if action == "get":
        value = _with_store(settings, lambda s: read_variable(s, settings, args.key))
        if value is None:
            _fail(f"variable {args.key!r} does not exist")
        print(value)
    elif action == "set":
        if args.json_value:
            _json_arg(args.value, "VALUE", want_object=False)
        _with_store(
            settings,
            lambda s: write_variable(s, settings, args.key, args.value, secret=args.secret),
        )
        print(f"variable {args.key!r} set")
    elif action == "delete":
        if not _with_store(settings, lambda s: s.delete_variable(args.key)):
            _fail(f"variable {args.key!r} does not exist")
        print(f"variable {args.key!r} deleted")
    else:
        rows = _with_store(settings, lambda s: s.list_variables())
        shown = [{"key": k, "value": "***" if enc else v} for k, v, enc in rows]
        if args.json:
            _print_json(shown)
        else:
            _table(["key", "value"], [[r["key"], r["value"]] for r in shown])
    return 0


def cmd_connections(settings: Settings, args: argparse.Namespace) -> int:
    action = args.connections_action
    cipher = cipher_for(settings)
    if action == "add":
        if args.conn_uri:
            conn = Connection.from_uri(args.conn_id, args.conn_uri)
        elif args.conn_type:
            conn = Connection(
                conn_id=args.conn_id,
                conn_type=args.conn_type,
                host=args.conn_host or "",
                login=args.conn_login or "",
                password=args.conn_password or "",
                schema=args.conn_schema or "",
                port=args.conn_port,
                extra=_json_arg(args.conn_extra, "--conn-extra"),
            )
        else:
            _fail("connections add: give --conn-uri or --conn-type")
        _with_store(settings, lambda s: s.set_connection(conn.to_record(cipher)))
        print(f"connection {args.conn_id!r} saved")
    elif action == "delete":
        if not _with_store(settings, lambda s: s.delete_connection(args.conn_id)):
            _fail(f"connection {args.conn_id!r} does not exist")
        print(f"connection {args.conn_id!r} deleted")
    else:
        records = _with_store(settings, lambda s: s.list_connections())
        shown = [
            {
                "conn_id": r.conn_id,
                "conn_type": r.conn_type,
                "host": r.host,
                "port": r.port,
                "login": r.login,
                "schema": r.schema,
                "password": "***" if r.password else "",
                "extra": "***" if r.extra else "",
            }
            for r in records
        ]
        if args.json:
            _print_json(shown)
        else:
            _table(
                ["conn_id", "conn_type", "host", "port", "login", "schema"],
                [
                    [c["conn_id"], c["conn_type"], c["host"], c["port"], c["login"], c["schema"]]
                    for c in shown
                ],
            )
    return 0


def cmd_pools(settings: Settings, args: argparse.Namespace) -> int:
    action = args.pools_action
    if action == "set":
        if args.slots < 0:
            _fail("SLOTS must be >= 0")
        _with_store(settings, lambda s: s.set_pool(args.name, args.slots, args.description))
        print(f"pool {args.name!r} has {args.slots} slot(s)")
    elif action == "delete":
        if not _with_store(settings, lambda s: s.delete_pool(args.name)):
            _fail(f"pool {args.name!r} does not exist")
        print(f"pool {args.name!r} deleted")
    else:
        pools = _with_store(settings, lambda s: s.get_pools())
        if args.json:
            _print_json([{"name": n, "slots": s} for n, s in pools.items()])
        else:
            _table(["name", "slots"], sorted(pools.items()))
    return 0


def cmd_db_migrate(settings: Settings, args: argparse.Namespace) -> int:
    async def body() -> list[int]:
        async with open_store(settings.db_url, migrate=False) as store:
            return await store.migrate()

    applied = anyio.run(body)
    print(f"applied migrations: {applied}" if applied else "the database is up to date")
    return 0


# -- parser ----------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrator", description=__doc__.splitlines()[0])
    parser.add_argument("--dags", help="DAGs folder (ORCHESTRATOR_DAGS)")
    parser.add_argument("--db", help="database URL (ORCHESTRATOR_DB)")
    parser.add_argument("--home", help="home folder (ORCHESTRATOR_HOME)")
    parser.add_argument("--log-format", choices=["console", "json"], help="ORCHESTRATOR_LOG_FORMAT")
    groups = parser.add_subparsers(dest="group", required=True)
    p = groups.add_parser("daemon", help="run the long-lived service")
    p.set_defaults(func=cmd_daemon)
    # Also accepted after `daemon` (SPEC's form); SUPPRESS keeps the global value otherwise.
    p.add_argument("--dags", default=argparse.SUPPRESS, help="DAGs folder")
    p.add_argument("--db", default=argparse.SUPPRESS, help="database URL")
    p.add_argument("--home", default=argparse.SUPPRESS, help="home folder")
    p.add_argument("--log-format", choices=["console", "json"], default=argparse.SUPPRESS)
    p.add_argument("--api-host", default=argparse.SUPPRESS, help="ORCHESTRATOR_API_HOST")
    p.add_argument("--api-port", type=int, default=argparse.SUPPRESS, help="ORCHESTRATOR_API_PORT")

    def add(sub: Any, name: str, func: Callable[..., int], **kw: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, **kw)
        p.set_defaults(func=func)
        return p

    dags = groups.add_parser("dags", help="list and run DAGs").add_subparsers(
        dest="action", required=True
    )
    p = add(dags, "list", cmd_dags_list, help="list DAGs (import errors on stderr)")
    p.add_argument("--json", action="store_true")
    p = add(dags, "trigger", cmd_dags_trigger, help="queue a manual run (through a running daemon)")
    p.add_argument("dag_id")
    p.add_argument("--conf", help="run conf, a JSON object")
    p.add_argument("--run-id")
    p.add_argument("--logical-date", help="ISO 8601 (default: now)")
    p.add_argument("--json", action="store_true")
    for action in ("pause", "unpause"):
        p = add(dags, action, cmd_dags_pause, help=f"{action} a DAG's schedule")
        p.add_argument("dag_id")
    p = add(dags, "backfill", cmd_dags_backfill, help="run the intervals between two dates")
    p.add_argument("dag_id")
    p.add_argument("--start", required=True, help="ISO 8601")
    p.add_argument("--end", required=True, help="ISO 8601")
    p = add(dags, "test", cmd_dags_test, help="run a DAG once, in this process")
    p.add_argument("dag_id")
    p.add_argument("--conf", help="run conf, a JSON object")
    p.add_argument("--date", help="logical date, ISO 8601")

    runs = groups.add_parser("runs", help="DAG runs").add_subparsers(dest="action", required=True)
    p = add(runs, "list", cmd_runs_list)
    p.add_argument("--dag")
    p.add_argument("--state", choices=["queued", "running", "success", "failed"])
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p = add(runs, "show", cmd_runs_show)
    p.add_argument("run_id")
    p.add_argument("--dag", help="the DAG, when the run id is used by several")
    p.add_argument("--json", action="store_true")

    tasks = groups.add_parser("tasks", help="task instances").add_subparsers(
        dest="action", required=True
    )
    p = add(tasks, "logs", cmd_tasks_logs)
    p.add_argument("dag_id")
    p.add_argument("run_id")
    p.add_argument("task_id")
    p.add_argument("--try", dest="try_number", type=int)
    p = add(tasks, "test", cmd_tasks_test, help="run one task alone; nothing is recorded")
    p.add_argument("dag_id")
    p.add_argument("task_id")
    p.add_argument("--date", help="logical date, ISO 8601")
    p = add(tasks, "clear", cmd_tasks_clear, help="reset task instances so they run again")
    p.add_argument("dag_id")
    p.add_argument("run_id")
    p.add_argument("task_ids", nargs="*")
    p.add_argument("--downstream", action="store_true", help="also clear what depends on them")

    variables = groups.add_parser("variables").add_subparsers(
        dest="variables_action", required=True
    )
    p = add(variables, "get", cmd_variables)
    p.add_argument("key")
    p = add(variables, "set", cmd_variables)
    p.add_argument("key")
    p.add_argument("value")
    p.add_argument("--secret", action="store_true", help="encrypt at rest and mask in logs")
    p.add_argument("--json", dest="json_value", action="store_true", help="check VALUE is JSON")
    p = add(variables, "list", cmd_variables)
    p.add_argument("--json", action="store_true")
    p = add(variables, "delete", cmd_variables)
    p.add_argument("key")

    connections = groups.add_parser("connections").add_subparsers(
        dest="connections_action", required=True
    )
    p = add(connections, "add", cmd_connections)
    p.add_argument("conn_id")
    p.add_argument("--conn-uri")
    p.add_argument("--conn-type")
    p.add_argument("--conn-host")
    p.add_argument("--conn-login")
    p.add_argument("--conn-password")
    p.add_argument("--conn-schema")
    p.add_argument("--conn-port", type=int)
    p.add_argument("--conn-extra", help="a JSON object")
    p = add(connections, "list", cmd_connections)
    p.add_argument("--json", action="store_true")
    p = add(connections, "delete", cmd_connections)
    p.add_argument("conn_id")

    pools = groups.add_parser("pools").add_subparsers(dest="pools_action", required=True)
    p = add(pools, "set", cmd_pools)
    p.add_argument("name")
    p.add_argument("slots", type=int)
    p.add_argument("--description", default="")
    p = add(pools, "list", cmd_pools)
    p.add_argument("--json", action="store_true")
    p = add(pools, "delete", cmd_pools)
    p.add_argument("name")

    db = groups.add_parser("db").add_subparsers(dest="action", required=True)
    add(db, "migrate", cmd_db_migrate, help="apply pending schema migrations")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(
            overrides={
                "dags": args.dags,
                "db": args.db,
                "home": args.home,
                "log_format": args.log_format,
                "api_host": getattr(args, "api_host", None),
                "api_port": getattr(args, "api_port", None),
            }
        )
        configure_logging(settings.log_format, settings.log_level)
        code: int = args.func(settings, args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ConfigError, OrchestratorError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader of stdout went away (`| head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code
