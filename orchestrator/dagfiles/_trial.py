"""Trial imports of DAG files in a child process, under a timeout.

A DAG file is user code run at import: it may hang, call ``sys.exit`` or
``os._exit``, or crash the interpreter. Before a process imports a file for real,
a long-lived child imports it first; only a file that imported there, in time, is
imported by the caller. A file that overruns the timeout gets its child killed
(with anything it started) and a fresh child takes the next file.

Protocol: one JSON line per file each way, with the child in ``_trial_child``.
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

_MAX_LINE = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Probe:
    """What a trial import of one file found: its DAG ids, or why it failed."""

    path: str
    ok: bool
    dag_ids: tuple[str, ...] = ()
    error: str = ""
    traceback: str = ""


@dataclass(slots=True)
class ParseWorker:
    """A child process that imports DAG files on request; restarted after a kill."""

    timeout: float
    _process: Process | None = None
    _reader: BufferedByteReceiveStream | None = None
    _lock: anyio.Lock = field(default_factory=anyio.Lock)

    async def probe(self, path: Path) -> Probe:
        async with self._lock:
            return await self._probe(path)

    async def _probe(self, path: Path) -> Probe:
        process, reader = await self._ensure()
        assert process.stdin is not None
        line = b""
        with anyio.move_on_after(self.timeout):
            try:
                await process.stdin.send(json.dumps({"path": str(path)}).encode() + b"\n")
                line = await reader.receive_until(b"\n", _MAX_LINE)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.IncompleteRead):
                code = await self._reap()
                return Probe(
                    str(path), False, error=f"importing the file ended the process ({code})"
                )
        if not line:
            await self.close()
            return Probe(
                str(path),
                False,
                error=f"import timed out after {self.timeout:g}s (dag_import_timeout); stopped",
            )
        reply: dict[str, Any] = json.loads(line)
        return Probe(
            str(path),
            bool(reply["ok"]),
            tuple(reply.get("dag_ids", ())),
            reply.get("error", ""),
            reply.get("traceback", ""),
        )

    async def _ensure(self) -> tuple[Process, BufferedByteReceiveStream]:
        if self._process is None or self._process.returncode is not None:
            self._process = await anyio.open_process(
                [sys.executable, "-m", "orchestrator.dagfiles._trial_child"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            assert self._process.stdout is not None
            self._reader = BufferedByteReceiveStream(self._process.stdout)
        assert self._reader is not None
        return self._process, self._reader

    async def _reap(self) -> str:
        process = self._process
        await self.close()
        if process is None or process.returncode is None:
            return "no exit status"
        code = process.returncode
        return f"signal {-code}" if code < 0 else f"exit code {code}"

    async def close(self) -> None:
        """Kill the child and everything it started; the next probe starts a new one."""
        process, self._process, self._reader = self._process, None, None
        if process is None:
            return
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            await process.aclose()
