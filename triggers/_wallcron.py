"""Wall-clock matching of a five-field cron expression (naive times, no zone).

The next or previous matching wall time, found with a bisect over croniter's
expanded fields; expressions with features this does not model (``L``, ``#``,
``W``) fall back to croniter itself.
"""

from __future__ import annotations

import bisect
from datetime import date, datetime, time, timedelta
from typing import Any

from croniter import CroniterBadDateError, croniter

__all__ = ["WallCron", "check_fires"]

_MINUTE = timedelta(minutes=1)


class WallCron:
    """Next/previous matching wall time (naive) of a five-field expression."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        cron = croniter(expression)
        fields: list[list[Any]] = cron.expanded
        self.every_hour = fields[1] == ["*"]
        plain = len(fields) == 5 and all(
            all(isinstance(v, int) or v == "*" for v in f) for f in fields
        )
        self.fast = plain and not getattr(cron, "nth_weekday_of_month", None)
        if self.fast:
            self.minutes = _values(fields[0], range(60))
            self.hours = _values(fields[1], range(24))
            self.doms = set(_values(fields[2], range(1, 32)))
            self.months = set(_values(fields[3], range(1, 13)))
            self.dows = {v % 7 for v in _values(fields[4], range(7))}
            self.dom_any = fields[2] == ["*"]
            self.dow_any = fields[4] == ["*"]

    def _day_ok(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.doms
        dow = (day.weekday() + 1) % 7 in self.dows
        if self.dom_any and self.dow_any:
            return True
        if self.dom_any:
            return dow
        if self.dow_any:
            return dom
        return dom or dow  # both restricted: either matches (as in Vixie cron)

    def next(self, naive: datetime) -> datetime:
        """The first matching wall time strictly after ``naive``."""
        if not self.fast:
            found: datetime = croniter(self.expression, start_time=naive).get_next(datetime)
            return found
        start = naive.replace(second=0, microsecond=0) + _MINUTE
        day, h0, m0 = start.date(), start.hour, start.minute
        for _ in range(366 * 8):
            if self._day_ok(day):
                hi = bisect.bisect_left(self.hours, h0)
                for h in self.hours[hi:]:
                    mi = bisect.bisect_left(self.minutes, m0 if h == h0 else 0)
                    if mi < len(self.minutes):
                        return datetime.combine(day, time(h, self.minutes[mi]))
            day, h0, m0 = day + timedelta(days=1), 0, 0
        raise ValueError(f"cron {self.expression!r} never fires")

    def prev(self, naive: datetime) -> datetime:
        """The last matching wall time strictly before ``naive``."""
        if not self.fast:
            found: datetime = croniter(self.expression, start_time=naive).get_prev(datetime)
            return found
        floor = naive.replace(second=0, microsecond=0)
        start = floor - _MINUTE if floor == naive else floor
        day, h0, m0 = start.date(), start.hour, start.minute
        for _ in range(366 * 8):
            if self._day_ok(day):
                hi = bisect.bisect_right(self.hours, h0)
                for h in reversed(self.hours[:hi]):
                    mi = bisect.bisect_right(self.minutes, m0 if h == h0 else 59)
                    if mi > 0:
                        return datetime.combine(day, time(h, self.minutes[mi - 1]))
            day, h0, m0 = day - timedelta(days=1), 23, 59
        raise ValueError(f"cron {self.expression!r} never fires")


def check_fires(expression: str) -> None:
    """Raise ValueError if ``expression`` matches no time at all (``0 0 30 2 *``)."""
    try:
        WallCron(expression).next(datetime(2000, 1, 1))
    except CroniterBadDateError:
        raise ValueError(f"cron {expression!r} never fires") from None


def _values(field: list[Any], full: range) -> list[int]:
    return list(full) if field == ["*"] else sorted({int(v) for v in field})
