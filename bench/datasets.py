"""Dataset benchmarks: producer-to-consumer latency, and one update fanned out to 500 DAGs.

    python bench/datasets.py [--backend sqlite|postgresql] [--samples 100] [--consumers 500]

DS1 (producer to consumer): a manual run of ``producer``, whose one task has an
outlet; ``consumer`` is scheduled on that dataset. The latency is from the producer
task's success (its end, as stored) to the consumer's task code running (it
records ``time.time()``), p50, p99 and max over ``--samples`` runs, one at a time.
DS2 (fan-out): ``--consumers`` DAGs consume one dataset; one
``POST /api/v1/datasets/events``; how long from sending it until every run exists
(the latest ``queued_at``) and until every first task ran (the latest recorded
time). The daemon's peak RSS (VmHWM) is printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
from _run import daemon, pct, proc_status_mb, wait_for
from _stores import pg_schema

PRODUCER = """
from orchestrator import DAG, Dataset
from orchestrator.operators import PythonOperator

async def publish():
    return None

with DAG("producer"):
    PythonOperator(task_id="publish", python_callable=publish,
                   outlets=[Dataset("bench://orders")])
"""

CONSUMER = """
import time
from orchestrator import DAG, Dataset
from orchestrator.operators import PythonOperator

async def mark(**context):
    [event] = context["triggering_dataset_events"]["bench://orders"]
    return {"t": time.time(), "source": event.source_run_id}

with DAG("consumer", schedule=[Dataset("bench://orders")]):
    PythonOperator(task_id="mark", python_callable=mark)
"""

FANOUT = """
import time
from orchestrator import DAG, Dataset
from orchestrator.operators import PythonOperator

async def mark():
    return time.time()

for i in range({n}):
    with DAG(f"fanout_{{i:03d}}", schedule=[Dataset("bench://fanout")]):
        PythonOperator(task_id="mark", python_callable=mark)
"""


def stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--consumers", type=int, default=500)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        db_url = stack.enter_context(pg_schema("bench_ds")) if args.backend == "postgresql" else ""
        run(args, db_url)


def run(args: argparse.Namespace, db_url: str) -> None:
    root = Path(tempfile.mkdtemp(prefix="orch-bench-datasets-"))
    dags = root / "dags"
    dags.mkdir()
    (dags / "producer.py").write_text(PRODUCER)
    (dags / "consumer.py").write_text(CONSUMER)
    (dags / "fanout.py").write_text(FANOUT.format(n=args.consumers))
    with daemon(root, db_url) as d:
        db, url = d.db, d.url
        with httpx.Client(base_url=url) as client:
            latencies = []
            for i in range(args.samples):
                run_id = f"p{i}"
                client.post("/api/v1/dags/producer/runs", json={"run_id": run_id})
                mark = wait_for(
                    lambda run_id=run_id: [
                        value
                        for (value,) in db("SELECT value FROM xcom WHERE dag_id = 'consumer'")
                        if json.loads(value)["source"] == run_id
                    ],
                    30,
                    "the consumer's task",
                    poll=0.002,
                )
                [(ended,)] = db(
                    "SELECT end_date FROM task_instance WHERE dag_id = 'producer' "
                    f"AND run_id = '{run_id}'"
                )
                latencies.append(json.loads(mark[0])["t"] - stamp(ended))
            print(
                f"DS1 producer success to consumer task: p50 "
                f"{statistics.median(latencies) * 1000:.1f} ms, p99 "
                f"{pct(latencies, 0.99) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms "
                f"over {len(latencies)} runs"
            )
            n = args.consumers
            sent = time.time()
            client.post("/api/v1/datasets/events", json={"uri": "bench://fanout"})
            wait_for(
                lambda: (
                    (r := db("SELECT queued_at FROM dag_run WHERE dag_id LIKE 'fanout_%'"))
                    and len(r) >= n
                    and r
                ),
                60,
                "the fan-out runs",
            )
            made = time.time() - sent  # when every run was seen committed
            marks = wait_for(
                lambda: (
                    (r := db("SELECT value FROM xcom WHERE dag_id LIKE 'fanout_%'"))
                    and len(r) >= n
                    and r
                ),
                60,
                "the fan-out tasks",
            )
            ran = max(json.loads(v) for (v,) in marks) - sent
            print(
                f"DS2 fan-out to {n} consumers: all runs created {made * 1000:.0f} ms "
                f"after the update, all first tasks ran by {ran * 1000:.0f} ms"
            )
        print(f"daemon peak RSS {proc_status_mb(d.proc.pid, 'VmHWM'):.0f} MB")


if __name__ == "__main__":
    main()
