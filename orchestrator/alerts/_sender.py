"""The daemon's side of the alert sender process (``_sender_child``).

Email and webhook deliveries are network work for other parties' servers (DNS, TLS,
SMTP dialogues, slow answers): the daemon hands each one to a child process and
awaits its answer, so a thousand alerts cost its loop a line of JSON each, not a
thousand HTTP exchanges beside the tries. Callbacks stay in the daemon (they are the
DAG's own code).

Rules:
1. Requests and answers are JSON lines; what gathered in one turn of the loop goes
   out as one write.
2. If the process stops, every delivery waiting on it fails (retried as any failed
   attempt) and a new process is started a second later.
3. The process starts with the first delivery: a daemon that sends no mail and no
   webhook never pays for it.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from typing import Any

import anyio
import structlog
from anyio.abc import Process

from orchestrator._settings import Settings

__all__ = ["SendFailed", "Sender", "settings_line"]

log = structlog.get_logger("orchestrator.alerts")


def settings_line(settings: Settings) -> bytes:
    """The settings as the first line the process reads."""
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    values["home"] = str(values["home"])
    return json.dumps(values).encode() + b"\n"


class SendFailed(Exception):
    """The sender process could not deliver; ``permanent``: it never will."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Sender:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._waiting: dict[int, tuple[anyio.Event, list[Any]]] = {}
        self._out: list[bytes] = []
        self._wake = anyio.Event()
        self._n = 0
        self.pid: int | None = None  # the process's, while it runs

    async def deliver(
        self, kind: str, target: str, facts: dict[str, Any], secret: str | None
    ) -> None:
        """Have the process deliver one alert; SendFailed if it could not."""
        self._n += 1
        n = self._n
        done, answer = anyio.Event(), list[Any]()
        self._waiting[n] = (done, answer)
        doc = {"n": n, "kind": kind, "target": target, "facts": facts, "secret": secret}
        self._out.append(json.dumps(doc, default=str).encode() + b"\n")
        self._wake.set()
        try:
            await done.wait()
        finally:
            self._waiting.pop(n, None)
        error, permanent = answer
        if error is not None:
            raise SendFailed(error, permanent=permanent)

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep the process running (rule 2), from the first delivery on (rule 3)."""
        task_status.started()
        await self._wake.wait()
        while True:
            try:
                async with await anyio.open_process(
                    [sys.executable, "-m", "orchestrator.alerts._sender_child"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=None,
                ) as proc:
                    assert proc.stdin is not None
                    self.pid = proc.pid
                    await proc.stdin.send(settings_line(self.settings))
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._write, proc)
                        await self._read(proc)
                        tg.cancel_scope.cancel()
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                log.warning("alert sender process failed", error=repr(exc))
            finally:
                self.pid = None
                self._out.clear()
                for done, answer in self._waiting.values():
                    answer[:] = ["the alert sender process stopped", False]
                    done.set()
            log.warning("alert sender process stopped; starting it again in 1 s")
            await anyio.sleep(1)

    async def _write(self, proc: Process) -> None:
        assert proc.stdin is not None
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            data, self._out = b"".join(self._out), []
            if data:
                await proc.stdin.send(data)

    async def _read(self, proc: Process) -> None:
        assert proc.stdout is not None
        buffer = b""
        async for chunk in proc.stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                doc = json.loads(line)
                waiting = self._waiting.get(doc["n"])
                if waiting is not None:
                    done, answer = waiting
                    answer[:] = [doc["error"], doc["permanent"]]
                    done.set()
