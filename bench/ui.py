"""Web UI benchmark: the big views, measured in the browser (Debian's Chromium, Playwright).

    python bench/ui.py [--backend sqlite|postgresql] [--dags 1000] [--runs 1000] [--tasks 100]
                       [--log-mb 100] [--repeat 5]

The store is filled before the daemon starts: ``--dags`` DAG files (10 runs each) for the
DAG list; one DAG of ``--tasks`` tasks (in groups of 10) with ``--runs`` runs, all their
task instances stored, for the grid; one try of it with a ``--log-mb`` MB log.

U1 (DAG list): navigation to ``/`` until the page's load event (the list is rendered on
    the server); the server's time for the page (p50, p95 of ``--repeat`` requests).
U2 (grid): navigation to ``/dags/grid?runs=N`` until the grid's first cells are drawn
    (the page's own ``grid-rendered`` mark); the grid data's request on the server (p50,
    p95) and its size on the wire (gzip); the number of cells drawn (only those in view).
U3 (live update): a task instance's change as the page's stream carries it (bytes), and
    from the change's publication to the grid's cell showing it.
U4 (100 MB log): navigation to the try's page until its tail is shown (``log-tail-shown``);
    "Load earlier" until the earlier part is in; that text can be selected.

Each browser figure is the median of ``--repeat`` navigations in a fresh page. Peak RSS of
the daemon and of the browser's renderer are read from /proc.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
from _run import pct, proc_status_mb, wait_for
from _stores import pg_schema

from orchestrator.core import RunRecord, RunState, TaskInstanceRecord, TaskState, TryRecord
from orchestrator.store import open_store

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-gpu",
    "--no-sandbox",
]
SMALL = """
from orchestrator import DAG
from orchestrator.operators import EmptyOperator
with DAG("d{i:04d}", tags=["team{t}"]):
    EmptyOperator(task_id="a") >> EmptyOperator(task_id="b")
"""
GRID = """
from orchestrator import DAG
from orchestrator.operators import EmptyOperator
from orchestrator.authoring._taskgroup import TaskGroup

with DAG("grid"):
    last = None
    for g in range({groups}):
        with TaskGroup(f"g{{g}}") as group:
            chain = [EmptyOperator(task_id=f"t{{i}}") for i in range(10)]
            for a, b in zip(chain, chain[1:]):
                a >> b
        if last is not None:
            last >> group
        last = group
"""
T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def fill(db_url: str, root: Path, dags: int, runs: int, tasks: int, log_mb: int) -> str:
    """The store's rows and the files; the path of the big log."""
    folder = root / "dags"
    folder.mkdir(parents=True)
    for i in range(dags):
        (folder / f"d{i:04d}.py").write_text(SMALL.format(i=i, t=i % 7))
    (folder / "grid.py").write_text(GRID.format(groups=tasks // 10))
    task_ids = [f"g{g}.t{i}" for g in range(tasks // 10) for i in range(10)]
    log = root / "big.log"
    line = b"2026-01-01T00:00:00 INFO a line of a long task's output, numbered %08d\n"
    with log.open("wb") as out:
        n = 0
        while out.tell() < log_mb * 1024 * 1024:
            out.write(b"".join(line % (n + k) for k in range(1000)))
            n += 1000
    async with open_store(db_url) as store:
        small = [
            RunRecord(
                f"d{i:04d}",
                f"r{k}",
                RunState.SUCCESS if k % 5 else RunState.FAILED,
                "scheduled",
                T0 + timedelta(days=k),
                T0 + timedelta(days=k),
            )
            for i in range(dags)
            for k in range(10)
        ]
        for start in range(0, len(small), 2000):
            await store.insert_runs(small[start : start + 2000])
        for k in range(runs):
            run = RunRecord(
                "grid",
                f"run{k:05d}",
                RunState.SUCCESS,
                "scheduled",
                T0 + timedelta(hours=k),
                T0 + timedelta(hours=k),
            )
            tis = [
                TaskInstanceRecord(
                    "grid",
                    run.run_id,
                    t,
                    TaskState.FAILED if (k + j) % 97 == 0 else TaskState.SUCCESS,
                    try_number=1,
                )
                for j, t in enumerate(task_ids)
            ]
            await store.insert_runs([run])
            await store.write(store.statements(tis))
        last = f"run{runs - 1:05d}"
        attempt = TryRecord(
            "grid", last, task_ids[0], 1, TaskState.SUCCESS, T0, T0, log_path=str(log)
        )
        await store.write(store.statements([attempt]))
    return last


def start_daemon(root: Path, db_url: str) -> tuple[subprocess.Popen[bytes], str]:
    home = root / "home"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")},
        "ORCHESTRATOR_HOME": str(home),
        "ORCHESTRATOR_DAGS": str(root / "dags"),
        "ORCHESTRATOR_DB": db_url,
        "ORCHESTRATOR_API_PORT": "0",
    }
    log = (root / "daemon.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "daemon"], env=env, stdout=log, stderr=log
    )
    info = home / "daemon.json"
    wait_for(info.exists, 300, "the daemon")
    url = json.loads(info.read_text())["api_url"]
    wait_for(lambda: not httpx.get(f"{url}/api/v1/health").json().get("loading"), 300, "loading")
    return proc, url


def timed_gets(url: str, repeat: int, **kw: Any) -> tuple[list[float], httpx.Response]:
    times = []
    response = None
    with httpx.Client(timeout=60) as client:
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.get(url, **kw)
            times.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    assert response is not None
    return times, response


def mark(page: Any, name: str) -> float:
    page.wait_for_function(f"performance.getEntriesByName({name!r}).length > 0", timeout=60_000)
    return float(page.evaluate(f"performance.getEntriesByName({name!r})[0].startTime"))


def renderer_peak_mb() -> float:
    """The largest VmHWM among the browser's processes (its renderers)."""
    peaks = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"chromium" in cmd and b"--type=renderer" in cmd:
                peaks.append(proc_status_mb(int(pid), "VmHWM"))
    return max(peaks, default=0.0)


def measure(url: str, last_run: str, args: argparse.Namespace) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {}
    times, page_response = timed_gets(f"{url}/", args.repeat, headers={"Accept-Encoding": "gzip"})
    out["U1 server ms p50/p95"] = (round(statistics.median(times), 1), round(pct(times, 0.95), 1))
    out["U1 html KB gzip"] = round(int(page_response.headers.get("content-length", 0)) / 1024, 1)
    out["U1 html KB raw"] = round(len(page_response.content) / 1024, 1)
    grid_url = f"{url}/ui/grid/grid?runs={args.runs}"
    times, grid_response = timed_gets(grid_url, args.repeat, headers={"Accept-Encoding": "gzip"})
    out["U2 data ms p50/p95"] = (round(statistics.median(times), 1), round(pct(times, 0.95), 1))
    out["U2 data KB gzip"] = round(int(grid_response.headers.get("content-length", 0)) / 1024, 1)
    out["U2 data KB raw"] = round(len(grid_response.content) / 1024, 1)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        lists, grids, drawn, tails, earlier = [], [], [], [], []
        for _ in range(args.repeat):
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{url}/", wait_until="load")
            lists.append(
                page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
            )
            rows = page.locator("#dag-rows .dagrow").count()
            page.close()
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{url}/dags/grid?runs={args.runs}")
            grids.append(mark(page, "grid-rendered"))
            drawn.append(page.locator("#grid .c").count())
            page.close()
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{url}/dags/grid/runs/{last_run}/tasks/g0.t0")
            tails.append(mark(page, "log-tail-shown"))
            before = len(page.locator("#log").inner_text())
            started = page.evaluate("performance.now()")
            page.click("#log-earlier")
            page.wait_for_function(f"document.getElementById('log').textContent.length > {before}")
            earlier.append(page.evaluate("performance.now()") - started)
            selected = page.evaluate(
                "(() => { const r = document.createRange();"
                " const pre = document.getElementById('log'); r.selectNodeContents(pre);"
                " const s = getSelection(); s.removeAllRanges(); s.addRange(r);"
                " return s.toString().length; })()"
            )
            page.close()
        out["U1 rows"] = rows
        out["U1 load ms"] = round(statistics.median(lists), 1)
        out["U2 grid drawn ms"] = round(statistics.median(grids), 1)
        out["U2 cells in the page"] = drawn[-1]
        out["U4 tail shown ms"] = round(statistics.median(tails), 1)
        out["U4 load earlier ms"] = round(statistics.median(earlier), 1)
        out["U4 selectable chars"] = selected
        out.update(live_update(browser, url))
        browser.close()
    return out


def live_update(browser: Any, url: str) -> dict[str, Any]:
    """U3: a small DAG's run with its grid open: the stream's bytes per change, and the
    time from the run's trigger to its last cell showing success in the page."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{url}/dags/d0000")
    page.wait_for_selector('#grid[data-loaded="true"]')
    page.evaluate(
        "window.__sizes = []; document.addEventListener('orchestrator:changes', (e) =>"
        " window.__sizes.push(JSON.stringify(e.detail).length))"
    )
    started = time.perf_counter()
    run = httpx.post(f"{url}/api/v1/dags/d0000/runs", json={}).json()["run_id"]
    page.wait_for_selector(f'#grid [data-run-id="{run}"][data-task-id="b"][data-state="success"]')
    shown = (time.perf_counter() - started) * 1000
    sizes = page.evaluate("window.__sizes")
    peak = renderer_peak_mb()
    page.close()
    return {
        "renderer peak MB": round(peak, 1),
        "U3 trigger to cell shown ms": round(shown, 1),
        "U3 stream messages": len(sizes),
        "U3 bytes per message (max)": max(sizes, default=0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--dags", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--log-mb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if args.backend == "postgresql":
            db_url = stack.enter_context(pg_schema("bench_ui"))
        else:
            db_url = f"sqlite:///{root / 'home' / 'orchestrator.db'}"
        (root / "home").mkdir()
        started = time.perf_counter()
        last = anyio.run(fill, db_url, root, args.dags, args.runs, args.tasks, args.log_mb)
        print(f"filled in {time.perf_counter() - started:.1f} s", flush=True)
        proc, url = start_daemon(root, db_url)
        try:
            figures = measure(url, last, args)
            figures["daemon peak RSS MB"] = round(proc_status_mb(proc.pid, "VmHWM"), 1)
        finally:
            proc.terminate()
            proc.wait(30)
    print(
        json.dumps(
            {"backend": args.backend, **{k: v for k, v in vars(args).items() if k != "backend"}}
        )
    )
    for name, value in figures.items():
        print(f"{name:32} {value}")


if __name__ == "__main__":
    main()
