"""User callbacks (``on_failure_callback`` and friends): run, logged, never fatal."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import structlog

from orchestrator.resources._services import worker_thread

__all__ = ["run_callback"]

log = structlog.get_logger("orchestrator.alerts")


async def run_callback(
    callback: Callable[..., Any] | list[Callable[..., Any]] | None,
    context: dict[str, Any],
    *,
    kind: str,
) -> None:
    """Call ``callback(context)``: async ones on the loop, sync ones in a thread.

    An exception in a callback is logged with its kind and never changes a state.
    """
    callbacks = callback if isinstance(callback, list) else [callback] if callback else []
    for fn in callbacks:
        try:
            if inspect.iscoroutinefunction(fn):
                await fn(context)
            else:
                await anyio.to_thread.run_sync(worker_thread(fn), context)
        except Exception as exc:
            ti = context.get("ti")
            log.warning(
                "callback failed",
                kind=kind,
                callback=getattr(fn, "__name__", repr(fn)),
                dag_id=getattr(ti, "dag_id", None),
                run_id=getattr(ti, "run_id", None),
                task_id=getattr(ti, "task_id", None),
                error=f"{type(exc).__name__}: {exc}",
            )
