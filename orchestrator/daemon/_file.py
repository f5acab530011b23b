"""The daemon file: where a running daemon says how to reach it (pid, API, database)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from orchestrator._settings import Settings

__all__ = ["daemon_file", "write_daemon_file"]


def daemon_file(settings: Settings) -> Path:
    """Where a running daemon says how to reach it (pid, API address, database)."""
    return settings.home / "daemon.json"


def write_daemon_file(settings: Settings, api_url: str) -> None:
    """Write it whole (a reader never sees half of it), readable by its owner only."""
    path = daemon_file(settings)
    info = {"pid": os.getpid(), "api_url": api_url, "db": settings.db_url}
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(info))
    tmp.replace(path)
