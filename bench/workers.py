"""W1 (start -> 1,000 no-op Python tasks -> join) through the daemon, on the Celery
executor with local workers next to the local executor, on a PostgreSQL store.

    python bench/workers.py [--broker redis|rabbitmq] [--workers 2] [--concurrency 4]
                           [--repeat 1]

For each executor it prints trigger-to-finish (the run's queued_at to its end_date as
stored), tasks per second, the median and p95 of a try's own duration as stored (its
start to its end: for the Celery path, the message, the claim, the try's process
starting, the outcome and the daemon seeing it), and the peak RSS of the daemon and of
each worker. A try on a worker runs in a process of its own (a new interpreter that
imports the DAG file): that is most of the per-try cost.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
from _run import daemon, pct, proc_status_mb, wait_for
from _stores import pg_schema
from engine import W1

BROKERS = {
    "redis": "redis://127.0.0.1:6379/0",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//",
}


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def run_w1(executor: str, broker: str, workers: int, concurrency: int) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix=f"bench_celery_{executor}_"))
    (root / "dags").mkdir()
    (root / "dags" / "w1_fanout.py").write_text(W1)
    env = {
        "ORCHESTRATOR_EXECUTOR": executor,
        "ORCHESTRATOR_CELERY_BROKER": BROKERS[broker],
        "ORCHESTRATOR_CELERY_QUEUE_PREFIX": f"bench{uuid.uuid4().hex[:8]}.",
    }
    procs: list[subprocess.Popen[bytes]] = []
    figures: dict[str, float] = {}
    with pg_schema("bench_celery") as db_url, contextlib.ExitStack() as stack:
        if executor == "celery":
            for n in range(workers):
                log = stack.enter_context((root / f"worker{n}.log").open("w"))
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "orchestrator.cli",
                        "worker",
                        "--concurrency",
                        str(concurrency),
                    ],
                    env={
                        **os.environ,
                        **env,
                        "ORCHESTRATOR_HOME": str(root / f"worker{n}"),
                        "ORCHESTRATOR_DAGS": str(root / "dags"),
                        "ORCHESTRATOR_DB": db_url,
                    },
                    stdout=log,
                    stderr=log,
                )
                procs.append(proc)
                path = root / f"worker{n}.log"
                wait_for(lambda p=path: "worker ready" in p.read_text(), 60, "a worker")
        with daemon(root, db_url, env_extra=env) as d:
            response = httpx.post(f"{d.url}/api/v1/dags/w1_fanout/runs", json={}, timeout=30)
            response.raise_for_status()

            def ended() -> bool:
                rows = d.db("SELECT state FROM dag_run")
                return bool(rows) and rows[0][0] in ("success", "failed")

            wait_for(ended, 1800, "W1 to end", poll=0.1)
            ((queued_at, end, state),) = d.db("SELECT queued_at, end_date, state FROM dag_run")
            assert state == "success", state
            tries = d.db("SELECT start_date, end_date FROM task_try")
            durations = [_seconds(s, e) * 1000 for s, e in tries]
            figures = {
                "trigger_to_finish_s": _seconds(queued_at, end),
                "tries": len(tries),
                "try_ms_p50": statistics.median(durations),
                "try_ms_p95": pct(durations, 0.95),
                "daemon_peak_rss_mb": proc_status_mb(d.proc.pid, "VmHWM"),
            }
            for n, proc in enumerate(procs):
                figures[f"worker{n}_peak_rss_mb"] = proc_status_mb(proc.pid, "VmHWM")
        for proc in procs:
            proc.terminate()
            proc.wait(60)
    figures["tasks_per_s"] = figures["tries"] / figures["trigger_to_finish_s"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=sorted(BROKERS), default="redis")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    for executor in ("local", "celery"):
        for _ in range(args.repeat):
            started = time.monotonic()
            f = run_w1(executor, args.broker, args.workers, args.concurrency)
            where = (
                f"celery/{args.broker} {args.workers} workers x {args.concurrency}"
                if executor == "celery"
                else "local"
            )
            memory = " ".join(f"{k}={v:.0f}MB" for k, v in f.items() if k.endswith("_rss_mb"))
            print(
                f"W1 {where}: trigger-to-finish={f['trigger_to_finish_s']:.2f}s "
                f"tasks/s={f['tasks_per_s']:.1f} try p50={f['try_ms_p50']:.1f}ms "
                f"p95={f['try_ms_p95']:.1f}ms {memory} "
                f"(bench wall {time.monotonic() - started:.0f}s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
