"""``BaseHook``: what Airflow users' hooks subclass to reach a connection."""

from __future__ import annotations

from typing import Any

from orchestrator.resources._connections import Connection

__all__ = ["BaseHook"]


class BaseHook:
    """A hook: ``get_connection(conn_id)`` gives the stored connection (or the one in
    ``ORCHESTRATOR_CONN_<ID>``); subclasses write ``get_conn()``."""

    @classmethod
    def get_connection(cls, conn_id: str) -> Connection:
        return Connection.get(conn_id)

    def get_conn(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define get_conn()")
