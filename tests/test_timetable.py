"""Logical dates and data intervals with Airflow 2's semantics, on an injected ``now``."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from triggers import Cron, parse_schedule
from triggers._timetable import RunInfo, Timetable, manual_interval, timetable_for


def d(day: int, hour: int = 0, minute: int = 0, month: int = 1) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def table(
    schedule: object,
    start: datetime,
    *,
    catchup: bool = True,
    end: datetime | None = None,
) -> Timetable:
    timetable = timetable_for(parse_schedule(schedule), start, end, catchup)
    assert timetable is not None
    return timetable


def walk(timetable: Timetable, now: datetime, count: int) -> list[RunInfo]:
    runs: list[RunInfo] = []
    last = None
    for _ in range(count):
        last = timetable.next_run(last, now)
        if last is None:
            break
        runs.append(last)
    return runs


def test_daily_cron_first_interval_starts_at_start_date_and_is_due_at_its_end() -> None:
    """``@daily`` from Jan 1: logical date Jan 1, interval [Jan 1, Jan 2), due Jan 2."""
    run = table("@daily", d(1)).next_run(None, d(1))
    assert run == RunInfo(d(1), d(1), d(2))
    assert run.due == d(2)


def test_start_date_off_the_schedule_aligns_to_the_next_fire() -> None:
    """A start at 10:00 for a midnight cron: the first interval starts the next midnight."""
    run = table("0 0 * * *", d(1, 10)).next_run(None, d(1, 10))
    assert run == RunInfo(d(2), d(2), d(3))


def test_catchup_walks_every_missed_interval_in_order() -> None:
    """catchup=True: one run per interval since start_date, oldest first, contiguous."""
    runs = walk(table("@daily", d(1)), now=d(5, 12), count=4)
    assert [r.logical_date for r in runs] == [d(1), d(2), d(3), d(4)]
    assert all(a.data_interval_end == b.data_interval_start for a, b in itertools.pairwise(runs))


def test_no_catchup_starts_from_the_latest_ended_interval() -> None:
    """catchup=False: the first run is the latest interval that has ended by now."""
    run = table("@daily", d(1), catchup=False).next_run(None, d(5, 12))
    assert run == RunInfo(d(4), d(4), d(5))


def test_no_catchup_on_an_interval_boundary_takes_the_interval_ending_now() -> None:
    """At exactly midnight, the interval that ends now is the latest one (due at once)."""
    run = table("@daily", d(1), catchup=False).next_run(None, d(5))
    assert run == RunInfo(d(4), d(4), d(5))


def test_no_catchup_after_downtime_skips_to_the_latest_interval() -> None:
    """With a last run long ago, catchup=False jumps past the missed intervals."""
    last = RunInfo(d(1), d(1), d(2))
    run = table("@daily", d(1), catchup=False).next_run(last, d(9, 3))
    assert run == RunInfo(d(8), d(8), d(9))


def test_catchup_after_downtime_resumes_where_it_stopped() -> None:
    """With catchup=True the next run follows the last one whatever the time."""
    last = RunInfo(d(1), d(1), d(2))
    assert table("@daily", d(1)).next_run(last, d(9, 3)) == RunInfo(d(2), d(2), d(3))


def test_future_start_date_is_the_first_interval_even_without_catchup() -> None:
    """A start_date in the future is not skipped by catchup=False."""
    run = table("@hourly", d(10), catchup=False).next_run(None, d(1))
    assert run == RunInfo(d(10), d(10), d(10, 1))


def test_no_interval_starts_after_end_date() -> None:
    """end_date bounds the last interval's start."""
    runs = walk(table("@daily", d(1), end=d(3)), now=d(20), count=10)
    assert [r.logical_date for r in runs] == [d(1), d(2), d(3)]


def test_timedelta_intervals_chain_from_start_date() -> None:
    """``timedelta(hours=6)``: intervals of six hours from start_date, unaligned."""
    runs = walk(table(timedelta(hours=6), d(1, 1)), now=d(3), count=3)
    assert [(r.data_interval_start, r.data_interval_end) for r in runs] == [
        (d(1, 1), d(1, 7)),
        (d(1, 7), d(1, 13)),
        (d(1, 13), d(1, 19)),
    ]


def test_timedelta_without_catchup_rounds_now_down_then_steps_back() -> None:
    """Airflow's rule for timedelta and catchup=False: [floor(now) - delta, floor(now))."""
    run = table(timedelta(hours=6), d(1, 1), catchup=False).next_run(None, d(5, 8, 30))
    assert run == RunInfo(d(5, 0), d(5, 0), d(5, 6))


def test_once_runs_once_at_start_date() -> None:
    """``@once``: one run, logical date = start_date, due at start_date; then nothing."""
    timetable = table("@once", d(3))
    first = timetable.next_run(None, d(1))
    assert first == RunInfo(d(3), d(3), d(3))
    assert timetable.next_run(first, d(9)) is None


def test_cron_in_a_timezone_cuts_local_days() -> None:
    """``Cron("0 0 * * *", "Europe/Paris")``: intervals run from Paris midnight to midnight."""
    run = table(Cron("0 0 * * *", "Europe/Paris"), d(1)).next_run(None, d(1))
    assert run == RunInfo(d(1, 23), d(1, 23), d(2, 23))


def test_daily_interval_across_spring_forward_is_23_hours() -> None:
    """Paris midnight to midnight on the DST day is 23 real hours, with no gap or overlap."""
    timetable = table(Cron("@daily", "Europe/Paris"), d(27, 23, month=3))  # Mar 28, 00:00 CET
    runs = walk(timetable, now=d(1, month=4), count=3)
    lengths = [r.data_interval_end - r.data_interval_start for r in runs]
    assert lengths == [timedelta(hours=24), timedelta(hours=23), timedelta(hours=24)]


def test_manual_run_of_a_cron_dag_gets_the_last_complete_interval() -> None:
    """Triggered at 01:00 on the 25th, a daily DAG's run covers the 24th."""
    timetable = table("@daily", d(1))
    assert manual_interval(timetable, d(25, 1)) == (d(24), d(25))


def test_manual_run_without_a_time_schedule_has_an_empty_interval() -> None:
    """schedule=None: the data interval starts and ends at the trigger time."""
    assert manual_interval(None, d(25, 1)) == (d(25, 1), d(25, 1))


# -- CronTriggerTimetable: Airflow 3's point-in-time cron --------------------------------


def test_cron_trigger_runs_at_each_instant_with_no_data_interval() -> None:
    """A run per instant: logical date = the instant, due then, an empty interval."""
    from triggers import CronTriggerTimetable

    runs = walk(table(CronTriggerTimetable("0 6 * * *"), d(1, 3)), d(9), 3)
    assert [(r.logical_date, r.data_interval_start, r.due) for r in runs] == [
        (d(1, 6), d(1, 6), d(1, 6)),
        (d(2, 6), d(2, 6), d(2, 6)),
        (d(3, 6), d(3, 6), d(3, 6)),
    ]
    hourly = table(CronTriggerTimetable("@hourly", interval=timedelta(hours=1)), d(1))
    first = hourly.next_run(None, d(5))
    assert first == RunInfo(d(1), d(1) - timedelta(hours=1), d(1))
    assert manual_interval(hourly, d(2, 7, 30)) == (d(2, 6, 30), d(2, 7, 30))


def test_cron_trigger_without_catchup_starts_next_unless_the_last_instant_is_recent() -> None:
    """catchup=False: the next instant, or the latest past one within run_immediately (by
    default a tenth of the gap, at least 5 minutes), as Airflow's; after a stall the
    latest instant, not every missed one."""
    from triggers import CronTriggerTimetable

    daily = CronTriggerTimetable("0 6 * * *")

    def first(spec: CronTriggerTimetable, now: datetime, last: RunInfo | None = None) -> datetime:
        run = table(spec, d(1), catchup=False).next_run(last, now)
        assert run is not None
        return run.due

    assert first(daily, d(5, 9)) == d(6, 6)
    assert first(daily, d(5, 7)) == d(5, 6)  # within a tenth of the day's gap
    assert first(CronTriggerTimetable("0 6 * * *", run_immediately=True), d(5, 23)) == d(5, 6)
    window = CronTriggerTimetable("0 6 * * *", run_immediately=timedelta(minutes=10))
    assert first(window, d(5, 6, 20)) == d(6, 6)
    last = RunInfo(d(2, 6), d(2, 6), d(2, 6))
    assert first(daily, d(3, 5), last) == d(3, 6)
    assert first(daily, d(5, 6, 0), last) == d(5, 6)  # after a stall: not the 3rd nor the 4th


def test_cron_trigger_schedules_are_checked() -> None:
    import pytest

    from triggers import CronTriggerTimetable

    with pytest.raises(ValueError, match="invalid cron expression"):
        CronTriggerTimetable("not cron")
    with pytest.raises(ValueError, match="interval must be a timedelta"):
        CronTriggerTimetable("@daily", interval=5)  # type: ignore[arg-type]
    assert parse_schedule(CronTriggerTimetable("@daily")).text == "CronTriggerTimetable(@daily)"
