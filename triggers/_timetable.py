"""Time schedules to runs: logical dates and data intervals, as Airflow 2 defines them.

A cron or ``timedelta`` schedule cuts time into data intervals; the run for an
interval has ``logical_date`` = the interval's start and is due at its end.
``catchup=True`` walks the intervals from ``start_date`` in order; with
``catchup=False`` the first run (and the first after a pause or downtime) is the
latest interval that has already ended. ``@once`` runs once, at ``start_date``.
No interval starts after ``end_date``.

Everything here is pure: ``now`` is an argument.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from triggers._cron import Cron, CronTriggerTimetable
from triggers._crontimes import CronTimes
from triggers._schedule import Schedule

__all__ = [
    "CronTimetable",
    "CronTriggerTimes",
    "DeltaTimetable",
    "OnceTimetable",
    "RunInfo",
    "Timetable",
    "manual_interval",
    "timetable_for",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One run's times: its logical date, data interval, and when it is due."""

    logical_date: datetime
    data_interval_start: datetime
    data_interval_end: datetime

    @property
    def due(self) -> datetime:
        return self.data_interval_end


class Timetable(Protocol):
    #: True when the next run depends on ``now`` (catchup=False skips missed intervals).
    skips_missed: bool

    def next_run(self, last: RunInfo | None, now: datetime) -> RunInfo | None:
        """The run after ``last`` (the latest scheduled run), or None when there is none."""
        ...

    def manual_interval(self, run_after: datetime) -> tuple[datetime, datetime]:
        """The data interval Airflow gives a run triggered at ``run_after``."""
        ...


@dataclass(frozen=True, slots=True)
class _Bounds:
    start_date: datetime
    end_date: datetime | None
    catchup: bool


class _IntervalTimetable(ABC):
    """Shared walk over intervals; subclasses say how intervals are cut."""

    bounds: _Bounds

    def __init__(self, bounds: _Bounds) -> None:
        self.bounds = bounds
        self.skips_missed = not bounds.catchup
        self._first: datetime | None = None

    @abstractmethod
    def _next(self, t: datetime) -> datetime:
        """The end of the interval starting at ``t``."""

    @abstractmethod
    def _align_next(self, t: datetime) -> datetime:
        """``t`` if an interval starts there, else the next interval start."""

    @abstractmethod
    def _align_prev(self, t: datetime) -> datetime:
        """``t`` if an interval starts there, else the previous interval start."""

    @abstractmethod
    def _latest_start(self, now: datetime) -> datetime:
        """The start of the latest interval that has ended by ``now``."""

    def next_run(self, last: RunInfo | None, now: datetime) -> RunInfo | None:
        if self._first is None:
            self._first = self._align_next(self.bounds.start_date)
        earliest = self._first
        if not self.bounds.catchup:
            earliest = max(earliest, self._latest_start(now))
        start = earliest
        if last is not None:
            start = max(self._align_prev(last.data_interval_end), earliest)
        if self.bounds.end_date is not None and start > self.bounds.end_date:
            return None
        return RunInfo(start, start, self._next(start))


class CronTimetable(_IntervalTimetable):
    def __init__(self, cron: Cron, bounds: _Bounds) -> None:
        super().__init__(bounds)
        self.times = CronTimes(cron)

    def _next(self, t: datetime) -> datetime:
        return self.times.next_fire(t)

    def _align_next(self, t: datetime) -> datetime:
        return self.times.align_next(t)

    def _align_prev(self, t: datetime) -> datetime:
        return self.times.align_prev(t)

    def _latest_start(self, now: datetime) -> datetime:
        # The latest interval that has ended: it ends at the last fire at or before now.
        return self.times.prev_fire(self.times.align_prev(now))

    def manual_interval(self, run_after: datetime) -> tuple[datetime, datetime]:
        end = self.times.align_prev(run_after)
        return self.times.prev_fire(end), end


class CronTriggerTimes:
    """``CronTriggerTimetable``'s runs: one at each cron instant (see its docstring)."""

    def __init__(self, spec: CronTriggerTimetable, bounds: _Bounds) -> None:
        self.spec = spec
        self.bounds = bounds
        self.times = CronTimes(spec.cron)
        self.skips_missed = not bounds.catchup

    def _run(self, instant: datetime) -> RunInfo:
        return RunInfo(instant, instant - self.spec.interval, instant)

    def next_run(self, last: RunInfo | None, now: datetime) -> RunInfo | None:
        start = self.times.align_next(self.bounds.start_date)
        if last is not None:
            start = max(start, self.times.next_fire(last.logical_date))
            if not self.bounds.catchup:  # after a stall: the latest instant, not the missed
                start = max(start, self.times.align_prev(now))
        elif not self.bounds.catchup:
            start = max(start, self._first_run(now))
        if self.bounds.end_date is not None and start > self.bounds.end_date:
            return None
        return self._run(start)

    def _first_run(self, now: datetime) -> datetime:
        """Without catchup, the first run: the latest instant if it is recent enough
        (``run_immediately``; by default a tenth of the gap between instants, at least 5
        minutes, as Airflow's), else the next one."""
        latest, upcoming = self.times.align_prev(now), self.times.align_next(now)
        soon = self.spec.run_immediately
        if soon is True:
            return latest
        buffer = (
            soon
            if isinstance(soon, timedelta)
            else max((upcoming - latest) / 10, timedelta(minutes=5))
        )
        return latest if now - latest <= buffer else upcoming

    def manual_interval(self, run_after: datetime) -> tuple[datetime, datetime]:
        return run_after - self.spec.interval, run_after


class DeltaTimetable(_IntervalTimetable):
    def __init__(self, delta: timedelta, bounds: _Bounds) -> None:
        super().__init__(bounds)
        self.delta = delta

    def _next(self, t: datetime) -> datetime:
        return t + self.delta

    def _align_next(self, t: datetime) -> datetime:
        return t

    def _align_prev(self, t: datetime) -> datetime:
        return t

    def _latest_start(self, now: datetime) -> datetime:
        # Airflow rounds down to a multiple of the delta since the epoch, then steps back.
        rounded = _EPOCH + ((now - _EPOCH) // self.delta) * self.delta
        return rounded - self.delta

    def manual_interval(self, run_after: datetime) -> tuple[datetime, datetime]:
        return run_after - self.delta, run_after


class OnceTimetable:
    skips_missed = False

    def __init__(self, bounds: _Bounds) -> None:
        self.bounds = bounds

    def next_run(self, last: RunInfo | None, now: datetime) -> RunInfo | None:
        start = self.bounds.start_date
        if last is not None or (self.bounds.end_date is not None and start > self.bounds.end_date):
            return None
        return RunInfo(start, start, start)

    def manual_interval(self, run_after: datetime) -> tuple[datetime, datetime]:
        return run_after, run_after


def timetable_for(
    schedule: Schedule,
    start_date: datetime | None,
    end_date: datetime | None,
    catchup: bool,
) -> Timetable | None:
    """The timetable of a schedule's time part; None for a schedule with no time part."""
    if start_date is None or (schedule.time is None and not schedule.once):
        return None
    bounds = _Bounds(start_date, end_date, catchup)
    if schedule.once:
        return OnceTimetable(bounds)
    if isinstance(schedule.time, Cron):
        return CronTimetable(schedule.time, bounds)
    if isinstance(schedule.time, CronTriggerTimetable):
        return CronTriggerTimes(schedule.time, bounds)
    assert isinstance(schedule.time, timedelta)
    return DeltaTimetable(schedule.time, bounds)


def manual_interval(timetable: Timetable | None, run_after: datetime) -> tuple[datetime, datetime]:
    """A triggered run's data interval: Airflow's inference, or an empty interval."""
    if timetable is None:
        return run_after, run_after
    return timetable.manual_interval(run_after)
