"""Running the daemon in this process, to its end."""

from __future__ import annotations

import os
import sys
import threading

import anyio
import structlog

from orchestrator._settings import Settings
from orchestrator.daemon._daemon import Daemon

__all__ = ["run_daemon"]

log = structlog.get_logger("orchestrator.daemon")


def run_daemon(settings: Settings) -> int:
    """Run the daemon in this process until it is stopped; the exit code."""
    anyio.run(Daemon(settings).run)
    stuck = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    if any(not t.daemon for t in stuck):
        # A try stopped at the end of the grace period may hold a worker thread in a call
        # Python cannot interrupt (time.sleep, a socket read). The store already has what
        # a restart needs, so the process ends now rather than when that call returns.
        log.warning("exiting with tries still in threads", threads=len(stuck))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
