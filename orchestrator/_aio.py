"""Small helpers for structured concurrency."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["unwrap_single"]


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
