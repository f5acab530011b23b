"""``python bench/_profiled.py OUT ARGS...``: ``orchestrator ARGS`` under cProfile, its
stats written to OUT however the process ends (the daemon may leave by ``os._exit``)."""

from __future__ import annotations

import cProfile
import os
import sys

from orchestrator.cli import main

out, args = sys.argv[1], sys.argv[2:]
profile = cProfile.Profile()
real_exit = os._exit


def _exit(code: int) -> None:
    profile.disable()
    profile.dump_stats(out)
    real_exit(code)


os._exit = _exit  # type: ignore[assignment]
sys.argv = ["orchestrator", *args]
profile.enable()
try:
    main()
finally:
    _exit(0)
