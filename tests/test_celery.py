"""The daemon with ``ORCHESTRATOR_EXECUTOR=celery``: real ``orchestrator worker``
processes on the local RabbitMQ and Redis, a PostgreSQL store, the daemon as a
subprocess. Pools, queues, XComs and datasets across workers; then the faults: a try's
process killed, a worker killed, a message delivered twice, the daemon killed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

from tests.daemon_proc import DaemonProc
from tests.helpers import alive, gone, most_at_once, run_cli
from tests.workers import WorkerProc, broker_or_skip, celery_env, drop_queues

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(240)]

SPREAD = """
import json
import os
import time
from datetime import datetime

from orchestrator import DAG, Dataset
from orchestrator.operators import BashOperator, PythonOperator

OUT = os.environ["CELERY_OUT"]
DONE = Dataset("s3://bucket/spread-done")


def produce(**_):
    return 21


def slot(ti, **_):
    start = time.time()
    time.sleep(0.5)
    with open(os.path.join(OUT, f"{ti.task_id}.json"), "w") as f:
        json.dump([start, time.time()], f)


def double(ti, **_):
    return ti.xcom_pull(task_ids="produce") * 2


with DAG("spread", start_date=datetime(2024, 1, 1), schedule=None) as dag:
    first = PythonOperator(task_id="produce", python_callable=produce)
    slots = [
        PythonOperator(task_id=f"slot{i}", python_callable=slot, pool="two") for i in range(6)
    ]
    last = PythonOperator(task_id="double", python_callable=double, outlets=[DONE])
    on_a = BashOperator(task_id="on_a", bash_command="echo ran on a", queue="a")
    on_b = BashOperator(task_id="on_b", bash_command="echo ran on b", queue="b")
    first >> slots
    for s in slots:
        s >> last
    first >> on_a
    first >> on_b

with DAG("capped", start_date=datetime(2024, 1, 1), schedule=None, max_active_tasks=2):
    for i in range(5):
        PythonOperator(task_id=f"c{i}", python_callable=lambda **_: time.sleep(0.3))

with DAG("wide", start_date=datetime(2024, 1, 1), schedule=None):
    for i in range(6):
        PythonOperator(task_id=f"w{i}", python_callable=lambda **_: time.sleep(0.3))

with DAG("after", start_date=datetime(2024, 1, 1), schedule=[DONE]) as after:
    PythonOperator(task_id="seen", python_callable=lambda **_: "after ran")
"""

FAULTS = """
import os
import time
from datetime import datetime, timedelta

from orchestrator import DAG
from orchestrator.operators import PythonOperator

OUT = os.environ["CELERY_OUT"]


def note(name, text):
    with open(os.path.join(OUT, name), "a") as f:
        f.write(text + "\\n")


def victim(ti, **_):
    note(f"{ti.task_id}.runs", f"{ti.try_number} {os.getpid()} {time.time()}")
    if ti.try_number == 1:
        note(f"{ti.task_id}.pid", str(os.getpid()))
        time.sleep(60)
    return ti.try_number


def steady(ti, run_id, **_):
    note("steady.runs", f"{ti.try_number} {os.getpid()} {time.time()}")
    go = os.path.join(OUT, "go-" + run_id)
    deadline = time.time() + 60
    while not os.path.exists(go) and time.time() < deadline:
        time.sleep(0.05)
    note("steady.ends", run_id)
    return "steady"


for name in ("child", "worker"):
    with DAG(f"kill_{name}", start_date=datetime(2024, 1, 1), schedule=None):
        PythonOperator(
            task_id=name, python_callable=victim, retries=1, retry_delay=timedelta(0)
        )

with DAG("kill_daemon", start_date=datetime(2024, 1, 1), schedule=None):
    PythonOperator(task_id="steady", python_callable=steady)
"""


class Cluster:
    """A daemon and workers on one broker and one PostgreSQL store."""

    def __init__(self, home: Path, env: dict[str, str], out: Path) -> None:
        self.home, self.env, self.out = home, env, out
        self.workers: list[WorkerProc] = []
        self.daemons: list[DaemonProc] = []

    def worker(self, queues: str = "default", concurrency: int = 2) -> WorkerProc:
        proc = WorkerProc(self.home, self.env, queues, concurrency).start()
        self.workers.append(proc)
        return proc

    def daemon(self, home: Path | None = None) -> DaemonProc:
        """A daemon on the cluster's home, or on a home of its own beside the first."""
        env = self.env if home is None else {**self.env, "ORCHESTRATOR_HOME": str(home)}
        proc = DaemonProc(home or self.home, env).start()
        self.daemons.append(proc)
        return proc

    def sql(self, query: str, *args: Any) -> list[dict[str, Any]]:
        async def fetch() -> list[dict[str, Any]]:
            conn = await asyncpg.connect(self.env["ORCHESTRATOR_DB"])
            try:
                return [dict(r) for r in await conn.fetch(query, *args)]
            finally:
                await conn.close()

        return anyio.run(fetch)

    def wait_run(self, daemon: DaemonProc, dag_id: str, within: float = 60.0) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            runs = daemon.runs(dag_id)
            return runs[0] if runs and runs[0]["state"] in ("success", "failed") else None

        return daemon.wait_for(ended, within, f"a run of {dag_id} to end")  # type: ignore[no-any-return]

    def wait_file(self, name: str, within: float = 30.0) -> str:
        path = self.out / name
        deadline = time.monotonic() + within
        while not (path.exists() and path.read_text().strip()):
            assert time.monotonic() < deadline, f"{name} never written"
            time.sleep(0.02)
        return path.read_text()

    def wait_text(self, name: str, text: str, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while text not in self.wait_file(name, within):
            assert time.monotonic() < deadline, f"{text!r} never in {name}"
            time.sleep(0.02)

    def stop(self) -> None:
        for proc in self.daemons:
            proc.stop()
        for worker in self.workers:
            worker.stop()


@pytest.fixture(params=["rabbitmq", "redis"])
def cluster(
    request: pytest.FixtureRequest, pg_url: str, home: Path, tmp_path: Path
) -> Iterator[Cluster]:
    out = tmp_path / "out"
    out.mkdir()
    env = celery_env(
        broker_or_skip(request.param),
        pg_url,
        CELERY_OUT=str(out),
        ORCHESTRATOR_CELERY_RESEND_AFTER="3",
    )
    made = Cluster(home, env, out)
    yield made
    made.stop()
    prefix = env["ORCHESTRATOR_CELERY_QUEUE_PREFIX"]
    drop_queues(env["ORCHESTRATOR_CELERY_BROKER"], prefix, ["default", "a", "b"])


def trigger(daemon: DaemonProc, dag_id: str) -> str:
    response = daemon.api("POST", f"/api/v1/dags/{dag_id}/runs", json={})
    assert response.status_code in (200, 201), response.text
    return str(response.json()["run_id"])


def test_a_dag_runs_on_workers_with_pools_queues_xcoms_and_datasets(
    cluster: Cluster, tmp_path: Path
) -> None:
    (tmp_path / "dags" / "spread.py").write_text(SPREAD)
    assert run_cli("pools", "set", "two", "2", db=cluster.env["ORCHESTRATOR_DB"]).returncode == 0
    on_a = cluster.worker("default,a", concurrency=4)
    on_b = cluster.worker("default,b", concurrency=4)
    daemon = cluster.daemon()
    run_id = trigger(daemon, "spread")
    run = cluster.wait_run(daemon, "spread")
    assert run["state"] == "success", daemon.output()
    # The pool held across both workers: never more than 2 of its 6 tries at once.
    spans = [json.loads((cluster.out / f"slot{i}.json").read_text()) for i in range(6)]
    assert most_at_once(spans) == 2
    # So did max_active_tasks (2) across both workers' 8 slots.
    trigger(daemon, "capped")
    assert cluster.wait_run(daemon, "capped")["state"] == "success"
    claimed = cluster.sql("SELECT claimed_at, finished_at FROM try_work WHERE dag_id = 'capped'")
    assert len(claimed) == 5
    assert most_at_once([(t["claimed_at"], t["finished_at"]) for t in claimed]) <= 2
    tries = cluster.sql("SELECT task_id, worker, state FROM try_work WHERE dag_id = 'spread'")
    by_task = {t["task_id"]: t for t in tries}
    assert len(tries) == 10
    assert all(t["state"] == "success" for t in tries)
    # Each queue's try went to a worker serving it.
    assert by_task["on_a"]["worker"].endswith(f":{on_a.pid}")
    assert by_task["on_b"]["worker"].endswith(f":{on_b.pid}")
    xcom = cluster.sql("SELECT value FROM xcom WHERE dag_id = 'spread' AND task_id = 'double'")
    assert xcom == [{"value": "42"}]
    # The worker's output is the try's log, read as any other.
    logs = run_cli("tasks", "logs", "spread", run_id, "on_b", db=cluster.env["ORCHESTRATOR_DB"])
    assert "ran on b" in logs.stdout, logs.stderr
    # The dataset event the worker's try emitted started the downstream DAG.
    after = cluster.wait_run(daemon, "after")
    assert after["state"] == "success"


def test_parallelism_holds_across_the_workers(cluster: Cluster, tmp_path: Path) -> None:
    """ORCHESTRATOR_PARALLELISM 2 on the daemon, 8 worker slots: never more than 2 of the
    DAG's 6 ready tries at once."""
    (tmp_path / "dags" / "spread.py").write_text(SPREAD)
    cluster.env["ORCHESTRATOR_PARALLELISM"] = "2"
    cluster.worker(concurrency=4)
    cluster.worker(concurrency=4)
    daemon = cluster.daemon()
    trigger(daemon, "wide")
    assert cluster.wait_run(daemon, "wide")["state"] == "success", daemon.output()
    claimed = cluster.sql("SELECT claimed_at, finished_at FROM try_work WHERE dag_id = 'wide'")
    assert len(claimed) == 6
    assert most_at_once([(t["claimed_at"], t["finished_at"]) for t in claimed]) == 2


def test_faults_lose_no_try_and_never_run_one_twice_at_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    (tmp_path / "dags" / "faults.py").write_text(FAULTS)
    cluster.worker(concurrency=2)
    cluster.worker(concurrency=2)
    daemon = cluster.daemon()

    # 1. The try's process is killed: that try fails, the retry succeeds.
    trigger(daemon, "kill_child")
    child = int(cluster.wait_file("child.pid"))
    os.kill(child, signal.SIGKILL)
    run = cluster.wait_run(daemon, "kill_child")
    assert run["state"] == "success"
    tries = cluster.sql(
        "SELECT try_number, state, result FROM try_work WHERE dag_id = 'kill_child' "
        "ORDER BY try_number"
    )
    assert [t["state"] for t in tries] == ["failed", "success"]
    assert "killed by signal SIGKILL" in json.loads(tries[0]["result"])["error"]

    # 2. The worker running a try is killed: its try's processes die with it; the try is
    # lost once its heartbeat lapses and runs again on the other worker, never at once.
    trigger(daemon, "kill_worker")
    victim = int(cluster.wait_file("worker.pid"))
    (owner,) = cluster.sql("SELECT worker FROM try_work WHERE dag_id = 'kill_worker'")
    killed = next(w for w in cluster.workers if owner["worker"].endswith(f":{w.pid}"))
    killed.kill9()
    assert gone(victim, within=5), "the try's process outlived its worker"
    died_at = time.time()
    run = cluster.wait_run(daemon, "kill_worker")
    assert run["state"] == "success"
    tries = cluster.sql(
        "SELECT try_number, state, worker, result FROM try_work "
        "WHERE dag_id = 'kill_worker' ORDER BY try_number"
    )
    assert [t["state"] for t in tries] == ["lost", "success"]
    assert "sent no heartbeat" in json.loads(tries[0]["result"])["error"]
    assert tries[1]["worker"] != tries[0]["worker"]
    second_start = float((cluster.out / "worker.runs").read_text().splitlines()[1].split()[2])
    assert second_start > died_at - 0.5

    # 3. A message delivered twice runs its try once: the second finds it claimed.
    (done,) = cluster.sql(
        "SELECT id FROM try_work WHERE dag_id = 'kill_worker' AND state = 'success'"
    )
    _send_again(cluster.env, done["id"])
    (survivor,) = [w for w in cluster.workers if w is not killed]
    _wait_for_text(survivor, "already taken")
    assert len((cluster.out / "worker.runs").read_text().splitlines()) == 2

    # 4. The daemon is killed while a worker runs a try: started again, it waits for
    # that try (adopts it) instead of running it again.
    first = trigger(daemon, "kill_daemon")
    cluster.wait_file("steady.runs")
    daemon.kill9()
    again = cluster.daemon()
    again.wait_for(lambda: "try on a worker adopted" in again.output(), 30, "the adoption")
    (cluster.out / f"go-{first}").write_text("go")
    run = cluster.wait_run(again, "kill_daemon")
    assert (run["run_id"], run["state"]) == (first, "success"), again.output()
    # And one whose try ended while no daemon was there: its outcome is taken.
    second = trigger(again, "kill_daemon")
    cluster.wait_text("steady.runs", "\n1 ")  # the second run's try
    again.kill9()
    (cluster.out / f"go-{second}").write_text("go")
    cluster.wait_text("steady.ends", second)
    third = cluster.daemon()
    run = cluster.wait_run(third, "kill_daemon")
    assert (run["run_id"], run["state"]) == (second, "success"), third.output()
    assert len((cluster.out / "steady.runs").read_text().splitlines()) == 2

    # 5. The daemon stopped (SIGTERM) while a worker runs a try: it exits without waiting
    # out its grace and leaves the try running; the next daemon adopts it.
    fourth = trigger(third, "kill_daemon")
    steady = cluster.out / "steady.runs"
    third.wait_for(lambda: len(steady.read_text().splitlines()) == 3, 30, "the third try")
    stopping = time.monotonic()
    third.stop()
    assert third.proc is not None
    assert third.proc.returncode == 0
    assert time.monotonic() - stopping < 15, "waited out the 30 s grace"
    assert "tries left to run on workers" in third.output()
    (left,) = cluster.sql("SELECT state FROM try_work WHERE run_id = $1", fourth)
    assert left["state"] == "running"
    fifth = cluster.daemon()
    fifth.wait_for(lambda: "try on a worker adopted" in fifth.output(), 30, "the adoption")
    (cluster.out / f"go-{fourth}").write_text("go")
    run = cluster.wait_run(fifth, "kill_daemon")
    assert (run["run_id"], run["state"]) == (fourth, "success"), fifth.output()
    assert len(steady.read_text().splitlines()) == 3
    tries = cluster.sql("SELECT try_number, state FROM task_try WHERE dag_id = 'kill_daemon'")
    assert [(t["try_number"], t["state"]) for t in tries] == [(1, "success")] * 3


def test_a_worker_stopped_with_sigterm_finishes_its_running_try_first(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Celery's warm shutdown: the worker takes no new try and exits 0 once the running
    one has ended, which counts as a success, not a lost try."""
    (tmp_path / "dags" / "faults.py").write_text(FAULTS)
    worker = cluster.worker(concurrency=2)
    daemon = cluster.daemon()
    run_id = trigger(daemon, "kill_daemon")
    cluster.wait_file("steady.runs")
    assert worker.proc is not None
    worker.proc.send_signal(signal.SIGTERM)
    _wait_for_text(worker, "Warm shutdown")
    (cluster.out / f"go-{run_id}").write_text("go")
    assert worker.proc.wait(30) == 0, worker.output()
    run = cluster.wait_run(daemon, "kill_daemon")
    assert (run["run_id"], run["state"]) == (run_id, "success"), daemon.output()
    tries = cluster.sql("SELECT try_number, state FROM try_work WHERE dag_id = 'kill_daemon'")
    assert [(t["try_number"], t["state"]) for t in tries] == [(1, "success")]


def _send_again(env: dict[str, str], work_id: str) -> None:
    code = (
        "from orchestrator._settings import load_settings;"
        "from orchestrator.runtime._celeryapp import celery_app, queue_name;"
        "s = load_settings(); app = celery_app(s);"
        f"app.send_task('orchestrator.run_try', args=[{work_id!r}],"
        " queue=queue_name(s, 'default'));"
        "app.close()"
    )
    subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, check=True, timeout=30)


def _wait_for_text(worker: WorkerProc, text: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while text not in worker.output():
        assert time.monotonic() < deadline, f"{text!r} not in the worker's output"
        time.sleep(0.05)
    assert alive(worker.pid)


OUTAGE = """
import os
import time
from datetime import datetime

from orchestrator import DAG
from orchestrator.operators import PythonOperator

OUT = os.environ["CELERY_OUT"]


def work(ti, **_):
    with open(os.path.join(OUT, f"{ti.task_id}.runs"), "a") as f:
        f.write(f"{ti.try_number}\\n")
    if ti.task_id == "long":  # until the test has taken the broker down
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(OUT, "broker.down")):
            assert time.monotonic() < deadline, "the broker was never taken down"
            time.sleep(0.05)
        open(os.path.join(OUT, "long.done"), "w").write("done")


with DAG("outage", start_date=datetime(2024, 1, 1), schedule=None):
    long = PythonOperator(task_id="long", python_callable=work)
    for i in range(4):
        long >> PythonOperator(task_id=f"after{i}", python_callable=work)
"""


class Broker:
    """A broker of the test's own: a Redis server on a free port, or a RabbitMQ virtual
    host. ``down`` stops the Redis server (which keeps nothing: its messages are lost) or
    closes every connection of the virtual host and refuses new ones; ``up`` starts the
    server again or lets clients back in."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.server: subprocess.Popen[bytes] | None = None
        if kind == "redis":
            broker_or_skip("redis")
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
            self.url = f"redis://127.0.0.1:{self.port}/0"
            self._start_redis()
        else:
            broker_or_skip("rabbitmq")
            self.vhost = f"t{uuid.uuid4().hex[:10]}"
            self._ctl("add_vhost", self.vhost)
            self._ctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
            self.url = f"amqp://guest:guest@127.0.0.1:5672/{self.vhost}"

    def _ctl(self, *args: str) -> None:
        subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)

    def _start_redis(self) -> None:
        self.server = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp_path),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def down(self) -> None:
        if self.kind == "redis":
            assert self.server is not None
            self.server.kill()
            self.server.wait(10)
        else:  # no client may come back until up()
            self._ctl("clear_permissions", "-p", self.vhost, "guest")
            self._ctl("close_all_connections", "--vhost", self.vhost, "test: broker down")

    def up(self) -> None:
        if self.kind == "redis":
            self._start_redis()
        else:
            self._ctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")

    def close(self) -> None:
        if self.server is not None:
            self.server.kill()
            self.server.wait(10)
        if self.kind == "rabbitmq":
            self._ctl("delete_vhost", self.vhost)


@pytest.mark.parametrize("kind", ["rabbitmq", "redis"])
def test_a_broker_restart_mid_run_loses_no_try_and_runs_none_twice(
    kind: str, pg_url: str, home: Path, tmp_path: Path
) -> None:
    (tmp_path / "dags" / "outage.py").write_text(OUTAGE)
    out = tmp_path / "out"
    out.mkdir()
    broker = Broker(kind, tmp_path)
    env = celery_env(broker.url, pg_url, CELERY_OUT=str(out), ORCHESTRATOR_CELERY_RESEND_AFTER="2")
    cluster = Cluster(home, env, out)
    try:
        cluster.worker(concurrency=2)
        daemon = cluster.daemon()
        trigger(daemon, "outage")
        cluster.wait_file("long.runs")
        broker.down()  # while `long` runs: its followers are sent while the broker is down
        (out / "broker.down").write_text("")
        cluster.wait_file("long.done")
        daemon.wait_for(
            lambda: daemon.output().count("cannot send a try to the broker") >= 4,
            within=30,
            what="the followers' sends refused by the broker",
        )
        broker.up()
        run = cluster.wait_run(daemon, "outage", within=90)
        assert run["state"] == "success", daemon.output()
        for task_id in ["long"] + [f"after{i}" for i in range(4)]:
            assert (out / f"{task_id}.runs").read_text() == "1\n", task_id
        tries = cluster.sql("SELECT task_id, try_number, state, sent FROM try_work")
        assert sorted((t["try_number"], t["state"]) for t in tries) == [(1, "success")] * 5
        # The followers' first messages never reached the broker: they were sent again.
        assert all(t["sent"] >= 1 for t in tries if t["task_id"] != "long"), tries
    finally:
        cluster.stop()
        broker.close()
