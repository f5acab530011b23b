"""Running one DAG run in this process (``dags test``) and one task (``tasks test``)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import anyio

from orchestrator._aio import unwrap_single
from orchestrator._clock import Clock, SystemClock, iso
from orchestrator._settings import Settings
from orchestrator.authoring._dag import DAG
from orchestrator.core import RunRecord
from orchestrator.resources._services import Services
from orchestrator.runtime._context import DagRunInfo
from orchestrator.runtime._executor import LocalExecutor, TryRequest, TryResult
from orchestrator.runtime._intake import RunIntake
from orchestrator.runtime._live import ChangeListener, LiveRun
from orchestrator.runtime._scheduler import Scheduler
from orchestrator.store import Store, open_store

__all__ = [
    "cli_driver",
    "drive_run",
    "register_dags",
    "run_dag_once",
    "run_task_alone",
]


async def register_dags(store: Store, dags: list[DAG], *, paused_default: bool = False) -> None:
    await store.upsert_dags(
        [
            (d.dag_id, d.fileloc, d.schedule.text, d.tags, d.paused_on_creation(paused_default))
            for d in dags
        ]
    )


def cli_driver() -> str:
    """The driver mark of runs this process drives itself (the daemon leaves them alone)."""
    return f"cli:{socket.gethostname()}:{os.getpid()}"


async def run_dag_once(
    settings: Settings,
    dag: DAG,
    *,
    conf: dict[str, Any] | None = None,
    logical_date: datetime | None = None,
    on_change: ChangeListener | None = None,
    on_started: Callable[[RunRecord], None] | None = None,
    clock: Clock | None = None,
    dags: Mapping[str, DAG] | None = None,
) -> LiveRun:
    """Create a manual run of ``dag`` and drive it to its end in this process.

    ``dags`` are the other DAGs this process knows (a triggered run takes its data
    interval from its DAG's schedule).
    """
    clock = clock or SystemClock()
    async with open_store(settings.db_url, clock=clock) as store:
        await register_dags(store, [dag], paused_default=settings.dags_paused_at_creation)
        mine = RunIntake(store, clock, dags={dag.dag_id: dag}.get, driver=cli_driver())
        record = await mine.manual(dag.dag_id, conf=conf, logical_date=logical_date)
        if on_started is not None:
            on_started(record)
        return await drive_run(
            settings, store, dag, record, clock=clock, on_change=on_change, dags=dags
        )


async def drive_run(
    settings: Settings,
    store: Store,
    dag: DAG,
    record: RunRecord,
    *,
    clock: Clock,
    on_change: ChangeListener | None = None,
    dags: Mapping[str, DAG] | None = None,
) -> LiveRun:
    """Drive a stored run (new, or cleared to run again) to its end with its own scheduler.

    Runs its tasks ask for (``TriggerDagRunOperator``) are stored for the daemon to run.
    """
    known = {**(dags or {}), dag.dag_id: dag}
    intake = RunIntake(store, clock, dags=known.get)
    executor = LocalExecutor(Services(settings, store, intake), thread_slots=settings.parallelism)
    scheduler = Scheduler(
        store,
        executor,
        clock,
        parallelism=settings.parallelism,
        logs_dir=settings.logs_dir,
        on_change=on_change,
    )
    with unwrap_single():
        async with anyio.create_task_group() as tg:
            await tg.start(scheduler.serve)
            live = await scheduler.start_run(dag, record)
            await live.done.wait()
            # The run's alerts are tried once before this process ends; what still
            # fails waits in the store for the daemon's next attempts.
            await scheduler.alerts.settled()
            tg.cancel_scope.cancel()
    return live


async def run_task_alone(
    settings: Settings, dag: DAG, task_id: str, *, logical_date: datetime | None = None
) -> TryResult:
    """Run one task alone, ignoring dependencies and recording nothing (Airflow's tasks test);
    a sensor pokes until it is done or times out."""
    clock = SystemClock()
    task = dag.get_task(task_id)
    logical = logical_date or clock.now()
    async with open_store(settings.db_url, clock=clock) as store:
        executor = LocalExecutor(Services(settings, store), thread_slots=settings.parallelism)
        run = DagRunInfo(
            dag_id=dag.dag_id,
            run_id=f"test__{iso(logical)}",
            run_type="manual",
            logical_date=logical,
            data_interval_start=logical,
            data_interval_end=logical,
        )
        path = settings.logs_dir / "test" / f"{dag.dag_id}.{task_id}.log"
        if path.exists():
            path.unlink()
        result = await executor.run(TryRequest(dag, task, run, 1, task.retries + 1, {}, path))
    result_log = path.read_text() if path.exists() else ""
    print(result_log, end="")
    return result
