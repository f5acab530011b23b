"""Small helpers for structured concurrency."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import anyio

__all__ = ["unless_set", "unwrap_single"]


async def unless_set(
    event: anyio.Event,
    work: Callable[[], Awaitable[object]],
    on_set: Callable[[], None] = lambda: None,
) -> bool:
    """Await ``work`` unless ``event`` is set first (then ``on_set`` runs and ``work`` is
    cancelled); whether ``work`` finished."""
    finished = False
    async with anyio.create_task_group() as group:

        async def cancel_when_set() -> None:
            await event.wait()
            on_set()
            group.cancel_scope.cancel()

        group.start_soon(cancel_when_set)
        await work()
        finished = True
        group.cancel_scope.cancel()
    return finished


@contextmanager
def unwrap_single() -> Iterator[None]:
    """Re-raise the one exception of a task group's ExceptionGroup as itself.

    A task group wraps even a lone error of its body in an ExceptionGroup; callers
    (the CLI, tests) should see the error they would have seen without the group.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
