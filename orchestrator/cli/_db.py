"""``orchestrator db``: migrate."""

from __future__ import annotations

import argparse

import anyio

from orchestrator._settings import Settings
from orchestrator.cli._common import Subcommands, command
from orchestrator.store import open_store

__all__ = ["register"]


def cmd_db_migrate(settings: Settings, args: argparse.Namespace) -> int:
    async def body() -> list[int]:
        async with open_store(settings.db_url, migrate=False) as store:
            return await store.migrate()

    applied = anyio.run(body)
    print(f"applied migrations: {applied}" if applied else "the database is up to date")
    return 0


def register(groups: Subcommands) -> None:
    db = groups.add_parser("db").add_subparsers(dest="action", required=True)
    command(db, "migrate", cmd_db_migrate, help="apply pending schema migrations")
