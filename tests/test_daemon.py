"""The daemon end to end: a real subprocess on a free port, killed for real."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

from tests.conftest import PG_URL
from tests.daemon_proc import DaemonProc
from tests.helpers import s3_client

pytestmark = pytest.mark.timeout(120)

DagFile = Callable[[str, str], Path]
JSON = {"Content-Type": "application/json"}

SIMPLE = """
from datetime import datetime
from orchestrator import DAG
from orchestrator.operators import EmptyOperator
with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1)):
    EmptyOperator(task_id="a") >> EmptyOperator(task_id="b")
"""

DAILY = """
from datetime import datetime
from orchestrator import DAG
from orchestrator.operators import EmptyOperator
with DAG("daily", schedule="@daily", start_date=datetime(2026, 1, 1)):
    EmptyOperator(task_id="a")
"""


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def finished(d: DaemonProc, dag_id: str, run_id: str) -> str | None:
    state = d.run_state(dag_id, run_id)
    return state if state in ("success", "failed") else None


def tasks(d: DaemonProc, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
    doc = d.api("GET", f"/api/v1/runs/{run_id}", params={"dag_id": dag_id}).json()
    return {t["task_id"]: t for t in doc["tasks"]}


# -- starting ------------------------------------------------------------------------------


def test_starts_with_nothing_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No settings at all: ./.orchestrator with SQLite, ./dags, serving within seconds."""
    monkeypatch.delenv("ORCHESTRATOR_HOME")
    monkeypatch.delenv("ORCHESTRATOR_DAGS")
    (tmp_path / "dags" / "one.py").write_text(SIMPLE.format(dag_id="one"))
    proc = DaemonProc(tmp_path / ".orchestrator").start()
    try:
        assert proc.ready_after < 10  # the README's figure comes from the benchmark
        assert (tmp_path / ".orchestrator" / "orchestrator.db").exists()
        health = proc.api("GET", "/api/v1/health").json()
        assert health["status"] == "ok"
        assert health["dags"] == 1
    finally:
        proc.stop()


def test_a_second_daemon_on_the_same_sqlite_store_refuses_to_start(
    dag_file: DagFile, home: Path
) -> None:
    """A second daemon on a SQLite store in use exits 2 naming the first; the first runs on
    unharmed. (Daemons on one PostgreSQL store share it: tests/test_daemons.py.)"""
    dag_file("one.py", SIMPLE.format(dag_id="one"))
    first = DaemonProc(home, {}).start()
    try:
        info = (home / "daemon.json").read_text()
        second = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "daemon", "--api-port", "0"],
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2
        assert "another daemon is running on this store" in second.stderr
        assert f"pid {first.proc.pid}" in second.stderr  # type: ignore[union-attr]
        assert (home / "daemon.json").read_text() == info
        (listed,) = json.loads(cli("daemons", "list", "--json").stdout)  # the one daemon
        assert (listed["pid"], listed["state"]) == (first.proc.pid, "alive")  # type: ignore[union-attr]
        run = first.api("POST", "/api/v1/dags/one/runs", json={}).json()
        assert first.wait_for(lambda: finished(first, "one", run["run_id"])) == "success"
    finally:
        first.stop()


def test_quickstart_examples_run_on_schedule_and_on_trigger(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bundled examples load; a trigger through the API runs the ETL example to success;
    an event through the API starts the event example."""
    examples = Path(__file__).parent.parent / "examples" / "dags"
    proc = DaemonProc(home, {"ORCHESTRATOR_DAGS": str(examples)}).start()
    try:
        assert len(proc.api("GET", "/api/v1/dags").json()) >= 2
        run = proc.api("POST", "/api/v1/dags/dag_etl_example/runs", json={}).json()
        assert proc.wait_for(lambda: finished(proc, "dag_etl_example", run["run_id"])) == "success"
        entry = {"Source": "shop", "DetailType": "Order Placed", "Detail": '{"total": 250}'}
        proc.api("POST", "/api/v1/events", json={"Entries": [entry]})
        proc.wait_for(lambda: proc.runs("big_orders"), 20, "the big order's run")
    finally:
        proc.stop()


# -- the API ---------------------------------------------------------------------------------


def test_bad_requests_get_4xx_json_and_change_nothing(
    daemon: Callable[..., DaemonProc], dag_file: DagFile
) -> None:
    """Unknown DAG 404, malformed JSON 400, conf not an object 400, taken run id 409."""
    dag_file("d.py", SIMPLE.format(dag_id="d"))
    d = daemon()
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("POST", "/api/v1/dags/nope/runs", {"json": {}}, 404, "'nope' not found"),
        ("POST", "/api/v1/dags/d/runs", {"content": b"{no", "headers": JSON}, 400, "malformed"),
        ("POST", "/api/v1/dags/d/runs", {"json": {"conf": [1]}}, 400, "conf: must be a JSON"),
        ("POST", "/api/v1/dags/d/runs", {"json": [1]}, 400, "must be a JSON object"),
        ("POST", "/api/v1/dags/d/runs", {"json": {"logical_date": "x"}}, 400, "logical_date"),
        ("POST", "/api/v1/dags/d/runs", {"json": {"colour": 1}}, 400, "unknown field(s): colour"),
        ("PATCH", "/api/v1/dags/d", {"json": {"is_paused": "yes"}}, 400, "is_paused"),
        ("GET", "/api/v1/runs/none", {}, 404, "no run with id 'none'"),
        ("GET", "/api/v1/nowhere", {}, 404, "no such route"),
        ("DELETE", "/api/v1/dags/d", {"headers": JSON}, 405, "method not allowed"),
        ("GET", "/api/v1/dags/d/runs?limit=x", {}, 400, "limit"),
    ]
    for method, path, kw, status, message in cases:
        response = d.api(method, path, **kw)
        assert response.status_code == status, (method, path, response.text)
        assert message in response.json()["error"], (method, path)
    assert d.runs("d") == []
    first = d.api("POST", "/api/v1/dags/d/runs", json={"run_id": "r1"})
    assert first.status_code == 201
    again = d.api("POST", "/api/v1/dags/d/runs", json={"run_id": "r1"})
    assert again.status_code == 409
    assert "already has a run 'r1'" in again.json()["error"]


def test_token_guards_every_route_but_health(
    daemon: Callable[..., DaemonProc], dag_file: DagFile
) -> None:
    """With ORCHESTRATOR_API_TOKEN set, a request without the bearer token gets 401."""
    dag_file("d.py", SIMPLE.format(dag_id="d"))
    d = daemon(ORCHESTRATOR_API_TOKEN="s3cret")
    assert d.api("GET", "/api/v1/health").status_code == 200
    assert d.api("GET", "/api/v1/dags").status_code == 401
    assert d.api("GET", "/metrics").status_code == 401
    bad = {"Authorization": "Bearer nope"}
    assert d.api("GET", "/api/v1/dags", headers=bad).status_code == 401
    good = {"Authorization": "Bearer s3cret"}
    assert d.api("GET", "/api/v1/dags", headers=good).json()[0]["dag_id"] == "d"


def test_run_views_and_task_logs(daemon: Callable[..., DaemonProc], dag_file: DagFile) -> None:
    """A run's tasks, states and tries, and a task's log, as the CLI shows them."""
    dag_file(
        "p.py",
        """
        from orchestrator import DAG
        from orchestrator.operators import PythonOperator
        with DAG("p"):
            PythonOperator(task_id="say", python_callable=lambda: print("hello from say"))
        """,
    )
    d = daemon()
    run = d.api("POST", "/api/v1/dags/p/runs", json={"conf": {"k": 1}}).json()
    assert d.wait_for(lambda: finished(d, "p", run["run_id"])) == "success"
    doc = d.api("GET", f"/api/v1/runs/{run['run_id']}").json()
    assert doc["conf"] == {"k": 1}
    assert doc["tasks"][0]["task_id"] == "say"
    assert doc["tasks"][0]["try_number"] == 1
    logs = d.api("GET", f"/api/v1/runs/{run['run_id']}/tasks/say/logs").json()
    assert "hello from say" in logs["tries"][0]["log"]
    metrics = d.api("GET", "/metrics").text
    assert 'orchestrator_dag_runs{state="success"} 1.0' in metrics
    assert "orchestrator_loop_lag_seconds_bucket" in metrics
    assert "orchestrator_schedule_lateness_seconds_bucket" in metrics


# -- triggers, pause ---------------------------------------------------------------------------


def test_cli_trigger_reaches_the_running_daemon_at_once(
    daemon: Callable[..., DaemonProc], dag_file: DagFile, db_url: str
) -> None:
    """`dags trigger` goes through the daemon's API: the run is queued and starts at once."""
    dag_file("d.py", SIMPLE.format(dag_id="d"))
    d = daemon()
    done = cli(
        "dags",
        "trigger",
        "d",
        "--conf",
        '{"k": 2}',
        "--run-id",
        "r",
        "--json",
        env={"ORCHESTRATOR_DB": db_url},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["run_id"] == "r"
    assert "no daemon" not in done.stderr
    started = time.monotonic()
    assert d.wait_for(lambda: finished(d, "d", "r")) == "success"
    assert time.monotonic() - started < 5
    bad = cli("dags", "trigger", "d", "--run-id", "r", env={"ORCHESTRATOR_DB": db_url})
    assert bad.returncode == 2
    assert "already has a run 'r'" in bad.stderr


def test_paused_dag_keeps_its_runs_queued_until_unpaused(
    daemon: Callable[..., DaemonProc], dag_file: DagFile, db_url: str
) -> None:
    """`dags pause` holds new runs in the queue; `dags unpause` lets them run."""
    dag_file("d.py", SIMPLE.format(dag_id="d"))
    d = daemon()
    assert cli("dags", "pause", "d", env={"ORCHESTRATOR_DB": db_url}).returncode == 0
    assert d.api("GET", "/api/v1/dags/d").json()["is_paused"] is True
    d.api("POST", "/api/v1/dags/d/runs", json={"run_id": "held"})
    time.sleep(0.5)
    assert d.run_state("d", "held") == "queued"
    assert d.api("PATCH", "/api/v1/dags/d", json={"is_paused": False}).status_code == 200
    assert d.wait_for(lambda: finished(d, "d", "held")) == "success"


POOLED = """
import os
import time
from datetime import datetime
from orchestrator import DAG
from orchestrator.operators import PythonOperator

FLAGS = {flags!r}

def wait(ti, **_):
    open(os.path.join(FLAGS, ti.task_id), "w").close()
    while not os.path.exists(os.path.join(FLAGS, "go")):
        time.sleep(0.05)

with DAG("pooled", schedule=None, start_date=datetime(2026, 1, 1)):
    PythonOperator(task_id="a", python_callable=wait, pool="one")
    PythonOperator(task_id="b", python_callable=wait, pool="one")
"""


def test_a_pool_resized_while_the_daemon_runs_counts_without_a_restart(
    daemon: Callable[..., DaemonProc], dag_file: DagFile, db_url: str, tmp_path: Path
) -> None:
    """`pools set` on a running daemon's store: a task the old size held back starts."""
    flags = tmp_path / "flags"
    flags.mkdir()
    dag_file("pooled.py", POOLED.format(flags=str(flags)))
    env = {"ORCHESTRATOR_DB": db_url}
    assert cli("pools", "set", "one", "1", env=env).returncode == 0
    d = daemon(ORCHESTRATOR_RECONCILE_INTERVAL="0.2")
    assert d.api("POST", "/api/v1/dags/pooled/runs", json={"run_id": "r"}).status_code == 201
    (first,) = d.wait_for(lambda: [f.name for f in flags.iterdir()], 10, "one task running")
    assert tasks(d, "pooled", "r")[{"a": "b", "b": "a"}[first]]["state"] == "scheduled"
    assert cli("pools", "set", "one", "2", env=env).returncode == 0
    d.wait_for(lambda: len(list(flags.iterdir())) == 2, 10, "the other task, started")
    (flags / "go").touch()
    assert d.wait_for(lambda: finished(d, "pooled", "r")) == "success"


def test_trigger_without_a_daemon_queues_in_the_store_and_the_daemon_runs_it(
    home: Path, dag_file: DagFile, db_url: str, daemon: Callable[..., DaemonProc]
) -> None:
    """With no daemon up, `dags trigger` writes the run; a daemon started later runs it."""
    dag_file("d.py", SIMPLE.format(dag_id="d"))
    done = cli("dags", "trigger", "d", "--run-id", "later", env={"ORCHESTRATOR_DB": db_url})
    assert done.returncode == 0, done.stderr
    assert "queued in the store" in done.stderr
    d = daemon()
    assert d.wait_for(lambda: finished(d, "d", "later")) == "success"


def test_trigger_dag_run_operator_waits_for_the_triggered_run(
    daemon: Callable[..., DaemonProc], dag_file: DagFile
) -> None:
    """TriggerDagRunOperator(wait_for_completion=True) passes conf and waits for the run."""
    dag_file(
        "pair.py",
        """
        from orchestrator import DAG
        from orchestrator.operators import PythonOperator, TriggerDagRunOperator
        with DAG("child"):
            PythonOperator(task_id="echo", python_callable=lambda **c: c["dag_run"].conf["n"])
        with DAG("parent"):
            TriggerDagRunOperator(
                task_id="go", trigger_dag_id="child", conf={"n": 7},
                wait_for_completion=True, poke_interval=0.05,
            )
        """,
    )
    d = daemon()
    run = d.api("POST", "/api/v1/dags/parent/runs", json={}).json()
    assert d.wait_for(lambda: finished(d, "parent", run["run_id"]), 20) == "success"
    [child] = d.runs("child")
    assert child["state"] == "success"
    assert child["conf"] == {"n": 7}


# -- time schedules -----------------------------------------------------------------------------


def test_interval_schedule_creates_contiguous_runs_on_time(
    daemon: Callable[..., DaemonProc], dag_file: DagFile
) -> None:
    """A 1-second timedelta schedule: runs are created as each interval ends, back to back."""
    dag_file(
        "tick.py",
        """
        from datetime import datetime, timedelta
        from orchestrator import DAG
        from orchestrator.operators import EmptyOperator
        with DAG("tick", schedule=timedelta(seconds=1), start_date=datetime(2026, 1, 1)):
            EmptyOperator(task_id="a")
        """,
    )
    d = daemon()
    runs = d.wait_for(lambda: [r for r in d.runs("tick") if r["state"] == "success"][2:], 15)
    scheduled = sorted(
        (r for r in d.runs("tick") if r["run_type"] == "scheduled"), key=lambda r: r["logical_date"]
    )
    assert len(runs) >= 1
    assert len(scheduled) >= 3
    dates = [r["logical_date"] for r in scheduled]
    assert len(set(dates)) == len(dates)
    metrics = d.api("GET", "/metrics").text
    assert "orchestrator_schedule_lateness_seconds_count" in metrics


def scheduled_dates(d: DaemonProc, dag_id: str) -> list[datetime]:
    return sorted(
        datetime.fromisoformat(r["logical_date"])
        for r in d.runs(dag_id)
        if r["run_type"] == "scheduled"
    )


def test_after_kill_9_missed_instants_follow_catchup(
    daemon: Callable[..., DaemonProc], dag_file: DagFile
) -> None:
    """Instants missed while down: catchup=True runs each of them, catchup=False the latest."""
    start = datetime.now(UTC).replace(microsecond=0)
    for dag_id, catchup in (("caught", True), ("latest", False)):
        dag_file(
            f"{dag_id}.py",
            f"""
            from datetime import datetime, timedelta
            from orchestrator import DAG
            from orchestrator.operators import EmptyOperator
            with DAG("{dag_id}", schedule=timedelta(seconds=1), catchup={catchup},
                     start_date=datetime.fromisoformat("{start.isoformat()}")):
                EmptyOperator(task_id="a")
            """,
        )
    d = daemon()
    d.wait_for(lambda: len(scheduled_dates(d, "caught")) >= 2, 15, "two runs before the kill")
    d.wait_for(lambda: len(scheduled_dates(d, "latest")) >= 2, 15, "two runs before the kill")
    before = {dag_id: scheduled_dates(d, dag_id)[-1] for dag_id in ("caught", "latest")}
    d.kill9()
    down = time.monotonic()
    while time.monotonic() - down < 4:  # the instants to be missed have to pass for real
        time.sleep(0.1)
    again = daemon()
    restart = datetime.now(UTC)

    def covered(dag_id: str) -> bool:
        dates = scheduled_dates(again, dag_id)
        return bool(dates) and dates[-1] >= restart - timedelta(seconds=2)

    again.wait_for(lambda: covered("caught") and covered("latest"), 15, "runs up to the restart")
    caught = scheduled_dates(again, "caught")
    assert caught[0] == start
    steps = [b - a for a, b in pairwise(caught)]
    assert set(steps) == {timedelta(seconds=1)}, caught
    latest = scheduled_dates(again, "latest")
    skipped = [(a, b) for a, b in pairwise(latest) if b - a != timedelta(seconds=1)]
    assert len(skipped) == 1, latest
    assert skipped[0][0] >= before["latest"]  # one more may be created before the kill lands
    assert skipped[0][1] - skipped[0][0] >= timedelta(seconds=3), latest


def test_dagrun_timeout_fails_the_run_and_stops_its_task(
    daemon: Callable[..., DaemonProc], dag_file: DagFile
) -> None:
    """A run past dagrun_timeout is failed; its running task is stopped, not waited for."""
    dag_file(
        "slow.py",
        """
        import anyio
        from datetime import timedelta
        from orchestrator import DAG
        from orchestrator.operators import PythonOperator
        async def nap():
            await anyio.sleep(60)
        with DAG("slow", dagrun_timeout=timedelta(seconds=1)):
            PythonOperator(task_id="nap", python_callable=nap) >> PythonOperator(
                task_id="after", python_callable=lambda: None
            )
        """,
    )
    d = daemon()
    run = d.api("POST", "/api/v1/dags/slow/runs", json={}).json()
    started = time.monotonic()
    assert d.wait_for(lambda: finished(d, "slow", run["run_id"]), 20) == "failed"
    assert time.monotonic() - started < 15
    states = {t: v["state"] for t, v in tasks(d, "slow", run["run_id"]).items()}
    assert states == {"nap": "failed", "after": "skipped"}


# -- the live folder ----------------------------------------------------------------------------


def test_new_changed_and_deleted_files_take_effect_without_restart(
    daemon: Callable[..., DaemonProc], dag_file: DagFile
) -> None:
    """Add a file: its DAG appears; edit it: the new tasks; delete it: the DAG is gone.

    The folder is given relative to the working directory, as in the Quickstart.
    """
    d = daemon(ORCHESTRATOR_DAGS="dags")
    path = dag_file("live.py", SIMPLE.format(dag_id="live"))
    d.wait_for(lambda: d.api("GET", "/api/v1/dags/live").status_code == 200, 5, "new DAG")
    path.write_text(path.read_text().replace('task_id="b"', 'task_id="c"'))
    d.wait_for(lambda: "c" in d.api("GET", "/api/v1/dags/live").json().get("tasks", []), 5, "edit")
    path.unlink()
    d.wait_for(lambda: d.api("GET", "/api/v1/dags/live").status_code == 404, 5, "deletion")


def s3_do(aws_conn: str, *calls: tuple[str, dict[str, Any]]) -> None:
    """Make S3 calls on moto's server, in order: (operation, arguments)."""

    async def go() -> None:
        async with s3_client(aws_conn) as s3:
            for operation, arguments in calls:
                await getattr(s3, operation)(**arguments)

    anyio.run(go)


def dag_ids(d: DaemonProc) -> set[str]:
    return {doc["dag_id"] for doc in d.api("GET", "/api/v1/dags").json()}


def test_an_s3_dags_folder_is_mirrored_and_live(
    daemon: Callable[..., DaemonProc], aws_conn: str
) -> None:
    """DAG files in s3://bucket/prefix/ load at start; added and deleted keys follow in seconds."""
    bucket = f"dags-{uuid.uuid4().hex[:12]}"
    put = "put_object"
    s3_do(
        aws_conn,
        ("create_bucket", {"Bucket": bucket}),
        (put, {"Bucket": bucket, "Key": "dags/one.py", "Body": SIMPLE.format(dag_id="one")}),
    )
    folder = {"ORCHESTRATOR_DAGS": f"s3://{bucket}/dags/"}
    d = daemon(**folder, ORCHESTRATOR_DAGS_SYNC_INTERVAL="0.2")
    assert dag_ids(d) == {"one"}
    s3_do(
        aws_conn,
        (put, {"Bucket": bucket, "Key": "dags/two.py", "Body": SIMPLE.format(dag_id="two")}),
    )
    d.wait_for(lambda: dag_ids(d) == {"one", "two"}, 10, "two.py from S3")
    s3_do(aws_conn, ("delete_object", {"Bucket": bucket, "Key": "dags/one.py"}))
    d.wait_for(lambda: dag_ids(d) == {"two"}, 10, "one.py deleted in S3")
    run = d.api("POST", "/api/v1/dags/two/runs", json={}).json()
    assert d.wait_for(lambda: finished(d, "two", run["run_id"])) == "success"
    listed = cli("dags", "list", "--json", env=folder)
    assert [doc["dag_id"] for doc in json.loads(listed.stdout)] == ["two"], listed.stderr


def test_an_unreachable_s3_dags_folder_does_not_stop_the_daemon(
    daemon: Callable[..., DaemonProc], monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 down at start: the daemon serves, and the log names the folder that failed."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv(
        "ORCHESTRATOR_CONN_AWS_DEFAULT",
        f"aws://k:s@/?endpoint_url=http://127.0.0.1:{port}&region_name=us-east-1",
    )
    d = daemon(ORCHESTRATOR_DAGS="s3://nowhere/dags/", ORCHESTRATOR_DAGS_SYNC_INTERVAL="0.2")
    assert d.api("GET", "/api/v1/health").json()["status"] == "ok"
    d.wait_for(lambda: "DAGs sync from S3 failed" in d.output(), 20, "the sync error")
    assert "s3://nowhere/dags/" in d.output()


def test_import_errors_are_reported_and_do_not_stop_other_dags(
    daemon: Callable[..., DaemonProc], dag_file: DagFile, db_url: str
) -> None:
    """A broken file is listed with its traceback; a hanging one is stopped; others run."""
    dag_file("good.py", SIMPLE.format(dag_id="good"))
    d = daemon(ORCHESTRATOR_DAG_IMPORT_TIMEOUT="1")
    dag_file("broken.py", "import no_such_module_anywhere\n")
    dag_file("hang.py", "while True:\n    pass\n")
    errors = d.wait_for(
        lambda: (
            len(d.api("GET", "/api/v1/import-errors").json()) == 2
            and d.api("GET", "/api/v1/import-errors").json()
        ),
        10,
        "import errors",
    )
    by_file = {Path(e["file"]).name: e for e in errors}
    assert "ModuleNotFoundError" in by_file["broken.py"]["error"]
    assert "no_such_module_anywhere" in by_file["broken.py"]["traceback"]
    assert "timed out after 1s" in by_file["hang.py"]["error"]
    assert "DAG file failed to import" in d.output()
    run = d.api("POST", "/api/v1/dags/good/runs", json={}).json()
    assert d.wait_for(lambda: finished(d, "good", run["run_id"])) == "success"
    listed = cli(
        "dags", "list", env={"ORCHESTRATOR_DB": db_url, "ORCHESTRATOR_DAG_IMPORT_TIMEOUT": "1"}
    )
    assert "broken.py" in listed.stderr
    assert "good" in listed.stdout


def test_a_file_that_exits_on_import_is_reported(
    daemon: Callable[..., DaemonProc], dag_file: DagFile
) -> None:
    """sys.exit and os._exit in a DAG file are import errors; the daemon keeps serving."""
    dag_file("a.py", "import sys\nsys.exit(4)\n")
    dag_file("b.py", "import os\nos._exit(5)\n")
    d = daemon()
    errors = {
        Path(e["file"]).name: e["error"] for e in d.api("GET", "/api/v1/import-errors").json()
    }
    assert "sys.exit(4)" in errors["a.py"]
    assert "exit code 5" in errors["b.py"]
    assert d.api("GET", "/api/v1/health").status_code == 200


# -- shutdown and recovery ----------------------------------------------------------------------

LONG = """
import time
from orchestrator import DAG
from orchestrator.operators import PythonOperator

def slow(ti=None, **_):
    print("try", ti.try_number, flush=True)
    if ti.try_number == 1:
        time.sleep({seconds})
    return ti.try_number

with DAG("long"):
    first = PythonOperator(task_id="first", python_callable=lambda: "done")
    first >> PythonOperator(task_id="slow", python_callable=slow, retries={retries})
    first >> PythonOperator(task_id="once", python_callable=slow, retries=0)
"""


def running(d: DaemonProc, run_id: str, *task_ids: str) -> bool:
    states = tasks(d, "long", run_id)
    return all(states.get(t, {}).get("state") == "running" for t in task_ids)


def long_run_going(
    daemon: Callable[..., DaemonProc], dag_file: DagFile, *, seconds: float, retries: int
) -> DaemonProc:
    """A daemon whose run "r" of LONG has its two slow tries running."""
    dag_file("long.py", LONG.format(seconds=seconds, retries=retries))
    d = daemon()
    d.api("POST", "/api/v1/dags/long/runs", json={"run_id": "r"})
    d.wait_for(lambda: running(d, "r", "slow", "once"), 10, "running")
    return d


def test_sigterm_lets_running_tasks_finish_then_exits_0(
    daemon: Callable[..., DaemonProc], dag_file: DagFile
) -> None:
    """SIGTERM: the running tries finish within the grace period, then exit code 0."""
    d = long_run_going(daemon, dag_file, seconds=1.5, retries=0)
    d.signal(signal.SIGTERM)
    assert d.wait(30) == 0
    out = d.output()
    assert "shutdown: tries finished" in out
    again = daemon()
    states = {t: v["state"] for t, v in tasks(again, "long", "r").items()}
    assert states["slow"] == "success"
    assert states["once"] == "success"
    assert all(v["try_number"] == 1 for v in tasks(again, "long", "r").values())


def test_sigterm_ends_a_run_whose_last_task_finished_in_the_grace_period(
    daemon: Callable[..., DaemonProc], dag_file: DagFile, db_url: str
) -> None:
    """The run's end is stored before the daemon exits: no restart is needed to end it."""
    d = long_run_going(daemon, dag_file, seconds=1.5, retries=0)
    d.signal(signal.SIGTERM)
    assert d.wait(30) == 0
    shown = cli("runs", "show", "r", "--dag", "long", "--json", env={"ORCHESTRATOR_DB": db_url})
    assert shown.returncode == 0, shown.stderr
    run = json.loads(shown.stdout)
    assert run["state"] == "success"
    assert run["end_date"] is not None
    assert {t["task_id"]: t["state"] for t in run["tasks"]} == dict.fromkeys(
        ["first", "slow", "once"], "success"
    )


def test_sigterm_exits_after_the_grace_period_though_a_thread_is_blocked(
    daemon: Callable[..., DaemonProc], dag_file: DagFile
) -> None:
    """A sync try blocked in time.sleep past the grace period does not hold the exit."""
    dag_file("long.py", LONG.format(seconds=60, retries=0))
    d = daemon(ORCHESTRATOR_SHUTDOWN_GRACE="1")
    d.api("POST", "/api/v1/dags/long/runs", json={"run_id": "r"})
    d.wait_for(lambda: running(d, "r", "slow", "once"), 10, "running")
    started = time.monotonic()
    d.signal(signal.SIGTERM)
    assert d.wait(20) == 0
    assert time.monotonic() - started < 10
    assert "shutdown: grace period over" in d.output()


def test_second_signal_exits_at_once(daemon: Callable[..., DaemonProc], dag_file: DagFile) -> None:
    """A second SIGTERM during the grace period exits immediately."""
    d = long_run_going(daemon, dag_file, seconds=60, retries=0)
    d.signal(signal.SIGTERM)
    d.wait_for(lambda: "shutdown: no new work" in d.output(), 10, "shutdown")
    started = time.monotonic()
    d.signal(signal.SIGTERM)
    assert d.wait(10) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 5


def test_after_kill_9_lost_tries_are_retried_or_failed_never_succeeded(
    daemon: Callable[..., DaemonProc], dag_file: DagFile
) -> None:
    """kill -9 mid-try: on restart the lost try counts; retries=1 runs again, retries=0 fails."""
    d = long_run_going(daemon, dag_file, seconds=60, retries=1)
    d.kill9()
    again = daemon()
    assert again.wait_for(lambda: finished(again, "long", "r"), 30) == "failed"
    states = tasks(again, "long", "r")
    assert states["first"]["state"] == "success"
    assert states["first"]["try_number"] == 1
    assert states["slow"]["state"] == "success"
    assert states["slow"]["try_number"] == 2
    assert states["once"]["state"] == "failed"
    assert states["once"]["try_number"] == 1
    # The try history closes the lost tries: failed, with an end date and the reason.
    for task_id, number in (("slow", 1), ("once", 1)):
        path = f"/api/v1/runs/r/tasks/{task_id}/logs"
        lost = again.api("GET", path, params={"dag_id": "long", "try": number}).json()
        assert lost["tries"][0]["state"] == "failed", lost
        assert lost["tries"][0]["end_date"] is not None
        assert "the process running this try stopped" in lost["tries"][0]["error"]


def test_after_kill_9_queued_runs_proceed(
    daemon: Callable[..., DaemonProc], dag_file: DagFile
) -> None:
    """Runs waiting under max_active_runs when the daemon died run after the restart."""
    dag_file(
        "one.py",
        """
        import time
        from orchestrator import DAG
        from orchestrator.operators import PythonOperator
        with DAG("one", max_active_runs=1):
            PythonOperator(task_id="t", python_callable=lambda: time.sleep(30), retries=0)
        """,
    )
    d = daemon()
    d.api("POST", "/api/v1/dags/one/runs", json={"run_id": "first"})
    d.api("POST", "/api/v1/dags/one/runs", json={"run_id": "second"})
    d.wait_for(lambda: d.run_state("one", "first") == "running", 10, "first running")
    assert d.run_state("one", "second") == "queued"
    d.kill9()
    again = daemon(ORCHESTRATOR_SHUTDOWN_GRACE="1")  # its 30 s try need not end at teardown
    assert again.wait_for(lambda: finished(again, "one", "first"), 20) == "failed"
    again.wait_for(lambda: again.run_state("one", "second") == "running", 20, "second running")


def postgres_client_ports(pid: int) -> list[int]:
    """The local ports of process ``pid``'s TCP connections to port 5432, from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = []
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if inode in inodes and int(remote.split(":")[1], 16) == 5432:
            ports.append(int(local.split(":")[1], 16))
    return ports


def terminate_sessions(pid: int) -> int:
    """Kill every PostgreSQL session of process ``pid``, as a server restart would."""

    async def kill() -> int:
        conn = await asyncpg.connect(PG_URL)
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE client_port = ANY($1::int[])",
                    postgres_client_ports(pid),
                )
            )
        finally:
            await conn.close()

    return anyio.run(kill)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_lost_postgresql_sessions_are_made_again_and_nothing_is_lost(
    daemon: Callable[..., DaemonProc], dag_file: DagFile, db_url: str
) -> None:
    """Every session killed mid-run: the running task's end, a new trigger and the claim survive."""
    dag_file(
        "slow.py",
        """
        import time
        from orchestrator import DAG
        from orchestrator.operators import EmptyOperator, PythonOperator
        with DAG("slow"):
            PythonOperator(task_id="nap", python_callable=lambda: time.sleep(1.5)) >> (
                EmptyOperator(task_id="after")
            )
        """,
    )
    d = daemon()
    assert d.proc is not None
    d.api("POST", "/api/v1/dags/slow/runs", json={"run_id": "before"})
    d.wait_for(lambda: tasks(d, "slow", "before")["nap"]["state"] == "running", 10, "nap")
    assert terminate_sessions(d.proc.pid) >= 2  # the writer and the read pool
    response = d.api("POST", "/api/v1/dags/slow/runs", json={"run_id": "after"})
    assert response.status_code == 201, response.text
    assert d.wait_for(lambda: finished(d, "slow", "before"), 20) == "success"
    assert d.wait_for(lambda: finished(d, "slow", "after"), 20) == "success"
    pid = d.proc.pid

    async def lease() -> list[tuple[int, str]]:  # the daemon's lease survived its sessions
        conn = await asyncpg.connect(db_url)
        try:
            return [tuple(r) for r in await conn.fetch("SELECT pid, state FROM daemon")]
        finally:
            await conn.close()

    assert anyio.run(lease) == [(pid, "alive")]


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_daemon_whose_lease_was_ended_while_disconnected_stops(
    daemon: Callable[..., DaemonProc], dag_file: DagFile, db_url: str
) -> None:
    """Sessions lost and the lease ended meanwhile: the next write stops the daemon, exit 2,
    and the trigger's run is left to the others, not written by it."""
    dag_file("one.py", SIMPLE.format(dag_id="one"))
    d = daemon()
    assert d.proc is not None

    async def end_lease_and_trigger() -> None:
        other = await asyncpg.connect(db_url)
        try:
            pid = d.proc.pid  # type: ignore[union-attr]
            assert await anyio.to_thread.run_sync(terminate_sessions, pid) >= 1
            await other.execute("UPDATE daemon SET state = 'ended' WHERE pid = $1", pid)
            await anyio.to_thread.run_sync(lambda: d.api("POST", "/api/v1/dags/one/runs", json={}))
            assert await anyio.to_thread.run_sync(d.wait, 20) == 2
            assert await other.fetchval("SELECT COUNT(*) FROM dag_run") == 0
        finally:
            await other.close()

    anyio.run(end_lease_and_trigger)
    assert "lease (epoch 1) was ended" in d.output()


def test_blocked_event_loop_is_logged_with_the_culprit(
    daemon: Callable[..., DaemonProc], dag_file: DagFile
) -> None:
    """An async task that blocks the loop for 0.6 s is named in an 'event loop blocked' log."""
    dag_file(
        "blocker.py",
        """
        import time
        from orchestrator import DAG
        from orchestrator.operators import PythonOperator
        async def hog():
            time.sleep(0.6)
        with DAG("blocker"):
            PythonOperator(task_id="hog", python_callable=hog)
        """,
    )
    d = daemon(ORCHESTRATOR_LOG_FORMAT="json")
    run = d.api("POST", "/api/v1/dags/blocker/runs", json={}).json()
    d.wait_for(lambda: finished(d, "blocker", run["run_id"]))
    lines = [json.loads(line) for line in d.output().splitlines() if line.startswith("{")]
    blocked = [line for line in lines if line["event"] == "event loop blocked"]
    assert blocked
    assert "hog" in blocked[0]["where"]
    ended = [line for line in lines if line["event"] == "run ended"]
    assert ended[0]["dag_id"] == "blocker"
    assert ended[0]["run_id"] == run["run_id"]


def test_backfill_runs_each_interval_with_progress(
    home: Path, dag_file: DagFile, db_url: str
) -> None:
    """`dags backfill` runs every interval between the dates and prints progress."""
    dag_file("daily.py", DAILY)
    env = {"ORCHESTRATOR_DB": db_url}
    done = cli("dags", "backfill", "daily", "--start", "2026-02-01", "--end", "2026-02-03", env=env)
    assert done.returncode == 0, done.stderr
    assert "3/3" in done.stdout
    assert "3 succeeded, 0 failed" in done.stdout
    listed = json.loads(cli("runs", "list", "--dag", "daily", "--json", env=env).stdout)
    assert sorted(r["logical_date"][:10] for r in listed) == [
        "2026-02-01",
        "2026-02-02",
        "2026-02-03",
    ]
    assert {r["run_type"] for r in listed} == {"backfill"}
    again = cli(
        "dags", "backfill", "daily", "--start", "2026-02-01", "--end", "2026-02-03", env=env
    )
    assert again.returncode == 0
    assert "success (already)" in again.stdout


def test_dag_paused_upon_creation_does_not_fire_until_unpaused(
    daemon: Callable[..., DaemonProc], dag_file: DagFile
) -> None:
    """is_paused_upon_creation=True: listed as paused, no scheduled run; unpause starts it."""
    dag_file(
        "held.py",
        """
        from datetime import datetime, timedelta
        from orchestrator import DAG
        from orchestrator.operators import EmptyOperator
        with DAG("held", schedule=timedelta(seconds=1), start_date=datetime(2026, 1, 1),
                 is_paused_upon_creation=True):
            EmptyOperator(task_id="a")
        """,
    )
    d = daemon()
    assert d.api("GET", "/api/v1/dags/held").json()["is_paused"] is True
    time.sleep(1.5)
    assert d.runs("held") == []
    d.api("PATCH", "/api/v1/dags/held", json={"is_paused": False})
    d.wait_for(lambda: d.runs("held"), 10, "a scheduled run")


def test_cleared_backfill_run_is_run_by_the_daemon(
    daemon: Callable[..., DaemonProc], dag_file: DagFile, db_url: str
) -> None:
    """`tasks clear` on a backfill run hands it to the daemon, which runs it again."""
    dag_file("daily.py", DAILY)
    env = {"ORCHESTRATOR_DB": db_url}
    done = cli("dags", "backfill", "daily", "--start", "2026-02-01", "--end", "2026-02-01", env=env)
    assert done.returncode == 0, done.stderr
    d = daemon(ORCHESTRATOR_RECONCILE_INTERVAL="0.2")
    d.api("PATCH", "/api/v1/dags/daily", json={"is_paused": True})  # no scheduled runs
    run_id = "backfill__2026-02-01T00:00:00.000000+00:00"
    cleared = cli("tasks", "clear", "daily", run_id, env=env)
    assert cleared.returncode == 0, cleared.stderr
    d.api("PATCH", "/api/v1/dags/daily", json={"is_paused": False})
    assert d.wait_for(lambda: finished(d, "daily", run_id), 10) == "success"
    assert tasks(d, "daily", run_id)["a"]["try_number"] == 2
