"""Helpers shared by several test modules."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiobotocore.session import get_session

from orchestrator._clock import SystemClock
from orchestrator._settings import Settings
from orchestrator.authoring._dag import DAG
from orchestrator.core import RunRecord
from orchestrator.resources._aws import client_kwargs
from orchestrator.resources._connections import Connection
from orchestrator.runtime._drive import drive_run
from orchestrator.runtime._live import LiveRun
from orchestrator.store import Store


def alive(pid: int) -> bool:
    """True if the process exists and is not a zombie (an orphan's zombie may linger)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def gone(pid: int, within: float = 10.0) -> bool:
    """True once the process has died, waiting up to ``within`` seconds.

    A signal is delivered asynchronously: the process may still be there for a moment
    after kill() returned, longer on a loaded machine.
    """
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


async def drive(settings: Settings, store: Store, dag: DAG, run: RunRecord) -> LiveRun:
    """Drive an existing run (e.g. after a clear) to its end with a fresh scheduler."""
    return await drive_run(settings, store, dag, run, clock=SystemClock())


@asynccontextmanager
async def s3_client(aws_conn: str) -> AsyncIterator[Any]:
    """A client on moto's S3, made the way the daemon makes one from aws_default."""
    kwargs = client_kwargs(Connection.from_uri("aws_default", aws_conn))
    async with get_session().create_client("s3", **kwargs) as client:
        yield client


def run_cli(
    *args: str, db: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``orchestrator ARGS`` as a user runs it, on the test's home (and ``db`` when given)."""
    env = dict(os.environ)
    if db is not None:
        env["ORCHESTRATOR_DB"] = db
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def most_at_once(spans: list[Any]) -> int:
    """The most of these (start, end) spans that overlap at one instant (an end before
    a start at the same instant)."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most, now = 0, 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most
