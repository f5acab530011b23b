"""Daemon benchmarks: start-up, an idle daemon with 500 cron DAGs, cron lateness, triggers.

    python bench/daemon.py [--backend sqlite|postgresql] [--dags 500] [--fires 2] [--triggers 50]

D0 (start-up): the daemon on the bundled examples with a fresh home, from process
start to ready (API up, daemon.json written), best and worst of three.
D1 (load and idle): 500 DAG files, each on a minute cron (catchup=False). Prints the
time from process start to "ready" with all files loaded, the daemon's CPU use (% of
one core) between fires and its RSS, read from /proc.
D2 (cron lateness): for each of the next ``--fires`` minute instants, how long after
its due instant each of the 500 scheduled runs was created (queued_at minus the
end of its data interval, as stored): p50, p99, max.
D3 (trigger to first task): ``POST /api/v1/dags/{id}/runs`` then wait for the run's
only task to start; the latency from sending the request to the task's code
running (the task records time.time()), p50 and p95 over ``--triggers`` runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from _run import (
    CRON_DAG,
    TRIGGER_DAG,
    cpu_seconds,
    daemon,
    idle_store,
    pct,
    proc_status_mb,
    wait_for,
)
from _stores import pg_schema


def startup() -> None:
    examples = Path(__file__).resolve().parent.parent / "examples" / "dags"
    times = []
    for _ in range(3):
        home = Path(tempfile.mkdtemp(prefix="orch-bench-start-")) / "home"
        env = {**os.environ, "ORCHESTRATOR_HOME": str(home), "ORCHESTRATOR_API_PORT": "0"}
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "daemon", "--dags", str(examples)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for((home / "daemon.json").exists, 60, "the daemon to be ready")
        times.append(time.monotonic() - started)
        proc.terminate()
        proc.wait(60)
    print(f"D0 start-up on the examples: ready in {min(times):.2f}s (worst {max(times):.2f}s)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dags", type=int, default=500)
    parser.add_argument("--fires", type=int, default=2)
    parser.add_argument("--triggers", type=int, default=50)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    startup()
    with contextlib.ExitStack() as stack:
        db_url = stack.enter_context(pg_schema("bench_d")) if args.backend == "postgresql" else ""
        loaded(args, db_url)


def loaded(args: argparse.Namespace, db_url: str) -> None:
    """D1 to D3 on one daemon with ``args.dags`` cron DAGs, on the store at ``db_url``."""
    root = Path(tempfile.mkdtemp(prefix="orch-bench-daemon-"))
    dags = root / "dags"
    dags.mkdir()
    for i in range(args.dags):
        (dags / f"cron_{i:04d}.py").write_text(CRON_DAG.format(i=i))
    (dags / "triggered.py").write_text(TRIGGER_DAG.format(dag_id="triggered"))
    with daemon(root, db_url) as d:
        proc, url, db = d.proc, d.url, d.db
        health = httpx.get(url + "/api/v1/health").json()
        print(
            f"D1 load: {health['dags']} DAGs ready in {d.ready:.2f}s "
            f"({health['import_errors']} import errors)"
        )
        # The start-up runs (each DAG's latest interval) finish first.
        wait_for(lambda: idle_store(db), 120, "start-up runs")
        first_due = datetime.now(UTC).replace(second=0, microsecond=0).timestamp() + 60
        if first_due - time.time() < 55:  # keep the first idle window whole (45 s)
            first_due += 60
        lateness: list[float] = []
        idle: list[tuple[float, float]] = []
        for fire in range(args.fires):
            due = first_due + 60 * fire
            # Idle window: from 5 s after the previous fire to 5 s before this one.
            while time.time() < due - 50:
                time.sleep(0.2)
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            while time.time() < due - 5:
                time.sleep(0.2)
            idle.append((cpu_seconds(proc.pid) - cpu0, time.monotonic() - t0))
            rss = proc_status_mb(proc.pid, "VmRSS")
            wait_for(lambda due=due: time.time() > due + 1, 70, "the fire")
            iso_due = datetime.fromtimestamp(due, UTC).isoformat(timespec="microseconds")
            rows = wait_for(
                lambda iso_due=iso_due: (
                    (
                        r := db(
                            "SELECT queued_at FROM dag_run WHERE run_type='scheduled' "
                            f"AND data_interval_end = '{iso_due}'"
                        )
                    )
                    and len(r) >= args.dags
                    and r
                ),
                60,
                "the scheduled runs",
            )
            late = [datetime.fromisoformat(q).timestamp() - due for (q,) in rows]
            lateness += late
            print(
                f"D2 fire {fire + 1}: {len(rows)} runs created, lateness p50 "
                f"{statistics.median(late) * 1000:.1f} ms, p99 {pct(late, 0.99) * 1000:.1f} ms, "
                f"max {max(late) * 1000:.1f} ms; RSS {rss:.0f} MB"
            )
        cpu = sum(c for c, _ in idle) / sum(w for _, w in idle) * 100
        print(f"D1 idle: CPU {cpu:.2f}% of one core between fires, RSS {rss:.0f} MB")
        print(f"D2 all: p99 {pct(lateness, 0.99) * 1000:.1f} ms over {len(lateness)} runs")
        wait_for(lambda: idle_store(db), 120, "the fired runs")
        latencies = []
        with httpx.Client(base_url=url) as client:
            for i in range(args.triggers):
                sent = time.time()
                run_id = client.post(
                    "/api/v1/dags/triggered/runs", json={"run_id": f"t{i}"}
                ).json()["run_id"]
                ran = wait_for(
                    lambda run_id=run_id: db(
                        f"SELECT value FROM xcom WHERE dag_id='triggered' AND run_id='{run_id}'"
                    ),
                    30,
                    "the triggered task",
                )
                latencies.append(json.loads(ran[0][0]) - sent)
        print(
            f"D3 trigger to first task: p50 {statistics.median(latencies) * 1000:.1f} ms, "
            f"p95 {pct(latencies, 0.95) * 1000:.1f} ms over {len(latencies)} runs"
        )


if __name__ == "__main__":
    main()
