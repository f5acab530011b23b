"""The alert sender process: sends the daemon's email and webhook alerts, off its loop.

Protocol, one JSON document per line: the first line on stdin is the settings; then
each request is ``{"n", "kind", "target", "facts", "secret"}``; each answer on stdout
is ``{"n", "error", "permanent"}`` (``error`` null: delivered), in any order. The
process ends when its stdin closes. It runs at a lower priority (nice 10) than the
daemon: on a busy machine, tries come first and alerts follow.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

from orchestrator._settings import Settings
from orchestrator.alerts._notifiers import EmailNotifier, WebhookNotifier
from orchestrator.errors import ConfigError

__all__ = ["main"]


class _Sender:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limit = asyncio.Semaphore(settings.alert_concurrency)
        self.session: aiohttp.ClientSession | None = None
        self.out: list[bytes] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def send(self, request: dict[str, Any]) -> None:
        error, permanent = None, False
        try:
            async with self.limit:
                # aiohttp and aiosmtplib time out first, saying where; this is the backstop
                await asyncio.wait_for(self._send(request), self.settings.alert_timeout + 1.0)
        except TimeoutError:
            error = f"TimeoutError: no answer within {self.settings.alert_timeout:g} s"
        except (ConfigError, ValueError) as exc:
            error, permanent = str(exc), True
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.answer({"n": request["n"], "error": error, "permanent": permanent})

    async def _send(self, request: dict[str, Any]) -> None:
        context = {"alert": request["facts"]}
        if request["kind"] == "email":
            to = [a for a in request["target"].split(", ") if a]
            await EmailNotifier(to).send(self.settings, context)
            return
        if self.session is None:
            connector = aiohttp.TCPConnector(limit=200)
            self.session = aiohttp.ClientSession(connector=connector, trust_env=True)
        notifier = WebhookNotifier(request["target"], secret=request.get("secret"))
        await notifier.send(self.settings, self.session, context)

    def answer(self, doc: dict[str, Any]) -> None:
        if not self.out:  # answers gathered in one turn of the loop go out as one write
            asyncio.get_running_loop().call_soon(self.flush)
        self.out.append(json.dumps(doc).encode() + b"\n")

    def flush(self) -> None:
        data, self.out = b"".join(self.out), []
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    values = json.loads(await reader.readline())
    values["home"] = Path(values["home"])
    sender = _Sender(Settings(**values))
    try:
        while line := await reader.readline():
            task = asyncio.create_task(sender.send(json.loads(line)))
            sender.tasks.add(task)
            task.add_done_callback(sender.tasks.discard)
        if sender.tasks:
            await asyncio.wait(sender.tasks)
    finally:
        if sender.session is not None:
            await sender.session.close()


def main() -> None:
    # Background work: when the machine is busy, the daemon's tries come first.
    os.nice(10)
    asyncio.run(_serve())


if __name__ == "__main__":
    main()
