"""One DAG file to its DAGs, and the DAG files of a folder.

A leaf of the package: the trial-import child and the loader both use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import traceback
import types
from pathlib import Path

from orchestrator.authoring._dag import DAG, collect_dags
from orchestrator.errors import DagDefinitionError, DagImportError

__all__ = ["dag_files", "load_dag_file"]


def _module_name(path: Path) -> str:
    digest = hashlib.sha1(str(path.resolve()).encode(), usedforsecurity=False).hexdigest()[:10]
    return f"orchestrator_dag_{path.stem}_{digest}"


def load_dag_file(path: Path) -> list[DAG]:
    """Import one DAG file and return its DAGs; DagImportError says what went wrong.

    The source is compiled afresh on every call (no bytecode cache), so an edit is
    seen even when it keeps the file's size and modification second.
    """
    name = _module_name(path)
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    added_path = str(path.parent.resolve())
    sys.path.insert(0, added_path)
    try:
        code = compile(path.read_bytes(), str(path), "exec")
        with collect_dags() as found:
            exec(code, module.__dict__)
        for dag in found:
            dag.fileloc = str(path)
            dag.validate()
    except SystemExit as exc:
        sys.modules.pop(name, None)
        raise DagImportError(str(path), f"the file called sys.exit({exc.code})") from None
    except DagDefinitionError as exc:
        sys.modules.pop(name, None)
        raise DagImportError(str(path), str(exc), traceback.format_exc()) from None
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        where = f"line {exc.lineno}" if exc.lineno else "unknown line"
        message = f"syntax error at {where}: {exc.msg}"
        raise DagImportError(str(path), message, traceback.format_exc()) from None
    except Exception as exc:
        sys.modules.pop(name, None)
        message = f"{type(exc).__name__}: {exc}"
        raise DagImportError(str(path), message, traceback.format_exc()) from None
    finally:
        with contextlib.suppress(ValueError):  # the file may have removed it itself
            sys.path.remove(added_path)
    return found


def dag_files(folder: Path) -> list[Path]:
    """The ``.py`` files under ``folder``, skipping hidden and ``_``-prefixed names."""
    if folder.is_file():
        return [folder]
    return sorted(
        p
        for p in folder.rglob("*.py")
        if not any(part.startswith((".", "_")) for part in p.relative_to(folder).parts)
    )
