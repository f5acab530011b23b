"""Shared fixtures: a temp home per test, and the store on both backends."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import asyncpg
import hypothesis
import pytest

from orchestrator._settings import Settings, load_settings
from tests.alert_servers import SmtpSink, WebhookReceiver
from tests.daemon_proc import DaemonProc

# Properties here are about correctness, not speed: a loaded CI machine must not fail
# an example for taking longer than Hypothesis's default 200 ms deadline.
hypothesis.settings.register_profile("orchestrator", deadline=None)
hypothesis.settings.load_profile("orchestrator")

PG_URL = os.environ.get("ORCHESTRATOR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("ORCHESTRATOR_TEST_REQUIRE_POSTGRES") == "1"
_pg_state: dict[str, str | None] = {}


def _pg_unreachable_reason() -> str | None:
    """None when PostgreSQL answers, else why not (checked once per session)."""
    if "reason" not in _pg_state:

        async def probe() -> None:
            conn = await asyncpg.connect(PG_URL, timeout=3)
            await conn.close()

        try:
            anyio.run(probe)
            _pg_state["reason"] = None
        except Exception as exc:
            _pg_state["reason"] = f"PostgreSQL unreachable at {PG_URL}: {exc!r}"
    return _pg_state["reason"]


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test runs in its own folder with its own home and DAGs folder."""
    for name in list(os.environ):
        if name.startswith("ORCHESTRATOR_") and not name.startswith("ORCHESTRATOR_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dags").mkdir()
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ORCHESTRATOR_DAGS", str(tmp_path / "dags"))
    return tmp_path / "home"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The database URL of a fresh, empty store: SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'home' / 'orchestrator.db'}"
        return
    yield from _fresh_pg_schema()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL store (for what only PostgreSQL does)."""
    yield from _fresh_pg_schema()


def _fresh_pg_schema() -> Iterator[str]:
    reason = _pg_unreachable_reason()
    if reason is not None:
        if REQUIRE_PG:
            pytest.fail(f"{reason} (ORCHESTRATOR_TEST_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    anyio.run(_pg_admin, f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?search_path={schema}"
    finally:
        anyio.run(_pg_admin, f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def settings(db_url: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ORCHESTRATOR_DB", db_url)
    return load_settings()


@pytest.fixture
def dag_file(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a DAG file (dedented source) into the test's DAGs folder."""

    def write(name: str, source: str) -> Path:
        path = tmp_path / "dags" / name
        path.write_text(textwrap.dedent(source))
        return path

    return write


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's server (S3, SQS, EventBridge...) as a subprocess on a free loopback port."""
    out = tmp_path_factory.mktemp("moto") / "server.log"
    server = Path(sys.executable).with_name("moto_server")
    with out.open("w") as log:
        proc = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", "0"], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"Running on (http://\S+)", out.read_text())):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"moto_server did not start:\n{out.read_text()}")
            time.sleep(0.05)
        yield found.group(1)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def aws_conn(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The aws_default connection, pointing at moto's server (set in the environment)."""
    uri = f"aws://testing:testing@/?endpoint_url={moto_url}&region_name=us-east-1"
    monkeypatch.setenv("ORCHESTRATOR_CONN_AWS_DEFAULT", uri)
    return uri


@pytest.fixture
def daemon(home: Path, db_url: str) -> Iterator[Callable[..., DaemonProc]]:
    """Start ``orchestrator daemon`` subprocesses on the test's home and store (extra
    settings as keyword arguments); each is stopped at the end of the test."""
    started: list[DaemonProc] = []

    def start(**env: str) -> DaemonProc:
        proc = DaemonProc(home, {"ORCHESTRATOR_DB": db_url, **env}).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """An SMTP server (aiosmtpd) on a free loopback port, keeping every message."""
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def webhooks() -> Iterator[WebhookReceiver]:
    """An HTTP receiver on a free loopback port, recording every POST."""
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()
