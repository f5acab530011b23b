"""A chaos run of several daemons on one PostgreSQL server of its own, and its checks.

Used by ``tests/test_chaos.py`` (a short seeded run) and ``bench/chaos.py`` (a soak).
The server is a private cluster (``initdb`` in a temporary folder, a free port), so it
can be restarted without touching the shared one other tests use.

The run: three daemons, DAGs on 1 and 2 second schedules (catchup), DAGs started by
events and by a dataset; events and dataset updates sent to any live daemon; a seeded
loop that kills a daemon (``kill -9``), freezes one past the takeover time
(``SIGSTOP``), cuts a daemon's sessions (``pg_terminate_backend``) or restarts the
server, and starts a daemon again where one is gone. Then the daemons are left to catch
up, stopped, and the store is checked (``check``).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from glob import glob
from itertools import pairwise
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx

from tests.daemon_proc import DaemonProc

TAKEOVER = 2.0


def _pg_bin(name: str) -> str | None:
    found = sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _as_postgres(*cmd: str) -> list[str]:
    """``cmd`` as the ``postgres`` user when run as root (initdb refuses root)."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)


@dataclass
class PrivateServer:
    """A PostgreSQL cluster of this run's own."""

    folder: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        pg_ctl = _pg_bin("pg_ctl")
        assert pg_ctl is not None
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        subprocess.run(
            _as_postgres(
                pg_ctl,
                "-D",
                str(self.folder / "data"),
                "-o",
                options,
                "-l",
                str(self.folder / "server.log"),
                "-w",
                "-t",
                "60",
                *args,
            ),
            check=True,
            capture_output=True,
        )

    def restart(self) -> None:
        self._ctl("-m", "fast", "restart")


def private_server_missing() -> str | None:
    """Why a private server cannot be made here, or None."""
    if _pg_bin("initdb") is None or _pg_bin("pg_ctl") is None:
        return "initdb and pg_ctl (PostgreSQL's server binaries) are not installed"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser to run initdb as postgres"
    return None


@contextlib.contextmanager
def private_server() -> Iterator[PrivateServer]:
    folder = Path(tempfile.mkdtemp(prefix="orchestrator-pg-", dir="/tmp"))
    folder.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    initdb = _pg_bin("initdb")
    assert initdb is not None
    subprocess.run(
        _as_postgres(initdb, "-D", str(folder / "data"), "-A", "trust", "-U", "postgres"),
        check=True,
        capture_output=True,
    )
    server = PrivateServer(folder, port)
    server._ctl("start")
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server._ctl("-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def sql(url: str, query: str, *args: Any) -> list[dict[str, Any]]:
    async def fetch() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return [dict(r) for r in await conn.fetch(query, *args)]
        finally:
            await conn.close()

    return anyio.run(fetch)


TICK = """
from datetime import datetime, timedelta
from orchestrator import DAG
from orchestrator.operators import EmptyOperator, PythonOperator
with DAG("{dag_id}", schedule=timedelta(seconds={every}), catchup=True, max_active_runs=4,
         start_date=datetime.fromisoformat("{start}"), end_date=datetime.fromisoformat("{end}"),
         default_args={{"retries": 5, "retry_delay": 0}}):
    PythonOperator(task_id="work", python_callable=lambda: __import__("time").sleep(0.2)) >> (
        EmptyOperator(task_id="done")
    )
"""

ON_EVENT = """
from datetime import datetime
from orchestrator import DAG, EventPattern
from orchestrator.operators import EmptyOperator
with DAG("{dag_id}", schedule=EventPattern({{"source": ["chaos"]}}), max_active_runs=64,
         start_date=datetime(2026, 1, 1), default_args={{"retries": 5, "retry_delay": 0}}):
    EmptyOperator(task_id="a")
"""

ON_DATASET = """
from datetime import datetime
from orchestrator import DAG, Dataset
from orchestrator.operators import EmptyOperator
with DAG("{dag_id}", schedule=[Dataset("chaos://table")], start_date=datetime(2026, 1, 1),
         default_args={{"retries": 5, "retry_delay": 0}}):
    EmptyOperator(task_id="a")
"""


@dataclass
class Chaos:
    """One seeded run (see the module's docstring)."""

    root: Path
    url: str
    server: PrivateServer
    seed: int
    seconds: float
    tick_dags: int = 50
    event_dags: int = 5
    dataset_dags: int = 5
    daemons: int = 3
    start: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    procs: list[DaemonProc | None] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    events_acked: set[str] = field(default_factory=set)
    updates_acked: int = 0
    restarted_server: bool = False
    exits: list[int] = field(default_factory=list)  # of the daemons that ended on their own

    @property
    def end(self) -> datetime:
        """The schedules' end date: the chaos loop's end, give or take a second."""
        return self.start + timedelta(seconds=int(self.seconds) + 1)

    @property
    def tick_ids(self) -> list[str]:
        return [f"tick{i}" for i in range(self.tick_dags)]

    @property
    def event_ids(self) -> list[str]:
        return [f"on_event{i}" for i in range(self.event_dags)]

    @property
    def dataset_ids(self) -> list[str]:
        return [f"on_dataset{i}" for i in range(self.dataset_dags)]

    def write_dags(self) -> None:
        folder = self.root / "dags"
        folder.mkdir(parents=True, exist_ok=True)
        start, end = self.start.isoformat(), self.end.isoformat()
        for i, dag_id in enumerate(self.tick_ids):
            every = 1 + i % 2
            text = TICK.format(dag_id=dag_id, every=every, start=start, end=end)
            (folder / f"{dag_id}.py").write_text(textwrap.dedent(text).lstrip())
        for dag_id in self.event_ids:
            (folder / f"{dag_id}.py").write_text(ON_EVENT.format(dag_id=dag_id).lstrip())
        for dag_id in self.dataset_ids:
            (folder / f"{dag_id}.py").write_text(ON_DATASET.format(dag_id=dag_id).lstrip())

    def start_daemon(self, slot: int) -> DaemonProc:
        home = self.root / f"home{slot}"
        home.mkdir(parents=True, exist_ok=True)
        env = {
            "ORCHESTRATOR_HOME": str(home),
            "ORCHESTRATOR_DAGS": str(self.root / "dags"),
            "ORCHESTRATOR_DB": self.url,
            "ORCHESTRATOR_HA_TAKEOVER": str(TAKEOVER),
            "ORCHESTRATOR_RECONCILE_INTERVAL": "1",
            "ORCHESTRATOR_SHUTDOWN_GRACE": "5",
        }
        proc = DaemonProc(home, env).start(within=60)
        while len(self.procs) <= slot:
            self.procs.append(None)
        self.procs[slot] = proc
        return proc

    def live(self) -> list[tuple[int, DaemonProc]]:
        return [
            (slot, p)
            for slot, p in enumerate(self.procs)
            if p is not None and p.proc is not None and p.proc.poll() is None
        ]

    # -- the chaos loop -------------------------------------------------------------------

    def run(self) -> None:
        rng = random.Random(self.seed)
        self.write_dags()
        for slot in range(self.daemons):
            self.start_daemon(slot)
        until = time.monotonic() + self.seconds
        restart_at = time.monotonic() + self.seconds * rng.uniform(0.3, 0.7)
        while time.monotonic() < until:
            self._send(rng)
            if not self.restarted_server and time.monotonic() >= restart_at:
                self.actions.append("restart the server")
                self.server.restart()
                self.restarted_server = True
            else:
                self._fault(rng)
            pause = time.monotonic() + rng.uniform(1.0, 3.0)
            while time.monotonic() < pause:
                self._send(rng)
                time.sleep(0.2)
            self._revive()

    def _fault(self, rng: random.Random) -> None:
        live = self.live()
        if not live:
            return
        slot, proc = rng.choice(live)
        assert proc.proc is not None
        what = rng.choice(["kill -9", "SIGSTOP", "cut sessions", "nothing"])
        self.actions.append(f"{what} daemon {slot}")
        if what == "kill -9":
            proc.kill9()
        elif what == "SIGSTOP":
            proc.proc.send_signal(signal.SIGSTOP)
            time.sleep(TAKEOVER * 1.5 + rng.uniform(0, 1))
            proc.proc.send_signal(signal.SIGCONT)
        elif what == "cut sessions":
            sql(
                self.url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE $1",
                f"orchestrator pid {proc.proc.pid} %",
            )

    def _revive(self) -> None:
        for slot in range(self.daemons):
            proc = self.procs[slot] if slot < len(self.procs) else None
            if proc is None or proc.proc is None or proc.proc.poll() is not None:
                if proc is not None and proc.proc is not None:
                    code = proc.wait(1)
                    if code != -signal.SIGKILL:
                        self.exits.append(code)
                    self.actions.append(f"daemon {slot} exited {code}: started again")
                self.start_daemon(slot)

    def _send(self, rng: random.Random) -> None:
        """An event or a dataset update through a live daemon; acknowledged ones counted."""
        live = self.live()
        if not live:
            return
        _, proc = rng.choice(live)
        try:
            if rng.random() < 0.5:
                entry = {"Source": "chaos", "DetailType": "Tick", "Detail": "{}"}
                reply = httpx.post(
                    proc.url + "/api/v1/events", json={"Entries": [entry]}, timeout=5
                )
                if reply.status_code == 200 and "EventId" in reply.json()["Entries"][0]:
                    self.events_acked.add(reply.json()["Entries"][0]["EventId"])
            else:
                reply = httpx.post(
                    proc.url + "/api/v1/datasets/events", json={"uri": "chaos://table"}, timeout=5
                )
                if reply.status_code in (200, 201):
                    self.updates_acked += 1
        except httpx.HTTPError:
            pass  # the daemon died or froze meanwhile: not acknowledged, not counted

    # -- the end ------------------------------------------------------------------------------

    def _schedules_caught_up(self) -> bool:
        """Every tick DAG's schedule has reached its end (a daemon that took a shard over
        just before the end may still be firing the instants it missed)."""
        latest = {
            r["dag_id"]: datetime.fromisoformat(r["latest"])
            for r in sql(
                self.url,
                "SELECT dag_id, MAX(logical_date) AS latest FROM dag_run "
                "WHERE run_type = 'scheduled' GROUP BY dag_id",
            )
        }
        return all(
            dag_id in latest and latest[dag_id] + timedelta(seconds=1 + i % 2) * 2 > self.end
            for i, dag_id in enumerate(self.tick_ids)
        )

    def settle(self, within: float = 60.0) -> None:
        """Let the daemons catch up: every schedule at its end date, every run finished,
        every delivery consumed, every event handled; then stop them."""
        self._revive()
        deadline = time.monotonic() + within
        last = None
        while True:
            state = sql(
                self.url,
                "SELECT (SELECT COUNT(*) FROM dag_run WHERE state IN ('queued', 'running')) AS "
                "runs, (SELECT COUNT(*) FROM dataset_delivery WHERE run_id IS NULL) AS pending, "
                "(SELECT COUNT(*) FROM event WHERE handled = 0) AS unhandled, "
                "(SELECT COUNT(*) FROM dag_run) AS made",
            )[0]
            quiet = not state["runs"] and not state["pending"] and not state["unhandled"]
            past_end = datetime.now(UTC) > self.end + timedelta(seconds=TAKEOVER + 2)
            if quiet and past_end and state == last and self._schedules_caught_up():
                break
            last = state
            if time.monotonic() > deadline:
                raise AssertionError(f"the daemons did not settle: {state}; {self.actions}")
            time.sleep(1.0)
        for _, proc in self.live():
            proc.stop()
        for _, proc in self.live():
            proc.wait(30)

    def stop(self) -> None:
        for _, proc in self.live():
            assert proc.proc is not None
            proc.proc.send_signal(signal.SIGCONT)
            proc.proc.kill()
            proc.wait(10)


def check(chaos: Chaos) -> dict[str, int]:
    """The invariants, as SQL on the store; what was counted."""
    url = chaos.url
    # A daemon ends on its own only when it finds its lease ended (2), never by a crash.
    assert set(chaos.exits) <= {2}, f"daemons exited {chaos.exits}: {chaos.actions}"
    duplicates = sql(
        url,
        "SELECT dag_id, logical_date, COUNT(*) AS n FROM dag_run WHERE run_type = 'scheduled' "
        "GROUP BY 1, 2 HAVING COUNT(*) > 1",
    )
    assert not duplicates, f"fired twice: {duplicates}"
    scheduled = 0
    for i, dag_id in enumerate(chaos.tick_ids):
        every = timedelta(seconds=1 + i % 2)
        dates = sorted(
            datetime.fromisoformat(r["logical_date"])
            for r in sql(
                url,
                "SELECT logical_date FROM dag_run WHERE dag_id = $1 AND run_type = 'scheduled'",
                dag_id,
            )
        )
        scheduled += len(dates)
        assert dates, f"{dag_id} never ran"
        assert dates[0] == chaos.start, (dag_id, dates[:3])
        gaps = [(a, b) for a, b in pairwise(dates) if b - a != every]
        assert not gaps, f"{dag_id}: missing intervals {gaps}"
        assert dates[-1] + every * 2 > chaos.end, f"{dag_id} stopped at {dates[-1]}"
    unfinished = sql(
        url, "SELECT dag_id, run_id, state FROM dag_run WHERE state NOT IN ('success', 'failed')"
    )
    assert not unfinished, f"runs left unfinished: {unfinished}"
    failed = sql(url, "SELECT dag_id, run_id FROM dag_run WHERE state = 'failed'")
    assert not failed, f"runs failed (every try may be retried five times): {failed}"
    stored = {r["id"] for r in sql(url, "SELECT id FROM event WHERE source = 'chaos'")}
    assert chaos.events_acked <= stored, "an acknowledged event was not stored"
    per_event = sql(
        url,
        "SELECT e.id, r.dag_id, COUNT(r.run_id) AS n FROM event e CROSS JOIN "
        "(SELECT DISTINCT dag_id FROM dag WHERE dag_id LIKE 'on_event%') d LEFT JOIN dag_run r "
        "ON r.dag_id = d.dag_id AND r.trigger_key = 'event:' || e.id "
        "WHERE e.source = 'chaos' GROUP BY e.id, r.dag_id, d.dag_id",
    )
    wrong = [r for r in per_event if r["n"] != 1]
    assert not wrong, f"events not consumed exactly once by each DAG: {wrong[:5]}"
    assert len(per_event) == len(stored) * chaos.event_dags
    orphaned = sql(
        url,
        "SELECT * FROM dataset_delivery d WHERE d.run_id IS NULL OR NOT EXISTS (SELECT 1 FROM "
        "dag_run r WHERE r.dag_id = d.dag_id AND r.run_id = d.run_id)",
    )
    assert not orphaned, f"dataset deliveries not consumed by a run: {orphaned[:5]}"
    deliveries = sql(url, "SELECT COUNT(*) AS n FROM dataset_delivery")[0]["n"]
    tries = sql(
        url,
        "SELECT dag_id, run_id, task_id, map_index, try_number, start_date, end_date "
        "FROM task_try ORDER BY dag_id, run_id, task_id, map_index, try_number",
    )
    for a, b in pairwise(tries):
        same = [a[k] for k in ("dag_id", "run_id", "task_id", "map_index")] == [
            b[k] for k in ("dag_id", "run_id", "task_id", "map_index")
        ]
        if same and b["start_date"] is not None:
            assert a["end_date"] is not None, f"a try without an end before another: {a}"
            assert a["end_date"] <= b["start_date"], f"two tries at once: {a} and {b}"
    return {
        "scheduled_runs": scheduled,
        "events": len(stored),
        "event_runs": len(per_event),
        "dataset_deliveries": deliveries,
        "tries": len(tries),
        "faults": len(chaos.actions),
    }
