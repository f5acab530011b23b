"""Serving the API with uvicorn inside the daemon's task group."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import anyio
import uvicorn

from orchestrator.api._app import create_app
from orchestrator.api._protocol import ControlPlane, RunQueries
from orchestrator.errors import ConfigError

__all__ = ["serve_api"]


class _Server(uvicorn.Server):
    # The daemon owns SIGTERM/SIGINT (graceful drain, then exit); uvicorn must not
    # install its own handlers over them.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} for the API: {exc.strerror}") from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve_api(
    control: ControlPlane,
    runs: RunQueries,
    *,
    host: str,
    port: int,
    token: str = "",
    task_status: Any = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``host``:``port`` (0 picks a free port) until cancelled; starts with the URL."""
    sock = _bind(host, port)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        create_app(control, runs, token=token),
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    server = _Server(config)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    task_status.started(url)
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()
