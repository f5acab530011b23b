"""Fire instants of a cron expression in a time zone, DST included.

Rules (the contract the property tests check against a brute-force oracle):

1. A cron expression matches *wall-clock* times in its zone. The fire instants are
   the UTC instants those wall times denote.
2. Fall-back overlap: a repeated wall time fires once, at its first occurrence,
   unless the expression fires in every hour (hour field ``*``): then it fires at
   both occurrences, so an hourly job keeps running every real hour.
3. Spring-forward gap: a wall time that does not exist fires at the instant it
   would have been before the change (02:30 becomes 03:30 in Paris), and instants
   that coincide are one fire. No day loses its daily run; no hour runs twice.

The wall-time search works on croniter's expanded fields (a bisect per call);
expressions with features it does not model (``L``, ``#``, ``W``) use croniter.
"""

from __future__ import annotations

import bisect
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

from triggers._cron import Cron

__all__ = ["CronTimes", "check_fires"]

_MINUTE = timedelta(minutes=1)
_SPAN = timedelta(hours=2)  # wider than any DST shift in use
_TINY = timedelta(microseconds=1)


class _WallCron:
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
        _WallCron(expression).next(datetime(2000, 1, 1))
    except CroniterBadDateError:
        raise ValueError(f"cron {expression!r} never fires") from None


def _values(field: list[Any], full: range) -> list[int]:
    return list(full) if field == ["*"] else sorted({int(v) for v in field})


class CronTimes:
    """The fire instants (aware, UTC) of a :class:`Cron`."""

    def __init__(self, cron: Cron) -> None:
        self.cron = cron
        self.wall = _WallCron(cron.cron)
        self.tz = ZoneInfo(cron.timezone)
        self.is_utc = cron.timezone in ("UTC", "Etc/UTC")

    def candidates(self, wall: datetime) -> list[datetime]:
        """The instants one matching wall time fires at (rules 2 and 3)."""
        first = wall.replace(tzinfo=self.tz, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=self.tz, fold=1).astimezone(UTC)
        if first == second or first > second:  # plain, or in a gap (fold=0 maps forward)
            return [first]
        return [first, second] if self.wall.every_hour else [first]

    def _steady(self, instant: datetime) -> bool:
        """No offset change within two hours either side of ``instant``."""
        return _offset(self.tz, instant - _SPAN) == _offset(self.tz, instant + _SPAN)

    def next_fire(self, after: datetime) -> datetime:
        """The first fire instant strictly after ``after``."""
        if self.is_utc:
            naive = after.astimezone(UTC).replace(tzinfo=None)
            return self.wall.next(naive).replace(tzinfo=UTC)
        naive = after.astimezone(self.tz).replace(tzinfo=None)
        wall = self.wall.next(naive)
        found = self.candidates(wall)
        if len(found) == 1 and self._steady(after) and self._steady(found[0]):
            return found[0]
        return self._search_forward(after, naive)

    def prev_fire(self, before: datetime) -> datetime:
        """The last fire instant strictly before ``before``."""
        if self.is_utc:
            naive = before.astimezone(UTC).replace(tzinfo=None)
            return self.wall.prev(naive).replace(tzinfo=UTC)
        naive = before.astimezone(self.tz).replace(tzinfo=None)
        wall = self.wall.prev(naive)
        found = self.candidates(wall)
        if len(found) == 1 and self._steady(before) and self._steady(found[0]):
            return found[0]
        return self._search_backward(before, naive)

    def align_next(self, instant: datetime) -> datetime:
        """``instant`` if it is a fire instant, else the next one."""
        return self.next_fire(instant - _TINY)

    def align_prev(self, instant: datetime) -> datetime:
        """``instant`` if it is a fire instant, else the previous one."""
        return self.prev_fire(instant + _TINY)

    # Near a DST change the wall-time order and the instant order can differ (a wall
    # time in the gap maps later than the hour after it; a repeated hour comes back),
    # so take the best candidate over every wall time within the span around ``naive``.

    def _search_forward(self, after: datetime, naive: datetime) -> datetime:
        best: datetime | None = None
        wall = naive - _SPAN
        while True:
            wall = self.wall.next(wall)
            for instant in self.candidates(wall):
                if instant > after and (best is None or instant < best):
                    best = instant
            if best is not None and wall > naive + _SPAN:
                return best

    def _search_backward(self, before: datetime, naive: datetime) -> datetime:
        best: datetime | None = None
        wall = naive + _SPAN
        while True:
            wall = self.wall.prev(wall)
            for instant in self.candidates(wall):
                if instant < before and (best is None or instant > best):
                    best = instant
            if best is not None and wall < naive - _SPAN:
                return best


def _offset(tz: ZoneInfo, instant: datetime) -> timedelta | None:
    return instant.astimezone(tz).utcoffset()
