"""One deadline heap for the whole process, and the one coroutine that waits on it.

Retry delays, run timeouts and the trigger engine's next due instant are all
entries here; nothing else sleeps. The waiter wakes at the earliest deadline or
when an earlier one is added, pops every due entry and calls its callback.

Rules:
1. Callbacks are synchronous and quick: they record what is due and wake the
   component that acts on it. They never await, so a slow store cannot delay
   other deadlines.
2. Cancelling a handle marks it; the heap drops it when it surfaces.
3. Deadlines are wall-clock instants read from the injected clock; tests with a
   manual clock call :meth:`Timers.poke` after moving it.
4. A deadline in the future is met up to ``COALESCE`` seconds late, never early: the
   waiter sleeps that much past it, so deadlines close together (thousands of sensors'
   pokes a second) are met in one wake-up rather than one each.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from datetime import datetime
from typing import Any

import anyio
import structlog

from orchestrator._clock import Clock

__all__ = ["COALESCE", "TimerHandle", "Timers"]

COALESCE = 0.005

log = structlog.get_logger("orchestrator.timers")


class TimerHandle:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: datetime, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._heap: list[tuple[datetime, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._wake = anyio.Event()

    def call_at(self, when: datetime, callback: Callable[[], None]) -> TimerHandle:
        """Call ``callback`` once the clock reaches ``when``."""
        handle = TimerHandle(when, callback)
        earliest = self._heap[0][0] if self._heap else None
        heapq.heappush(self._heap, (when, next(self._seq), handle))
        if earliest is None or when < earliest:
            self._wake.set()
        return handle

    def poke(self) -> None:
        """Re-read the clock now (a manual clock was moved)."""
        self._wake.set()

    def next_deadline(self) -> datetime | None:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def fire_due(self) -> int:
        """Call every callback that is due; returns how many ran."""
        now = self.clock.now()
        fired = 0
        while self._heap and self._heap[0][0] <= now:
            _, _, handle = heapq.heappop(self._heap)
            if handle.cancelled:
                continue
            handle.cancelled = True
            fired += 1
            try:
                handle.callback()
            except Exception:
                log.exception("timer callback failed", callback=repr(handle.callback))
        return fired

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Wait for deadlines until cancelled."""
        task_status.started()
        while True:
            self.fire_due()
            deadline = self.next_deadline()
            self._wake = anyio.Event()
            delay = None
            if deadline is not None:
                delay = (deadline - self.clock.now()).total_seconds()
                delay = delay + COALESCE if delay > 0 else 0.0
            with anyio.move_on_after(delay):
                await self._wake.wait()
