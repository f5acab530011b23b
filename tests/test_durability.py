"""What the store acknowledged survives kill -9 of the process that wrote it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from orchestrator import DAG
from orchestrator._settings import Settings
from orchestrator.operators import EmptyOperator
from orchestrator.runtime._drive import run_dag_once
from orchestrator.store import open_store
from tests.helpers import drive

BLOCKING = """
import time
from pathlib import Path
from orchestrator import DAG
from orchestrator.operators import EmptyOperator, PythonOperator

def wait_forever():
    while True:
        time.sleep(1)

with DAG("durable"):
    first = EmptyOperator(task_id="first")
    stuck = PythonOperator(task_id="stuck", python_callable=wait_forever, retries=2)
    first >> stuck
"""


def test_acknowledged_states_survive_kill_9(
    dag_file: Callable[[str, str], Path], home: Path
) -> None:
    """After kill -9, the store holds every state the process had printed as done."""
    dag_file("durable.py", BLOCKING)
    with subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "dags", "test", "durable"],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:  # progress lines are printed after the store acknowledged them
            if "stuck" in line and "running" in line:
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    db = sqlite3.connect(home / "orchestrator.db")
    states = dict(db.execute("SELECT task_id, state FROM task_instance").fetchall())
    assert states == {"first": "success", "stuck": "running"}
    assert db.execute("SELECT try_number FROM task_instance WHERE task_id='stuck'").fetchone() == (
        1,
    )
    assert db.execute("SELECT state FROM dag_run").fetchone() == ("running",)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_a_task_gone_from_the_dag_is_marked_removed(settings: Settings) -> None:
    """Driving a run whose DAG lost a task marks that task's instance removed."""
    with DAG("shrinking") as dag:
        EmptyOperator(task_id="kept")
        EmptyOperator(task_id="dropped")
    live = await run_dag_once(settings, dag)
    del dag.task_dict["dropped"]
    from orchestrator.core._state import RunState, TaskState

    async with open_store(settings.db_url) as store:
        run = await store.get_run("shrinking", live.record.run_id)
        tis = await store.task_instances("shrinking", run.run_id)
        for ti in tis:
            ti.state = TaskState.NONE
        run.state = RunState.QUEUED
        await store.clear_task_instances(run, tis)
        again = await drive(settings, store, dag, run)
        states = {t.task_id: t.state for t in await store.task_instances("shrinking", run.run_id)}
    assert states == {"kept": TaskState.SUCCESS, "dropped": TaskState.REMOVED}
    assert again.record.state == RunState.SUCCESS
