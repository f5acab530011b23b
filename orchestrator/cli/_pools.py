"""``orchestrator pools``: set, list, delete."""

from __future__ import annotations

import argparse

from orchestrator._settings import Settings
from orchestrator.cli._common import Subcommands, command, fail, print_json, table, with_store

__all__ = ["register"]


def cmd_pools(settings: Settings, args: argparse.Namespace) -> int:
    action = args.pools_action
    if action == "set":
        if args.slots < 0:
            fail("SLOTS must be >= 0")
        with_store(settings, lambda s: s.set_pool(args.name, args.slots, args.description))
        print(f"pool {args.name!r} has {args.slots} slot(s)")
    elif action == "delete":
        if not with_store(settings, lambda s: s.delete_pool(args.name)):
            fail(f"pool {args.name!r} does not exist")
        print(f"pool {args.name!r} deleted")
    else:
        pools = with_store(settings, lambda s: s.get_pools())
        if args.json:
            print_json([{"name": n, "slots": s} for n, s in pools.items()])
        else:
            table(["name", "slots"], sorted(pools.items()))
    return 0


def register(groups: Subcommands) -> None:
    pools = groups.add_parser("pools").add_subparsers(dest="pools_action", required=True)
    p = command(pools, "set", cmd_pools)
    p.add_argument("name")
    p.add_argument("slots", type=int)
    p.add_argument("--description", default="")
    p = command(pools, "list", cmd_pools)
    p.add_argument("--json", action="store_true")
    p = command(pools, "delete", cmd_pools)
    p.add_argument("name")
