"""Event benchmarks: matching in-process, HTTP ingest, and event to first task start.

    python bench/events.py [--only match,ingest,http,sqs] [--seconds 10] [--samples 100]
                           [--workers 1] [--connections 32]

E1 (matching): ``PatternSet`` with 10 to 10,000 patterns of mixed operators (exact,
numeric ranges, prefix, suffix, anything-but, cidr, wildcard, $or with
equals-ignore-case and exists) over 500 sources, against 2,000 events (15 fields, a
third of their sources named by no pattern); events per second, and the same 1,000
patterns tried one by one with ``EventPattern.matches`` for comparison.
E2 (HTTP ingest): a daemon on SQLite with 100 event-scheduled DAGs that match none of
the load; a load generator in separate processes (``--workers``, each with
``--connections`` clients) sends PutEvents for ``--seconds``; each reply comes after its
events are stored. Events per second acknowledged, with 10
entries per request and with 1.
E3 (HTTP to first task): one DAG on ``source: bench.ping``; one PutEvents at a time;
from sending it to the task's code running (it records ``time.time()``), p50, p99.
E4 (SQS to first task): the same through an SQS queue on moto's server (a subprocess),
long-polled by the daemon; from ``send_message`` (the queue empty before) to the task.
The daemon's peak RSS (VmHWM) is printed after E2 to E4.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from _run import daemon, pct, proc_status_mb, wait_for

from triggers import EventPattern, PatternSet

SOURCES = 500


def pattern(i: int) -> dict[str, Any]:
    """The i-th benchmark pattern: one operator family per i % 8, spread over sources."""
    base: dict[str, Any] = {"source": [f"app.{i % SOURCES}"], "detail-type": ["Order", "Refund"]}
    kind = i % 8
    detail: dict[str, Any]
    if kind == 0:
        detail = {"state": ["ok", f"s{i % 30}"]}
    elif kind == 1:
        low = i % 1000
        detail = {"amount": [{"numeric": [">", low, "<=", low + 500]}]}
    elif kind == 2:
        detail = {"region": [{"prefix": f"eu-{i % 7}"}]}
    elif kind == 3:
        detail = {"file": [{"suffix": f".{('csv', 'json', 'parquet')[i % 3]}"}]}
    elif kind == 4:
        detail = {"user": [{"anything-but": ["root", f"u{i}"]}]}
    elif kind == 5:
        detail = {"ip": [{"cidr": f"10.{i % 256}.0.0/16"}]}
    elif kind == 6:
        detail = {"name": [{"wildcard": f"job-{i % 10}-*-run"}]}
    else:
        detail = {
            "$or": [{"flag": [True]}, {"level": [{"equals-ignore-case": "ERROR"}]}],
            "missing": [{"exists": False}],
        }
    return {**base, "detail": detail}


def event(rng: random.Random) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(rng.random()),
        "source": f"app.{rng.randrange(SOURCES * 3 // 2)}",  # a third of sources: no pattern
        "detail-type": rng.choice(["Order", "Refund", "Other"]),
        "account": "123456789012",
        "region": "eu-west-1",
        "time": "2026-11-30T12:00:00Z",
        "resources": ["arn:aws:s3:::bucket"],
        "detail": {
            "state": rng.choice(["ok", "s3", "failed"]),
            "amount": rng.randrange(2000),
            "region": f"eu-{rng.randrange(9)}-x",
            "file": f"data.{rng.choice(['csv', 'json', 'parquet', 'txt'])}",
            "user": rng.choice(["root", "alice", "u17"]),
            "ip": f"10.{rng.randrange(256)}.1.2",
            "name": f"job-{rng.randrange(12)}-{rng.randrange(99)}-run",
            "flag": rng.random() < 0.5,
            "level": rng.choice(["error", "info"]),
            "payload": {"rows": rng.randrange(10**6), "tags": ["a", "b", "c"]},
        },
    }


def bench_match() -> None:
    rng = random.Random(7)
    events = [event(rng) for _ in range(2000)]
    for n in (10, 100, 1000, 10_000):
        patterns = PatternSet({f"p{i}": pattern(i) for i in range(n)})
        started = time.perf_counter()
        matched = sum(1 for e in events if patterns.match(e))
        elapsed = time.perf_counter() - started
        rate = len(events) / elapsed
        print(
            f"E1 PatternSet, {n:>6} patterns: {rate:>9,.0f} events/s "
            f"({elapsed / len(events) * 1e6:.1f} us/event, {matched} of {len(events)} matched)"
        )
    one_by_one = [EventPattern(pattern(i)) for i in range(1000)]
    sample = events[:200]
    started = time.perf_counter()
    for e in sample:
        [p for p in one_by_one if p.matches(e)]
    elapsed = time.perf_counter() - started
    print(f"E1 one by one,   1000 patterns: {len(sample) / elapsed:>9,.0f} events/s")


# -- the daemon ----------------------------------------------------------------------------

NONE_MATCH = """
from orchestrator import DAG, EventPattern
from orchestrator.operators import EmptyOperator

for i in range(100):
    with DAG(f"quiet_{i:03d}", schedule=EventPattern({"source": [f"quiet.{i}"]})):
        EmptyOperator(task_id="t")
"""

PING = """
import time
from orchestrator import DAG, EventPattern
from orchestrator.operators import PythonOperator

async def mark(**context):
    return {"t": time.time(), "n": context["event"]["detail"]["n"]}

with DAG("on_ping", schedule=EventPattern({"source": ["bench.ping"]}), max_active_runs=1000):
    PythonOperator(task_id="mark", python_callable=mark)
"""


def _load(url: str, seconds: float, per_request: int, connections: int, counter: Any) -> None:
    """One load process: ``connections`` keep-alive connections, each sending its next
    request when its last reply came (at most that many in flight). Raw HTTP/1.1 on
    asyncio streams, so the generator spends little of the machine's CPU."""
    entries = [
        {"Source": "bench.load", "DetailType": "Load", "Detail": json.dumps({"i": i})}
        for i in range(per_request)
    ]
    body = json.dumps({"Entries": entries}).encode()
    host, port = url.removeprefix("http://").rsplit(":", 1)
    request = (
        f"POST /api/v1/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    deadline = time.monotonic() + seconds

    async def client() -> int:
        reader, writer = await asyncio.open_connection(host, int(port))
        done = 0
        while time.monotonic() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            reply = json.loads(await reader.readexactly(length))
            if not head.startswith(b"HTTP/1.1 200") or reply["FailedEntryCount"]:
                raise SystemExit(f"ingest failed: {head[:40]!r} {reply}")
            done += per_request
        writer.close()
        return done

    async def run() -> int:
        return sum(await asyncio.gather(*(client() for _ in range(connections))))

    done = asyncio.run(run())
    with counter.get_lock():
        counter.value += done


def bench_ingest(url: str, seconds: float, workers: int, connections: int) -> None:
    for per_request in (10, 1):
        counter = multiprocessing.Value("i", 0)
        procs = [
            multiprocessing.Process(
                target=_load, args=(url, seconds, per_request, connections, counter)
            )
            for _ in range(workers)
        ]
        started = time.perf_counter()
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - started
        print(
            f"E2 HTTP ingest, {per_request:>2} entries/request, {workers} load processes x "
            f"{connections} connections: {counter.value / elapsed:,.0f} events/s acknowledged "
            f"({counter.value} in {elapsed:.1f} s)"
        )


def marks(db: Any) -> dict[int, float]:
    rows = db("SELECT value FROM xcom WHERE dag_id = 'on_ping' AND key = 'return_value'")
    return {doc["n"]: doc["t"] for doc in (json.loads(v) for (v,) in rows)}


def bench_http_latency(url: str, db: Any, samples: int) -> None:
    latencies = []
    with httpx.Client(base_url=url) as client:
        for n in range(samples):
            entry = {"Source": "bench.ping", "DetailType": "Ping", "Detail": json.dumps({"n": n})}
            sent = time.time()
            client.post("/api/v1/events", json={"Entries": [entry]})
            mark = wait_for(lambda n=n: marks(db).get(n), 30, "the ping task", poll=0.001)
            latencies.append(mark - sent)
    print(
        f"E3 HTTP event to first task start: p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {pct(latencies, 0.99) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms "
        f"over {len(latencies)} events"
    )


@contextmanager
def moto(root: Path) -> Iterator[str]:
    log = root / "moto.log"
    server = Path(sys.executable).with_name("moto_server")
    with log.open("w") as out:
        proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", "0"], stdout=out, stderr=out)
    try:
        found = wait_for(lambda: re.search(r"Running on (http://\S+)", log.read_text()), 30, "moto")
        yield found.group(1)
    finally:
        proc.terminate()
        proc.wait(10)


def sqs(url: str, op: str, **params: Any) -> dict[str, Any]:
    from aiobotocore.session import get_session

    async def go() -> dict[str, Any]:
        kw = {"region_name": "us-east-1", "aws_access_key_id": "t", "aws_secret_access_key": "t"}
        async with get_session().create_client("sqs", endpoint_url=url, **kw) as client:
            reply: dict[str, Any] = await getattr(client, op)(**params)
            return reply

    return asyncio.run(go())


def bench_sqs(root: Path, samples: int) -> None:
    with moto(root) as moto_url:
        queue = sqs(moto_url, "create_queue", QueueName="bench")["QueueUrl"]
        os.environ["ORCHESTRATOR_SQS_QUEUES"] = queue
        os.environ["ORCHESTRATOR_CONN_AWS_DEFAULT"] = (
            f"aws://t:t@/?endpoint_url={moto_url}&region_name=us-east-1"
        )
        sub = root / "sqs"
        (sub / "dags").mkdir(parents=True)
        (sub / "dags" / "ping.py").write_text(PING)
        with daemon(sub, "") as d:
            time.sleep(1)  # the reader's first long poll is waiting on the empty queue
            latencies = []
            for n in range(samples):
                body = {"source": "bench.ping", "detail-type": "Ping", "detail": {"n": n}}
                sent = time.time()
                sqs(moto_url, "send_message", QueueUrl=queue, MessageBody=json.dumps(body))
                mark = wait_for(lambda n=n: marks(d.db).get(n), 30, "the ping task", poll=0.002)
                latencies.append(mark - sent)
            print(
                f"E4 SQS send_message to first task start: p50 "
                f"{statistics.median(latencies) * 1000:.0f} ms, p99 "
                f"{pct(latencies, 0.99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
                f"over {len(latencies)} messages"
            )
            print(f"daemon (SQS) peak RSS {proc_status_mb(d.proc.pid, 'VmHWM'):.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="match,ingest,http,sqs")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    only = set(args.only.split(","))
    if "match" in only:
        bench_match()
    root = Path(tempfile.mkdtemp(prefix="orch-bench-events-"))
    if only & {"ingest", "http"}:
        (root / "dags").mkdir()
        (root / "dags" / "quiet.py").write_text(NONE_MATCH)
        (root / "dags" / "ping.py").write_text(PING)
        with daemon(root, "") as d:
            if "ingest" in only:
                bench_ingest(d.url, args.seconds, args.workers, args.connections)
            if "http" in only:
                bench_http_latency(d.url, d.db, args.samples)
            print(f"daemon peak RSS {proc_status_mb(d.proc.pid, 'VmHWM'):.0f} MB")
    if "sqs" in only:
        bench_sqs(root, min(args.samples, 30))


if __name__ == "__main__":
    main()
