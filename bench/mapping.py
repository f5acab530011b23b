"""Dynamic task mapping benchmark: one task mapped over 1,000 items, against W1.

    python bench/mapping.py [--backend sqlite|postgresql|both] [--repeat N]

M1: start -> one no-op Python task mapped over 1,000 literal items -> join: the same
    work as W1 (bench/engine.py), with the 1,000 tasks made at run time.
M2: a task returns a list of 1,000 numbers -> a TaskFlow task mapped over it (each
    instance pushes its result) -> a task that gets the list of the 1,000 results.

Each figure is trigger-to-finish through `orchestrator dags test`, as W1's. The runs
alternate W1, M1, M2 after one warm-up round; medians are compared. The goal: M1
within 1.5x of W1.
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from engine import W1, run_once

M1 = """
from orchestrator import DAG
from orchestrator.operators import PythonOperator

def noop(*args):
    pass

with DAG("m1_mapped"):
    start = PythonOperator(task_id="start", python_callable=noop)
    join = PythonOperator(task_id="join", python_callable=noop)
    mapped = PythonOperator.partial(task_id="mapped", python_callable=noop).expand(
        op_args=[[i] for i in range(1000)]
    )
    start >> mapped >> join
"""

M2 = """
from orchestrator import DAG, task

with DAG("m2_mapped_xcom"):
    @task
    def numbers():
        return list(range(1000))

    @task
    def double(x):
        return x * 2

    @task
    def total(values):
        assert len(values) == 1000
        return sum(values)

    total(double.expand(x=numbers()))
"""

WORKLOADS = (("W1", W1, "w1_fanout"), ("M1", M1, "m1_mapped"), ("M2", M2, "m2_mapped_xcom"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--repeat", type=int, default=5, help="rounds after the warm-up")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    report: list[dict[str, Any]] = []
    for backend in backends:
        for name, source, dag_id in WORKLOADS:  # warm-up round, not counted
            run_once(name, source, dag_id, backend)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in WORKLOADS}
        for _ in range(args.repeat):
            for name, source, dag_id in WORKLOADS:
                runs[name].append(run_once(name, source, dag_id, backend))
        medians = {
            name: statistics.median(r["trigger_to_finish_s"] for r in got)
            for name, got in runs.items()
        }
        for name, got in runs.items():
            report.append(
                {
                    "workload": name,
                    "backend": backend,
                    "tasks": got[0]["tasks"],
                    "trigger_to_finish_median_s": round(medians[name], 3),
                    "ratio_to_w1": round(medians[name] / medians["W1"], 2),
                    "peak_rss_mb": round(max(r["peak_rss_mb"] for r in got)),
                    "runs": [round(r["trigger_to_finish_s"], 3) for r in got],
                }
            )
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for r in report:
        print(
            f"{r['workload']} {r['backend']:<10} instances={r['tasks']:<5} "
            f"trigger-to-finish median={r['trigger_to_finish_median_s']:.3f}s "
            f"x{r['ratio_to_w1']:.2f} of W1 peak_rss={r['peak_rss_mb']}MB "
            f"(runs: {r['runs']})"
        )


if __name__ == "__main__":
    main()
