"""Several daemons on one PostgreSQL store, as subprocesses: shared work and takeovers."""

from __future__ import annotations

import json
import signal
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

from orchestrator.store._shards import shard_of
from tests.daemon_proc import DaemonProc
from tests.helpers import most_at_once, run_cli

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

TAKEOVER = 2.0  # seconds: ORCHESTRATOR_HA_TAKEOVER for these tests


def sql(url: str, query: str, *args: Any) -> list[dict[str, Any]]:
    async def fetch() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(url)
        try:
            return [dict(r) for r in await conn.fetch(query, *args)]
        finally:
            await conn.close()

    return anyio.run(fetch)


class Cluster:
    """Daemons on one store and one DAGs folder, each with a home of its own."""

    def __init__(self, root: Path, url: str) -> None:
        self.root, self.url = root, url
        self.procs: list[DaemonProc] = []

    def start(self, **env: str) -> DaemonProc:
        home = self.root / f"home{len(self.procs)}"
        home.mkdir(parents=True, exist_ok=True)
        settings = {"ORCHESTRATOR_HOME": str(home), "ORCHESTRATOR_DB": self.url}
        settings["ORCHESTRATOR_HA_TAKEOVER"] = str(TAKEOVER)
        settings["ORCHESTRATOR_RECONCILE_INTERVAL"] = "0.5"
        proc = DaemonProc(home, {**settings, **env}).start()
        self.procs.append(proc)
        return proc

    def alive(self) -> list[dict[str, Any]]:
        return sql(self.url, "SELECT * FROM daemon WHERE state = 'alive' ORDER BY epoch")

    def balanced(self, n: int) -> bool:
        """Whether ``n`` daemons are alive and hold every shard between them, none idle."""
        rows = sql(self.url, "SELECT owner, COUNT(*) AS n FROM shard GROUP BY owner")
        owners = {r["owner"]: r["n"] for r in rows}
        return len(self.alive()) == n and None not in owners and len(owners) == n

    def owner_of(self, dag_id: str) -> DaemonProc:
        (row,) = sql(
            self.url,
            "SELECT d.pid FROM shard s JOIN daemon d ON d.epoch = s.owner WHERE s.id = $1",
            shard_of(dag_id),
        )
        return next(p for p in self.procs if p.proc is not None and p.proc.pid == row["pid"])

    def stop(self) -> None:
        for proc in self.procs:
            if proc.proc is not None and proc.proc.poll() is None:
                with_signal(proc, signal.SIGCONT)
                proc.stop()


def with_signal(proc: DaemonProc, signum: int) -> None:
    assert proc.proc is not None
    proc.proc.send_signal(signum)


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    group = Cluster(tmp_path, pg_url)
    yield group
    group.stop()


def write_dag(folder: Path, dag_id: str, body: str) -> None:
    (folder / f"{dag_id}.py").write_text(textwrap.dedent(body).lstrip())


MANUAL = """
from datetime import datetime
from orchestrator import DAG
from orchestrator.operators import EmptyOperator
with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1)):
    EmptyOperator(task_id="a") >> EmptyOperator(task_id="b")
"""


def test_daemons_share_the_dags_and_a_trigger_to_any_of_them_runs_once_by_the_owner(
    cluster: Cluster, tmp_path: Path
) -> None:
    dag_ids = [f"m{i}" for i in range(16)]
    for dag_id in dag_ids:
        write_dag(tmp_path / "dags", dag_id, MANUAL.format(dag_id=dag_id))
    first, second = cluster.start(), cluster.start()
    first.wait_for(lambda: cluster.balanced(2), 15, "two daemons sharing the shards")
    assert len({cluster.owner_of(d).proc.pid for d in dag_ids}) == 2  # type: ignore[union-attr]
    for i, dag_id in enumerate(dag_ids):  # each trigger to one of the two, whoever owns it
        via = (first, second)[i % 2]
        response = via.api("POST", f"/api/v1/dags/{dag_id}/runs", json={"run_id": "r"})
        assert response.status_code == 201, response.text
    done = first.wait_for(
        lambda: (
            rows
            if len(rows := sql(cluster.url, "SELECT * FROM dag_run WHERE state = 'success'"))
            == len(dag_ids)
            else None
        ),
        20,
        "every run finished",
    )
    epochs = {r["pid"]: r["epoch"] for r in cluster.alive()}
    for run in done:
        owner = cluster.owner_of(run["dag_id"])
        assert run["driver"] == f"daemon:{epochs[owner.proc.pid]}"  # type: ignore[union-attr]
    # Either daemon's API answers for every run.
    for proc in (first, second):
        assert all(proc.runs(dag_id) for dag_id in dag_ids)
    # /health, /metrics and `daemons list` show the daemons and their shares.
    pids = {p.proc.pid for p in (first, second)}  # type: ignore[union-attr]

    def listed() -> list[dict[str, Any]] | None:
        listing = run_cli("daemons", "list", "--json", db=cluster.url)
        assert listing.returncode == 0, listing.stderr
        shown = json.loads(listing.stdout)
        return shown if sum(d["shards"] for d in shown) == 256 else None

    shown = first.wait_for(listed, 10, "both daemons' shares in `daemons list`")
    assert {d["pid"] for d in shown} == pids
    assert {d["state"] for d in shown} == {"alive"}
    table = run_cli("daemons", "list", db=cluster.url).stdout
    assert all(str(pid) in table for pid in pids)
    health = second.api("GET", "/api/v1/health").json()["daemon"]
    assert health["epoch"] == epochs[second.proc.pid]  # type: ignore[union-attr]
    assert 0 < health["shards"] < 256
    assert {d["pid"] for d in health["daemons"]} == pids
    assert "orchestrator_daemons 2.0" in second.api("GET", "/metrics").text
    page = second.api("GET", "/health").text
    assert "Daemons on this store" in page
    assert all(f"<td>{pid}</td>" in page for pid in pids)
    tries = sql(cluster.url, "SELECT dag_id, task_id, COUNT(*) AS n FROM task_try GROUP BY 1, 2")
    assert {r["n"] for r in tries} == {1}
    assert len(tries) == 2 * len(dag_ids)


NAP = """
from datetime import datetime
from orchestrator import DAG
from orchestrator.operators import BashOperator
with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1)):
    BashOperator(task_id="nap", bash_command="sleep 60")
"""

TICK = """
from datetime import datetime, timedelta
from orchestrator import DAG
from orchestrator.operators import EmptyOperator
with DAG("{dag_id}", schedule=timedelta(seconds=1), catchup=True,
         start_date=datetime.fromisoformat("{start}")):
    EmptyOperator(task_id="a")
"""

SLOW = """
from datetime import datetime
from orchestrator import DAG
from orchestrator.operators import BashOperator
with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1)):
    BashOperator(task_id="nap", bash_command="sleep 3", retries=2, retry_delay=0)
"""


WAIT = """
from datetime import datetime
from orchestrator import DAG
from sensors import FileSensor
with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1)):
    FileSensor(task_id="wait", filepath="{flag}", poke_interval=0.2)
"""


def scheduled(url: str, dag_id: str) -> list[datetime]:
    rows = sql(
        url,
        "SELECT logical_date FROM dag_run WHERE dag_id = $1 AND run_type = 'scheduled'",
        dag_id,
    )
    return sorted(datetime.fromisoformat(r["logical_date"]) for r in rows)


def contiguous(dates: list[datetime]) -> bool:
    return all(b - a == timedelta(seconds=1) for a, b in pairwise(dates))


@pytest.mark.parametrize("how", ["kill -9", "SIGSTOP"])
def test_a_lost_daemons_dags_and_runs_are_taken_over_nothing_fired_twice_or_missed(
    cluster: Cluster, tmp_path: Path, how: str
) -> None:
    """Within the takeover time the other daemon schedules the lost one's DAGs from where it
    stopped, and drives its run to the end (the running try retried); a frozen daemon, when
    it wakes, exits without writing."""
    start = datetime.now(UTC).replace(microsecond=0)
    for i in range(6):
        write_dag(tmp_path / "dags", f"t{i}", TICK.format(dag_id=f"t{i}", start=start.isoformat()))
    for i in range(6):
        write_dag(tmp_path / "dags", f"s{i}", SLOW.format(dag_id=f"s{i}"))
    flag = tmp_path / "flag"
    for i in range(6):
        write_dag(tmp_path / "dags", f"w{i}", WAIT.format(dag_id=f"w{i}", flag=flag))
    first, second = cluster.start(), cluster.start()
    first.wait_for(lambda: cluster.balanced(2), 15, "two daemons sharing the shards")
    lost = cluster.owner_of("t0")
    other = second if lost is first else first
    slow = next(f"s{i}" for i in range(6) if cluster.owner_of(f"s{i}") is lost)
    lost.api("POST", f"/api/v1/dags/{slow}/runs", json={"run_id": "long"})
    waiter = next(f"w{i}" for i in range(6) if cluster.owner_of(f"w{i}") is lost)
    lost.api("POST", f"/api/v1/dags/{waiter}/runs", json={"run_id": "waiting"})
    query = "SELECT 1 FROM task_try WHERE dag_id = $1 OR dag_id = $2"
    lost.wait_for(lambda: len(sql(cluster.url, query, slow, waiter)) == 2, 10, "the tries")
    first.wait_for(lambda: len(scheduled(cluster.url, "t0")) >= 3, 15, "runs before the loss")
    for proc in (first, second):  # the next run, from the DAG's daemon or not
        assert proc.api("GET", "/api/v1/dags/t0").json()["next_run"] is not None
    assert lost.proc is not None
    if how == "kill -9":
        lost.kill9()
    else:
        with_signal(lost, signal.SIGSTOP)
    lost_at = datetime.now(UTC)
    other.wait_for(lambda: cluster.balanced(1), TAKEOVER * 3 + 5, "the takeover")
    other.wait_for(
        lambda: scheduled(cluster.url, "t0")[-1] >= lost_at + timedelta(seconds=1),
        TAKEOVER + 6,
        "t0 scheduled again after the loss",
    )
    other.wait_for(
        lambda: (
            sql(cluster.url, "SELECT state FROM dag_run WHERE run_id = 'long'")[0]["state"]
            == "success"
        ),
        20,
        "the lost daemon's run driven to its end",
    )
    # The deferred sensor's wait goes on in the other daemon: the file ends it.
    flag.write_text("here")
    other.wait_for(
        lambda: (
            sql(cluster.url, "SELECT state FROM dag_run WHERE run_id = 'waiting'")[0]["state"]
            == "success"
        ),
        20,
        "the lost daemon's sensor run, resumed by the other",
    )
    tries = sql(cluster.url, "SELECT try_number, state FROM task_try WHERE dag_id = $1", slow)
    assert sorted((t["try_number"], t["state"]) for t in tries)[-1][1] == "success"
    assert len(tries) == 2  # the first try counted lost, the second ran on the other daemon
    if how == "SIGSTOP":
        with_signal(lost, signal.SIGCONT)
        assert lost.wait(20) == 2
        assert "was ended by another" in lost.output()
    for i in range(6):
        dates = scheduled(cluster.url, f"t{i}")
        assert dates[0] == start
        assert len(set(dates)) == len(dates), (f"t{i}", dates)
        assert contiguous(dates), (f"t{i}", dates)


def test_a_trigger_or_pause_sent_to_another_daemon_reaches_the_dags_daemon_at_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    """LISTEN/NOTIFY: with reconciles a minute apart, a trigger sent to a daemon that does not
    schedule the DAG starts at once, as after the owner's notice connection was cut."""
    dag_ids = [f"m{i}" for i in range(8)]
    for dag_id in dag_ids:
        write_dag(tmp_path / "dags", dag_id, MANUAL.format(dag_id=dag_id))
    for i in range(8):
        write_dag(tmp_path / "dags", f"nap{i}", NAP.format(dag_id=f"nap{i}"))
    first = cluster.start(ORCHESTRATOR_RECONCILE_INTERVAL="60")
    second = cluster.start(ORCHESTRATOR_RECONCILE_INTERVAL="60")
    first.wait_for(lambda: cluster.balanced(2), 15, "two daemons sharing the shards")
    dag_id = next(d for d in dag_ids if cluster.owner_of(d) is second)
    waits = []
    for attempt in range(3):
        if attempt == 2:  # every session of the owner cut: it listens again and reads the store
            assert second.proc is not None
            sql(
                cluster.url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE $1",
                f"orchestrator pid {second.proc.pid} %",
            )
        run_id = f"via-the-other-{attempt}"
        response = first.api("POST", f"/api/v1/dags/{dag_id}/runs", json={"run_id": run_id})
        assert response.status_code == 201, response.text
        query = "SELECT * FROM dag_run WHERE run_id = $1 AND state = 'success'"
        (run,) = first.wait_for(
            lambda: sql(cluster.url, query, run_id),  # noqa: B023 (waited for at once)
            10,
            "the run, started by its DAG's daemon on the notice",
        )
        started = datetime.fromisoformat(run["start_date"])
        waits.append(started - datetime.fromisoformat(run["queued_at"]))
    assert max(waits) < timedelta(seconds=10), waits  # not the minute between reconciles
    # A run driven by the other daemon: marking it failed here is answered by that daemon,
    # which stops it.
    nap = next(f"nap{i}" for i in range(8) if cluster.owner_of(f"nap{i}") is second)
    first.api("POST", f"/api/v1/dags/{nap}/runs", json={"run_id": "long"})
    first.wait_for(
        lambda: sql(cluster.url, "SELECT 1 FROM task_try WHERE dag_id = $1", nap), 10, "the nap"
    )
    marked = first.api(
        "PATCH", "/api/v1/runs/long", params={"dag_id": nap}, json={"state": "failed"}
    )
    assert marked.status_code == 200, marked.text
    assert first.wait_for(lambda: first.run_state(nap, "long") == "failed", 10, "stopped")
    assert "marked failed by a user" in second.output()
    assert first.api("PATCH", f"/api/v1/dags/{dag_id}", json={"is_paused": True}).is_success
    second.wait_for(
        lambda: second.api("GET", f"/api/v1/dags/{dag_id}").json()["is_paused"], 10, "paused"
    )


POOLED = """
import json
import os
import time
from datetime import datetime
from orchestrator import DAG
from orchestrator.operators import PythonOperator

def work(ti, **_):
    began = time.time()
    time.sleep(0.3)
    with open(os.path.join(os.environ["POOL_OUT"], ti.dag_id + "." + ti.task_id), "w") as f:
        json.dump([began, time.time()], f)

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1)):
    for i in range(4):
        PythonOperator(task_id=f"t{i}", python_callable=work, pool="db")
"""


def test_a_pool_holds_across_the_daemons_whichever_drives_the_runs(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A pool of 2 slots, and runs driven by two daemons that each want all of it: never
    more than 2 of their tries at once, and both daemons' tries run."""
    out = tmp_path / "out"
    out.mkdir()
    created = run_cli("pools", "set", "db", "2", db=cluster.url)
    assert created.returncode == 0, created.stderr
    dag_ids = [f"p{i}" for i in range(16)]
    for dag_id in dag_ids:
        write_dag(tmp_path / "dags", dag_id, POOLED.replace("{dag_id}", dag_id))
    first = cluster.start(POOL_OUT=str(out))
    second = cluster.start(POOL_OUT=str(out))
    first.wait_for(lambda: cluster.balanced(2), 15, "two daemons sharing the shards")
    chosen = [d for d in dag_ids if cluster.owner_of(d) is first][:2]
    chosen += [d for d in dag_ids if cluster.owner_of(d) is second][:2]
    assert len(chosen) == 4
    for dag_id in chosen:
        owner = cluster.owner_of(dag_id)
        path = f"/api/v1/dags/{dag_id}"
        owner.wait_for(lambda: owner.api("GET", path).is_success, 10, dag_id)  # noqa: B023
        response = owner.api("POST", f"/api/v1/dags/{dag_id}/runs", json={"run_id": "r"})
        assert response.status_code == 201, response.text
    query = "SELECT dag_id, driver FROM dag_run WHERE state = 'success'"
    done = first.wait_for(lambda: r if len(r := sql(cluster.url, query)) == 4 else None, 60, "runs")
    assert len({r["driver"] for r in done}) == 2
    spans = [tuple(json.loads(f.read_text())) for f in out.iterdir()]
    assert len(spans) == 16
    assert most_at_once(spans) == 2, sorted(spans)
