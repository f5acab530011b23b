"""The processes a try starts: their environment, their output, what they leave behind.

Rules:
1. A shell command of a task gets the daemon's environment without the daemon's own
   secrets (``DAEMON_SECRETS``, and the ``ORCHESTRATOR_CONN_*`` and
   ``ORCHESTRATOR_VAR_*`` values): a task that needs one asks for it by name, through
   its ``env`` and a template (``{{ conn.x.password }}``), and it is masked.
2. Every process a try starts carries ``TRY_MARK=<mark>`` in its environment, and so
   does everything those start in turn. When the try ends, each process still
   carrying its mark is killed (read from ``/proc``; elsewhere only the process
   group is), whether it stayed in the try's process group or left it (``setsid``,
   a double fork).
3. A try's process has ended when its own process exits: its output is read until
   then and for at most ``DRAIN_SECONDS`` after, so a process it left behind that
   still holds the pipe open cannot keep the try running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from pathlib import Path

import anyio
from anyio.abc import Process

__all__ = [
    "DAEMON_SECRETS",
    "DRAIN_SECONDS",
    "TRY_MARK",
    "end_group",
    "marked",
    "relay_lines",
    "relay_output",
    "sweep",
    "without_daemon_secrets",
]

TRY_MARK = "ORCHESTRATOR_TRY_MARK"
DRAIN_SECONDS = 0.5
KILL_GRACE_SECONDS = 5.0
DAEMON_SECRETS = frozenset(
    {
        "ORCHESTRATOR_API_TOKEN",
        "ORCHESTRATOR_FERNET_KEY",
        "ORCHESTRATOR_SMTP_PASSWORD",
        "ORCHESTRATOR_WEBHOOK_SECRET",
        "ORCHESTRATOR_DB",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    }
)
_SECRET_PREFIXES = ("ORCHESTRATOR_CONN_", "ORCHESTRATOR_VAR_")


def without_daemon_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the daemon's own secrets (rule 1)."""
    return {
        k: v
        for k, v in env.items()
        if k not in DAEMON_SECRETS and not k.startswith(_SECRET_PREFIXES)
    }


def marked(env: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """``env`` with a fresh try mark (rule 2), and the mark. Marks add up: a process
    marked inside a marked one (a Bash task's shell in a worker's try) carries both, and
    a sweep of either kills it."""
    mark = uuid.uuid4().hex
    outer = env.get(TRY_MARK)
    return {**env, TRY_MARK: f"{outer},{mark}" if outer else mark}, mark


def sweep(mark: str, proc: Path = Path("/proc"), *, spare: int | None = None) -> int:
    """SIGKILL every process whose environment carries ``mark`` but ``spare``; how many
    (rule 2)."""
    prefix = f"{TRY_MARK}=".encode()
    wanted = mark.encode()
    killed = 0
    try:
        entries = list(proc.iterdir())
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == spare:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if any(
            entry.startswith(prefix) and wanted in entry[len(prefix) :].split(b",")
            for entry in environ.split(b"\0")
        ):
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed


async def end_group(process: Process, grace: float = KILL_GRACE_SECONDS) -> None:
    """SIGTERM the process group, SIGKILL what is left of it after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        if sig == signal.SIGTERM:
            with anyio.move_on_after(grace):
                await process.wait()
    await process.wait()


async def relay_output(process: Process, emit: Callable[[str], None]) -> tuple[int, str]:
    """Send each line ``process`` writes to ``emit`` until it exits (rule 3); its exit
    code and last line."""
    assert process.stdout is not None
    return await relay_lines(process.stdout, process.wait, emit)


async def relay_lines(
    stdout: AsyncIterable[bytes], exited: Callable[[], Awaitable[int]], emit: Callable[[str], None]
) -> tuple[int, str]:
    """Send each line of a process's output ``stdout`` to ``emit`` until ``exited()``
    returns its exit code (rule 3); that code and the last line."""
    last = ""
    drained = anyio.Event()

    async def read() -> None:
        nonlocal last
        buffer = b""
        try:
            async for chunk in stdout:
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for raw in lines:
                    last = raw.decode(errors="replace")
                    emit(last)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        if buffer:
            last = buffer.decode(errors="replace")
            emit(last)
        drained.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        code = await exited()
        with anyio.move_on_after(DRAIN_SECONDS):
            await drained.wait()
        tg.cancel_scope.cancel()
    return code, last
