"""DAG files to DAG objects, with every failure kept per file.

Rule: one broken file never hides the others. Each file is imported on its own;
its import error (syntax, exception, bad DAG definition, cycle) is recorded with
the file, the message and the traceback, and the other files' DAGs stay usable.
A file is imported here only after a trial import in a child process (see
``_trial``) finished in time, so a file that hangs or kills its interpreter costs
an import error, not the process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import anyio

from orchestrator.authoring._dag import DAG
from orchestrator.dagfiles._files import dag_files, load_dag_file
from orchestrator.dagfiles._trial import ParseWorker
from orchestrator.errors import DagImportError

__all__ = [
    "DagBag",
    "ImportErrorRecord",
    "import_dag_file",
    "load_dags",
    "load_dags_async",
    "load_folder",
]


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

    def add(self, path: Path, dags: list[DAG]) -> None:
        """Add a file's DAGs; a DAG id another file already defines is an import error."""
        for dag in dags:
            owner = self.dags.get(dag.dag_id)
            if owner is not None:
                self.import_errors.append(
                    ImportErrorRecord(
                        str(path), f"DAG {dag.dag_id!r} is already defined in {owner.fileloc}", ""
                    )
                )
                continue
            self.dags[dag.dag_id] = dag


async def import_dag_file(path: Path, worker: ParseWorker) -> list[DAG]:
    """Import ``path`` here once a trial import in ``worker`` succeeded in time.

    The import itself runs in a worker thread: it never blocks the event loop.
    """
    probe = await worker.probe(path)
    if not probe.ok:
        raise DagImportError(str(path), probe.error, probe.traceback)
    return await anyio.to_thread.run_sync(load_dag_file, path)


async def load_dags_async(folder: Path, worker: ParseWorker) -> DagBag:
    """Every DAG under ``folder``; files that fail are listed in ``import_errors``."""
    bag = DagBag(folder)
    if not await anyio.Path(folder).exists():
        bag.import_errors.append(
            ImportErrorRecord(str(folder), "the DAGs folder does not exist", "")
        )
        return bag
    for path in await anyio.to_thread.run_sync(dag_files, folder):
        try:
            dags = await import_dag_file(path, worker)
        except DagImportError as exc:
            bag.import_errors.append(ImportErrorRecord(exc.file, exc.message, exc.traceback))
            continue
        bag.add(path, dags)
    return bag


async def load_folder(folder: Path, *, import_timeout: float = 30.0) -> DagBag:
    """:func:`load_dags_async` with a trial child of its own, closed at the end."""
    worker = ParseWorker(import_timeout)
    try:
        return await load_dags_async(folder, worker)
    finally:
        await worker.close()


def load_dags(folder: Path, *, timeout: float = 30.0) -> DagBag:
    """:func:`load_folder` for synchronous callers (the CLI)."""
    return anyio.run(lambda: load_folder(folder, import_timeout=timeout))
