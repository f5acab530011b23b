"""Cron expressions and presets, validated when the DAG file loads."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from triggers._wallcron import check_fires

__all__ = ["PRESETS", "Cron"]

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
