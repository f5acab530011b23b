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
4. What a caller gives is checked before a run is made of it, so nothing is stored that
   cannot be read back, served as JSON or used in a file name: a run id matches
   ``RUN_ID_PATTERN`` (Airflow's allowed characters, at most 200 of them, first a letter
   or digit); a conf is standard JSON (finite numbers, integers of at most 1,000 digits,
   strings without lone surrogates, nested at most ``MAX_CONF_DEPTH`` deep); a logical
   date lies in ``LOGICAL_DATE_RANGE``.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from orchestrator._clock import iso
from orchestrator.core._records import RunRecord
from orchestrator.core._state import RunState
from orchestrator.errors import InvalidRequest
from triggers._engine import CreateRun
from triggers._timetable import RunInfo, Timetable, manual_interval

__all__ = [
    "LOGICAL_DATE_RANGE",
    "MAX_CONF_DEPTH",
    "RUN_ID_PATTERN",
    "RUN_TYPES",
    "check_conf",
    "check_logical_date",
    "check_run_id",
    "fired_run",
    "interval_run",
    "manual_run",
    "run_id_for",
]

RUN_TYPES = ("manual", "scheduled", "backfill", "dataset_triggered", "event_triggered")
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.~:+\-]{0,199}")
MAX_CONF_DEPTH = 64
_INT_LIMIT = 10**1_000  # integers have at most 1,000 decimal digits
LOGICAL_DATE_RANGE = (datetime(1900, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC))


def _shown(value: object) -> str:
    text = ascii(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_run_id(run_id: object, field: str = "run_id") -> str:
    """``run_id`` if it matches ``RUN_ID_PATTERN``; InvalidRequest naming ``field`` otherwise."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        raise InvalidRequest(
            f"{field}: must be 1 to 200 characters of letters, digits and _.~:+- starting "
            f"with a letter or digit, got {_shown(run_id)}"
        )
    return run_id


def check_logical_date(value: datetime, field: str = "logical_date") -> datetime:
    """``value`` (timezone-aware) if it lies in ``LOGICAL_DATE_RANGE``."""
    low, high = LOGICAL_DATE_RANGE
    if value.tzinfo is None:
        raise InvalidRequest(f"{field}: must carry a UTC offset, got {value.isoformat()}")
    try:
        inside = low <= value < high
    except OverflowError:
        inside = False
    if not inside:
        raise InvalidRequest(
            f"{field}: must lie between {low.date()} and {high.date()}, got {value.isoformat()}"
        )
    return value


def check_conf(conf: object, field: str = "conf") -> dict[str, Any]:
    """``conf`` if it is a JSON object that round-trips through standard JSON (rule 4)."""
    if not isinstance(conf, dict):
        raise InvalidRequest(f"{field}: must be a JSON object")
    stack: list[tuple[str, object, int]] = [(field, conf, 1)]
    while stack:
        where, value, depth = stack.pop()
        if depth > MAX_CONF_DEPTH:
            raise InvalidRequest(f"{where}: nested deeper than {MAX_CONF_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InvalidRequest(f"{where}: key {_shown(key)} is not a string")
                _check_text(key, f"{where}: key {_shown(key)}")
                stack.append((f"{where}.{key}"[:200], item, depth + 1))
        elif isinstance(value, list | tuple):
            stack.extend((f"{where}[{i}]", item, depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, where)
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if not -_INT_LIMIT < value < _INT_LIMIT:
                raise InvalidRequest(f"{where}: integer longer than 1,000 digits")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidRequest(f"{where}: {value} is not a JSON number")
        else:
            raise InvalidRequest(f"{where}: {type(value).__name__} is not a JSON value")
    return conf


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"{where}: string holds a lone surrogate (not UTF-8)") from None


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
    """A queued manual run (rule 2), its run id, conf and logical date checked (rule 4)."""
    if run_id is not None:
        check_run_id(run_id)
    conf = check_conf(dict(conf or {}))
    logical = check_logical_date(logical_date) if logical_date is not None else now
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
        conf=conf,
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
