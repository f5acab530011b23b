"""``orchestrator events``: put one, list the stored ones, try a pattern on an event.

``put`` goes through the daemon's API when a daemon is up (matching DAGs start at
once); otherwise the event is stored, and the daemon matches it when it starts.
``test-pattern`` needs no daemon and no store, like EventBridge's TestEventPattern.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from typing import Any

from orchestrator._clock import SystemClock
from orchestrator._settings import Settings
from orchestrator.cli._common import (
    Subcommands,
    command,
    fail,
    json_arg,
    print_json,
    table,
    via_daemon,
    with_store,
)
from orchestrator.errors import InvalidRequest
from orchestrator.store import Store
from orchestrator.store._events import stored_event_json
from triggers import EventPattern, PatternError
from triggers._events import EntryError, from_entry

__all__ = ["register"]


def cmd_events_put(settings: Settings, args: argparse.Namespace) -> int:
    from orchestrator.daemon._events import checked_event

    json_arg(args.detail, "--detail")  # a JSON object, said before anything is sent
    entry: dict[str, Any] = {
        "Source": args.source,
        "DetailType": args.detail_type,
        "Detail": args.detail,
        "Resources": args.resource or [],
    }
    try:
        event = checked_event(from_entry(entry, SystemClock().now()))
    except (EntryError, InvalidRequest) as exc:
        fail(str(exc))
    doc = via_daemon(settings, "POST", "/api/v1/events", {"Entries": [entry]})
    if doc is None:

        async def store_it(store: Store) -> None:
            await store.record_events([event], "cli")

        with_store(settings, store_it)
        print("no daemon running: the event is stored and matched when it starts", file=sys.stderr)
        event_id = event["id"]
    else:
        (result,) = doc["Entries"]
        if "ErrorCode" in result:
            fail(f"{result['ErrorCode']}: {result['ErrorMessage']}")
        event_id = result["EventId"]
    if args.json:
        print_json({"id": event_id})
    else:
        print(f"event {event_id} put")
    return 0


def cmd_events_list(settings: Settings, args: argparse.Namespace) -> int:
    query = {"limit": str(args.limit)}
    if args.source:
        query["source"] = args.source
    doc = via_daemon(settings, "GET", f"/api/v1/events?{urllib.parse.urlencode(query)}")
    events = doc["events"] if doc is not None else with_store(settings, _list(args))
    if args.json:
        print_json(events)
        return 0
    table(
        ["id", "source", "detail-type", "time", "received_at", "runs"],
        [
            (
                e["id"],
                e["source"],
                e["detail-type"],
                e["time"],
                e["received_at"],
                ",".join(f"{r['dag_id']}/{r['run_id']}" for r in e["runs"]) or "-",
            )
            for e in events
        ],
    )
    return 0


def _list(args: argparse.Namespace) -> Any:
    async def read(store: Store) -> list[dict[str, Any]]:
        found, _ = await store.list_events(source=args.source, limit=args.limit)
        return [stored_event_json(event, at, runs) for event, at, runs in found]

    return read


def cmd_events_test_pattern(settings: Settings, args: argparse.Namespace) -> int:
    pattern = json_arg(args.pattern, "--pattern")
    event = json_arg(args.event, "--event")
    try:
        matched = EventPattern(pattern).matches(event)
    except PatternError as exc:
        fail(f"--pattern: {exc}")
    print("true" if matched else "false")
    return 0


def register(groups: Subcommands) -> None:
    events = groups.add_parser("events", help="put, list and test events").add_subparsers(
        dest="action", required=True
    )
    p = command(events, "put", cmd_events_put, help="put one event (as PutEvents does)")
    p.add_argument("--source", required=True)
    p.add_argument("--detail-type", required=True)
    p.add_argument("--detail", required=True, help="a JSON object")
    p.add_argument("--resource", action="append", help="a resource ARN (repeatable)")
    p.add_argument("--json", action="store_true")
    p = command(events, "list", cmd_events_list, help="stored events, newest first")
    p.add_argument("--source")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p = command(
        events, "test-pattern", cmd_events_test_pattern, help="whether a pattern matches an event"
    )
    p.add_argument("--pattern", required=True, help="an event pattern, JSON")
    p.add_argument("--event", required=True, help="an event, JSON")
