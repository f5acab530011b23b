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

The wall-time search is ``_wallcron``'s.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from triggers._cron import Cron
from triggers._wallcron import WallCron

__all__ = ["CronTimes"]

_SPAN = timedelta(hours=2)  # wider than any DST shift in use
_TINY = timedelta(microseconds=1)


class CronTimes:
    """The fire instants (aware, UTC) of a :class:`Cron`."""

    def __init__(self, cron: Cron) -> None:
        self.cron = cron
        self.wall = WallCron(cron.cron)
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
