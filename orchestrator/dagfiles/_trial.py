"""Trial imports of DAG files in a child process, under a timeout.

A DAG file is user code run at import: it may hang, call ``sys.exit`` or
``os._exit``, fork, raise an error of any size, or crash the interpreter. Before a
process imports a file for real, a long-lived child imports it first; only a file
that imported there, in time, is imported by the caller. Whatever goes wrong in the
child (a timeout, an exit, a reply that is not one bounded JSON line) is that file's
import error, and the child is killed (with anything it started) and a fresh one
takes the next file. The child is also recycled once it has grown past
``RECYCLE_RSS`` or served ``RECYCLE_PROBES`` files, so memory a file held at module
level is given back.

Protocol: the child says ``{"ready": true}`` once it has started, then one JSON line
per file each way (``_trial_child``). A file's timeout counts from its request, so
a child slow to start on a loaded machine does not count against the first file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = ["ParseWorker", "Probe"]

_MAX_LINE = 1024 * 1024  # the child bounds its replies well below this
RECYCLE_RSS = 256 * 1024 * 1024
RECYCLE_PROBES = 200
STARTUP_SECONDS = 60.0
READY = b'{"ready": true}'


@dataclass(frozen=True, slots=True)
class Probe:
    """What a trial import of one file found: its DAG ids, or why it failed."""

    path: str
    ok: bool
    dag_ids: tuple[str, ...] = ()
    error: str = ""
    traceback: str = ""


class _Child:
    """One parse child: imports one file at a time, restarted after a failure."""

    def __init__(self, command: tuple[str, ...], seconds: float) -> None:
        self.command = command
        self.seconds = seconds
        self.process: Process | None = None
        self.reader: BufferedByteReceiveStream | None = None
        self.probes = 0

    async def probe(self, path: Path) -> Probe:
        timeout = self.seconds
        started = await self._ensure()
        if isinstance(started, str):
            return Probe(str(path), False, error=started)
        process, reader = started
        assert process.stdin is not None
        line = b""
        with anyio.move_on_after(timeout):
            try:
                await process.stdin.send(json.dumps({"path": str(path)}).encode() + b"\n")
                line = await reader.receive_until(b"\n", _MAX_LINE)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.IncompleteRead):
                code = await self._reap()
                return Probe(
                    str(path), False, error=f"importing the file ended the process ({code})"
                )
            except anyio.DelimiterNotFound:
                await self.close()
                return Probe(str(path), False, error="the file's import result is too large")
        if not line:
            await self.close()
            return Probe(
                str(path),
                False,
                error=f"import timed out after {timeout:g}s (dag_import_timeout); stopped",
            )
        self.probes += 1
        if self.probes >= RECYCLE_PROBES or _rss(process.pid) > RECYCLE_RSS:
            await self.close()
        try:
            reply: dict[str, Any] = json.loads(line)
            return Probe(
                str(path),
                bool(reply["ok"]),
                tuple(str(d) for d in reply.get("dag_ids", ())),
                str(reply.get("error", "")),
                str(reply.get("traceback", "")),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            await self.close()
            return Probe(str(path), False, error="the trial import gave no readable result")

    async def _ensure(self) -> tuple[Process, BufferedByteReceiveStream] | str:
        """The running child and its reader, or why a new one did not start."""
        if self.process is None or self.process.returncode is not None:
            self.probes = 0
            self.process = await anyio.open_process(
                list(self.command),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            assert self.process.stdout is not None
            self.reader = BufferedByteReceiveStream(self.process.stdout)
            ready = b""
            with anyio.move_on_after(STARTUP_SECONDS):
                with contextlib.suppress(
                    anyio.EndOfStream, anyio.IncompleteRead, anyio.DelimiterNotFound
                ):
                    ready = await self.reader.receive_until(b"\n", 1024)
            if ready.strip() != READY:
                await self.close()
                return f"the parse child did not start within {STARTUP_SECONDS:g}s"
        assert self.reader is not None
        return self.process, self.reader

    async def _reap(self) -> str:
        process = self.process
        await self.close()
        if process is None or process.returncode is None:
            return "no exit status"
        code = process.returncode
        return f"signal {-code}" if code < 0 else f"exit code {code}"

    async def close(self) -> None:
        process, self.process, self.reader = self.process, None, None
        if process is None:
            return
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            await process.aclose()


@dataclass(slots=True)
class ParseWorker:
    """Up to ``size`` parse children importing files at once, each started on demand."""

    timeout: float
    command: tuple[str, ...] = (sys.executable, "-m", "orchestrator.dagfiles._trial_child")
    size: int = 1
    _idle: list[_Child] = field(default_factory=list)
    _busy: set[_Child] = field(default_factory=set)
    _limiter: anyio.CapacityLimiter | None = None

    async def probe(self, path: Path) -> Probe:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(max(1, self.size))
        async with self._limiter:
            child = self._idle.pop() if self._idle else _Child(self.command, self.timeout)
            child.command, child.seconds = self.command, self.timeout
            self._busy.add(child)
            try:
                return await child.probe(path)
            finally:
                self._busy.discard(child)
                self._idle.append(child)

    @property
    def pids(self) -> list[int]:
        """The process ids of the children alive now."""
        return [c.process.pid for c in (*self._idle, *self._busy) if c.process is not None]

    async def close(self) -> None:
        """Kill every child and everything it started; the next probe starts a new one."""
        for child in (*self._idle, *self._busy):
            await child.close()


def _rss(pid: int) -> int:
    """Resident memory of ``pid`` in bytes (0 where /proc cannot tell)."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
