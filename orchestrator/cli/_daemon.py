"""``orchestrator daemon``: the long-lived service."""

from __future__ import annotations

import argparse

from orchestrator._settings import Settings
from orchestrator.cli._common import Subcommands

__all__ = ["register"]


def cmd_daemon(settings: Settings, args: argparse.Namespace) -> int:
    from orchestrator.daemon._main import run_daemon

    return run_daemon(settings)


def register(groups: Subcommands) -> None:
    p = groups.add_parser("daemon", help="run the long-lived service")
    p.set_defaults(func=cmd_daemon)
    # Also accepted after `daemon` (SPEC's form); SUPPRESS keeps the global value otherwise.
    p.add_argument("--dags", default=argparse.SUPPRESS, help="DAGs folder")
    p.add_argument("--db", default=argparse.SUPPRESS, help="database URL")
    p.add_argument("--home", default=argparse.SUPPRESS, help="home folder")
    p.add_argument("--log-format", choices=["console", "json"], default=argparse.SUPPRESS)
    p.add_argument("--api-host", default=argparse.SUPPRESS, help="ORCHESTRATOR_API_HOST")
    p.add_argument("--api-port", type=int, default=argparse.SUPPRESS, help="ORCHESTRATOR_API_PORT")
