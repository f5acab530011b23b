"""Datasets, pure: URIs, conditions, and the trigger engine's dataset consumers.

Every decision here runs on given times: no clock, no store.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator import DAG, Asset, AssetAll, AssetAny, AssetOrTimeSchedule, Dataset
from orchestrator.errors import DagDefinitionError
from orchestrator.operators import EmptyOperator
from triggers import (
    DatasetAll,
    DatasetAndTime,
    DatasetAny,
    DatasetCondition,
    DatasetOrTime,
    normalize_uri,
)
from triggers._dataset import DatasetEvent
from triggers._engine import CreateRun, DatasetUpdated, TimePassed, TriggerEngine
from triggers._timetable import timetable_for

T0 = datetime(2026, 3, 1, tzinfo=UTC)
_ids = itertools.count()


def event(uri: str, at: datetime = T0, **extra: object) -> DatasetEvent:
    return DatasetEvent(f"e{next(_ids)}", uri, at, extra)


def runs(firings: Sequence[object]) -> list[CreateRun]:
    assert all(isinstance(f, CreateRun) for f in firings)
    return [f for f in firings if isinstance(f, CreateRun)]


def update(engine: TriggerEngine, ev: DatasetEvent, now: datetime = T0) -> list[CreateRun]:
    return runs(engine.feed(DatasetUpdated(ev, now)))


def uris_of(run: CreateRun) -> list[str]:
    return [e.uri for e in run.consumes]


# -- URIs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_uri", "normal"),
    [
        ("s3://bucket/key", "s3://bucket/key"),
        ("S3://Bucket/key/", "s3://bucket/key"),
        ("s3://bucket/a/b//", "s3://bucket/a/b"),
        ("s3://bucket", "s3://bucket"),
        ("s3://bucket/", "s3://bucket"),
        (
            "postgres://Host:5432/db/schema/table?b=2&a=1",
            "postgres://host:5432/db/schema/table?a=1&b=2",
        ),
        ("file:///data/out.csv#part", "file:///data/out.csv"),
        ("orders", "orders"),
        ("x-custom://Thing/Path", "x-custom://thing/Path"),
    ],
)
def test_uris_are_normalised(given_uri: str, normal: str) -> None:
    """Scheme and host lower-cased, trailing slashes and fragments dropped, query sorted."""
    assert normalize_uri(given_uri) == normal
    assert Dataset(given_uri) == Dataset(normal)


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("", "empty"),
        ("s3://bucket/a key", "whitespace"),
        ("s3://bucket/\x00", "control"),
        ("s3://bücket/k", "ASCII"),
        ("s3://user:secret@bucket/k", "password"),
        ("orchestrator://x/y", "reserved"),
        ("s3:///key", "bucket"),
        ("s3://b/" + "k" * 3000, "3000"),
    ],
)
def test_a_bad_uri_is_named_with_its_dag(bad: str, says: str) -> None:
    """The error names the DAG and the URI, whether in the schedule or in a task's outlets."""
    with pytest.raises(DagDefinitionError, match=f"DAG 'consumer'.*{says}"):
        DAG("consumer", schedule=[Dataset("s3://b/good"), Dataset(bad)])
    with (
        pytest.raises(DagDefinitionError, match=f"DAG 'producer', task 'p': outlets.*{says}"),
        DAG("producer"),
    ):
        EmptyOperator(task_id="p", outlets=[Dataset(bad)])
    with pytest.raises(ValueError, match=says):
        normalize_uri(bad)


def test_the_error_quotes_the_uri() -> None:
    with pytest.raises(DagDefinitionError, match=r"'s3://bucket/a key'"):
        DAG("d", schedule=Dataset("s3://bucket/a key") | Dataset("s3://b/ok"))


def test_airflow_3_names_are_the_same_objects() -> None:
    """Asset, AssetAll, AssetAny and AssetOrTimeSchedule build what the Dataset names build."""
    a, b = Asset("s3://b/a"), Asset("s3://b/b")
    assert a == Dataset("s3://b/a")
    assert AssetAll(a, b) == DatasetAll((a, b)) == (a & b)
    assert AssetAny(a, b) == DatasetAny((a, b)) == (a | b)
    schedule = AssetOrTimeSchedule(timetable="0 0 * * *", assets=[a])
    assert isinstance(schedule, DatasetOrTime)
    dag = DAG("d", schedule=schedule, start_date=T0)
    assert dag.schedule.combine == "or"


def test_outlets_accept_one_dataset_and_drop_repeats() -> None:
    with DAG("p"):
        task = EmptyOperator(task_id="t", outlets=Dataset("s3://b/x"))
        twice = EmptyOperator(task_id="u", outlets=[Dataset("s3://b/x/"), Dataset("s3://b/x")])
    assert task.outlets == [Dataset("s3://b/x")]
    assert twice.outlets == [Dataset("s3://b/x")]


def test_nested_conditions_evaluate_at_any_depth() -> None:
    a, b, c, d = (Dataset(f"u{i}") for i in range(4))
    cond = ((a | b) & c) | (d & (a & (b | c)))
    assert cond.uris() == {"u0", "u1", "u2", "u3"}
    assert not cond.evaluate({"u0"})
    assert cond.evaluate({"u0", "u2"})
    assert cond.evaluate({"u3", "u0", "u1"})
    assert not cond.evaluate({"u3", "u1"})


# -- the engine: consumers ----------------------------------------------------------------


def test_one_dataset_consumer_fires_a_run_per_update_when_idle() -> None:
    """The run is dataset_triggered, consumes the event, and spans its timestamp."""
    engine = TriggerEngine()
    engine.set_datasets("c", Dataset("s3://b/k"))
    ev = event("s3://b/k", T0 - timedelta(seconds=5), rows=3)
    [run] = update(engine, ev, T0)
    assert (run.dag_id, run.run_type, run.consumes) == ("c", "dataset_triggered", (ev,))
    assert run.run.logical_date == T0
    assert (run.run.data_interval_start, run.run.data_interval_end) == (ev.timestamp, ev.timestamp)
    assert run.trigger_key == f"dataset:{ev.id}"
    assert update(engine, event("s3://b/other")) == []


def test_events_during_a_run_wait_and_the_next_run_takes_them_all() -> None:
    """batch: while a run is queued or running, events are pending; its end fires one run."""
    engine = TriggerEngine()
    engine.set_datasets("c", Dataset("a"))
    update(engine, event("a"))
    later = [event("a", T0 + timedelta(seconds=i)) for i in range(1, 4)]
    for ev in later:
        assert update(engine, ev, T0 + timedelta(seconds=5)) == []
    assert engine.pending_events("c") == later
    engine.release("c")
    [run] = runs(engine.feed(TimePassed(T0 + timedelta(seconds=10))))
    assert run.consumes == tuple(later)
    assert run.run.data_interval_start == later[0].timestamp
    assert run.run.data_interval_end == later[-1].timestamp
    assert engine.pending_events("c") == []


def test_each_mode_makes_one_run_per_event_in_order() -> None:
    engine = TriggerEngine()
    engine.set_datasets("c", Dataset("a"), each=True)
    first = event("a")
    assert [r.consumes for r in update(engine, first)] == [(first,)]
    rest = [event("a") for _ in range(3)]
    for ev in rest:
        update(engine, ev)
    seen = []
    for i in range(3):
        engine.release("c")
        [run] = runs(engine.feed(TimePassed(T0 + timedelta(seconds=i))))
        seen.append(run.consumes)
    assert seen == [(ev,) for ev in rest]
    engine.release("c")
    assert engine.feed(TimePassed(T0 + timedelta(seconds=9))) == []


def test_an_all_condition_waits_for_every_dataset() -> None:
    """[a, b]: a alone fires nothing; b then fires one run with both (and a's repeats)."""
    engine = TriggerEngine()
    engine.set_datasets("c", DatasetAll(Dataset("a"), Dataset("b")))
    a1, a2, b1 = event("a"), event("a"), event("b")
    assert update(engine, a1) == []
    assert update(engine, a2) == []
    [run] = update(engine, b1)
    assert run.consumes == (a1, a2, b1)


def test_each_mode_with_an_all_condition_takes_the_shortest_prefix() -> None:
    engine = TriggerEngine()
    engine.set_datasets("c", DatasetAll(Dataset("a"), Dataset("b")), each=True)
    a1, a2, b1, b2 = event("a"), event("a"), event("b"), event("b")
    for ev in (a1, a2):
        assert update(engine, ev) == []
    [run] = update(engine, b1)
    assert run.consumes == (a1, a2, b1)
    update(engine, b2)
    engine.release("c")
    assert engine.feed(TimePassed(T0)) == []  # b2 alone does not satisfy a & b
    assert engine.pending_events("c") == [b2]


def test_an_any_condition_fires_on_either() -> None:
    engine = TriggerEngine()
    engine.set_datasets("c", (Dataset("a") | Dataset("b")) & Dataset("z"))
    assert update(engine, event("b")) == []
    [run] = update(engine, event("z"))
    assert uris_of(run) == ["b", "z"]


def test_a_paused_consumer_keeps_its_events_and_runs_once_on_unpause() -> None:
    engine = TriggerEngine()
    engine.set_datasets("c", Dataset("a"), paused=True)
    events = [event("a") for _ in range(5)]
    for ev in events:
        assert update(engine, ev) == []
    engine.set_dataset_paused("c", False)
    [run] = runs(engine.feed(TimePassed(T0)))
    assert run.consumes == tuple(events)


def test_an_event_given_twice_is_counted_once() -> None:
    """The store, the scheduler and reconciling may all tell of one event."""
    engine = TriggerEngine()
    engine.set_datasets("c", Dataset("a"))
    ev = event("a")
    assert len(update(engine, ev)) == 1
    assert update(engine, ev) == []
    engine.set_datasets("c", Dataset("a"), pending=[ev])  # found again in the store
    engine.release("c")
    assert engine.feed(TimePassed(T0)) == []
    assert engine.pending_events("c") == []


def test_an_update_found_in_the_store_goes_to_the_consumers_it_was_stored_for() -> None:
    engine = TriggerEngine()
    engine.set_datasets("c1", Dataset("a"))
    engine.set_datasets("c2", Dataset("a"))
    fired = runs(engine.feed(DatasetUpdated(event("a"), T0, consumers=frozenset({"c2"}))))
    assert [r.dag_id for r in fired] == ["c2"]


def test_one_update_fans_out_to_every_consumer_in_one_feed() -> None:
    engine = TriggerEngine()
    for i in range(500):
        engine.set_datasets(f"c{i:03}", Dataset("a"))
    fired = update(engine, event("a"))
    assert [r.dag_id for r in fired] == [f"c{i:03}" for i in range(500)]


def test_a_redefined_consumer_keeps_what_its_condition_still_names() -> None:
    engine = TriggerEngine()
    both = DatasetAll(Dataset("a"), Dataset("b"), Dataset("x"))
    engine.set_datasets("c", both)
    a, b = event("a"), event("b")
    update(engine, a)
    update(engine, b)
    engine.set_datasets("c", DatasetAll(Dataset("a"), Dataset("b"), Dataset("x")))
    assert engine.pending_events("c") == [a, b]  # the file changed, the condition did not
    engine.set_datasets("c", DatasetAll(Dataset("a"), Dataset("y")))
    assert engine.pending_events("c") == [a]
    assert engine.consumers_of("b") == frozenset()
    [run] = update(engine, event("y"))
    assert uris_of(run) == ["a", "y"]


def test_logical_dates_of_one_consumer_always_increase() -> None:
    engine = TriggerEngine()
    engine.set_datasets("c", Dataset("a"))
    [one] = update(engine, event("a"), T0)
    engine.release("c")
    [two] = update(engine, event("a"), T0)  # the same instant
    assert two.run.logical_date > one.run.logical_date


def both_parts(schedule: DatasetAndTime | DatasetOrTime) -> TriggerEngine:
    """An engine with DAG "c"'s time part and dataset part, as the daemon registers them."""
    dag = DAG("c", schedule=schedule, start_date=T0)
    engine = TriggerEngine()
    timetable = timetable_for(dag.schedule, dag.start_date, None, False)
    assert timetable is not None
    assert dag.schedule.datasets is not None
    engine.set_timetable("c", timetable, last=None, now=T0)
    engine.set_datasets("c", dag.schedule.datasets, timed=dag.schedule.combine == "and")
    return engine


def test_dataset_and_time_runs_at_the_instant_only_after_an_update() -> None:
    """No update by 01:00: no run; an update at 01:30 waits for 02:00, which consumes it."""
    engine = both_parts(DatasetAndTime(cron="@hourly", datasets=[Dataset("a")]))
    assert runs(engine.feed(TimePassed(T0 + timedelta(hours=1)))) == []
    ev = event("a", T0 + timedelta(minutes=90))
    assert update(engine, ev, T0 + timedelta(minutes=90)) == []
    [run] = runs(engine.feed(TimePassed(T0 + timedelta(hours=2))))
    assert (run.run_type, run.consumes) == ("scheduled", (ev,))
    assert run.run.data_interval_end == T0 + timedelta(hours=2)
    assert runs(engine.feed(TimePassed(T0 + timedelta(hours=3)))) == []


def test_dataset_or_time_fires_on_either_and_time_runs_keep_their_intervals() -> None:
    engine = both_parts(DatasetOrTime(cron="@hourly", datasets=[Dataset("a")]))
    [by_data] = update(engine, event("a", T0 + timedelta(minutes=10)), T0 + timedelta(minutes=10))
    assert by_data.run_type == "dataset_triggered"
    [by_time] = runs(engine.feed(TimePassed(T0 + timedelta(hours=1))))
    assert (by_time.run_type, by_time.consumes) == ("scheduled", ())
    assert by_time.run.data_interval_start == T0


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.sampled_from(["a", "b", "release", "pause", "unpause"]), max_size=40),
    each=st.booleans(),
)
def test_every_event_is_consumed_at_most_once_and_none_is_lost(
    steps: list[str], each: bool
) -> None:
    """Over random updates, run ends and pauses, a | b consumer's runs take each event once,
    in order; whatever is not taken is still pending."""
    engine = TriggerEngine()
    engine.set_datasets("c", Dataset("a") | Dataset("b"), each=each)
    given_events: list[DatasetEvent] = []
    taken: list[DatasetEvent] = []
    for step in steps:
        if step in ("a", "b"):
            ev = event(step)
            given_events.append(ev)
            fired = update(engine, ev)
        elif step == "release":
            engine.release("c")
            fired = runs(engine.feed(TimePassed(T0)))
        else:
            engine.set_dataset_paused("c", step == "pause")
            fired = runs(engine.feed(TimePassed(T0)))
        assert len(fired) <= 1
        for run in fired:
            assert run.consumes
            if each:
                assert len(run.consumes) == 1
            taken += run.consumes
    assert taken + engine.pending_events("c") == given_events


class Reference:
    """The README's semantics, written as plainly as possible, for one consumer."""

    def __init__(self, condition: DatasetCondition, each: bool) -> None:
        self.condition = condition
        self.each = each
        self.pending: list[DatasetEvent] = []
        self.busy = False
        self.paused = False

    def fire(self) -> list[tuple[DatasetEvent, ...]]:
        if self.busy or self.paused:
            return []
        for end in range(1, len(self.pending) + 1) if self.each else [len(self.pending)]:
            prefix = self.pending[:end]
            if prefix and self.condition.evaluate({e.uri for e in prefix}):
                self.pending = self.pending[end:]
                self.busy = True
                return [tuple(prefix)]
        return []


CONDITIONS = [
    Dataset("a") & Dataset("b"),
    (Dataset("a") | Dataset("b")) & Dataset("c"),
    Dataset("a") | (Dataset("b") & Dataset("c")),
    DatasetAll(Dataset("a"), Dataset("b"), Dataset("c")),
]


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.sampled_from(["a", "b", "c", "z", "release", "pause", "unpause", "again"]),
        max_size=50,
    ),
    each=st.booleans(),
    which=st.integers(0, len(CONDITIONS) - 1),
)
def test_the_engine_fires_what_the_plain_semantics_fire(
    steps: list[str], each: bool, which: int
) -> None:
    """Random updates (some told twice), run ends and pauses: the engine's runs and what it
    keeps pending are the reference's, for nested & and | conditions in both modes."""
    condition = CONDITIONS[which]
    engine = TriggerEngine()
    engine.set_datasets("c", condition, each=each)
    reference = Reference(condition, each)
    last: DatasetEvent | None = None
    for step in steps:
        if step in ("a", "b", "c", "z"):
            last = event(step)
            fired = update(engine, last)
            if step in condition.uris():
                reference.pending.append(last)
        elif step == "again":  # an event told again (by the store, by reconciling)
            fired = update(engine, last) if last is not None else []
        else:
            if step == "release":
                engine.release("c")
                reference.busy = False
            else:
                engine.set_dataset_paused("c", step == "pause")
                reference.paused = step == "pause"
            fired = runs(engine.feed(TimePassed(T0)))
        expected = reference.fire()
        assert [r.consumes for r in fired] == expected
    assert engine.pending_events("c") == reference.pending
