"""``orchestrator daemon``: the long-lived service; ``orchestrator daemons list``;
``orchestrator worker``: a Celery worker running tries (``executor = celery``)."""

from __future__ import annotations

import argparse
import json
import os

from orchestrator._settings import Settings
from orchestrator.cli._common import (
    Subcommands,
    UsageError,
    command,
    print_json,
    table,
    with_store,
)

__all__ = ["register"]


def cmd_daemon(settings: Settings, args: argparse.Namespace) -> int:
    from orchestrator.daemon._main import run_daemon

    return run_daemon(settings)


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from orchestrator.runtime._worker import run_worker

    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    if not queues:
        raise UsageError("--queues: give at least one queue name")
    if args.concurrency < 1:
        raise UsageError(f"--concurrency must be >= 1, got {args.concurrency}")
    return run_worker(settings, queues, args.concurrency)


def cmd_daemons_list(settings: Settings, args: argparse.Namespace) -> int:
    """The daemons on this store: on PostgreSQL from their leases; on SQLite, the one daemon
    the home's daemon file names, if it runs."""
    daemons = with_store(settings, lambda store: store.daemons())
    if not daemons and not settings.db_url.startswith(("postgresql://", "postgres://")):
        daemons = _the_daemon_of(settings)
    if args.json:
        print_json(daemons)
        return 0
    table(
        ["epoch", "state", "host", "pid", "api_url", "shards", "heartbeat_s", "takeovers"],
        [
            (
                d["epoch"],
                d["state"],
                d["host"],
                d["pid"],
                d["api_url"],
                d["shards"],
                d["heartbeat_age_s"],
                d["takeovers"],
            )
            for d in daemons
        ],
    )
    return 0


def _the_daemon_of(settings: Settings) -> list[dict[str, object]]:
    from orchestrator.daemon._file import daemon_file

    try:
        info = json.loads(daemon_file(settings).read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [
        {
            "epoch": None,
            "name": f"pid {info['pid']}",
            "host": os.uname().nodename,
            "pid": info["pid"],
            "api_url": info["api_url"],
            "state": "alive",
            "started_at": None,
            "heartbeat_age_s": None,
            "shards": None,
            "takeovers": 0,
            "ended_at": None,
            "ended_by": None,
        }
    ]


def register(groups: Subcommands) -> None:
    daemons = groups.add_parser("daemons").add_subparsers(dest="daemons_action", required=True)
    p = command(daemons, "list", cmd_daemons_list, help="the daemons on this store")
    p.add_argument("--json", action="store_true")
    p = groups.add_parser("worker", help="run the tries sent to Celery queues")
    p.set_defaults(func=cmd_worker)
    p.add_argument("--queues", "-Q", default="default", help="queue names, comma-separated")
    p.add_argument("--concurrency", "-c", type=int, default=os.cpu_count() or 1)
    p = groups.add_parser("daemon", help="run the long-lived service")
    p.set_defaults(func=cmd_daemon)
    # Also accepted after `daemon` (SPEC's form); SUPPRESS keeps the global value otherwise.
    p.add_argument("--dags", default=argparse.SUPPRESS, help="DAGs folder")
    p.add_argument("--db", default=argparse.SUPPRESS, help="database URL")
    p.add_argument("--home", default=argparse.SUPPRESS, help="home folder")
    p.add_argument("--log-format", choices=["console", "json"], default=argparse.SUPPRESS)
    p.add_argument("--api-host", default=argparse.SUPPRESS, help="ORCHESTRATOR_API_HOST")
    p.add_argument("--api-port", type=int, default=argparse.SUPPRESS, help="ORCHESTRATOR_API_PORT")
