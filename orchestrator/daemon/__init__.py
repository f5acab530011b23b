"""The daemon: one process, one root task group, every part wired together."""

from orchestrator.daemon._daemon import Daemon
from orchestrator.daemon._file import daemon_file
from orchestrator.daemon._main import run_daemon

__all__ = ["Daemon", "daemon_file", "run_daemon"]
