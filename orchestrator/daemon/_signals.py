"""SIGTERM and SIGINT: the first asks for a graceful shutdown, a second exits at once."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import anyio
import structlog

__all__ = ["handle_signals"]

log = structlog.get_logger("orchestrator.daemon")


async def handle_signals(request_stop: Callable[[], None]) -> None:
    received = 0
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            received += 1
            if received > 1:
                log.warning("second signal: exiting now", signal=signal.Signals(signum).name)
                os._exit(128 + signum)
            log.info("signal received: shutting down", signal=signal.Signals(signum).name)
            request_stop()
