"""The event-loop watchdog: measures loop lag and names what blocked the loop.

A heartbeat coroutine stamps the time every ``interval``; a plain thread checks
the stamp. When the stamp is older than ``threshold`` the loop is blocked: the
thread takes the loop thread's current stack (what is running instead of the
loop) and logs it once per stall. The heartbeat also records how late each
beat was, for the ``loop lag`` metric.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import anyio
import structlog

__all__ = ["LoopWatchdog"]

log = structlog.get_logger("orchestrator.watchdog")


class LoopWatchdog:
    def __init__(
        self,
        *,
        threshold: float = 0.2,
        interval: float = 0.1,
        on_lag: Callable[[float], None] | None = None,
    ) -> None:
        self.threshold = threshold
        self.interval = interval
        self.on_lag = on_lag
        self.stalls = 0
        self._beat = time.monotonic()
        self._stop = threading.Event()

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        loop_thread = threading.get_ident()
        watcher = threading.Thread(
            target=self._watch, args=(loop_thread,), name="loop-watchdog", daemon=True
        )
        watcher.start()
        task_status.started()
        try:
            while True:
                self._beat = before = time.monotonic()
                await anyio.sleep(self.interval)
                lag = max(0.0, time.monotonic() - before - self.interval)
                if self.on_lag is not None:
                    self.on_lag(lag)
        finally:
            self._stop.set()

    def _watch(self, loop_thread: int) -> None:
        reported_beat = -1.0
        while not self._stop.wait(self.interval):
            beat = self._beat
            blocked_for = time.monotonic() - beat - self.interval
            if blocked_for <= self.threshold or beat == reported_beat:
                continue
            reported_beat = beat
            self.stalls += 1
            frame = sys._current_frames().get(loop_thread)
            where = "".join(traceback.format_stack(frame)[-8:]) if frame is not None else "?"
            log.warning(
                "event loop blocked",
                blocked_ms=round(blocked_for * 1000),
                threshold_ms=round(self.threshold * 1000),
                where=where,
            )
