"""The daemon probed as an attacker or a careless user would: each probe that once
crashed it, ran a task twice, leaked a secret or answered 500 stays here as a test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from tests.daemon_proc import DaemonProc

pytestmark = pytest.mark.timeout(120)

DagFile = Callable[[str, str], Path]

ECHO = """
from datetime import datetime
from orchestrator import DAG
from orchestrator.operators import BashOperator
with DAG("echo", schedule=None, start_date=datetime(2026, 1, 1)):
    BashOperator(task_id="say", bash_command="echo run {{ run_id }}")
"""


@pytest.fixture
def daemon(home: Path, db_url: str) -> Iterator[Callable[..., DaemonProc]]:
    started: list[DaemonProc] = []

    def start(**env: str) -> DaemonProc:
        proc = DaemonProc(home, {"ORCHESTRATOR_DB": db_url, **env}).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def ended(d: DaemonProc, run_id: str) -> str | None:
    state = d.run_state("echo", run_id)
    return state if state in ("success", "failed") else None


# -- hostile requests ----------------------------------------------------------------------


def test_hostile_trigger_requests_are_refused_and_the_daemon_runs_on(
    daemon: Callable[..., DaemonProc], dag_file: DagFile
) -> None:
    """Run ids that once crashed the daemon from the log path (a NUL, 300 characters) or
    reached a shell through ``{{ run_id }}``, a NaN conf that once made every later runs
    list a 500, dates at the calendar's ends: all 4xx, none stored, the daemon serving."""
    dag_file("echo.py", ECHO)
    d = daemon()
    bodies = [
        b'{"run_id": "a\\u0000b"}',
        b'{"run_id": "' + b"r" * 300 + b'"}',
        b'{"run_id": "x; touch /tmp/INJECTED #"}',
        b'{"run_id": "a\\ud800b"}',
        b'{"conf": {"x": NaN}}',
        b'{"conf": {"x": ' + b"9" * 4_301 + b"}}",
        b'{"conf": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        b'{"logical_date": "9999-12-31T23:59:59-14:00"}',
        b'{"logical_date": "0001-01-01"}',
    ]
    json = {"Content-Type": "application/json"}
    for body in bodies:
        response = d.api("POST", "/api/v1/dags/echo/runs", content=body, headers=json)
        assert response.status_code == 400, (body[:60], response.text)
        assert "error" in response.json()
    assert d.api("GET", "/api/v1/dags/echo/runs", params={"limit": "9" * 20}).status_code == 400
    assert d.runs("echo") == []
    made = d.api("POST", "/api/v1/dags/echo/runs", json={"run_id": "fine"})
    assert made.status_code == 201
    assert d.wait_for(lambda: ended(d, "fine"), 30) == "success"
    logs = d.api("GET", "/api/v1/runs/fine/tasks/say/logs").json()
    assert "run fine" in logs["tries"][0]["log"]
    assert d.api("GET", "/api/v1/dags/echo/runs").status_code == 200


async def test_twenty_concurrent_triggers_of_one_run_id_make_one_run_and_one_try(
    daemon: Callable[..., DaemonProc], dag_file: DagFile
) -> None:
    """One 201, nineteen 409s; the task runs once and the run succeeds."""
    dag_file("echo.py", ECHO)
    d = daemon()
    statuses: list[int] = []
    async with httpx.AsyncClient(base_url=d.url, timeout=30) as client:

        async def post() -> None:
            response = await client.post("/api/v1/dags/echo/runs", json={"run_id": "same"})
            statuses.append(response.status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(post)
    assert sorted(statuses) == [201] + [409] * 19
    assert d.wait_for(lambda: ended(d, "same"), 30) == "success"
    logs = d.api("GET", "/api/v1/runs/same/tasks/say/logs").json()
    assert [t["try_number"] for t in logs["tries"]] == [1]
    assert logs["tries"][0]["log"].count("run same") == 1
    assert [r["run_id"] for r in d.runs("echo")] == ["same"]
