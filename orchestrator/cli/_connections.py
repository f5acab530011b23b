"""``orchestrator connections``: add, list, delete (secrets encrypted, never printed)."""

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
from orchestrator.resources._connections import Connection
from orchestrator.resources._secrets import cipher_for

__all__ = ["register"]


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
                extra=json_arg(args.conn_extra, "--conn-extra"),
            )
        else:
            fail("connections add: give --conn-uri or --conn-type")
        with_store(settings, lambda s: s.set_connection(conn.to_record(cipher)))
        print(f"connection {args.conn_id!r} saved")
    elif action == "delete":
        if not with_store(settings, lambda s: s.delete_connection(args.conn_id)):
            fail(f"connection {args.conn_id!r} does not exist")
        print(f"connection {args.conn_id!r} deleted")
    else:
        records = with_store(settings, lambda s: s.list_connections())
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
            print_json(shown)
        else:
            table(
                ["conn_id", "conn_type", "host", "port", "login", "schema"],
                [
                    [c["conn_id"], c["conn_type"], c["host"], c["port"], c["login"], c["schema"]]
                    for c in shown
                ],
            )
    return 0


def register(groups: Subcommands) -> None:
    connections = groups.add_parser("connections").add_subparsers(
        dest="connections_action", required=True
    )
    p = command(connections, "add", cmd_connections)
    p.add_argument("conn_id")
    p.add_argument("--conn-uri")
    p.add_argument("--conn-type")
    p.add_argument("--conn-host")
    p.add_argument("--conn-login")
    p.add_argument("--conn-password")
    p.add_argument("--conn-schema")
    p.add_argument("--conn-port", type=int)
    p.add_argument("--conn-extra", help="a JSON object")
    p = command(connections, "list", cmd_connections)
    p.add_argument("--json", action="store_true")
    p = command(connections, "delete", cmd_connections)
    p.add_argument("conn_id")
