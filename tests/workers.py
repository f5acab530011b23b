"""Celery workers (``orchestrator worker``) as real subprocesses, on the local brokers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

RABBITMQ_URL = os.environ.get("ORCHESTRATOR_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")
REDIS_URL = os.environ.get("ORCHESTRATOR_TEST_REDIS", "redis://127.0.0.1:6379/0")
REQUIRE_BROKERS = os.environ.get("ORCHESTRATOR_TEST_REQUIRE_BROKERS") == "1"
BROKERS = {"rabbitmq": RABBITMQ_URL, "redis": REDIS_URL}
_reachable: dict[str, str | None] = {}


def broker_or_skip(kind: str) -> str:
    """The broker's URL; the test is skipped (failed under
    ORCHESTRATOR_TEST_REQUIRE_BROKERS=1) when it does not answer."""
    url = BROKERS[kind]
    if kind not in _reachable:
        host, port = ("127.0.0.1", 5672) if kind == "rabbitmq" else ("127.0.0.1", 6379)
        rest = url.split("@")[-1].split("//")[-1].split("/")[0]
        if ":" in rest:
            host, port = rest.split(":")[0], int(rest.split(":")[1])
        try:
            socket.create_connection((host, port), timeout=3).close()
            _reachable[kind] = None
        except OSError as exc:
            _reachable[kind] = f"{kind} unreachable at {host}:{port}: {exc}"
    reason = _reachable[kind]
    if reason is not None:
        if REQUIRE_BROKERS:
            pytest.fail(f"{reason} (ORCHESTRATOR_TEST_REQUIRE_BROKERS=1)")
        pytest.skip(reason)
    return url


def celery_env(broker: str, db_url: str, **extra: str) -> dict[str, str]:
    """Settings for a daemon or worker on ``broker``, with queues of the test's own."""
    return {
        "ORCHESTRATOR_EXECUTOR": "celery",
        "ORCHESTRATOR_CELERY_BROKER": broker,
        "ORCHESTRATOR_CELERY_QUEUE_PREFIX": f"t{uuid.uuid4().hex[:10]}.",
        "ORCHESTRATOR_DB": db_url,
        "ORCHESTRATOR_WORKER_HEARTBEAT": "0.5",
        "ORCHESTRATOR_WORKER_LOST_AFTER": "3",
        **extra,
    }


class WorkerProc:
    """``orchestrator worker`` with the test's home, store and broker."""

    def __init__(
        self, home: Path, env: dict[str, str], queues: str = "default", concurrency: int = 2
    ) -> None:
        self.env = {**os.environ, **env}
        self.args = ["--queues", queues, "--concurrency", str(concurrency)]
        self.log_path = home.parent / f"worker-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, within: float = 30.0) -> WorkerProc:
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "worker", *self.args],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + within
        while "worker ready" not in self.output():
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited ({self.proc.returncode}):\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker not ready within {within}s:\n{self.output()}")
            time.sleep(0.05)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()


def drop_queues(broker: str, prefix: str, names: list[str]) -> None:
    """Delete the test's queues from the broker (RabbitMQ keeps durable queues)."""
    from kombu.connection import Connection

    try:
        with Connection(broker, connect_timeout=3) as conn:
            channel = conn.default_channel
            for name in names:
                try:
                    channel.queue_delete(prefix + name)
                except Exception:
                    channel = conn.default_channel
    except Exception:
        pass
