"""What a DAG's ``schedule=`` argument may be, parsed into one normal form."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from triggers._cron import Cron, CronTriggerTimetable
from triggers._dataset import DatasetCondition, as_condition
from triggers._eventpattern import EventPattern

__all__ = [
    "AssetOrTimeSchedule",
    "DatasetAndTime",
    "DatasetOrTime",
    "Schedule",
    "parse_schedule",
]

TimeSchedule = Cron | timedelta | CronTriggerTimetable


def _time_part(value: object, owner: str) -> TimeSchedule:
    if isinstance(value, Cron | CronTriggerTimetable):
        return value
    if isinstance(value, str):
        return Cron(value)
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise ValueError(f"{owner}: a timedelta schedule must be positive, got {value}")
        return value
    raise ValueError(f"{owner}: expected a cron string, Cron or timedelta, got {value!r}")


@dataclass(frozen=True, slots=True)
class DatasetOrTime:
    """Run at each time instant, and also whenever the datasets condition is met."""

    cron: TimeSchedule | str
    datasets: DatasetCondition | Iterable[object]

    def __post_init__(self) -> None:
        object.__setattr__(self, "cron", _time_part(self.cron, "DatasetOrTime"))
        object.__setattr__(self, "datasets", as_condition(self.datasets))

    def __str__(self) -> str:
        return f"DatasetOrTime({self.cron}, {self.datasets})"


@dataclass(frozen=True, slots=True)
class DatasetAndTime:
    """Run at a time instant, but only once the datasets have been updated since the last run."""

    cron: TimeSchedule | str
    datasets: DatasetCondition | Iterable[object]

    def __post_init__(self) -> None:
        object.__setattr__(self, "cron", _time_part(self.cron, "DatasetAndTime"))
        object.__setattr__(self, "datasets", as_condition(self.datasets))

    def __str__(self) -> str:
        return f"DatasetAndTime({self.cron}, {self.datasets})"


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed schedule: at most one time part and at most one dataset condition.

    ``once`` is ``@once``; with neither part nor ``once`` the DAG runs only when triggered.
    """

    time: TimeSchedule | None = None
    datasets: DatasetCondition | None = None
    combine: str = ""  # "or" / "and" when both parts are set
    once: bool = False
    text: str = "None"
    event: EventPattern | None = None  # every matching event starts a run

    @property
    def is_manual(self) -> bool:
        return self.time is None and self.datasets is None and not self.once and self.event is None


def AssetOrTimeSchedule(*, timetable: TimeSchedule | str, assets: object) -> DatasetOrTime:
    """Airflow 3's name for :class:`DatasetOrTime` (``timetable=``, ``assets=``)."""
    return DatasetOrTime(cron=timetable, datasets=assets)  # type: ignore[arg-type]


def _checked(condition: DatasetCondition) -> DatasetCondition:
    for dataset in condition.datasets():
        dataset.check("dataset")
    return condition


def parse_schedule(value: object) -> Schedule:
    """Parse ``schedule=``; raises ValueError saying what is wrong (naming a bad URI)."""
    if value is None:
        return Schedule()
    if isinstance(value, str) and value.strip() == "@once":
        return Schedule(once=True, text="@once")
    if isinstance(value, str | Cron | timedelta | CronTriggerTimetable):
        time = _time_part(value, "schedule")
        return Schedule(time=time, text=str(value))
    if isinstance(value, DatasetOrTime | DatasetAndTime):
        combine = "or" if isinstance(value, DatasetOrTime) else "and"
        assert isinstance(value.cron, Cron | timedelta | CronTriggerTimetable)
        assert isinstance(value.datasets, DatasetCondition)
        return Schedule(
            time=value.cron, datasets=_checked(value.datasets), combine=combine, text=str(value)
        )
    if isinstance(value, EventPattern):
        return Schedule(event=value.check("event pattern"), text=str(value))
    if isinstance(value, DatasetCondition | list | tuple):
        condition = _checked(as_condition(value))
        return Schedule(datasets=condition, text=str(condition))
    raise ValueError(
        f"unsupported schedule {value!r}: use a cron string, a preset, a timedelta, Cron(...), "
        "CronTriggerTimetable(...), "
        "None, datasets, DatasetOrTime(...), DatasetAndTime(...) or EventPattern(...)"
    )
