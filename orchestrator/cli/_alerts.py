"""``orchestrator alerts``: the outbox (``list --failed``: the dead letters) and ``retry``.

Both go through the daemon's API when a daemon is up; otherwise ``list`` reads the store
and ``retry`` makes the alert pending there, for the daemon to deliver when it starts.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from typing import Any

from orchestrator._settings import Settings
from orchestrator.cli._common import (
    Subcommands,
    command,
    fail,
    print_json,
    table,
    via_daemon,
    with_store,
)
from orchestrator.store import Store, alert_json

__all__ = ["register"]


def cmd_alerts_list(settings: Settings, args: argparse.Namespace) -> int:
    state = "failed" if args.failed else args.state
    query = {"limit": str(args.limit)}
    if state:
        query["state"] = state
    if args.dag:
        query["dag_id"] = args.dag
    alerts = via_daemon(settings, "GET", f"/api/v1/alerts?{urllib.parse.urlencode(query)}")
    if alerts is None:

        async def read(store: Store) -> list[dict[str, Any]]:
            rows = await store.list_alerts(state=state, dag_id=args.dag, limit=args.limit)
            return [alert_json(r) for r in rows]

        alerts = with_store(settings, read)
    if args.json:
        print_json(alerts)
        return 0
    table(
        [
            "id",
            "kind",
            "event",
            "dag_id",
            "run_id",
            "task_id",
            "target",
            "state",
            "attempts",
            "last_error",
        ],
        [
            (
                a["id"],
                a["kind"],
                a["event"],
                a["dag_id"],
                a["run_id"],
                a["task_id"] or "-",
                a["target"],
                a["state"],
                a["attempts"],
                (a["last_error"] or "-")[:80],
            )
            for a in alerts
        ],
    )
    return 0


def cmd_alerts_retry(settings: Settings, args: argparse.Namespace) -> int:
    path = f"/api/v1/alerts/{urllib.parse.quote(args.alert_id, safe='')}/retry"
    doc = via_daemon(settings, "POST", path)
    if doc is None:

        async def retry(store: Store) -> str | None:
            row = await store.alert_row(args.alert_id)
            if row is None:
                return f"alert {args.alert_id!r} not found"
            if await store.retry_alert(args.alert_id) is None:
                return f"alert {args.alert_id!r} is {row['state']}, not failed: nothing to retry"
            return None

        problem = with_store(settings, retry)
        if problem:
            fail(problem)
        print(
            "no daemon running: the alert is pending; the daemon sends it when it starts",
            file=sys.stderr,
        )
    print(f"alert {args.alert_id} pending")
    return 0


def register(groups: Subcommands) -> None:
    alerts = groups.add_parser(
        "alerts", help="the alert outbox and its dead letters"
    ).add_subparsers(dest="action", required=True)
    p = command(alerts, "list", cmd_alerts_list, help="alerts, newest first")
    p.add_argument("--failed", action="store_true", help="only the dead letters")
    p.add_argument("--state", choices=["pending", "delivered", "failed"])
    p.add_argument("--dag", help="only this DAG's")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p = command(alerts, "retry", cmd_alerts_retry, help="send a dead letter again")
    p.add_argument("alert_id")
