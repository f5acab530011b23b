"""Plugins: the modules DAG files import (custom operators, hooks, sensors, notifiers).

Rules:
1. ``ORCHESTRATOR_PLUGINS`` names a folder (``./plugins`` by default), a ``.zip`` file
   (MWAA's ``plugins.zip``), or an S3 prefix or ``.zip`` key, mirrored into the home as an
   S3 DAGs folder is (``plugins-s3/``). That local folder or zip is first on
   ``sys.path`` whenever a DAG file loads, in every process that loads one (the daemon,
   its parse workers, a task's own process, the CLI): ``ORCHESTRATOR_PLUGINS_PATH``
   carries it to child processes.
2. Reloaded with the DAGs: when a file of the plugins changes, the modules imported from
   them are forgotten before the next DAG file loads, and every DAG file loads again
   (the folder watch follows the plugins too).
3. Installed packages add plugins through the entry-point group ``orchestrator.plugins``:
   each entry point is loaded once per process before its first DAG file; one that fails
   is logged naming it and the entry point, and does not stop the others.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import zipimport
from pathlib import Path
from typing import Any

import structlog

__all__ = [
    "ENTRY_POINT_GROUP",
    "active_plugins",
    "plugin_errors",
    "plugins_signature",
    "prepare_plugins",
    "use_plugins",
]

log = structlog.get_logger("orchestrator.plugins")

ENTRY_POINT_GROUP = "orchestrator.plugins"
_ENV = "ORCHESTRATOR_PLUGINS_PATH"

_state: dict[str, Any] = {"location": None, "seen": None, "entry_points": False, "errors": {}}


def use_plugins(location: Path | None) -> None:
    """Make ``location`` (a folder or a zip, absent or not) this process's plugins, and
    its children's."""
    resolved = location.resolve() if location is not None else None
    _state["location"] = resolved
    if resolved is None:
        os.environ.pop(_ENV, None)
    else:
        os.environ[_ENV] = str(resolved)


def active_plugins() -> Path | None:
    """This process's plugins location (rule 1)."""
    location = _state["location"]
    if location is None and os.environ.get(_ENV):
        location = _state["location"] = Path(os.environ[_ENV])
    return location  # type: ignore[no-any-return]


def plugins_signature(location: Path | None) -> tuple[tuple[str, int, int], ...]:
    """What changes when a file of the plugins changes: each file's path, mtime and size."""
    if location is None:
        return ()
    try:
        if location.is_file():
            stat = location.stat()
            return ((str(location), stat.st_mtime_ns, stat.st_size),)
        if not location.is_dir():
            return ()
        found = []
        for path in sorted(location.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                stat = path.stat()
                found.append((str(path), stat.st_mtime_ns, stat.st_size))
        return tuple(found)
    except OSError:
        return ()


def prepare_plugins() -> None:
    """Before a DAG file loads: the plugins on ``sys.path``, what changed forgotten (rule
    2), the installed packages' entry points loaded (rule 3)."""
    location = active_plugins()
    if location is not None:
        entry = str(location)
        if entry not in sys.path:
            sys.path.insert(0, entry)
        signature = plugins_signature(location)
        if _state["seen"] is not None and signature != _state["seen"]:
            _forget(location)
        _state["seen"] = signature
    if not _state["entry_points"]:
        _state["entry_points"] = True
        _load_entry_points()


def plugin_errors() -> dict[str, str]:
    """Entry points that failed to load: name -> why."""
    return dict(_state["errors"])


def _forget(location: Path) -> None:
    """Drop every module imported from ``location`` and the importers' caches of it."""
    root = str(location)
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None) or ""
        if origin == root or origin.startswith(root + os.sep):
            del sys.modules[name]
    sys.path_importer_cache.pop(root, None)
    zip_cache = getattr(zipimport, "_zip_directory_cache", None)
    if isinstance(zip_cache, dict):
        zip_cache.pop(root, None)
    importlib.invalidate_caches()
    log.info("plugins changed: their modules load again", plugins=root)


def _load_entry_points() -> None:
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
            _state["errors"][entry.name] = why
            log.error("plugin failed to load", entry_point=entry.name, value=entry.value, error=why)
