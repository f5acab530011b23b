"""``orchestrator datasets``: list them, update one from outside.

``update`` goes through the daemon's API when a daemon is up (its consumers fire at
once); otherwise the event is stored with its deliveries and the daemon fires what it
satisfies when it starts.
"""

from __future__ import annotations

import argparse
import sys
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
from orchestrator.store import Store, event_json

__all__ = ["register"]


def cmd_datasets_list(settings: Settings, args: argparse.Namespace) -> int:
    doc = via_daemon(settings, "GET", "/api/v1/datasets")
    if doc is None:
        doc = with_store(settings, _list_in_store)
    if args.json:
        print_json(doc)
    else:
        table(
            ["uri", "last_updated", "consumers", "producers"],
            [
                (
                    d["uri"],
                    d["last_updated"] or "-",
                    ",".join(d["consumers"]) or "-",
                    ",".join(d["producers"]) or "-",
                )
                for d in doc
            ],
        )
    return 0


async def _list_in_store(store: Store) -> list[dict[str, Any]]:
    return [d.to_json() for d in await store.list_datasets()]


def cmd_datasets_update(settings: Settings, args: argparse.Namespace) -> int:
    from orchestrator.daemon._datasets import external_event

    extra = json_arg(args.extra, "--extra") if args.extra is not None else {}
    body = {"uri": args.uri, "extra": extra}
    try:
        event = external_event(args.uri, extra, SystemClock().now())  # checked before sending
    except InvalidRequest as exc:
        fail(str(exc))
    doc = via_daemon(settings, "POST", "/api/v1/datasets/events", body)
    if doc is None:

        async def store_it(store: Store) -> dict[str, Any]:
            await store.record_dataset_events([event])
            return {**event_json(event), "consumers": await store.dataset_consumers(event.uri)}

        doc = with_store(settings, store_it)
        print("no daemon running: the update is stored for its consumers", file=sys.stderr)
    if args.json:
        print_json(doc)
    else:
        consumers = ", ".join(doc["consumers"]) or "no consumers"
        print(f"dataset {doc['uri']} updated ({consumers})")
    return 0


def register(groups: Subcommands) -> None:
    datasets = groups.add_parser("datasets", help="list and update datasets").add_subparsers(
        dest="action", required=True
    )
    p = command(datasets, "list", cmd_datasets_list, help="datasets, their consumers and producers")
    p.add_argument("--json", action="store_true")
    p = command(datasets, "update", cmd_datasets_update, help="update a dataset from outside")
    p.add_argument("uri")
    p.add_argument("--extra", help="the event's extra, a JSON object")
    p.add_argument("--json", action="store_true")
