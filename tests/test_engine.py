"""The trigger engine's time part: one heap, firings on an injected clock, parking."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_crontimes import Oracle
from triggers import Cron, parse_schedule
from triggers._engine import CreateRun, TimePassed, TriggerEngine
from triggers._timetable import RunInfo, Timetable, timetable_for

START = datetime(2026, 1, 1, tzinfo=UTC)


def due(engine: TriggerEngine, now: datetime) -> list[CreateRun]:
    """The runs the engine creates when the clock reaches ``now`` (time fires nothing else)."""
    firings = engine.feed(TimePassed(now))
    assert all(isinstance(f, CreateRun) for f in firings)
    return [f for f in firings if isinstance(f, CreateRun)]


def table(schedule: object, *, start: datetime = START, catchup: bool = True) -> Timetable:
    timetable = timetable_for(parse_schedule(schedule), start, None, catchup)
    assert timetable is not None
    return timetable


def test_nothing_fires_before_the_first_due_instant() -> None:
    """An hourly DAG registered at 00:10 fires nothing until 01:00, then its 00:00 interval."""
    engine = TriggerEngine()
    engine.set_timetable("a", table("@hourly"), last=None, now=START + timedelta(minutes=10))
    assert due(engine, START + timedelta(minutes=59)) == []
    assert engine.next_deadline() == START + timedelta(hours=1)
    [firing] = due(engine, START + timedelta(hours=1))
    assert (firing.dag_id, firing.run_type) == ("a", "scheduled")
    assert firing.run.logical_date == START


def test_the_deadline_is_the_earliest_over_all_dags() -> None:
    """Several DAGs share one heap; next_deadline is the soonest due instant."""
    engine = TriggerEngine()
    engine.set_timetable("daily", table("@daily"), last=None, now=START)
    engine.set_timetable("hourly", table("@hourly"), last=None, now=START)
    assert engine.next_deadline() == START + timedelta(hours=1)


def test_removed_dag_never_fires() -> None:
    """remove() leaves a stale heap entry that is dropped, not fired."""
    engine = TriggerEngine()
    engine.set_timetable("a", table("@hourly"), last=None, now=START)
    engine.remove("a")
    assert engine.next_deadline() is None
    assert due(engine, START + timedelta(days=1)) == []


def test_replacing_a_timetable_keeps_one_entry_per_dag() -> None:
    """Registering a DAG again (file edited) replaces its schedule; the old entry goes stale."""
    engine = TriggerEngine()
    engine.set_timetable("a", table("@hourly"), last=None, now=START)
    engine.set_timetable("a", table("@daily"), last=None, now=START)
    assert [f.run.due for f in due(engine, START + timedelta(days=1))] == [
        START + timedelta(days=1)
    ]


def test_catchup_backlog_is_released_as_room_opens() -> None:
    """With room for 2 runs, a 5-interval backlog fires 2, then more after set_free."""
    engine = TriggerEngine()
    now = START + timedelta(days=5, hours=1)
    engine.set_timetable("a", table("@daily"), last=None, now=now, free=2)
    first = due(engine, now)
    assert [f.run.logical_date.day for f in first] == [1, 2]
    assert due(engine, now) == []
    engine.set_free("a", 3)
    assert [f.run.logical_date.day for f in due(engine, now)] == [3, 4, 5]


def test_rebuilt_from_the_last_stored_run_it_continues_without_repeats() -> None:
    """Restarted with last = the stored latest run, catch-up resumes after it."""
    engine = TriggerEngine()
    last = RunInfo(START, START, START + timedelta(days=1))
    now = START + timedelta(days=3, hours=1)
    engine.set_timetable("a", table("@daily"), last=last, now=now, free=10)
    assert [f.run.logical_date.day for f in due(engine, now)] == [2, 3]


def test_no_catchup_after_a_stall_fires_only_the_latest_interval() -> None:
    """If the loop was stalled past several instants, catchup=False fires one run, the latest."""
    engine = TriggerEngine()
    engine.set_timetable("a", table("@hourly", catchup=False), last=None, now=START, free=99)
    late = START + timedelta(hours=5, minutes=3)
    [firing] = due(engine, late)
    assert firing.run.data_interval_end == START + timedelta(hours=5)


# -- a year on the injected clock, against the oracle -------------------------------------------

YEAR_SCHEDULES: dict[str, object] = {
    "paris_0230": Cron("30 2 * * *", "Europe/Paris"),
    "ny_hourly": Cron("30 * * * *", "America/New_York"),
    "paris_6h": Cron("0 */6 * * *", "Europe/Paris"),
    "ny_weekly": Cron("15 1 * * 0", "America/New_York"),
    "utc_monthly": "@monthly",
    "every_5h": timedelta(hours=5),
}


def expected_dues(schedule: object, end: datetime) -> list[datetime]:
    if isinstance(schedule, timedelta):
        count = (end - START) // schedule
        return [START + schedule * k for k in range(1, count + 1)]
    cron = schedule if isinstance(schedule, Cron) else Cron(str(schedule))
    oracle = Oracle(cron.cron, cron.timezone)
    fires = oracle.year(START)
    # The first interval starts at the first fire at or after START and is due at the next.
    return fires if oracle.fires_at(START) else fires[1:]


def simulate(engine: TriggerEngine, until: datetime, max_active: int) -> dict[str, list[RunInfo]]:
    """Advance the clock deadline by deadline; each run ends at once, freeing its slot."""
    fired: dict[str, list[RunInfo]] = {}
    while (deadline := engine.next_deadline()) is not None and deadline <= until:
        for firing in due(engine, deadline):
            fired.setdefault(firing.dag_id, []).append(firing.run)
            engine.set_free(firing.dag_id, max_active)
    return fired


@settings(max_examples=3)
@given(max_active=st.integers(min_value=1, max_value=3))
def test_a_year_of_several_schedules_fires_exactly_the_oracle(max_active: int) -> None:
    """A simulated year: every DAG fires each interval once, in order, contiguous, on time."""
    started = time.perf_counter()
    engine = TriggerEngine()
    for key, schedule in YEAR_SCHEDULES.items():
        engine.set_timetable(key, table(schedule), last=None, now=START, free=max_active)
    end = START + timedelta(days=365)
    fired = simulate(engine, end, max_active)
    for key, schedule in YEAR_SCHEDULES.items():
        runs = fired[key]
        assert [r.due for r in runs] == expected_dues(schedule, end), key
        for a, b in itertools.pairwise(runs):
            assert a.data_interval_end == b.data_interval_start == b.logical_date
    assert time.perf_counter() - started < 5  # generous: it takes well under a second


@pytest.mark.parametrize("tz", ["Europe/Paris", "America/New_York"])
def test_daily_dag_through_a_dst_year_has_one_run_per_local_day(tz: str) -> None:
    """365 local days, 365 runs: no day skipped or doubled by either DST change."""
    engine = TriggerEngine()
    engine.set_timetable("a", table(Cron("0 3 * * *", tz)), last=None, now=START)
    fired = simulate(engine, START + timedelta(days=365, hours=12), 1)
    from zoneinfo import ZoneInfo

    days = [r.logical_date.astimezone(ZoneInfo(tz)).date() for r in fired["a"]]
    assert len(days) == len(set(days)) == 365
    assert all(r.logical_date.astimezone(ZoneInfo(tz)).hour == 3 for r in fired["a"])


def test_a_cron_trigger_schedule_fires_at_each_instant_even_when_late() -> None:
    """CronTriggerTimetable through the engine: due at the instant, fired when the clock
    passes it (a little late is still that instant's run), one run per instant."""
    from triggers import CronTriggerTimetable

    engine = TriggerEngine()
    timetable = table(CronTriggerTimetable("@hourly"), catchup=False)
    engine.set_timetable("a", timetable, last=None, now=START + timedelta(minutes=50), free=99)
    assert due(engine, START + timedelta(minutes=59)) == []
    [firing] = due(engine, START + timedelta(hours=1, seconds=2))
    assert firing.run.logical_date == START + timedelta(hours=1)
    assert firing.run.data_interval_start == firing.run.logical_date
    [second] = due(engine, START + timedelta(hours=2, milliseconds=5))
    assert second.run.logical_date == START + timedelta(hours=2)
