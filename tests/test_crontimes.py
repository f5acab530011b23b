"""Cron fire instants across DST changes, checked against croniter and a brute-force oracle."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from croniter import CroniterBadDateError, croniter
from hypothesis import given
from hypothesis import strategies as st

from triggers import Cron
from triggers._crontimes import CronTimes
from triggers._wallcron import WallCron

PARIS = "Europe/Paris"
NEW_YORK = "America/New_York"


def fires(expr: str, tz: str, start: datetime, count: int) -> list[str]:
    """The next ``count`` fires after ``start``, as local wall times with offsets."""
    times = CronTimes(Cron(expr, tz))
    out, t = [], start
    for _ in range(count):
        t = times.next_fire(t)
        out.append(t.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M%z"))
    return out


def test_daily_run_in_the_spring_gap_runs_shifted_by_the_gap_paris() -> None:
    """A daily 02:30 job runs at 03:30 CEST on the day 02:30 does not exist, and on time after."""
    start = datetime(2026, 3, 27, 12, tzinfo=UTC)
    assert fires("30 2 * * *", PARIS, start, 3) == [
        "03-28 02:30+0100",
        "03-29 03:30+0200",
        "03-30 02:30+0200",
    ]


def test_daily_run_in_the_fall_overlap_runs_once_new_york() -> None:
    """A daily 01:30 job runs once on the day 01:30 happens twice (at its first occurrence)."""
    start = datetime(2026, 10, 31, 12, tzinfo=UTC)
    assert fires("30 1 * * *", NEW_YORK, start, 3) == [
        "11-01 01:30-0400",
        "11-02 01:30-0500",
        "11-03 01:30-0500",
    ]


def test_hourly_run_keeps_every_real_hour_through_the_spring_gap_new_york() -> None:
    """An hourly job runs every 60 real minutes across spring-forward: none skipped or doubled."""
    start = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)  # 00:00 EST
    times = CronTimes(Cron("30 * * * *", NEW_YORK))
    t, got = start, []
    for _ in range(6):
        t = times.next_fire(t)
        got.append(t)
    assert [b - a for a, b in itertools.pairwise(got)] == [timedelta(hours=1)] * 5
    assert got[0] == datetime(2026, 3, 8, 5, 30, tzinfo=UTC)


def test_hourly_run_fires_in_both_occurrences_of_the_repeated_hour_paris() -> None:
    """Fall-back: ``30 * * * *`` runs at 02:30 CEST and again at 02:30 CET."""
    start = datetime(2026, 10, 24, 23, 0, tzinfo=UTC)  # 01:00 CEST
    assert fires("30 * * * *", PARIS, start, 4) == [
        "10-25 01:30+0200",
        "10-25 02:30+0200",
        "10-25 02:30+0100",
        "10-25 03:30+0100",
    ]


def test_every_two_hours_fires_once_in_the_repeated_hour_paris() -> None:
    """A schedule that does not cover every hour runs a repeated wall time once."""
    start = datetime(2026, 10, 24, 21, 0, tzinfo=UTC)  # 23:00 CEST
    assert fires("0 */2 * * *", PARIS, start, 3) == [
        "10-25 00:00+0200",
        "10-25 02:00+0200",
        "10-25 04:00+0100",
    ]


@pytest.mark.parametrize("tz", [PARIS, NEW_YORK])
@pytest.mark.parametrize("expr", ["30 2 * * *", "30 * * * *", "*/20 * * * *", "0 1-3 * * *"])
def test_prev_fire_walks_back_over_the_same_instants(tz: str, expr: str) -> None:
    """prev_fire is the exact inverse of next_fire through both DST changes."""
    times = CronTimes(Cron(expr, tz))
    for day in (datetime(2026, 3, 7, tzinfo=UTC), datetime(2026, 10, 23, tzinfo=UTC)):
        forward = [times.next_fire(day)]
        while forward[-1] < day + timedelta(days=10):
            forward.append(times.next_fire(forward[-1]))
        backward = [forward[-1]]
        while len(backward) < len(forward):
            backward.append(times.prev_fire(backward[-1]))
        assert backward[::-1] == forward


simple_fields = st.tuples(
    st.sampled_from(["*", "0", "30", "*/15", "5,35", "10-20", "*/7"]),
    st.sampled_from(["*", "0", "2", "*/6", "1-3", "9,17"]),
    st.sampled_from(["*", "1", "15", "31", "1-7", "*/10"]),
    st.sampled_from(["*", "1", "2", "*/3", "6-8", "12"]),
    st.sampled_from(["*", "0", "1", "1-5", "6,0", "7"]),
)
moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2032, 12, 31))


@given(simple_fields, moments)
def test_wall_search_agrees_with_croniter(fields: tuple[str, ...], naive: datetime) -> None:
    """The bisect search gives croniter's next and previous wall times."""
    expr = " ".join(fields)
    wall = WallCron(expr)
    assert wall.fast
    try:
        croniter(expr, start_time=naive).get_next(datetime)
    except CroniterBadDateError:
        with pytest.raises(ValueError, match="never fires"):
            wall.next(naive)
        return
    assert wall.next(naive) == croniter(expr, start_time=naive).get_next(datetime)
    assert wall.prev(naive) == croniter(expr, start_time=naive).get_prev(datetime)


@pytest.mark.parametrize("expr", ["0 0 30 2 *", "0 0 * * * 5"])
def test_cron_that_never_fires_or_has_six_fields_is_refused(expr: str) -> None:
    """Cron() refuses an expression with no fire time or with a seconds field."""
    with pytest.raises(ValueError, match=r"never fires|5 fields"):
        Cron(expr)


def test_expressions_the_search_does_not_model_use_croniter() -> None:
    """``L`` (last day of the month) falls back to croniter and still answers."""
    wall = WallCron("0 0 L * *")
    assert not wall.fast
    assert wall.next(datetime(2026, 2, 3)) == datetime(2026, 2, 28)


# -- the oracle ------------------------------------------------------------------------------


class Oracle:
    """Decides, instant by instant, whether a cron fires there (rules in _crontimes)."""

    def __init__(self, expr: str, tz: str) -> None:
        fields: list[list[Any]] = croniter(expr).expanded
        self.tz = ZoneInfo(tz)
        self.minutes: set[int] = set(range(60)) if fields[0] == ["*"] else set(fields[0])
        self.hours = set(range(24)) if fields[1] == ["*"] else set(fields[1])
        self.every_hour = fields[1] == ["*"]
        self.doms = None if fields[2] == ["*"] else set(fields[2])
        self.months = set(range(1, 13)) if fields[3] == ["*"] else set(fields[3])
        self.dows = None if fields[4] == ["*"] else {d % 7 for d in fields[4]}

    def matches(self, wall: datetime) -> bool:
        if wall.minute not in self.minutes or wall.hour not in self.hours:
            return False
        if wall.month not in self.months:
            return False
        dom_ok = self.doms is None or wall.day in self.doms
        dow_ok = self.dows is None or (wall.weekday() + 1) % 7 in self.dows
        if self.doms is not None and self.dows is not None:
            return wall.day in self.doms or (wall.weekday() + 1) % 7 in self.dows
        return dom_ok and dow_ok

    def fires_at(self, instant: datetime) -> bool:
        local = instant.astimezone(self.tz)
        wall = local.replace(tzinfo=None, fold=0)
        if self.matches(wall) and (local.fold == 0 or self.every_hour):
            return True
        # A wall time skipped by spring-forward fires where the old offset puts it.
        before = (instant - timedelta(hours=3)).astimezone(self.tz).utcoffset()
        assert before is not None
        skipped = (instant + before).replace(tzinfo=None)
        if skipped == wall:
            return False
        back = skipped.replace(tzinfo=self.tz).astimezone(UTC).astimezone(self.tz)
        exists = back.replace(tzinfo=None) == skipped
        return not exists and self.matches(skipped)

    def year(self, start: datetime) -> list[datetime]:
        """Every fire in the year after ``start``, minute by minute (zones on whole hours)."""
        out = []
        hour = start
        end = start + timedelta(days=365)
        while hour <= end:
            for minute in sorted(self.minutes):
                instant = hour + timedelta(minutes=minute)
                if start < instant <= end and self.fires_at(instant):
                    out.append(instant)
            hour += timedelta(hours=1)
        return out


ORACLE_CASES = [
    ("30 2 * * *", PARIS),
    ("30 * * * *", NEW_YORK),
    ("0 */6 * * *", PARIS),
    ("15 1 * * 0", NEW_YORK),
    ("0 2 * * *", NEW_YORK),
    ("*/20 1-3 * * *", PARIS),
]


@pytest.mark.parametrize(("expr", "tz"), ORACLE_CASES)
def test_a_year_of_fires_matches_the_oracle(expr: str, tz: str) -> None:
    """next_fire over a whole year gives exactly the oracle's instants."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    times = CronTimes(Cron(expr, tz))
    got, t = [], start
    while True:
        t = times.next_fire(t)
        if t > start + timedelta(days=365):
            break
        got.append(t)
    assert got == Oracle(expr, tz).year(start)
