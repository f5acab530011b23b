"""Run intake: the rules (ids, types, intervals, trigger keys) and the one shell every path uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from orchestrator import DAG
from orchestrator._clock import ManualClock, SystemClock
from orchestrator._settings import Settings
from orchestrator.cli._dags import _trigger_in_store
from orchestrator.core import RunRecord, RunState
from orchestrator.core._intake import (
    check_conf,
    fired_run,
    interval_run,
    manual_run,
    run_id_for,
)
from orchestrator.errors import Conflict, InvalidRequest
from orchestrator.operators import EmptyOperator, TriggerDagRunOperator
from orchestrator.runtime._drive import run_dag_once
from orchestrator.runtime._intake import RunIntake
from orchestrator.store import open_store
from triggers._engine import CreateRun
from triggers._timetable import RunInfo

NOW = datetime(2026, 5, 4, 10, 30, tzinfo=UTC)
DAY = timedelta(days=1)


def daily() -> DAG:
    with DAG("daily", schedule="@daily", start_date=datetime(2026, 1, 1)) as dag:
        EmptyOperator(task_id="a")
    return dag


# -- the rules -------------------------------------------------------------------------------


def test_a_run_id_is_its_type_and_logical_date() -> None:
    """Rule 1: {run_type}__{logical date in ISO 8601 UTC}."""
    assert run_id_for("scheduled", NOW) == "scheduled__2026-05-04T10:30:00.000000+00:00"


@pytest.mark.parametrize(
    "given",
    ["manual__2026-05-04T10:30:00.000000+00:00", "r1", "backfill.v2~a+b", "R" * 200],
)
def test_run_ids_of_the_documented_pattern_are_taken(given: str) -> None:
    """Rule 4: Airflow's characters, first a letter or digit, at most 200."""
    assert manual_run("d", None, NOW, run_id=given).run_id == given


@pytest.mark.parametrize(
    "given", ["", " ", "a\x00b", "a\ud800b", "R" * 201, "x; touch /tmp/I #", "../x", ".", "a/b"]
)
def test_run_ids_outside_the_pattern_are_refused_naming_the_field(given: str) -> None:
    with pytest.raises(InvalidRequest, match="run_id: must be 1 to 200 characters"):
        manual_run("d", None, NOW, run_id=given)


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"x": float("nan")}, "conf.x: nan is not a JSON number"),
        ({"x": [1, float("inf")]}, r"conf.x\[1\]: inf is not"),
        ({"x": 10**1_001}, "conf.x: integer longer than 1,000 digits"),
        ({"x": {1: 2}}, "conf.x: key 1 is not a string"),
        ({"x": b"raw"}, "conf.x: bytes is not a JSON value"),
        ({"x": "a\udfff"}, "conf.x: string holds a lone surrogate"),
    ],
)
def test_a_conf_that_is_not_standard_json_is_refused(conf: dict[str, Any], message: str) -> None:
    """Rule 4: nothing is stored that cannot be served back as JSON."""
    with pytest.raises(InvalidRequest, match=message):
        manual_run("d", None, NOW, conf=conf)


def test_a_conf_nested_past_the_bound_is_refused_without_recursion() -> None:
    conf: dict[str, Any] = {}
    inner = conf
    for _ in range(100_000):
        inner["a"] = {}
        inner = inner["a"]
    with pytest.raises(InvalidRequest, match="nested deeper than 64 levels"):
        check_conf(conf)
    assert check_conf({"a": [{"b": None, "c": True, "d": 1.5, "e": 10**999}]})


@pytest.mark.parametrize(
    "logical", [datetime(1899, 12, 31, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)]
)
def test_a_logical_date_outside_the_range_is_refused(logical: datetime) -> None:
    with pytest.raises(InvalidRequest, match="logical_date: must lie between 1900-01-01"):
        manual_run("d", None, NOW, logical_date=logical)


async def test_task_code_asking_for_a_bad_run_id_gets_the_error(db_url: str) -> None:
    """Every path to the intake checks: TriggerDagRunOperator's run id too."""
    async with open_store(db_url) as store:
        intake = RunIntake(store, ManualClock(NOW))
        with pytest.raises(InvalidRequest, match="run_id"):
            await intake.request_run("d", run_id="a b")
        assert await store.list_runs() == []


def test_a_manual_run_of_a_cron_dag_covers_the_last_complete_interval() -> None:
    """Rule 2: Airflow's inference; the run is queued, manual, with its conf."""
    run = manual_run("daily", daily().timetable, NOW, conf={"x": 1})
    assert (run.run_type, run.state, run.conf) == ("manual", RunState.QUEUED, {"x": 1})
    assert run.run_id == "manual__2026-05-04T10:30:00.000000+00:00"
    assert (run.data_interval_start, run.data_interval_end) == (
        datetime(2026, 5, 3, tzinfo=UTC),
        datetime(2026, 5, 4, tzinfo=UTC),
    )
    assert run.trigger_key is None


def test_a_manual_run_without_a_time_schedule_has_an_empty_interval() -> None:
    """Rule 2: no timetable (or an unknown DAG): the interval is the logical date itself."""
    logical = NOW - DAY
    run = manual_run("any", None, NOW, logical_date=logical, run_id="mine")
    assert run.run_id == "mine"
    assert (run.logical_date, run.data_interval_start, run.data_interval_end) == (
        logical,
        logical,
        logical,
    )
    assert run.queued_at == NOW


def test_a_fired_run_keeps_the_firings_times_key_and_payload() -> None:
    """Rule 3: the engine's interval, its trigger key, and its payload as conf."""
    info = RunInfo(NOW - DAY, NOW - DAY, NOW)
    run = fired_run(CreateRun("d", "event_triggered", info, "evt-1", {"event": {"id": 1}}), NOW)
    assert run.run_id == run_id_for("event_triggered", NOW - DAY)
    assert (run.trigger_key, run.conf) == ("evt-1", {"event": {"id": 1}})
    assert run == interval_run(
        "d", "event_triggered", info, NOW, trigger_key="evt-1", conf={"event": {"id": 1}}
    )


def test_a_firing_of_an_unknown_run_type_is_refused() -> None:
    """Only SPEC's run types are made."""
    with pytest.raises(ValueError, match="unknown run type 'weird'"):
        fired_run(CreateRun("d", "weird", RunInfo(NOW, NOW, NOW)), NOW)


# -- the shell, on both stores ---------------------------------------------------------------


async def test_concurrent_requests_for_one_run_id_make_one_run(db_url: str) -> None:
    """Twenty requests for the same run id at once: one run, nineteen Conflicts."""
    created: list[RunRecord] = []
    outcomes: list[str] = []
    async with open_store(db_url) as store:
        intake = RunIntake(store, ManualClock(NOW), on_created=created.append)

        async def ask() -> None:
            try:
                await intake.manual("d", run_id="same")
                outcomes.append("created")
            except Conflict as exc:
                outcomes.append(str(exc))

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(ask)
        runs = await store.list_runs()
    assert outcomes.count("created") == 1
    assert outcomes.count("DAG 'd' already has a run 'same'") == 19
    assert [r.run_id for r in runs] == ["same"]
    assert len(created) == 1


async def test_a_repeated_firing_makes_no_second_run_and_raises_nothing(db_url: str) -> None:
    """The same firing twice, and two firings sharing a trigger key: one run each key."""
    info = RunInfo(NOW - DAY, NOW - DAY, NOW)
    later = RunInfo(NOW, NOW, NOW + DAY)
    async with open_store(db_url) as store:
        intake = RunIntake(store, ManualClock(NOW))
        first = await intake.fired([CreateRun("d", "scheduled", info)])
        again = await intake.fired(
            [
                CreateRun("d", "scheduled", info),
                CreateRun("d", "event_triggered", info, "evt"),
                CreateRun("d", "event_triggered", later, "evt"),
            ]
        )
        stored = sorted(r.run_id for r in await store.list_runs())
    assert [r.run_type for r in first] == ["scheduled"]
    assert [(r.run_type, r.trigger_key) for r in again] == [("event_triggered", "evt")]
    assert stored == sorted([run_id_for("scheduled", NOW - DAY), again[0].run_id])


async def test_the_intake_marks_runs_with_their_driver(db_url: str) -> None:
    """Runs made for a CLI process carry it as their driver; the daemon's carry none."""
    async with open_store(db_url) as store:
        cli = RunIntake(store, ManualClock(NOW), driver="cli:host:1")
        daemon = RunIntake(store, ManualClock(NOW))
        await cli.manual("d", run_id="by-cli")
        await daemon.manual("d", run_id="by-daemon")
        drivers = {r.run_id: r.driver for r in await store.list_runs()}
    assert drivers == {"by-cli": "cli:host:1", "by-daemon": None}


async def test_a_manual_run_takes_its_interval_from_the_known_dag(db_url: str) -> None:
    """The DAG lookup gives the timetable; the same request gives the same interval."""
    dag = daily()
    async with open_store(db_url) as store:
        intake = RunIntake(store, ManualClock(NOW), dags={"daily": dag}.get)
        run = await intake.manual("daily", logical_date=NOW)
    expected = manual_run("daily", dag.timetable, NOW, logical_date=NOW)
    assert (run.data_interval_start, run.data_interval_end) == (
        expected.data_interval_start,
        expected.data_interval_end,
    )


async def test_a_backfill_run_is_claimed_unless_it_succeeded(db_url: str) -> None:
    """A stored backfill run is taken over (driver set); a new one is created."""
    dag = daily()
    info = RunInfo(NOW - DAY, NOW - DAY, NOW)
    async with open_store(db_url) as store:
        intake = RunIntake(store, ManualClock(NOW), driver="cli:me")
        made = await intake.backfill(dag, info)
        made.state = RunState.FAILED
        made.driver = None
        await store.write([store.run_statement(made)])
        claimed = await intake.backfill(dag, info)
    assert made.run_id == claimed.run_id == run_id_for("backfill", NOW - DAY)
    assert (claimed.state, claimed.driver) == (RunState.FAILED, "cli:me")


def test_the_same_manual_run_gets_the_same_interval_whichever_way(settings: Settings) -> None:
    """Through TriggerDagRunOperator (in `dags test`), the CLI with no daemon, or the run
    intake the API calls: one logical date, one data interval, the schedule's."""
    child = daily()
    with DAG("parent") as parent:
        TriggerDagRunOperator(
            task_id="trigger",
            trigger_dag_id="daily",
            trigger_run_id="by_operator",
            logical_date=NOW,
        )
    live = anyio.run(lambda: run_dag_once(settings, parent, dags={"daily": child}))
    assert live.record.state == RunState.SUCCESS
    _trigger_in_store(settings, child, {}, "by_cli", NOW)

    async def by_api_and_read() -> dict[str, tuple[datetime | None, datetime | None]]:
        async with open_store(settings.db_url) as store:
            intake = RunIntake(store, SystemClock(), dags={"daily": child}.get)
            await intake.manual("daily", run_id="by_api", logical_date=NOW)
            return {
                r.run_id: (r.data_interval_start, r.data_interval_end)
                for r in await store.list_runs(dag_id="daily")
            }

    intervals = anyio.run(by_api_and_read)
    expected = (datetime(2026, 5, 3, tzinfo=UTC), datetime(2026, 5, 4, tzinfo=UTC))
    assert intervals == dict.fromkeys(["by_operator", "by_cli", "by_api"], expected)
