"""What the daemon benchmarks share: waiting, percentiles, a daemon process on a store."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _stores import Rows

CRON_DAG = """
from datetime import datetime
from orchestrator import DAG
from orchestrator.operators import EmptyOperator
with DAG("cron_{i:04d}", schedule="* * * * *", start_date=datetime(2026, 1, 1), catchup=False):
    EmptyOperator(task_id="a")
"""

# A DAG whose one task returns when its code ran (an XCom): trigger-to-code latency.
TRIGGER_DAG = """
import time
from orchestrator import DAG
from orchestrator.operators import PythonOperator

async def mark():
    return time.time()

with DAG("{dag_id}"):
    PythonOperator(task_id="mark", python_callable=mark)
"""


def idle_store(db: Rows) -> bool:
    """No run is queued or running."""
    return bool(db("SELECT COUNT(*) FROM dag_run WHERE state IN ('queued', 'running')")[0][0] == 0)


def wait_for(check: Callable[..., Any], within: float, what: str, poll: float = 0.01) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise SystemExit(f"timed out waiting for {what}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds the process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_mb(pid: int, field: str) -> float:
    """A /proc/PID/status memory field (VmRSS, VmHWM) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    url: str
    db: Rows
    ready: float  # seconds from process start to daemon.json


@contextlib.contextmanager
def daemon(
    root: Path, db_url: str, *, home_name: str = "home", env_extra: dict[str, str] | None = None
) -> Iterator[Daemon]:
    """``orchestrator daemon`` on ``root/dags`` with its home in ``root/home_name``, on the
    store at ``db_url`` (SQLite in the home when empty), once ready; stopped at the end."""
    home = root / home_name
    home.mkdir()
    env = {
        **os.environ,
        "ORCHESTRATOR_HOME": str(home),
        "ORCHESTRATOR_DAGS": str(root / "dags"),
        "ORCHESTRATOR_API_PORT": "0",
        **(env_extra or {}),
    }
    if db_url:
        env["ORCHESTRATOR_DB"] = db_url
    db = Rows(db_url or home / "orchestrator.db")
    started = time.monotonic()
    log_name = "daemon.log" if home_name == "home" else f"{home_name}.log"
    with (root / log_name).open("w") as log:
        profile = os.environ.get("BENCH_PROFILE")  # a file: the daemon runs under cProfile
        here = Path(__file__).parent
        tool = [str(here / "_profiled.py"), profile] if profile else ["-m", "orchestrator.cli"]
        proc = subprocess.Popen(
            [sys.executable, *tool, "daemon"],
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            info = home / "daemon.json"
            wait_for(info.exists, 120, "the daemon to be ready")
            ready = time.monotonic() - started
            yield Daemon(proc, json.loads(info.read_text())["api_url"], db, ready)
        finally:
            proc.terminate()
            proc.wait(60)
            db.close()
