"""AWS clients (aiobotocore) configured from an Airflow-style AWS connection.

The connection ``aws_conn_id`` (default ``aws_default``) gives the credentials
(login = access key id, password = secret access key, or the extras of those
names, plus ``aws_session_token``) and the extras ``endpoint_url`` and
``region_name``. Without such a connection, botocore's standard credential chain
and environment apply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiobotocore.session import get_session

from orchestrator._settings import Settings
from orchestrator.errors import NotFound
from orchestrator.resources._connections import Connection, read_connection
from orchestrator.store import Store

__all__ = ["aws_client", "client_kwargs", "connection_kwargs"]


def client_kwargs(conn: Connection | None) -> dict[str, Any]:
    """The ``create_client`` arguments a connection gives (none for no connection)."""
    if conn is None:
        return {}
    extra = conn.extra_dejson
    kwargs: dict[str, Any] = {}
    for name in ("endpoint_url", "region_name", "aws_session_token"):
        if extra.get(name):
            kwargs[name] = str(extra[name])
    key_id = conn.login or extra.get("aws_access_key_id")
    secret = conn.password or extra.get("aws_secret_access_key")
    if key_id and secret:
        kwargs["aws_access_key_id"] = str(key_id)
        kwargs["aws_secret_access_key"] = str(secret)
    return kwargs


async def connection_kwargs(store: Store, settings: Settings, conn_id: str) -> dict[str, Any]:
    """``client_kwargs`` of the connection ``conn_id``, or of none when it does not exist."""
    try:
        conn: Connection | None = await read_connection(store, settings, conn_id)
    except NotFound:
        conn = None
    return client_kwargs(conn)


@asynccontextmanager
async def aws_client(
    service: str,
    store: Store,
    settings: Settings,
    aws_conn_id: str = "aws_default",
    **options: Any,
) -> AsyncIterator[Any]:
    """An aiobotocore client for ``service``, open for the block (``options``: e.g. config)."""
    kwargs = await connection_kwargs(store, settings, aws_conn_id)
    async with get_session().create_client(service, **kwargs, **options) as client:
        yield client
