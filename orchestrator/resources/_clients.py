"""Clients shared by every task and poke of a process: one aiobotocore client per AWS
service and connection, one HTTP session, so 10,000 waiting sensors do not open 10,000
connections. Opened on first use, closed when the scheduler stops (``aclose``).

The HTTP session is aiohttp's (installed with aiobotocore): a request costs about a
seventh of httpx's CPU (0.08 ms against 0.56 ms on this machine), which is most of what
a thousand HttpSensors polling every few seconds cost the daemon."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    import aiohttp

__all__ = ["SharedClients"]


class SharedClients:
    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self._aws: dict[tuple[str, str], Any] = {}
        self._http: aiohttp.ClientSession | None = None
        self._lock = anyio.Lock()

    async def aws(
        self, service: str, conn_id: str, options: Callable[[], Awaitable[dict[str, Any]]]
    ) -> Any:
        """The process's client for ``service`` on connection ``conn_id``; ``options`` gives
        its ``create_client`` arguments the first time (``_aws.client_kwargs``)."""
        key = (service, conn_id)
        client = self._aws.get(key)
        if client is not None:
            return client
        async with self._lock:
            if key not in self._aws:
                from aiobotocore.session import get_session  # only where AWS is used

                creating = get_session().create_client(service, **await options())
                self._aws[key] = await self._stack.enter_async_context(creating)
            return self._aws[key]

    def http(self) -> aiohttp.ClientSession:
        """The process's HTTP session (connection pooling, at most 200 connections)."""
        if self._http is None:
            import aiohttp  # only in a process that makes HTTP calls

            connector = aiohttp.TCPConnector(limit=200)
            self._http = aiohttp.ClientSession(connector=connector, trust_env=True)
            self._stack.push_async_callback(self._http.close)
        return self._http

    async def aclose(self) -> None:
        stack, self._stack = self._stack, contextlib.AsyncExitStack()
        self._aws.clear()
        self._http = None
        await stack.aclose()
