"""The live DAGs folder: loaded once, then kept current by watching the files.

Rules:
1. Only files that changed are imported again (added, modified, deleted), found
   by watching the folder, never by re-importing everything on a timer.
2. Each import is a trial import in a parse child under the timeout, then the
   real one in a worker thread (``_loader.import_dag_file``): the loop never blocks
   and a bad file costs only its own DAGs. Files import in parallel, up to the
   parse worker's size, and each file's change is reported as soon as it is in: a
   slow file holds up neither the others nor changes made while it imports. One
   file is imported by one task at a time; a change to it meanwhile imports it again
   after. Deleted files are let go of first, so a DAG moved from one file to another
   in one change keeps loading.
3. A file's DAGs are replaced as a unit. A file that stops importing keeps no
   DAGs and gets an import error; fixing it clears the error.
4. A DAG id is owned by the first file that defined it; another file defining
   it gets an import error until the owner lets it go. Among files read in the
   same change (the first load), the one that sorts first owns it, whichever
   finished importing first.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.lowlevel
import structlog

from orchestrator.authoring._dag import DAG
from orchestrator.dagfiles._files import dag_files, forget_dag_file
from orchestrator.dagfiles._loader import ImportErrorRecord, import_dag_file
from orchestrator.dagfiles._plugins import plugins_signature
from orchestrator.dagfiles._trial import ParseWorker
from orchestrator.errors import DagImportError

__all__ = ["DagFolder", "FolderChange", "Report"]

log = structlog.get_logger("orchestrator.loader")


@dataclass(frozen=True, slots=True)
class FolderChange:
    """DAGs defined or redefined, and DAG ids that no file defines any more; a change of
    import errors alone is reported too, with both empty and ``errors`` set."""

    upserted: list[DAG]
    removed: list[str]
    errors: bool = False


Report = Callable[[FolderChange], Awaitable[None]]
_GATHER_SECONDS = 0.05  # how long a report waits for other files importing at the same time


@dataclass(slots=True)
class DagFolder:
    folder: Path
    worker: ParseWorker
    plugins: Path | None = None  # a plugins folder or zip: a change reloads every file
    dags: dict[str, DAG] = field(default_factory=dict)
    errors: dict[str, ImportErrorRecord] = field(default_factory=dict)
    _by_file: dict[str, list[str]] = field(default_factory=dict)
    _sigs: dict[str, tuple[int, int]] = field(default_factory=dict)  # (mtime_ns, size)
    _busy: set[str] = field(default_factory=set)  # files importing now
    _again: set[str] = field(default_factory=set)  # files changed while importing
    _unreported: list[FolderChange] = field(default_factory=list)  # applied, not reported
    _delivering: bool = False
    _plugins_seen: tuple[tuple[str, int, int], ...] | None = None
    # awatch waits in a worker thread that cancellation cannot interrupt; the thread
    # checks this event every step, so stop() must be called before cancelling watch().
    _stop: anyio.Event = field(default_factory=anyio.Event)

    def __post_init__(self) -> None:
        # The watcher reports absolute paths; keys and filelocs must be the same paths.
        self.folder = self.folder.resolve()
        if self.plugins is not None:
            self.plugins = self.plugins.resolve()

    def stop(self) -> None:
        """Let the watcher thread return, so that cancelling :meth:`watch` is prompt."""
        self._stop.set()

    @property
    def import_errors(self) -> list[ImportErrorRecord]:
        return [self.errors[k] for k in sorted(self.errors)]

    async def rescan(self, report: Report | None = None) -> FolderChange:
        """Re-import the files added, changed or deleted since they were last read."""
        if not await anyio.Path(self.folder).exists():
            if str(self.folder) not in self.errors:
                log.error("DAGs folder does not exist", folder=str(self.folder))
            self.errors[str(self.folder)] = ImportErrorRecord(
                str(self.folder), "the DAGs folder does not exist", ""
            )
            return await self.refresh({Path(p) for p in self._sigs}, report)
        self.errors.pop(str(self.folder), None)
        current = await anyio.to_thread.run_sync(_signatures, self.folder)
        stale = {Path(p) for p in set(current) ^ set(self._sigs)}
        stale |= {Path(p) for p, sig in current.items() if self._sigs.get(p, sig) != sig}
        plugins = await anyio.to_thread.run_sync(plugins_signature, self.plugins)
        if self._plugins_seen is not None and plugins != self._plugins_seen:
            log.info("plugins changed: every DAG file loads again", plugins=str(self.plugins))
            stale |= {Path(p) for p in current}  # the modules go in load_dag_file
        self._plugins_seen = plugins
        return await self.refresh(stale, report)

    async def refresh(self, paths: set[Path], report: Report | None = None) -> FolderChange:
        """Re-import ``paths`` (each may have been added, changed or deleted), in parallel;
        each file's change goes to ``report`` when it is in. Returns all of them."""
        upserted: dict[str, DAG] = {}
        removed: set[str] = set()
        claimed: dict[str, str] = {}  # DAG id -> the file that took it in this refresh

        async def one(path: Path, sig: tuple[int, int] | None) -> None:
            key = str(path)
            if key in self._busy:
                self._again.add(key)
                return
            self._busy.add(key)
            try:
                while True:
                    change = await self._refresh_file(path, sig, claimed)
                    for dag in change.upserted:
                        upserted[dag.dag_id] = dag
                    removed.update(change.removed)
                    if report is not None and (change.upserted or change.removed or change.errors):
                        self._unreported.append(change)
                        await self._deliver(report)
                    if key not in self._again:
                        break
                    self._again.discard(key)
                    sig = await anyio.to_thread.run_sync(_signature, self.folder, path)
            finally:
                self._busy.discard(key)

        signatures = await anyio.to_thread.run_sync(_signatures_of, self.folder, sorted(paths))
        for path, sig in signatures.items():
            if sig is None:  # deleted files first
                await one(path, sig)
        async with anyio.create_task_group() as tg:
            for path, sig in signatures.items():
                if sig is not None:
                    tg.start_soon(one, path, sig)
        return FolderChange(
            [upserted[d] for d in sorted(upserted) if d in self.dags],
            sorted(d for d in removed if d not in self.dags),
        )

    async def _deliver(self, report: Report) -> None:
        """Report the changes applied so far, in the order they were applied, merged into
        one. One task delivers at a time and takes along whatever was applied meanwhile;
        while other files are still importing it waits a moment for them, so many files
        loading at once make a few reports, not one each."""
        if self._delivering:
            return  # the delivery under way takes this change too
        self._delivering = True
        try:
            while self._unreported:
                if len(self._busy) > 1:
                    await anyio.sleep(_GATHER_SECONDS)
                changes, self._unreported = self._unreported, []
                upserted: dict[str, DAG] = {}
                removed: set[str] = set()
                for change in changes:
                    for dag_id in change.removed:
                        upserted.pop(dag_id, None)
                        removed.add(dag_id)
                    for dag in change.upserted:
                        removed.discard(dag.dag_id)
                        upserted[dag.dag_id] = dag
                await report(FolderChange(list(upserted.values()), sorted(removed)))
        finally:
            self._delivering = False

    async def _refresh_file(
        self, path: Path, sig: tuple[int, int] | None, claimed: dict[str, str]
    ) -> FolderChange:
        """Import one file afresh and apply what it defines now, as one change."""
        dags: list[DAG] = []
        error = None
        if sig is None:
            forget_dag_file(path)
        else:
            dags, error = await self._import(path)
        return self._apply_file(path, sig, dags, error, claimed)

    def _apply_file(
        self,
        path: Path,
        sig: tuple[int, int] | None,
        dags: list[DAG],
        error: ImportErrorRecord | None,
        claimed: dict[str, str],
    ) -> FolderChange:
        """The file's DAGs replaced as a unit (rule 3)."""
        before = set(self._by_file.pop(str(path), []))
        error_before = self.errors.pop(str(path), None)
        self._sigs.pop(str(path), None)
        if sig is not None:
            self._sigs[str(path)] = sig
        if error is not None:
            self.errors[str(path)] = error
        kept = self._adopt(path, dags, claimed)
        removed = before - {d.dag_id for d in kept}
        for dag_id in removed:
            if not any(dag_id in ids for ids in self._by_file.values()):
                self.dags.pop(dag_id, None)
        return FolderChange(
            kept,
            sorted(d for d in removed if d not in self.dags),
            errors=self.errors.get(str(path)) != error_before,
        )

    async def _import(self, path: Path) -> tuple[list[DAG], ImportErrorRecord | None]:
        forget_dag_file(path)
        try:
            dags = await import_dag_file(path, self.worker)
        except DagImportError as exc:
            log.error(
                "DAG file failed to import",
                file=exc.file,
                error=exc.message,
                traceback=exc.traceback or None,
            )
            return [], ImportErrorRecord(exc.file, exc.message, exc.traceback)
        log.info("DAG file loaded", file=str(path), dags=[d.dag_id for d in dags])
        return dags, None

    def _adopt(self, path: Path, dags: list[DAG], claimed: dict[str, str]) -> list[DAG]:
        kept = []
        for dag in dags:
            current = self.dags.get(dag.dag_id)
            owner = current.fileloc if current is not None else None
            if (
                owner is not None
                and owner != str(path)
                and dag.dag_id in self._by_file.get(owner, ())
            ):
                if claimed.get(dag.dag_id) == owner and path < Path(owner):
                    self._by_file[owner].remove(dag.dag_id)  # rule 4: the first in order
                    self._refuse(Path(owner), dag.dag_id, str(path))
                else:
                    self._refuse(path, dag.dag_id, owner)
                    continue
            self.dags[dag.dag_id] = dag
            claimed[dag.dag_id] = str(path)
            kept.append(dag)
        self._by_file[str(path)] = [d.dag_id for d in kept]
        return kept

    def _refuse(self, path: Path, dag_id: str, owner: str) -> None:
        message = f"DAG {dag_id!r} is already defined in {owner}"
        self.errors[str(path)] = ImportErrorRecord(str(path), message, "")
        log.error("DAG file failed to import", file=str(path), error=message)

    async def watch(
        self,
        on_change: Callable[[FolderChange], Awaitable[None]],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Follow the folder until cancelled, reporting each change.

        The watcher is started first and the folder re-scanned after, so a change
        made between the start-up load and the watcher's start is not missed.
        """
        started = False
        while not self._stop.is_set():
            if not await anyio.Path(self.folder).is_dir():
                await self.rescan(on_change)
                if not started:
                    task_status.started()
                    started = True
                await anyio.sleep(1.0)  # nothing to watch until the folder exists
                continue
            send, receive = anyio.create_memory_object_stream[set[Path]](64)
            async with anyio.create_task_group() as tg, receive:
                tg.start_soon(self._pump, send)
                try:
                    # One checkpoint lets the pump set the watcher up (awatch does it before
                    # its first await); the rescan then covers anything changed before that.
                    await anyio.lowlevel.checkpoint()
                    await self.rescan(on_change)
                    if not started:
                        task_status.started()
                        started = True
                    async for paths in receive:
                        if self.plugins is not None and any(
                            p == self.plugins or self.plugins in p.parents for p in paths
                        ):
                            tg.start_soon(self.rescan, on_change)
                        else:
                            tg.start_soon(self.refresh, paths, on_change)
                except BaseException:
                    # The pump's watcher thread cannot be cancelled, only told to stop;
                    # without this it would hold the task group for up to rust_timeout.
                    self.stop()
                    raise

    async def _pump(self, send: anyio.abc.ObjectSendStream[set[Path]]) -> None:
        from watchfiles import awatch

        watched = [self.folder]
        plugins = self.plugins
        if plugins is not None and plugins.exists():  # a zip: its folder, for this file only
            watched.append(plugins if plugins.is_dir() else plugins.parent)

        inside = f"{self.folder}{os.sep}"

        def wanted(change: object, path: str) -> bool:
            if plugins is not None and (path == str(plugins) or path.startswith(f"{plugins}/")):
                return "__pycache__" not in path
            return path.startswith(inside) and _is_python(change, path)

        async with send:
            try:
                async for batch in awatch(
                    *watched,
                    debounce=100,
                    step=20,
                    watch_filter=wanted,
                    stop_event=self._stop,
                    rust_timeout=60_000,
                ):
                    await send.send({Path(p) for _, p in batch})
            except FileNotFoundError:
                return  # the folder went away: watch() waits for it again


def _is_python(_change: object, path: str) -> bool:
    return path.endswith(".py")


def _signatures_of(folder: Path, paths: list[Path]) -> dict[Path, tuple[int, int] | None]:
    return {path: _signature(folder, path) for path in paths}


def _signatures(folder: Path) -> dict[str, tuple[int, int]]:
    found = {}
    for path in dag_files(folder):
        sig = _signature(folder, path)
        if sig is not None:
            found[str(path)] = sig
    return found


def _signature(folder: Path, path: Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of a DAG file, None if it is gone or not a DAG file."""
    try:
        if folder.is_file():
            if path != folder:
                return None
        elif not _is_dag_file(folder, path):
            return None
        st = path.stat()
    except (OSError, ValueError):
        return None
    return st.st_mtime_ns, st.st_size


def _is_dag_file(folder: Path, path: Path) -> bool:
    if path.suffix != ".py" or not path.is_file():
        return False
    return not any(part.startswith((".", "_")) for part in path.relative_to(folder).parts)
