"""Core engine benchmarks: W1 fan-out and W2 chain, through `orchestrator dags test`.

    python bench/engine.py [--backend sqlite|postgresql|both] [--repeat N]

W1: start -> 1,000 no-op Python tasks -> join, one run.
W2: 100 no-op Python tasks in a strict chain.

For each it prints: trigger-to-finish (the run's queued_at to its end_date, as
stored), the whole `dags test` process wall time, the process's peak RSS and, for
W2, the hop latency: from one task's code running to the next task's code running,
taken from the wall-clock times the task code itself returns (so it includes
committing the first task's success and the second one's running state).
Every state change of every task is committed to the store before the next step.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from _stores import Rows, pg_schema

W1 = """
from orchestrator import DAG
from orchestrator.operators import PythonOperator

def noop():
    pass

with DAG("w1_fanout"):
    start = PythonOperator(task_id="start", python_callable=noop)
    join = PythonOperator(task_id="join", python_callable=noop)
    for i in range(1000):
        start >> PythonOperator(task_id=f"t{i:04d}", python_callable=noop) >> join
"""

W2 = """
import time
from orchestrator import DAG, chain
from orchestrator.operators import PythonOperator

def noop():
    return time.time()  # when the task's code ran, kept as its XCom

with DAG("w2_chain"):
    chain(*[PythonOperator(task_id=f"t{i:03d}", python_callable=noop) for i in range(100)])
"""


def run_once(workload: str, source: str, dag_id: str, backend: str) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"bench_{dag_id}_"))
    (work / "dags").mkdir()
    (work / "dags" / f"{dag_id}.py").write_text(source)
    env = {
        **os.environ,
        "ORCHESTRATOR_HOME": str(work / "home"),
        "ORCHESTRATOR_DAGS": str(work / "dags"),
    }
    with contextlib.ExitStack() as stack:
        if backend == "postgresql":
            env["ORCHESTRATOR_DB"] = stack.enter_context(pg_schema("bench"))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "dags", "test", dag_id],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise SystemExit(f"{workload} failed: {proc.stderr}")
        store = Rows(env.get("ORCHESTRATOR_DB") or work / "home" / "orchestrator.db")
        stack.callback(store.close)
        rows = store("SELECT queued_at, start_date, end_date, state FROM dag_run")
        tis = store(
            "SELECT task_id, start_date, end_date, state FROM task_instance ORDER BY task_id"
        )
        xcoms = store("SELECT task_id, value FROM xcom ORDER BY task_id")
    ((queued_at, _start, end, state),) = rows
    assert state == "success", state
    assert all(t[3] == "success" for t in tis), "every task must have succeeded"
    result: dict[str, Any] = {
        "workload": workload,
        "backend": backend,
        "tasks": len(tis),
        "trigger_to_finish_s": (
            datetime.fromisoformat(end) - datetime.fromisoformat(queued_at)
        ).total_seconds(),
        "process_wall_s": wall,
        # ru_maxrss of RUSAGE_CHILDREN is the largest child so far (KiB on Linux).
        "peak_rss_mb": max(after.ru_maxrss, before.ru_maxrss) / 1024,
    }
    if workload == "W2":
        ran = [float(value) for _, value in xcoms]
        hops = [(b - a) * 1000 for a, b in itertools.pairwise(ran)]
        result["hop_ms_p50"] = statistics.median(hops)
        result["hop_ms_p99"] = sorted(hops)[int(len(hops) * 0.99) - 1]
        result["hop_ms_max"] = max(hops)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is kept")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = []
    for backend in backends:
        for workload, source, dag_id in (("W1", W1, "w1_fanout"), ("W2", W2, "w2_chain")):
            runs = [run_once(workload, source, dag_id, backend) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r["trigger_to_finish_s"])
            best["runs"] = [round(r["trigger_to_finish_s"], 3) for r in runs]
            results.append(best)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        line = (
            f"{r['workload']} {r['backend']:<10} tasks={r['tasks']:<5} "
            f"trigger-to-finish={r['trigger_to_finish_s']:.3f}s "
            f"process={r['process_wall_s']:.2f}s peak_rss={r['peak_rss_mb']:.0f}MB"
        )
        if r["workload"] == "W2":
            line += (
                f" hop p50={r['hop_ms_p50']:.2f}ms p99={r['hop_ms_p99']:.2f}ms"
                f" max={r['hop_ms_max']:.2f}ms"
            )
        print(line + f" (all runs: {r['runs']})")


if __name__ == "__main__":
    main()
