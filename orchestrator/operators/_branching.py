"""Airflow's schedule-aware branches: ``LatestOnlyOperator`` and ``BranchDayOfWeekOperator``."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from orchestrator.authoring._baseoperator import BaseOperator
from orchestrator.errors import DagDefinitionError
from triggers._timetable import RunInfo

__all__ = ["BranchDayOfWeekOperator", "LatestOnlyOperator", "WeekDay"]


class WeekDay(enum.IntEnum):
    """Days of the week (``datetime.isoweekday``), as Airflow's ``WeekDay``."""

    MONDAY = 1
    TUESDAY = 2
    WEDNESDAY = 3
    THURSDAY = 4
    FRIDAY = 5
    SATURDAY = 6
    SUNDAY = 7


class LatestOnlyOperator(BaseOperator):
    """Skips its direct downstream tasks unless this run is the latest scheduled one: the
    time now lies between the end of the run's data interval and the end of the next
    interval. A run the schedule did not make (manual, dataset- or event-triggered, a
    backfill's) always goes on, as in Airflow for externally triggered runs."""

    def execute(self, context: dict[str, Any]) -> None:
        run = context["dag_run"]
        timetable = context["dag"].timetable
        if run.run_type != "scheduled" or timetable is None:
            print(f"run {run.run_id!r} is {run.run_type}, not scheduled: nothing to skip")
            return
        this = RunInfo(run.logical_date, run.data_interval_start, run.data_interval_end)
        following = timetable.next_run(this, run.data_interval_end)
        now = datetime.now(UTC)
        if following is None or run.data_interval_end < now <= following.data_interval_end:
            print("the latest run: nothing to skip")
            return
        print(f"not the latest run (now {now.isoformat()}): skipping what follows")
        context["ti"].skip_task_ids |= set(self.downstream_task_ids)


def _days(value: Any, where: str) -> frozenset[int]:
    items = [value] if isinstance(value, str | WeekDay | int) else value
    if not isinstance(items, Iterable):
        raise DagDefinitionError(f"{where}: week_day must be a day or a set of days")
    days = set()
    for item in items:
        if isinstance(item, WeekDay):
            days.add(int(item))
        elif isinstance(item, str) and item.upper() in WeekDay.__members__:
            days.add(int(WeekDay[item.upper()]))
        else:
            names = ", ".join(d.name.title() for d in WeekDay)
            raise DagDefinitionError(f"{where}: week_day {item!r} is not one of {names}")
    return frozenset(days)


def _ids(value: str | Iterable[str], where: str, field: str) -> list[str]:
    ids = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(i, str) for i in ids):
        raise DagDefinitionError(f"{where}: {field} must be task ids")
    return ids


class BranchDayOfWeekOperator(BaseOperator):
    """Follows ``follow_task_ids_if_true`` on the given week day(s), else
    ``follow_task_ids_if_false``, skipping the other direct downstream tasks. The day is
    today's in UTC, or the run's logical date's with ``use_task_logical_date=True``."""

    def __init__(
        self,
        *,
        follow_task_ids_if_true: str | Iterable[str],
        follow_task_ids_if_false: str | Iterable[str],
        week_day: str | WeekDay | Iterable[str | WeekDay],
        use_task_logical_date: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.follow_task_ids_if_true = _ids(
            follow_task_ids_if_true, self._where, "follow_task_ids_if_true"
        )
        self.follow_task_ids_if_false = _ids(
            follow_task_ids_if_false, self._where, "follow_task_ids_if_false"
        )
        self.week_day = _days(week_day, self._where)
        self.use_task_logical_date = bool(use_task_logical_date)

    def execute(self, context: dict[str, Any]) -> list[str]:
        day = context["logical_date"] if self.use_task_logical_date else datetime.now(UTC)
        follow = (
            self.follow_task_ids_if_true
            if day.isoweekday() in self.week_day
            else self.follow_task_ids_if_false
        )
        context["ti"].skip_task_ids |= self.downstream_task_ids - set(follow)
        return follow
