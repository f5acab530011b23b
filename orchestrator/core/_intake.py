"""Run intake rules: what a new run of each kind is (id, type, data interval, trigger key).

Every run is made by the runtime's ``RunIntake`` from one of these, whichever way it
was asked for (API, CLI, ``TriggerDagRunOperator``, ``dags test``, backfill, a firing
of the trigger engine), so the same request always gives the same run.

Rules:
1. A run id is ``{run_type}__{logical date, ISO 8601 UTC}`` unless the caller names one.
2. A manual run's data interval is Airflow's inference from the DAG's timetable for
   its logical date (the last complete interval of a cron DAG); a DAG without a time
   schedule (or unknown here) gets the empty interval at the logical date.
3. A run fired by the trigger engine keeps the firing's times, its trigger key (the
   second idempotency key beside the run id) and its payload as conf.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from orchestrator._clock import iso
from orchestrator.core._records import RunRecord
from orchestrator.core._state import RunState
from triggers._engine import CreateRun
from triggers._timetable import RunInfo, Timetable, manual_interval

__all__ = ["RUN_TYPES", "fired_run", "interval_run", "manual_run", "run_id_for"]

RUN_TYPES = ("manual", "scheduled", "backfill", "dataset_triggered", "event_triggered")


def run_id_for(run_type: str, logical_date: datetime) -> str:
    """The id a run gets when the caller names none (rule 1)."""
    return f"{run_type}__{iso(logical_date)}"


def manual_run(
    dag_id: str,
    timetable: Timetable | None,
    now: datetime,
    *,
    conf: dict[str, Any] | None = None,
    logical_date: datetime | None = None,
    run_id: str | None = None,
) -> RunRecord:
    """A queued manual run (rule 2)."""
    logical = logical_date or now
    start, end = manual_interval(timetable, logical)
    return RunRecord(
        dag_id=dag_id,
        run_id=run_id or run_id_for("manual", logical),
        state=RunState.QUEUED,
        run_type="manual",
        logical_date=logical,
        queued_at=now,
        data_interval_start=start,
        data_interval_end=end,
        conf=dict(conf or {}),
    )


def interval_run(
    dag_id: str,
    run_type: str,
    info: RunInfo,
    now: datetime,
    *,
    trigger_key: str | None = None,
    conf: dict[str, Any] | None = None,
) -> RunRecord:
    """A queued run for one schedule interval (scheduled, backfill)."""
    return RunRecord(
        dag_id=dag_id,
        run_id=run_id_for(run_type, info.logical_date),
        state=RunState.QUEUED,
        run_type=run_type,
        logical_date=info.logical_date,
        queued_at=now,
        data_interval_start=info.data_interval_start,
        data_interval_end=info.data_interval_end,
        conf=dict(conf or {}),
        trigger_key=trigger_key,
    )


def fired_run(firing: CreateRun, now: datetime) -> RunRecord:
    """The run a firing of the trigger engine asks for (rule 3)."""
    if firing.run_type not in RUN_TYPES:
        raise ValueError(f"unknown run type {firing.run_type!r} in a firing for {firing.dag_id!r}")
    return interval_run(
        firing.dag_id,
        firing.run_type,
        firing.run,
        now,
        trigger_key=firing.trigger_key,
        conf=dict(firing.payload),
    )
