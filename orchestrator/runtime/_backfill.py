"""``dags backfill``: the schedule's intervals between two dates, run in this process.

As in Airflow, a backfill is driven by the command itself, not the daemon: its
runs carry this process as their driver (the daemon leaves them alone), up to
``max_active_runs`` of them at once. Running the same backfill again skips the
intervals that already succeeded and drives the others to their end.
"""

from __future__ import annotations

from datetime import datetime
from typing import IO

import anyio

from orchestrator._clock import SystemClock, iso
from orchestrator._settings import Settings
from orchestrator.authoring._dag import DAG
from orchestrator.core._state import RunState
from orchestrator.runtime._drive import cli_driver, drive_run, register_dags
from orchestrator.runtime._intake import RunIntake
from orchestrator.store import open_store
from triggers._timetable import RunInfo, timetable_for

__all__ = ["backfill", "backfill_intervals"]


def backfill_intervals(dag: DAG, start: datetime, end: datetime) -> list[RunInfo]:
    """The DAG's intervals whose logical date lies in [start, end]."""
    timetable = timetable_for(dag.schedule, start, end, catchup=True)
    intervals: list[RunInfo] = []
    last = None
    while timetable is not None and (last := timetable.next_run(last, start)) is not None:
        if last.logical_date > end:
            break
        intervals.append(last)
    return intervals


async def backfill(
    settings: Settings, dag: DAG, start: datetime, end: datetime, *, out: IO[str]
) -> dict[str, str]:
    """Run every interval; returns run id -> final state. Progress goes to ``out``."""
    clock = SystemClock()
    intervals = backfill_intervals(dag, start, end)
    states: dict[str, str] = {}
    total = len(intervals)
    print(f"backfill {dag.dag_id}: {total} interval(s) from {iso(start)} to {iso(end)}", file=out)
    limiter = anyio.CapacityLimiter(dag.max_active_runs)

    def progress(run_id: str, state: str) -> None:
        states[run_id] = state
        done = len(states)
        width = 30
        bar = "#" * (width * done // max(total, 1))
        print(f"[{bar.ljust(width, '.')}] {done}/{total}  {run_id}: {state}", file=out, flush=True)

    async with open_store(settings.db_url, clock=clock) as store:
        await register_dags(store, [dag], paused_default=settings.dags_paused_at_creation)
        intake = RunIntake(store, clock, driver=cli_driver())

        async def one(info: RunInfo) -> None:
            async with limiter:
                record = await intake.backfill(dag, info)
                if record.state == RunState.SUCCESS:
                    progress(record.run_id, "success (already)")
                    states[record.run_id] = "success"
                    return
                live = await drive_run(settings, store, dag, record, clock=clock)
                progress(record.run_id, str(live.record.state))

        async with anyio.create_task_group() as tg:
            for info in intervals:
                tg.start_soon(one, info)
    failed = sum(1 for s in states.values() if s != "success")
    print(f"backfill {dag.dag_id}: {total - failed} succeeded, {failed} failed", file=out)
    return states
