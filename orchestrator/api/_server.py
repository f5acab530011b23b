"""Serving the API with uvicorn inside the daemon's task group."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
import uvicorn
from starlette.routing import BaseRoute

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


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def host_names(bound: str, allowed: str = "") -> frozenset[str] | None:
    """The names a Host header may give for an API bound to ``bound``: on a loopback
    address, the loopback names (so a web page's DNS name cannot rebind to it); on a
    wildcard address, any name unless ``allowed`` lists them; else the address itself.
    ``allowed`` (comma-separated) always adds to the set."""
    extra = {name.strip().lower() for name in allowed.split(",") if name.strip()}
    if bound in ("0.0.0.0", "::", ""):
        return frozenset(extra | _LOOPBACK) if extra else None
    try:
        loopback = ipaddress.ip_address(bound).is_loopback
    except ValueError:
        loopback = bound == "localhost"
    return frozenset(extra | {bound.lower()} | (_LOOPBACK if loopback else set()))


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: a response's head and body, written apart, leave at
    # once instead of the body waiting for the client's delayed ACK (40 ms a request).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
    allowed_hosts: str = "",
    max_body: int = 1_048_576,
    routes: Sequence[BaseRoute] = (),
    task_status: Any = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``host``:``port`` (0 picks a free port) until cancelled; starts with the URL.
    ``allowed_hosts`` (comma-separated) adds names a request's Host header may give;
    ``routes`` are served beside the API's (the web UI)."""
    sock = _bind(host, port)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        create_app(
            control,
            runs,
            token=token,
            hosts=host_names(host, allowed_hosts),
            max_body=max_body,
            routes=routes,
        ),
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
