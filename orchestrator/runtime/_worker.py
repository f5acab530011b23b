"""``orchestrator worker``: a Celery worker that runs the tries the daemon sends.

Each message names a try's row in the store (``store._work``). For each, the worker:

1. claims the row (``queued`` -> ``running``, its name): a message delivered twice, or
   sent again, finds it taken and runs nothing;
2. runs the try in a child interpreter (``_child.py``) in a process group of its own,
   which dies with the worker (the parent-death signal: it kills what it started);
3. sends a heartbeat every ``worker_heartbeat`` seconds; when the heartbeat finds the try
   no longer its own (made lost) or asked to stop (cancelled), or the store has been
   unreachable for ``worker_lost_after``, it kills the try's processes;
4. ends the try after its ``execution_timeout`` by killing its processes;
5. writes the try's output to the store as it comes (in chunks, every
   ``_FLUSH_SECONDS``), then the outcome, with a write only its claim allows.

Celery's pool is threads: each runs one try at a time through this process's one event
loop, which holds the store's connections; the try's work is in its own process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import anyio.to_thread
import structlog
from anyio.abc import Process

from orchestrator._processes import TRY_MARK, marked, relay_lines, relay_output, sweep
from orchestrator._settings import Settings, make_private_dir
from orchestrator.dagfiles._files import load_dag_file
from orchestrator.errors import StoreError
from orchestrator.runtime._child import WORKER_PID, run_forked
from orchestrator.runtime._tryspec import open_child
from orchestrator.store import Store
from orchestrator.store._work import claim_work, finish_work, heartbeat_work, work_log

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from orchestrator.authoring._dag import DAG

__all__ = ["TryWorker", "run_worker"]

log = structlog.get_logger("orchestrator.worker")

_FLUSH_SECONDS = 0.2
_FLUSH_BYTES = 65_536
_STATES = {"success": "success", "skipped": "skipped", "cancelled": "cancelled"}


class _Output:
    """The try's output lines, waiting to be written to the store in chunks."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.size = 0
        self.next_seq = 1
        self.full = anyio.Event()

    def add(self, line: str) -> None:
        self.lines.append(line + "\n")
        self.size += len(line) + 1
        if self.size >= _FLUSH_BYTES:
            self.full.set()

    def take(self) -> tuple[int, list[str]]:
        """The lines to write as one chunk, and its number."""
        if not self.lines:
            return self.next_seq, []
        chunk, self.lines, self.size = ["".join(self.lines)], [], 0
        self.full = anyio.Event()
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        return seq, chunk


class TryWorker:
    def __init__(self, settings: Settings, store: Store, name: str) -> None:
        self.settings = settings
        self.store = store
        self.name = name
        self.results = settings.home / "worker"
        self._dags: dict[Path, tuple[int, dict[str, DAG]]] = {}
        self._loading = anyio.Lock()

    async def run_try(self, work_id: str) -> str:
        """Run the try named by a message; what came of it (``taken``: not ours to run)."""
        backend = self.store.backend
        spec = await claim_work(backend, work_id, self.name, os.getpid())
        if spec is None:
            log.info("try already taken or ended: not run", work_id=work_id)
            return "taken"
        log.info("try claimed", work_id=work_id, dag_id=spec["dag_id"], task_id=spec["task_id"])
        await anyio.Path(self.results).mkdir(parents=True, exist_ok=True)
        result_path = self.results / f"{work_id}.result.json"
        spec["result_path"] = str(result_path)
        outcome, state = await self._supervise(work_id, spec, result_path)
        if state is None:
            log.warning("try no longer this worker's: its outcome is dropped", work_id=work_id)
            return "dropped"
        if not await self._finish(work_id, state, outcome):
            log.warning("try was made lost before it ended: outcome dropped", work_id=work_id)
            return "dropped"
        return state

    async def _finish(self, work_id: str, state: str, outcome: dict[str, Any]) -> bool:
        """The outcome, written again while the store is away (until the try would count
        as lost anyway); False if the try is no longer this worker's."""
        deadline = time.monotonic() + self.settings.worker_lost_after
        while True:
            try:
                return await finish_work(self.store.backend, work_id, self.name, state, outcome)
            except StoreError as exc:
                if time.monotonic() > deadline:
                    log.error("cannot write a try's outcome", work_id=work_id, error=str(exc))
                    return False
            await anyio.sleep(0.5)

    async def _supervise(
        self, work_id: str, spec: dict[str, Any], result_path: Path
    ) -> tuple[dict[str, Any], str | None]:
        extra = {
            "ORCHESTRATOR_HOME": str(self.settings.home.resolve()),
            "ORCHESTRATOR_DB": self.settings.db_url,
            WORKER_PID: str(os.getpid()),
        }
        env, mark = marked({**os.environ, **extra})
        output = _Output()
        stop: list[str] = []
        timeout = spec.get("timeout")
        dag = await self._loaded(spec)
        child: _Forked | _Spawned
        if dag is not None:
            child = _Forked.start(spec, dag, {**extra, TRY_MARK: env[TRY_MARK]})
        else:  # not importable here: a child of its own imports it and says why
            child = await _Spawned.start(spec, env)

        def kill(reason: str) -> None:
            stop.append(reason)
            child.kill()

        code = 0
        try:
            with anyio.move_on_after(timeout) as deadline:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._heartbeats, work_id, kill)
                    tg.start_soon(self._flushes, work_id, output)
                    code = await child.relay(output.add)
                    tg.cancel_scope.cancel()
            if deadline.cancelled_caught:
                kill("timeout")
        finally:
            with anyio.CancelScope(shield=True):
                child.kill()
                code = await child.wait()
                await anyio.to_thread.run_sync(sweep, mark)
                await self._flush(work_id, output)
        return self._outcome(stop, code, timeout, result_path)

    async def _loaded(self, spec: dict[str, Any]) -> DAG | None:
        """The try's DAG, imported here once per version of its file; None if it does
        not import (the spawned child reports the error)."""
        path = Path(spec["file"])
        try:
            version = (await anyio.Path(path).stat()).st_mtime_ns
        except OSError:
            return None
        async with self._loading:
            known = self._dags.get(path)
            if known is None or known[0] != version:
                try:
                    dags = await anyio.to_thread.run_sync(load_dag_file, path)
                except Exception:
                    self._dags.pop(path, None)
                    return None
                known = self._dags[path] = (version, {d.dag_id: d for d in dags})
        return known[1].get(spec["dag_id"])

    def _outcome(
        self, stop: list[str], code: int, timeout: float | None, result_path: Path
    ) -> tuple[dict[str, Any], str | None]:
        if result_path.exists():
            outcome: dict[str, Any] = json.loads(result_path.read_text())
            result_path.unlink()
        else:
            outcome = {}
        if stop and stop[0] in ("lost", "gone", "unreachable"):
            return outcome, None
        if stop and stop[0] == "cancelled":
            return {"kind": "cancelled", "error": "stopped while running"}, "cancelled"
        if stop and stop[0] == "timeout":
            error = f"timed out after {timedelta(seconds=timeout or 0)} (execution_timeout)"
            return {"kind": "timeout", "error": error}, "failed"
        if not outcome:
            how = (
                f"killed by signal {signal.Signals(-code).name}"
                if code < 0
                else f"exit code {code}"
            )
            error = f"the task's process ended without a result ({how})"
            return {"kind": "failed", "error": error}, "failed"
        return outcome, _STATES.get(outcome.get("kind", ""), "failed")

    async def _heartbeats(self, work_id: str, kill: Any) -> None:
        every = self.settings.worker_heartbeat
        last_ok = time.monotonic()
        while True:
            await anyio.sleep(every)
            try:
                reason = await heartbeat_work(self.store.backend, work_id, self.name)
            except StoreError as exc:
                if time.monotonic() - last_ok > self.settings.worker_lost_after:
                    log.error("store unreachable: try killed", work_id=work_id, error=str(exc))
                    kill("unreachable")
                    return
                continue
            last_ok = time.monotonic()
            if reason is not None:
                log.warning("try stopped", work_id=work_id, reason=reason)
                kill(reason)
                return

    async def _flushes(self, work_id: str, output: _Output) -> None:
        while True:
            with anyio.move_on_after(_FLUSH_SECONDS):
                await output.full.wait()
            with anyio.CancelScope(shield=True):  # a chunk taken is a chunk written
                await self._flush(work_id, output)

    async def _flush(self, work_id: str, output: _Output) -> None:
        seq, chunk = output.take()
        if not chunk:
            return
        try:
            await work_log(self.store.backend, work_id, seq, chunk)
        except StoreError as exc:  # kept: the next flush writes it
            output.lines[:0] = chunk
            output.next_seq = seq
            log.warning("cannot write a try's output", work_id=work_id, error=str(exc))


class _Spawned:
    """A try in a new interpreter (``python -m orchestrator.runtime._child``)."""

    def __init__(self, process: Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, spec: dict[str, Any], env: dict[str, str]) -> _Spawned:
        return cls(await open_child(spec, env))

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    async def relay(self, emit: Callable[[str], None]) -> int:
        code, _ = await relay_output(self.process, emit)
        return code

    async def wait(self) -> int:
        return await self.process.wait()


class _Forked:
    """A try in a fork of this worker, its imports and the DAG file already loaded: no
    interpreter to start, no file to import again. ``pidfd`` tells when it exits."""

    def __init__(self, pid: int, out: int) -> None:
        self.pid = pid
        self.out = out
        self.pidfd = os.pidfd_open(pid)
        self.code: int | None = None

    @classmethod
    def start(cls, spec: dict[str, Any], dag: DAG, env: dict[str, str]) -> _Forked:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns here
            os.close(read)
            run_forked(spec, dag, env, write)
        os.close(write)
        os.set_blocking(read, False)
        return cls(pid, read)

    def kill(self) -> None:
        if self.code is None:
            for kill in (os.killpg, os.kill):  # before its setsid, the group is not its own
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(self.pid, signal.SIGKILL)

    async def relay(self, emit: Callable[[str], None]) -> int:
        code, _ = await relay_lines(self._output(), self._exited, emit)
        return code

    async def _output(self) -> AsyncIterator[bytes]:
        while True:
            await anyio.wait_readable(self.out)
            try:
                chunk = os.read(self.out, 65_536)
            except BlockingIOError:
                continue
            if not chunk:
                return
            yield chunk

    async def wait(self) -> int:
        """Its exit code, once it has exited; its pipe and pidfd are closed then."""
        code = await self._exited()
        if self.out >= 0:
            for fd in (self.out, self.pidfd):
                os.close(fd)
            self.out = self.pidfd = -1
        return code

    async def _exited(self) -> int:
        if self.code is None:
            await anyio.wait_readable(self.pidfd)
            _, status = os.waitpid(self.pid, os.WNOHANG)  # noqa: ASYNC222 - it has exited
            self.code = os.waitstatus_to_exitcode(status)
        return self.code


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_worker(settings: Settings, queues: list[str], concurrency: int) -> int:
    """Serve the queues until stopped (SIGTERM, Ctrl-C: the running tries finish first)."""
    from celery.signals import worker_ready

    from orchestrator.runtime._celeryapp import celery_app, queue_name
    from orchestrator.store import open_store

    make_private_dir(settings.home)
    app = celery_app(settings)
    name = worker_name()
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(open_store(settings.db_url)) as store,
    ):
        worker = TryWorker(settings, store, name)

        @app.task(name="orchestrator.run_try", ignore_result=True)  # type: ignore[untyped-decorator]
        def run_try(work_id: str) -> str:
            return str(portal.call(worker.run_try, work_id))

        names = ",".join(queue_name(settings, q) for q in queues)

        def ready(**_: Any) -> None:
            log.info("worker ready", name=name, queues=names, concurrency=concurrency)

        worker_ready.connect(ready, weak=False)
        app.worker_main(
            [
                "worker",
                "--queues",
                names,
                "--concurrency",
                str(concurrency),
                "--pool",
                "threads",
                "--hostname",
                f"orchestrator-{os.getpid()}@{socket.gethostname()}",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "WARNING",
            ]
        )
    return 0
