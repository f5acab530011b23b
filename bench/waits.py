"""Sensor benchmark: many deferred sensors waiting in one daemon.

    python bench/waits.py [--backend sqlite|postgresql] [--custom 10000] [--http 1000]

S1: ``--custom`` custom async sensors (5 s poke interval, never done) and ``--http``
HttpSensors polling a local server that answers 503 on keep-alive connections (5 s
interval), as 100-task DAGs,
all triggered at once: how long until every one is ``deferred``.
S2: while they wait (30 s): the daemon's CPU (% of one core) and RSS, and the pokes'
lateness after their due instant (``orchestrator_sensor_poke_lateness_seconds``,
p50 and p99 as the histogram's bucket bounds).
S3: a satisfied condition to the downstream task's start: a sensor polling every 1 s
waits for a flag file; the flag is written and the time until the next task's code
runs is measured (one poke interval at most, plus the hop), 10 samples.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from _run import cpu_seconds, daemon, proc_status_mb, wait_for
from _stores import pg_schema

CUSTOM = """
from orchestrator import DAG
from sensors import BaseSensor

class Never(BaseSensor):
    async def poke(self, context):
        return False

for d in range({dags}):
    with DAG(f"custom_{{d:03d}}"):
        for i in range(100):
            Never(task_id=f"s{{i:03d}}", poke_interval=5, timeout=3600)
"""

HTTP = """
from orchestrator import DAG
from sensors import HttpSensor

for d in range({dags}):
    with DAG(f"http_{{d:03d}}"):
        for i in range(100):
            HttpSensor(task_id=f"h{{i:03d}}", endpoint="status", poke_interval=5, timeout=3600)
"""

FLAG = """
import pathlib, time
from orchestrator import DAG, task
from sensors import FileSensor

with DAG("flag"):
    waited = FileSensor(task_id="wait", filepath={flag!r} + "/{{{{ run_id }}}}",
                        poke_interval=1, timeout=600)

    @task
    def mark():
        return time.time()

    waited >> mark()
"""


def histogram(text: str, name: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of a Prometheus histogram."""
    rows = []
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            bound = line.split('le="')[1].split('"')[0]
            rows.append(
                (float("inf") if bound == "+Inf" else float(bound), float(line.split()[-1]))
            )
    return rows


def quantile(rows: list[tuple[float, float]], q: float) -> float:
    total = rows[-1][1]
    for bound, count in rows:
        if count >= q * total:
            return bound
    return float("inf")


def serve_503() -> tuple[http.server.ThreadingHTTPServer, list[int]]:
    asked = [0]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers answer

        def do_GET(self) -> None:
            asked[0] += 1
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, asked


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--custom", type=int, default=10_000)
    parser.add_argument("--http", type=int, default=1_000)
    parser.add_argument("--wait", type=float, default=30.0)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        db_url = stack.enter_context(pg_schema("bench_s")) if args.backend == "postgresql" else ""
        run(args, db_url)


def run(args: argparse.Namespace, db_url: str) -> None:
    import os

    root = Path(tempfile.mkdtemp(prefix="orch-bench-sensors-"))
    (root / "dags").mkdir()
    (root / "flags").mkdir()
    custom_dags, http_dags = args.custom // 100, args.http // 100
    (root / "dags" / "custom.py").write_text(CUSTOM.format(dags=custom_dags))
    (root / "dags" / "http.py").write_text(HTTP.format(dags=http_dags))
    (root / "dags" / "flag.py").write_text(FLAG.format(flag=str(root / "flags")))
    server, asked = serve_503()
    os.environ["ORCHESTRATOR_CONN_HTTP_DEFAULT"] = f"http://127.0.0.1:{server.server_port}"
    with daemon(root, db_url) as d, httpx.Client(base_url=d.url, timeout=60) as api:
        dag_ids = [f"custom_{i:03d}" for i in range(custom_dags)]
        dag_ids += [f"http_{i:03d}" for i in range(http_dags)]
        total = 100 * len(dag_ids)
        started = time.monotonic()
        for dag_id in dag_ids:
            api.post(f"/api/v1/dags/{dag_id}/runs", json={})
        wait_for(
            lambda: (
                d.db("SELECT COUNT(*) FROM task_instance WHERE state = 'deferred'")[0][0] >= total
            ),
            300,
            "every sensor deferred",
            poll=0.1,
        )
        deferred = time.monotonic() - started
        print(
            f"S1 {total} sensors ({args.custom} custom, {args.http} HTTP) "
            f"deferred in {deferred:.2f}s"
        )
        time.sleep(6)  # past the first pokes
        before = histogram(api.get("/metrics").text, "orchestrator_sensor_poke_lateness_seconds")
        cpu0, t0, asked0 = cpu_seconds(d.proc.pid), time.monotonic(), asked[0]
        time.sleep(args.wait)
        cpu = (cpu_seconds(d.proc.pid) - cpu0) / (time.monotonic() - t0) * 100
        rss = proc_status_mb(d.proc.pid, "VmRSS")
        after = histogram(api.get("/metrics").text, "orchestrator_sensor_poke_lateness_seconds")
        window = [(b, a - c) for (b, a), (_, c) in zip(after, before, strict=True)]
        pokes = window[-1][1]
        print(
            f"S2 waiting {args.wait:.0f}s: CPU {cpu:.1f}% of one core, RSS {rss:.0f} MB; "
            f"{pokes:.0f} pokes ({pokes / args.wait:.0f}/s, HTTP requests "
            f"{(asked[0] - asked0) / args.wait:.0f}/s), lateness p50 <= "
            f"{quantile(window, 0.5) * 1000:.0f} ms, p99 <= {quantile(window, 0.99) * 1000:.0f} ms"
        )
        hops = []
        for i in range(10):
            run_id = f"f{i}"
            api.post("/api/v1/dags/flag/runs", json={"run_id": run_id})
            wait_for(
                lambda run_id=run_id: (
                    d.db(
                        "SELECT state FROM task_instance WHERE dag_id = 'flag' "
                        f"AND run_id = '{run_id}' AND task_id = 'wait'"
                    )
                    == [("deferred",)]
                ),
                60,
                "the flag sensor deferred",
            )
            time.sleep(0.3 + 0.07 * i)  # somewhere in its interval
            set_at = time.time()
            (root / "flags" / run_id).write_text("")
            value = wait_for(
                lambda run_id=run_id: d.db(
                    "SELECT value FROM xcom WHERE dag_id = 'flag' "
                    f"AND run_id = '{run_id}' AND task_id = 'mark'"
                ),
                60,
                "the downstream task",
            )
            hops.append(json.loads(value[0][0]) - set_at)
        print(
            f"S3 flag written to the downstream task running (1 s poke interval): p50 "
            f"{statistics.median(hops) * 1000:.0f} ms, max {max(hops) * 1000:.0f} ms"
        )
        print(f"daemon peak RSS {proc_status_mb(d.proc.pid, 'VmHWM'):.0f} MB")
    server.shutdown()


if __name__ == "__main__":
    main()
