"""The executor contract: what every executor does with a try, the local one and Celery
on both brokers (real ``orchestrator worker`` processes on the local RabbitMQ and Redis).

Each test runs tries through ``Executor.run`` as the scheduler does, on a SQLite store
the workers share; the daemon-level behaviour (pools, queues, faults) is in
``test_celery.py``.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from orchestrator._settings import Settings, load_settings
from orchestrator.dagfiles._files import load_dag_file
from orchestrator.resources._services import Services
from orchestrator.runtime._context import DagRunInfo
from orchestrator.runtime._executor import Executor, TryRequest, TryResult
from orchestrator.runtime._executors import make_executor
from orchestrator.store import Store, open_store
from tests.helpers import alive, gone
from tests.workers import WorkerProc, broker_or_skip, celery_env, drop_queues

pytestmark = pytest.mark.timeout(120)

DAG_SOURCE = """
import logging
import os
import socket
import time
from datetime import datetime, timedelta

from orchestrator import DAG
from orchestrator.operators import BashOperator, PythonOperator

OUT = os.environ["CONTRACT_OUT"]


def value(ti, **_):
    ti.xcom_push(key="extra", value="more")
    return {"n": 42}


def boom(**_):
    print("about to fail")
    raise ValueError("boom")


def talk(**_):
    for i in range(1, 301):
        print(f"line {i}", flush=True)
    logging.getLogger("contract").info("logged at info")
    return "talked"


async def on_loop(**_):
    return "async ran"


def waits(**_):
    with open(os.path.join(OUT, "waits.pid"), "w") as f:
        f.write(str(os.getpid()))
    print("waiting", flush=True)
    time.sleep(60)


with DAG("contract", start_date=datetime(2024, 1, 1), schedule=None) as dag:
    PythonOperator(task_id="value", python_callable=value)
    PythonOperator(task_id="boom", python_callable=boom)
    PythonOperator(task_id="talk", python_callable=talk)
    PythonOperator(task_id="on_loop", python_callable=on_loop)
    PythonOperator(task_id="isolated", python_callable=value, isolation="process")
    BashOperator(task_id="bash", bash_command="echo from bash; echo $((6 * 7))")
    PythonOperator(task_id="waits", python_callable=waits, isolation="process")
    PythonOperator(task_id="nowhere", python_callable=value, queue="nowhere")
    BashOperator(
        task_id="sleeps",
        bash_command=f"sleep 60 & echo $! > {OUT}/sleeps.pid; wait",
        execution_timeout=timedelta(seconds=1),
    )
"""


@dataclass
class Setup:
    kind: str
    settings: Settings
    dag_path: Path
    out: Path
    env: dict[str, str] = field(default_factory=dict)
    workers: list[WorkerProc] = field(default_factory=list)

    def worker(self, home: Path, queues: str = "default", concurrency: int = 2) -> WorkerProc:
        proc = WorkerProc(home, self.env, queues, concurrency).start()
        self.workers.append(proc)
        return proc

    def request(self, task_id: str, try_number: int = 1) -> TryRequest:
        (dag,) = load_dag_file(self.dag_path)
        now = datetime.now(UTC)
        run = DagRunInfo(dag.dag_id, "r1", "manual", now, now, now)
        task = dag.task_dict[task_id]
        log = self.settings.logs_dir / f"{task_id}.{try_number}.log"
        return TryRequest(dag, task, run, try_number, task.retries + 1, {}, log)


@pytest.fixture(params=["local", "celery-rabbitmq", "celery-redis"])
def setup(
    request: pytest.FixtureRequest, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Setup]:
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("CONTRACT_OUT", str(out))
    dag_path = tmp_path / "dags" / "contract.py"
    dag_path.write_text(DAG_SOURCE)
    db = f"sqlite:///{home / 'orchestrator.db'}"
    env = {"ORCHESTRATOR_DB": db}
    if request.param != "local":
        env = celery_env(broker_or_skip(request.param.removeprefix("celery-")), db)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    setup = Setup(request.param, load_settings(), dag_path, out, env)
    if request.param != "local":
        setup.worker(home)
    yield setup
    for proc in setup.workers:
        proc.stop()
    if request.param != "local":
        prefix = env["ORCHESTRATOR_CELERY_QUEUE_PREFIX"]
        drop_queues(env["ORCHESTRATOR_CELERY_BROKER"], prefix, ["default", "nowhere"])


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[Executor, Store]]:
    async with open_store(settings.db_url) as store:
        executor = make_executor(Services(settings, store), thread_slots=4)
        async with anyio.create_task_group() as tg:
            tg.start_soon(executor.serve)
            yield executor, store
            tg.cancel_scope.cancel()


async def run_one(setup: Setup, task_id: str) -> tuple[TryResult, str]:
    async with running(setup.settings) as (executor, _):
        request = setup.request(task_id)
        with anyio.fail_after(60):
            result = await executor.run(request)
    return result, request.log_path.read_text() if request.log_path.exists() else ""


async def test_a_result_and_its_xcoms_come_back(setup: Setup) -> None:
    result, _ = await run_one(setup, "value")
    assert result.state == "success", result.error
    assert result.pushed == {"return_value": '{"n":42}', "extra": '"more"'}
    # A worker's try names the worker's host (here the same machine); a local one none.
    assert result.hostname == (None if setup.kind == "local" else socket.gethostname())


async def test_every_kind_of_task_runs(setup: Setup) -> None:
    """Sync, async, Bash and ``isolation="process"`` tasks all run (on the workers)."""
    for task_id, expected in (
        ("on_loop", '"async ran"'),
        ("bash", '"42"'),
        ("isolated", '{"n":42}'),
    ):
        result, _ = await run_one(setup, task_id)
        assert result.state == "success", (task_id, result.error)
        assert result.pushed["return_value"] == expected, task_id


async def test_an_exception_fails_the_try_with_its_traceback_in_the_log(setup: Setup) -> None:
    result, log = await run_one(setup, "boom")
    assert result.state == "failed"
    assert "ValueError: boom" in str(result.error)
    assert result.retryable
    assert "about to fail" in log
    assert 'raise ValueError("boom")' in log
    assert "boom" in str(result.log_excerpt)


async def test_the_log_is_complete_and_in_order_when_the_try_ends(setup: Setup) -> None:
    result, log = await run_one(setup, "talk")
    assert result.state == "success"
    lines = [line for line in log.splitlines() if line.startswith("line ")]
    assert lines == [f"line {i}" for i in range(1, 301)]
    assert "INFO contract: logged at info" in log
    _, bash_log = await run_one(setup, "bash")
    assert "from bash" in bash_log


async def test_a_running_tries_log_is_readable_while_it_runs_and_cancel_kills_it(
    setup: Setup,
) -> None:
    pidfile = setup.out / "waits.pid"
    async with running(setup.settings) as (executor, _):
        request = setup.request("waits")
        async with anyio.create_task_group() as tg:
            tg.start_soon(executor.run, request)
            with anyio.fail_after(30):
                # Files the try writes: there is no event to await.
                while not (  # noqa: ASYNC110
                    request.log_path.exists() and "waiting" in request.log_path.read_text()
                ):
                    await anyio.sleep(0.02)
            assert pidfile.exists()
            pid = int(pidfile.read_text())
            assert alive(pid)
            tg.cancel_scope.cancel()
    with anyio.fail_after(10):
        while not gone(pid):  # noqa: ASYNC110 - the worker kills it at its next heartbeat
            await anyio.sleep(0.05)


async def test_a_timeout_fails_the_try_and_kills_its_processes(setup: Setup) -> None:
    result, _ = await run_one(setup, "sleeps")
    assert result.state == "failed"
    assert result.error == "timed out after 0:00:01 (execution_timeout)"
    pid = int((setup.out / "sleeps.pid").read_text())
    with anyio.fail_after(10):
        while not gone(pid):  # noqa: ASYNC110
            await anyio.sleep(0.05)


async def test_a_try_no_worker_takes_is_sent_again_then_lost_after_the_queued_timeout(
    setup: Setup,
) -> None:
    if setup.kind == "local":
        pytest.skip("the local executor has no queues: it runs every try itself")
    setup.settings = replace(setup.settings, task_queued_timeout=2.5, celery_resend_after=1.0)
    result, _ = await run_one(setup, "nowhere")
    assert result.state == "failed"
    assert result.retryable
    assert result.error == (
        "lost: no worker took the try from queue 'nowhere' within 2.5s (task_queued_timeout)"
    )
    async with open_store(setup.settings.db_url) as store:
        (row,) = await store.backend.fetch("SELECT state, sent FROM try_work")
    assert row["state"] == "lost"
    assert row["sent"] >= 1


async def test_a_dag_file_the_worker_cannot_import_fails_the_try_with_the_reason(
    setup: Setup,
) -> None:
    """A worker runs a try in a fork of itself once it has imported the DAG file; when it
    cannot, a new interpreter tries, and the try fails with why."""
    if setup.kind == "local":
        pytest.skip("the local executor runs the DAG it has loaded")
    request = setup.request("value")
    setup.dag_path.write_text("raise ImportError('not on this worker')\n")
    async with running(setup.settings) as (executor, _):
        with anyio.fail_after(60):
            result = await executor.run(request)
    assert result.state == "failed"
    assert "not on this worker" in str(result.error)
