"""One DAG file to its DAGs, and the DAG files of a folder.

A leaf of the package: the trial-import child and the loader both use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
import traceback
import types
from pathlib import Path

from orchestrator.authoring._dag import DAG, collect_dags
from orchestrator.dagfiles._airflow import install_airflow_compat, is_airflow_name
from orchestrator.dagfiles._plugins import prepare_plugins
from orchestrator.errors import DagDefinitionError, DagImportError

__all__ = [
    "MAX_ERROR_CHARS",
    "MAX_TRACEBACK_CHARS",
    "bounded",
    "dag_files",
    "forget_dag_file",
    "load_dag_file",
]

MAX_ERROR_CHARS = 4_000
MAX_TRACEBACK_CHARS = 32_000


def bounded(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters, keeping its start and its end."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"


def _import_error(path: Path, message: str, trace: str = "") -> DagImportError:
    """An import error whose message and traceback are bounded, whatever the file raised."""
    return DagImportError(
        str(path), bounded(message, MAX_ERROR_CHARS), bounded(trace, MAX_TRACEBACK_CHARS)
    )


def _module_name(path: Path) -> str:
    digest = hashlib.sha1(str(path.resolve()).encode(), usedforsecurity=False).hexdigest()[:10]
    return f"orchestrator_dag_{path.stem}_{digest}"


_importing = threading.local()


def _end_a_copy_forked_while_importing() -> None:
    # A copy of this process forked by a DAG file's code must not run on as a second
    # daemon (holding its store claim, its sockets): it ends before that code resumes.
    if getattr(_importing, "active", False):
        os._exit(70)


os.register_at_fork(after_in_child=_end_a_copy_forked_while_importing)


def load_dag_file(path: Path) -> list[DAG]:
    """Import one DAG file and return its DAGs; DagImportError says what went wrong.

    The source is compiled afresh on every call (no bytecode cache), so an edit is
    seen even when it keeps the file's size and modification second. A process the
    file's code forks while it imports ends at once.
    """
    install_airflow_compat()
    prepare_plugins()
    name = _module_name(path)
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    added_path = str(path.parent.resolve())
    sys.path.insert(0, added_path)
    try:
        code = compile(path.read_bytes(), str(path), "exec")
        _importing.active = True
        try:
            with collect_dags() as found:
                exec(code, module.__dict__)
        finally:
            _importing.active = False
        for dag in found:
            dag.fileloc = str(path)
            dag.validate()
    except SystemExit as exc:
        sys.modules.pop(name, None)
        raise _import_error(path, f"the file called sys.exit({exc.code!r})") from None
    except DagDefinitionError as exc:
        sys.modules.pop(name, None)
        raise _import_error(path, str(exc), traceback.format_exc()) from None
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        where = f"line {exc.lineno}" if exc.lineno else "unknown line"
        message = f"syntax error at {where}: {exc.msg}"
        raise _import_error(path, message, traceback.format_exc()) from None
    except Exception as exc:
        sys.modules.pop(name, None)
        raise _import_error(path, _describe(exc), traceback.format_exc()) from None
    finally:
        with contextlib.suppress(ValueError):  # the file may have removed it itself
            sys.path.remove(added_path)
    return found


def _describe(exc: BaseException) -> str:
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:  # an exception whose __str__ fails is still an import error
        return type(exc).__name__
    if isinstance(exc, ImportError) and is_airflow_name(exc.name):
        text += " (orchestrator provides the Airflow names its README lists)"
    return text


def forget_dag_file(path: Path) -> None:
    """Drop the module of ``path`` (a file deleted or about to be re-imported), so what it
    held at module level is freed once no DAG or running task refers to it."""
    sys.modules.pop(_module_name(path), None)


def dag_files(folder: Path) -> list[Path]:
    """The ``.py`` files under ``folder``, skipping hidden and ``_``-prefixed names."""
    if folder.is_file():
        return [folder]
    return sorted(
        p
        for p in folder.rglob("*.py")
        if not any(part.startswith((".", "_")) for part in p.relative_to(folder).parts)
    )
