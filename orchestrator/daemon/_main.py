"""Running the daemon in this process, to its end."""

from __future__ import annotations

import os
import sys
import threading

import anyio
import structlog

from orchestrator._settings import Settings
from orchestrator.daemon._daemon import Daemon
from orchestrator.store._backend import ClaimLost

__all__ = ["run_daemon"]

log = structlog.get_logger("orchestrator.daemon")


def run_daemon(settings: Settings) -> int:
    """Run the daemon in this process until it is stopped; the exit code (2 when its work
    was taken over by another daemon: it stopped at once, writing nothing more)."""
    code = 0
    try:
        anyio.run(Daemon(settings).run)
    except (ClaimLost, BaseExceptionGroup) as error:
        # The writer or the heartbeat found the lease lost; what failed with it follows.
        lost = _lost_lease(error)
        if lost is None:
            raise
        log.error("daemon stopped: its work was taken over", error=str(lost))
        print(f"error: {lost}", file=sys.stderr)
        code = 2
    stuck = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    if any(not t.daemon for t in stuck):
        # A try stopped at the end of the grace period may hold a worker thread in a call
        # Python cannot interrupt (time.sleep, a socket read). The store already has what
        # a restart needs, so the process ends now rather than when that call returns.
        log.warning("exiting with tries still in threads", threads=len(stuck))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _lost_lease(error: BaseException) -> ClaimLost | None:
    """The ``ClaimLost`` among an exception group's leaves, if any."""
    if isinstance(error, ClaimLost):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _lost_lease(inner)
            if found is not None:
                return found
    return None
