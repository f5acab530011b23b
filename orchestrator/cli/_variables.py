"""``orchestrator variables``: get, set, list, delete."""

from __future__ import annotations

import argparse

from orchestrator._settings import Settings
from orchestrator.cli._common import (
    Subcommands,
    command,
    fail,
    json_arg,
    print_json,
    table,
    with_store,
)
from orchestrator.resources._variables import read_variable, write_variable

__all__ = ["register"]


def cmd_variables(settings: Settings, args: argparse.Namespace) -> int:
    action = args.variables_action
    if action == "get":
        value = with_store(settings, lambda s: read_variable(s, settings, args.key))
        if value is None:
            fail(f"variable {args.key!r} does not exist")
        print(value)
    elif action == "set":
        if args.json_value:
            json_arg(args.value, "VALUE", want_object=False)
        with_store(
            settings,
            lambda s: write_variable(s, settings, args.key, args.value, secret=args.secret),
        )
        print(f"variable {args.key!r} set")
    elif action == "delete":
        if not with_store(settings, lambda s: s.delete_variable(args.key)):
            fail(f"variable {args.key!r} does not exist")
        print(f"variable {args.key!r} deleted")
    else:
        rows = with_store(settings, lambda s: s.list_variables())
        shown = [{"key": k, "value": "***" if enc else v} for k, v, enc in rows]
        if args.json:
            print_json(shown)
        else:
            table(["key", "value"], [[r["key"], r["value"]] for r in shown])
    return 0


def register(groups: Subcommands) -> None:
    variables = groups.add_parser("variables").add_subparsers(
        dest="variables_action", required=True
    )
    p = command(variables, "get", cmd_variables)
    p.add_argument("key")
    p = command(variables, "set", cmd_variables)
    p.add_argument("key")
    p.add_argument("value")
    p.add_argument("--secret", action="store_true", help="encrypt at rest and mask in logs")
    p.add_argument("--json", dest="json_value", action="store_true", help="check VALUE is JSON")
    p = command(variables, "list", cmd_variables)
    p.add_argument("--json", action="store_true")
    p = command(variables, "delete", cmd_variables)
    p.add_argument("key")
