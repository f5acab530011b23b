"""Reaching a running daemon from the CLI, through its HTTP API.

A daemon writes ``daemon.json`` in its home (pid, API address, database) when it is
ready and removes it when it stops. A CLI command that changes what the daemon does
(trigger, pause) goes through the API when that daemon is alive and uses the same
database, so the change takes effect at once; otherwise it writes to the store and
the daemon picks the change up when it next reads the store.
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx

from orchestrator._settings import Settings
from orchestrator.daemon._file import daemon_file

__all__ = ["DaemonClient", "find_daemon"]

# Longer than the API's own wait for an unavailable store (10 s), so its 503 arrives.
_TIMEOUT = 30.0


class DaemonClient:
    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, decoded JSON body); raises httpx.TransportError if unreachable."""
        content = None if body is None else json.dumps(body).encode()
        response = httpx.request(
            method, self.url + path, content=content, headers=self.headers, timeout=_TIMEOUT
        )
        try:
            return response.status_code, response.json()
        except json.JSONDecodeError:
            return response.status_code, {"error": response.text}


def find_daemon(settings: Settings) -> DaemonClient | None:
    """A client for the daemon serving this home and database, if one is running."""
    try:
        info = json.loads(daemon_file(settings).read_text())
        pid = int(info["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if info.get("db") != settings.db_url or not info.get("api_url"):
        return None
    return DaemonClient(str(info["api_url"]), settings.api_token)
