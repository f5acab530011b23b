"""Cron expressions and presets, validated when the DAG file loads."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from triggers._wallcron import check_fires

__all__ = ["PRESETS", "Cron", "CronTriggerTimetable"]

# Airflow's presets; "@once" is not a cron expression and is handled by the schedule parser.
PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


@dataclass(frozen=True, slots=True)
class Cron:
    """A cron expression (or preset) evaluated in ``timezone`` (an IANA name)."""

    expression: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str) or not self.expression.strip():
            raise ValueError(f"cron expression must be a non-empty string, got {self.expression!r}")
        if not croniter.is_valid(self.cron):
            raise ValueError(f"invalid cron expression {self.expression!r}")
        if len(self.cron.split()) != 5:
            raise ValueError(
                f"cron expression {self.expression!r} must have 5 fields "
                "(minute hour day-of-month month day-of-week)"
            )
        check_fires(self.cron)
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown timezone {self.timezone!r} for cron {self.expression!r}"
            ) from exc

    @property
    def cron(self) -> str:
        """The five-field expression, presets expanded."""
        return PRESETS.get(self.expression.strip(), self.expression.strip())

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def __str__(self) -> str:
        if self.timezone == "UTC":
            return self.expression
        return f"{self.expression} ({self.timezone})"


@dataclass(frozen=True, slots=True, init=False)
class CronTriggerTimetable:
    """Airflow 3's point-in-time cron schedule: a run at each cron instant, whose logical
    date is the instant and whose data interval is ``(instant - interval, instant)``
    (empty by default), where ``Cron`` cuts time into data intervals as Airflow 2 does.

    With ``catchup=False`` a DAG's first run is at the next instant; ``run_immediately``
    (True, or a ``timedelta``: when the latest instant is at most that long ago) runs the
    latest past instant first instead, as Airflow's does.
    """

    cron: Cron
    interval: timedelta = field(default=timedelta(0))
    run_immediately: bool | timedelta = False

    def __init__(
        self,
        cron: str,
        *,
        timezone: str = "UTC",
        interval: timedelta = timedelta(0),
        run_immediately: bool | timedelta = False,
    ) -> None:
        if not isinstance(interval, timedelta) or interval < timedelta(0):
            raise ValueError(
                f"CronTriggerTimetable: interval must be a timedelta >= 0, got {interval!r}"
            )
        if not isinstance(run_immediately, bool | timedelta):
            raise ValueError(
                f"CronTriggerTimetable: run_immediately must be a bool or a timedelta, got "
                f"{run_immediately!r}"
            )
        object.__setattr__(
            self, "cron", Cron(cron, timezone=str(getattr(timezone, "name", timezone)))
        )
        object.__setattr__(self, "interval", interval)
        object.__setattr__(self, "run_immediately", run_immediately)

    def __str__(self) -> str:
        return f"CronTriggerTimetable({self.cron})"
