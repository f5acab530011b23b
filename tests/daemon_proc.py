"""The daemon as a real subprocess, for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx


class DaemonProc:
    """``orchestrator daemon`` on a free port with the test's home and DAGs folder."""

    def __init__(self, home: Path, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.env = {**os.environ, "ORCHESTRATOR_API_PORT": "0", **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.log_path = home.parent / f"daemon-{time.monotonic_ns()}.log"

    def spawn(self) -> DaemonProc:
        """Start the process without waiting for it to be ready."""
        (self.home / "daemon.json").unlink(missing_ok=True)
        self.started_at = time.monotonic()
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "daemon"],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        return self

    def start(self, within: float = 20.0) -> DaemonProc:
        info = self.home / "daemon.json"
        self.spawn()
        self.wait_for(info.exists, within, "daemon.json")
        self.url = json.loads(info.read_text())["api_url"]
        self.ready_after = time.monotonic() - self.started_at
        return self

    def output(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, check: Callable[[], Any], within: float = 10.0, what: str = "") -> Any:
        deadline = time.monotonic() + within
        while True:
            value = check()
            if value:
                return value
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}):\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or check}:\n{self.output()}")
            time.sleep(0.02)

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, timeout=10.0, **kw)

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        response = self.api("GET", f"/api/v1/dags/{dag_id}/runs")
        return response.json() if response.status_code == 200 else []

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        response = self.api("GET", f"/api/v1/runs/{run_id}", params={"dag_id": dag_id})
        return response.json()["state"] if response.status_code == 200 else None

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, within: float = 30.0) -> int:
        assert self.proc is not None
        code = self.proc.wait(within)
        self.log.close()
        return code

    def kill9(self) -> None:
        """SIGKILL, as a crash would: no shutdown code runs."""
        assert self.proc is not None
        self.proc.kill()
        self.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()
