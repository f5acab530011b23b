"""DAG files to DAG objects, with every failure kept per file.

Rule: one broken file never hides the others. Each file is imported on its own;
its import error (syntax, exception, bad DAG definition, cycle) is recorded with
the file, the message and the traceback, and the other files' DAGs stay usable.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.dag import DAG, collect_dags
from orchestrator.errors import DagDefinitionError, DagImportError

__all__ = ["DagBag", "ImportErrorRecord", "load_dag_file", "load_dags"]


@dataclass(frozen=True, slots=True)
class ImportErrorRecord:
    file: str
    message: str
    traceback: str

    def to_json(self) -> dict[str, str]:
        return {"file": self.file, "error": self.message, "traceback": self.traceback}


@dataclass(slots=True)
class DagBag:
    folder: Path
    dags: dict[str, DAG] = field(default_factory=dict)
    import_errors: list[ImportErrorRecord] = field(default_factory=list)

    def get(self, dag_id: str) -> DAG | None:
        return self.dags.get(dag_id)


def _module_name(path: Path) -> str:
    digest = hashlib.sha1(str(path.resolve()).encode(), usedforsecurity=False).hexdigest()[:10]
    return f"orchestrator_dag_{path.stem}_{digest}"


def load_dag_file(path: Path) -> list[DAG]:
    """Import one DAG file and return its DAGs; DagImportError says what went wrong."""
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DagImportError(str(path), "not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    added_path = str(path.parent.resolve())
    sys.path.insert(0, added_path)
    try:
        with collect_dags() as found:
            spec.loader.exec_module(module)
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


def load_dags(folder: Path) -> DagBag:
    """Every DAG under ``folder``; files that fail are listed in ``import_errors``."""
    bag = DagBag(folder)
    if not folder.exists():
        bag.import_errors.append(
            ImportErrorRecord(str(folder), "the DAGs folder does not exist", "")
        )
        return bag
    owners: dict[str, str] = {}
    for path in dag_files(folder):
        try:
            dags = load_dag_file(path)
        except DagImportError as exc:
            bag.import_errors.append(ImportErrorRecord(exc.file, exc.message, exc.traceback))
            continue
        for dag in dags:
            if dag.dag_id in bag.dags:
                bag.import_errors.append(
                    ImportErrorRecord(
                        str(path),
                        f"DAG {dag.dag_id!r} is already defined in {owners[dag.dag_id]}",
                        "",
                    )
                )
                continue
            bag.dags[dag.dag_id] = dag
            owners[dag.dag_id] = str(path)
    return bag
