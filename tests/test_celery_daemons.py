"""Two daemons sending tries to Celery workers: a pool holds across them, even while a
daemon that died leaves its tries running on the workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.store._shards import shard_of
from tests.daemon_proc import DaemonProc
from tests.helpers import most_at_once, run_cli
from tests.test_celery import Cluster, trigger
from tests.workers import broker_or_skip, celery_env, drop_queues

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]

HELD = """
import json
import os
import time
from datetime import datetime

from orchestrator import DAG
from orchestrator.operators import PythonOperator

OUT = os.environ["CELERY_OUT"]


def work(ti, **_):
    began = time.time()
    open(os.path.join(OUT, ti.dag_id + "." + ti.task_id + ".began"), "w").close()
    go = os.path.join(OUT, "go-" + ti.dag_id)
    deadline = time.time() + 60
    while not os.path.exists(go) and time.time() < deadline:
        time.sleep(0.05)
    with open(os.path.join(OUT, ti.dag_id + "." + ti.task_id + ".span"), "w") as f:
        json.dump([began, time.time()], f)


for i in range(16):
    with DAG(f"g{i}", start_date=datetime(2024, 1, 1), schedule=None):
        for name in ("a", "b"):
            PythonOperator(task_id=name, python_callable=work, pool="two")
"""


def test_a_pool_holds_while_a_dead_daemons_tries_run_on_workers(
    pg_url: str, home: Path, tmp_path: Path
) -> None:
    """Daemon A's two tries fill a pool of 2 on the workers; A is killed. Daemon B's own
    tries in that pool wait until A's end (B adopts them meanwhile): never 3 at once."""
    (tmp_path / "dags" / "held.py").write_text(HELD)
    out = tmp_path / "out"
    out.mkdir()
    broker = broker_or_skip("redis")
    env = celery_env(broker, pg_url, CELERY_OUT=str(out), ORCHESTRATOR_HA_TAKEOVER="2")
    cluster = Cluster(home, env, out)
    try:
        assert run_cli("pools", "set", "two", "2", db=pg_url).returncode == 0
        cluster.worker(concurrency=4)
        first = cluster.daemon()
        other_home = tmp_path / "home2"
        other_home.mkdir()
        second = cluster.daemon(other_home)

        def owner(dag_id: str) -> DaemonProc | None:
            rows = cluster.sql(
                "SELECT d.pid FROM shard s JOIN daemon d ON d.epoch = s.owner "
                "WHERE s.id = $1 AND d.state = 'alive'",
                shard_of(dag_id),
            )
            pids = {r["pid"] for r in rows}
            return next((p for p in (first, second) if p.proc and p.proc.pid in pids), None)

        def shared() -> bool:
            owners = {owner(f"g{i}") for i in range(16)}
            return owners == {first, second}

        first.wait_for(shared, 20, "two daemons sharing the DAGs")
        doomed = next(f"g{i}" for i in range(16) if owner(f"g{i}") is first)
        kept = next(f"g{i}" for i in range(16) if owner(f"g{i}") is second)
        for proc, dag_id in ((first, doomed), (second, kept)):
            path = f"/api/v1/dags/{dag_id}"
            proc.wait_for(lambda: proc.api("GET", path).is_success, 20, dag_id)  # noqa: B023
        trigger(first, doomed)
        first.wait_for(
            lambda: all((out / f"{doomed}.{n}.began").exists() for n in ("a", "b")),
            30,
            "the doomed daemon's two tries running",
        )
        first.kill9()
        (out / f"go-{kept}").write_text("go")
        trigger(second, kept)
        second.wait_for(
            lambda: second.output().count("try on a worker adopted") >= 2, 30, "the adoption"
        )
        assert not list(out.glob(f"{kept}.*.began")), "started beside the dead daemon's tries"
        (out / f"go-{doomed}").write_text("go")
        for dag_id in (doomed, kept):
            run = cluster.wait_run(second, dag_id, within=60)
            assert run["state"] == "success", second.output()
        spans = [json.loads(f.read_text()) for f in out.glob("*.span")]
        assert len(spans) == 4
        assert most_at_once(spans) == 2, sorted(spans)
        tries = cluster.sql("SELECT try_number FROM task_try")
        assert sorted(t["try_number"] for t in tries) == [1, 1, 1, 1]
    finally:
        cluster.stop()
        drop_queues(broker, env["ORCHESTRATOR_CELERY_QUEUE_PREFIX"], ["default"])
