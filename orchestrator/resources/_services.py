"""What a running task reaches the orchestrator through: its services and its context.

``Services`` is the handle the runtime gives a try: the settings, the store, and
the run intake (through which ``TriggerDagRunOperator`` asks for a run). The
context of the try running in this thread or coroutine is here too, for
``get_current_context()``.

Calls from synchronous user code (Variable.get, Connection lookups) into the async
store follow one rule: the async store belongs to the event loop. Sync code in a task's worker
thread reaches it through anyio's thread portal. Code with no running task (a DAG
file read by the CLI) opens the store on a fresh loop. On the loop thread itself,
blocking would stall every task, so the call runs on a helper thread with its own
connection, and async code should prefer the ``a``-prefixed coroutine variants.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
import anyio.from_thread

from orchestrator.resources._clients import SharedClients

if TYPE_CHECKING:
    from orchestrator._settings import Settings
    from orchestrator.core import RunRecord, RunState
    from orchestrator.store import Store

__all__ = [
    "RunRequests",
    "Services",
    "call_store",
    "context_scope",
    "current_context",
    "current_services",
    "services_context",
    "worker_thread",
]

T = TypeVar("T")


class RunRequests(Protocol):
    """What task code may ask about runs (the runtime's run intake answers)."""

    async def request_run(
        self,
        dag_id: str,
        *,
        conf: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        logical_date: datetime | None = None,
    ) -> RunRecord:
        """Create a manual run of ``dag_id``; Conflict if the run id is taken."""

    async def run_state(self, dag_id: str, run_id: str) -> RunState:
        """The stored state of a run; NotFound if there is none."""


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    store: Store
    runs: RunRequests | None = None
    clients: SharedClients = field(default_factory=SharedClients)


_services: contextvars.ContextVar[Services | None] = contextvars.ContextVar(
    "orchestrator_services", default=None
)
_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "orchestrator_current_context", default=None
)


def current_context() -> dict[str, Any] | None:
    """The context of the try running in this thread or coroutine, if any."""
    return _context.get()


@contextmanager
def context_scope(context: dict[str, Any]) -> Iterator[None]:
    token = _context.set(context)
    try:
        yield
    finally:
        _context.reset(token)


_local = threading.local()


def current_services() -> Services | None:
    return _services.get()


@contextmanager
def services_context(services: Services) -> Iterator[None]:
    token = _services.set(services)
    try:
        yield
    finally:
        _services.reset(token)


def worker_thread(func: Callable[..., T]) -> Callable[..., T]:
    """Wrap ``func`` to mark the anyio worker thread it runs in as portal-capable."""

    def run(*args: Any) -> T:
        _local.portal = True
        try:
            return func(*args)
        finally:
            _local.portal = False

    return run


def _on_event_loop() -> bool:
    try:
        import asyncio

        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def call_store(op: Callable[[Store], Coroutine[Any, Any, T]]) -> T:
    """Run ``op(store)`` from synchronous code, wherever that code runs."""
    services = _services.get()
    if services is not None and getattr(_local, "portal", False):
        return anyio.from_thread.run(op, services.store)
    settings = services.settings if services is not None else None
    if not _on_event_loop():
        return anyio.run(_with_fresh_store, op, settings)
    result: list[T] = []
    errors: list[BaseException] = []

    def helper() -> None:
        try:
            result.append(anyio.run(_with_fresh_store, op, settings))
        except BaseException as exc:  # handed back to the caller below
            errors.append(exc)

    thread = threading.Thread(target=helper, name="orchestrator-store-call")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


async def _with_fresh_store(
    op: Callable[[Store], Coroutine[Any, Any, T]], settings: Settings | None
) -> T:
    from orchestrator._settings import load_settings
    from orchestrator.store import open_store

    settings = settings or load_settings()
    async with open_store(settings.db_url) as store:
        return await op(store)
