"""Clearing and marking runs and task instances through the daemon's API (the UI's actions)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_proc import DaemonProc

pytestmark = pytest.mark.timeout(120)

DagFile = Callable[[str, str], Path]

# "work" fails until the flag file exists; "after" runs only when "work" succeeded;
# "slow" (alongside) sleeps until its own flag exists.
FLAKY = """
import time
from pathlib import Path
from orchestrator import DAG
from orchestrator.operators import EmptyOperator, PythonOperator

FLAG = Path({flag!r})

def work():
    if not FLAG.exists():
        raise RuntimeError("no flag yet")

def slow():
    while not Path({slow_flag!r}).exists():
        time.sleep(0.02)

with DAG("flaky"):
    PythonOperator(task_id="work", python_callable=work) >> EmptyOperator(task_id="after")
    PythonOperator(task_id="slow", python_callable=slow)
"""


def states(d: DaemonProc, run_id: str) -> dict[str, str]:
    doc = d.api("GET", f"/api/v1/runs/{run_id}", params={"dag_id": "flaky"}).json()
    return {t["task_id"]: t["state"] for t in doc["tasks"]}


def run_state(d: DaemonProc, run_id: str) -> str | None:
    state = d.run_state("flaky", run_id)
    return state if state in ("success", "failed") else None


@pytest.fixture
def flaky(
    daemon: Callable[..., DaemonProc], dag_file: DagFile, tmp_path: Path
) -> tuple[DaemonProc, Path, Path]:
    flag, slow_flag = tmp_path / "flag", tmp_path / "slow-flag"
    dag_file("flaky.py", FLAKY.format(flag=str(flag), slow_flag=str(slow_flag)))
    return daemon(), flag, slow_flag


def test_clearing_a_failed_task_of_a_finished_run_runs_it_and_its_downstream_again(
    flaky: tuple[DaemonProc, Path, Path],
) -> None:
    """A failed run: clearing "work" with its downstream queues the run again and both run;
    the run ends in success. Unknown tasks are refused naming them, nothing changed."""
    d, flag, slow_flag = flaky
    slow_flag.touch()
    run = d.api("POST", "/api/v1/dags/flaky/runs", json={}).json()["run_id"]
    assert d.wait_for(lambda: run_state(d, run)) == "failed"
    assert states(d, run) == {"work": "failed", "after": "upstream_failed", "slow": "success"}
    refused = d.api("POST", f"/api/v1/runs/{run}/clear", json={"task_ids": ["work", "nope"]})
    assert refused.status_code == 400
    assert "nope" in refused.json()["error"]
    assert states(d, run)["work"] == "failed"
    flag.touch()
    cleared = d.api(
        "POST", f"/api/v1/runs/{run}/clear", json={"task_ids": ["work"], "downstream": True}
    )
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["cleared"] == ["after", "work"]
    assert d.wait_for(lambda: run_state(d, run)) == "success"
    assert states(d, run) == {"work": "success", "after": "success", "slow": "success"}
    doc = d.api("GET", f"/api/v1/runs/{run}").json()
    assert {t["task_id"]: t["try_number"] for t in doc["tasks"]}["work"] == 2


def test_clearing_a_task_of_a_run_still_going_runs_it_again_in_that_run(
    flaky: tuple[DaemonProc, Path, Path],
) -> None:
    """While "slow" keeps the run going, the failed "work" is cleared through the run's
    driver: it runs again, and the run ends in success once "slow" finishes."""
    d, flag, slow_flag = flaky
    run = d.api("POST", "/api/v1/dags/flaky/runs", json={}).json()["run_id"]
    d.wait_for(lambda: states(d, run).get("after") == "upstream_failed")
    assert d.run_state("flaky", run) == "running"
    flag.touch()
    cleared = d.api(
        "POST", f"/api/v1/runs/{run}/clear", json={"task_ids": ["work"], "downstream": True}
    )
    assert cleared.json()["cleared"] == ["after", "work"]
    d.wait_for(lambda: states(d, run)["after"] == "success")
    slow_flag.touch()
    assert d.wait_for(lambda: run_state(d, run)) == "success"


def test_marking_tasks_and_runs(flaky: tuple[DaemonProc, Path, Path]) -> None:
    """Marking a running run failed stops it; a running run is not marked success; in a
    finished run, marking the failed leaf's instance success makes the run a success."""
    d, _, _ = flaky
    run = d.api("POST", "/api/v1/dags/flaky/runs", json={}).json()["run_id"]
    d.wait_for(lambda: states(d, run).get("slow") == "running")
    refused = d.api("PATCH", f"/api/v1/runs/{run}", json={"state": "success"})
    assert refused.status_code == 409
    assert "running" in refused.json()["error"]
    busy = d.api("PATCH", f"/api/v1/runs/{run}/tasks/slow", json={"state": "success"})
    assert busy.status_code == 409
    stopped = d.api("PATCH", f"/api/v1/runs/{run}", json={"state": "failed"})
    assert stopped.status_code == 200, stopped.text
    assert d.wait_for(lambda: run_state(d, run)) == "failed"
    assert states(d, run)["slow"] == "failed"
    for task_id in ("work", "after", "slow"):
        marked = d.api("PATCH", f"/api/v1/runs/{run}/tasks/{task_id}", json={"state": "success"})
        assert marked.status_code == 200, marked.text
        assert marked.json()["state"] == "success"
    assert d.run_state("flaky", run) == "success"
    marked_run: dict[str, Any] = d.api(
        "PATCH", f"/api/v1/runs/{run}", json={"state": "failed"}
    ).json()
    assert marked_run["state"] == "failed"
    assert d.api("PATCH", "/api/v1/runs/nope", json={"state": "failed"}).status_code == 404
