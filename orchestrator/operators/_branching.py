"""Airflow's schedule-aware branches: ``LatestOnlyOperator``, ``BranchDayOfWeekOperator``
and ``BranchDateTimeOperator``."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from typing import Any

from orchestrator.authoring._baseoperator import BaseOperator
from orchestrator.errors import DagDefinitionError
from triggers._timetable import RunInfo

__all__ = [
    "BranchDateTimeOperator",
    "BranchDayOfWeekOperator",
    "LatestOnlyOperator",
    "WeekDay",
    "week_days",
]


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


def week_days(value: Any, where: str) -> frozenset[int]:
    """The ISO week days ``value`` names (``WeekDay``, names, or a list of them)."""
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
        self.week_day = week_days(week_day, self._where)
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


def _moment(value: datetime | time | None, now: datetime) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    tz = value.tzinfo or UTC
    return datetime.combine(now.astimezone(tz).date(), value.replace(tzinfo=None), tzinfo=tz)


class BranchDateTimeOperator(BaseOperator):
    """Follows ``follow_task_ids_if_true`` when now (or the run's logical date, with
    ``use_task_logical_date``) lies between ``target_lower`` and ``target_upper`` (either may
    be None; ``datetime.time`` bounds are today's, an upper bound before the lower one is
    tomorrow's), else ``follow_task_ids_if_false``."""

    def __init__(
        self,
        *,
        follow_task_ids_if_true: str | Iterable[str],
        follow_task_ids_if_false: str | Iterable[str],
        target_lower: datetime | time | None = None,
        target_upper: datetime | time | None = None,
        use_task_logical_date: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if target_lower is None and target_upper is None:
            raise DagDefinitionError(f"{self._where}: give target_lower, target_upper or both")
        for name, bound in (("target_lower", target_lower), ("target_upper", target_upper)):
            if bound is not None and not isinstance(bound, datetime | time):
                raise DagDefinitionError(f"{self._where}: {name} must be a datetime or a time")
        self.follow_task_ids_if_true = _ids(
            follow_task_ids_if_true, self._where, "follow_task_ids_if_true"
        )
        self.follow_task_ids_if_false = _ids(
            follow_task_ids_if_false, self._where, "follow_task_ids_if_false"
        )
        self.target_lower = target_lower
        self.target_upper = target_upper
        self.use_task_logical_date = bool(use_task_logical_date)

    def execute(self, context: dict[str, Any]) -> list[str]:
        now = context["logical_date"] if self.use_task_logical_date else datetime.now(UTC)
        lower, upper = _moment(self.target_lower, now), _moment(self.target_upper, now)
        if lower is not None and upper is not None and upper < lower:  # noqa: SIM102
            if isinstance(self.target_upper, time):  # a time window across midnight
                upper += timedelta(days=1)
        inside = (lower is None or lower <= now) and (upper is None or now <= upper)
        follow = self.follow_task_ids_if_true if inside else self.follow_task_ids_if_false
        context["ti"].skip_task_ids |= self.downstream_task_ids - set(follow)
        return follow
