"""Alert benchmark: 1,000 failing tasks, each with a webhook alert, through the daemon.

    python bench/alerts.py [--backend sqlite|postgresql] [--repeat 2]

A1: one run of 1,000 failing no-op tasks (then a join, all_done), each task with
``alert_webhooks`` to a local receiver (a separate process, so it takes no CPU from the
daemon). Prints the run's trigger-to-finish (queued_at to end_date, as stored) and its
task throughput, next to the same run without alerts, alternately ``--repeat`` times
after a warm-up pair, each run after a quiet second;
the time from the run's start until the receiver had all 1,000 alerts; the CPU time
the daemon, its alert sender process and the receiver spent per run (the three share
this machine's cores); the alerts left pending or failed in the outbox (0 expected);
and the daemon's peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import textwrap
import time
from datetime import datetime
from pathlib import Path

import httpx
from _run import cpu_seconds, daemon, proc_status_mb, wait_for
from _stores import pg_schema

DAGS = """
from orchestrator import DAG
from orchestrator.operators import PythonOperator

URL = {url!r}

def fail():
    raise ValueError("no data")

def noop():
    pass

for dag_id, hooks in (("a1_alerts", [URL + "/hook"]), ("a1_plain", [])):
    with DAG(dag_id):
        join = PythonOperator(task_id="join", python_callable=noop, trigger_rule="all_done")
        for i in range(1000):
            PythonOperator(
                task_id=f"t{{i:04d}}", python_callable=fail, alert_webhooks=hooks
            ) >> join
"""

RECEIVER = """
import json, sys, time
from aiohttp import web

hits, first, last = 0, None, None

async def hook(request):
    global hits, first, last
    await request.read()
    hits += 1
    now = time.time()
    first = first or now
    last = now
    return web.Response(text="ok")

async def stats(request):
    return web.json_response({"hits": hits, "first": first, "last": last})

async def reset(request):
    global hits, first, last
    hits, first, last = 0, None, None
    return web.Response(text="ok")

app = web.Application()
app.add_routes([web.post("/hook", hook), web.get("/stats", stats), web.post("/reset", reset)])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=lambda *a: print("up", flush=True))
"""


@contextlib.contextmanager
def receiver(root: Path):  # type: ignore[no-untyped-def]
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    script = root / "receiver.py"
    script.write_text(textwrap.dedent(RECEIVER))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "up"
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def _time(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def one_run(d, dag_id: str) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Trigger ``dag_id``, wait for its end: (trigger-to-finish, the run's start time)."""
    run_id = httpx.post(f"{d.url}/api/v1/dags/{dag_id}/runs", json={}).json()["run_id"]

    def ended() -> tuple[str, str, str] | None:
        rows = d.db(
            f"SELECT queued_at, start_date, end_date FROM dag_run WHERE dag_id = '{dag_id}' "
            f"AND run_id = '{run_id}' AND state IN ('success', 'failed')"
        )
        return rows[0] if rows else None

    queued, started, finished = wait_for(ended, 300, f"{dag_id} to finish", poll=0.05)
    return _time(finished) - _time(queued), _time(started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-alerts-")))
        db_url = stack.enter_context(pg_schema("alerts")) if args.backend == "postgresql" else ""
        url, receiver_pid = stack.enter_context(receiver(root))
        (root / "dags").mkdir()
        (root / "dags" / "a1.py").write_text(textwrap.dedent(DAGS.format(url=url)))
        d = stack.enter_context(daemon(root, db_url))
        wait_for(lambda: httpx.get(f"{d.url}/api/v1/dags").json().__len__() == 2, 60, "the DAGs")
        # A warm-up pair (not counted): the alert sender process starts with the first
        # delivery.
        one_run(d, "a1_plain")
        one_run(d, "a1_alerts")
        wait_for(
            lambda: httpx.get(f"{url}/stats").json()["hits"] >= 1000, 120, "the warm-up alerts"
        )
        httpx.post(f"{url}/reset")
        sender = next(
            int(p.name)
            for p in Path("/proc").iterdir()
            if p.name.isdigit()
            and b"_sender_child" in (p / "cmdline").read_bytes()
            and f" {d.proc.pid} ".encode() in (p / "stat").read_bytes()
        )
        pids = {"daemon": d.proc.pid, "sender": sender, "receiver": receiver_pid}
        plain, alerted, delivery = [], [], []
        cpu: dict[str, list[dict[str, float]]] = {"plain": [], "alerts": []}
        for _ in range(args.repeat):
            time.sleep(1.0)  # each run starts after the same quiet second
            before = {k: cpu_seconds(p) for k, p in pids.items()}
            took, _ = one_run(d, "a1_plain")
            plain.append(took)
            cpu["plain"].append({k: cpu_seconds(p) - before[k] for k, p in pids.items()})
            httpx.post(f"{url}/reset")
            time.sleep(1.0)
            before = {k: cpu_seconds(p) for k, p in pids.items()}
            took, started = one_run(d, "a1_alerts")
            alerted.append(took)
            stats = wait_for(
                lambda: (s := httpx.get(f"{url}/stats").json())["hits"] >= 1000 and s,
                120,
                "1,000 alerts at the receiver",
                poll=0.05,
            )
            delivery.append(stats["last"] - started)
            time.sleep(0.3)  # the outcomes' writes, in the CPU figures
            cpu["alerts"].append({k: cpu_seconds(p) - before[k] for k, p in pids.items()})
        left = d.db("SELECT state, COUNT(*) FROM alert_outbox GROUP BY state")
        rss = proc_status_mb(d.proc.pid, "VmHWM")
    print(f"backend: {args.backend}, {args.repeat} runs each, alternately")
    for name, runs in (("without alerts", plain), ("with webhook alerts", alerted)):
        best = min(runs)
        print(
            f"A1 1,000 failing tasks, {name:<19}: trigger-to-finish "
            f"{', '.join(f'{t:.3f}' for t in runs)} s (best {best:.3f} s, "
            f"{1000 / best:,.0f} tasks/s)"
        )
    drop = (statistics.median(alerted) - statistics.median(plain)) / statistics.median(plain)
    print(f"A1 throughput cost of the alerts (medians): {drop * 100:+.1f} %")
    print(
        "A1 all 1,000 webhooks received, from the run's start: "
        + ", ".join(f"{t:.2f}" for t in delivery)
        + " s"
    )
    for name, used in cpu.items():
        shown = ", ".join(
            f"{k} {statistics.median(r[k] for r in used):.2f} s"
            for k in ("daemon", "sender", "receiver")
        )
        print(f"A1 CPU per run ({name}, medians): {shown}")
    print(f"A1 outbox at the end: {dict(left)}; daemon peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
