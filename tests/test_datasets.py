"""Datasets with a store: events, deliveries and consumption on both backends; the run
driver's events; and the daemon end to end (a real subprocess, killed for real)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator import DAG, Dataset
from orchestrator._clock import ManualClock
from orchestrator.core import (
    DatasetEventRecord,
    RunDriver,
    RunRecord,
    RunState,
    Start,
    TryEnded,
    TryOutcome,
    TryStarted,
)
from orchestrator.core._steps import Clear, Queued
from orchestrator.daemon._datasets import DatasetFeed
from orchestrator.operators import EmptyOperator
from orchestrator.store import MIGRATIONS, DatasetRefs, open_store
from orchestrator.store._rows import consumed_statement
from tests.daemon_proc import DaemonProc
from tests.helpers import run_cli
from triggers._dataset import DatasetEvent
from triggers._engine import CreateRun, TriggerEngine
from triggers._s3events import s3_object_created

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DagFile = Callable[[str, str], Path]
Daemon = Callable[..., DaemonProc]


def ev(event_id: str, uri: str, minutes: int = 0, **extra: Any) -> DatasetEvent:
    return DatasetEvent(event_id, uri, T0 + timedelta(minutes=minutes), extra)


# -- the store ------------------------------------------------------------------------------


async def test_an_event_is_delivered_to_the_consumers_the_store_knows(db_url: str) -> None:
    """Written once with one delivery per consumer; a repeat is one event, even after the
    delivery was consumed; an event for a URI nobody uses is stored with no delivery."""
    async with open_store(db_url) as store:
        await store.set_dataset_refs(
            [
                DatasetRefs("c1", consumes=frozenset({"s3://b/k"})),
                DatasetRefs("c2", consumes=frozenset({"s3://b/k", "s3://b/j"})),
                DatasetRefs("p", produces=frozenset({"s3://b/k"})),
            ]
        )
        first, lonely = ev("e1", "s3://b/k", rows=1), ev("e2", "s3://b/nobody")
        await store.record_dataset_events([first, lonely])
        pending = await store.pending_dataset_events()
        assert pending == {"c1": [first], "c2": [first]}
        assert [e.extra for e in pending["c1"]] == [{"rows": 1}]
        run = RunRecord("c1", "r1", RunState.QUEUED, "dataset_triggered", T0, T0)
        await store.insert_runs([run], [consumed_statement("c1", "r1", first)])
        await store.record_dataset_events([first])  # repeated: no new delivery
        assert await store.pending_dataset_events() == {"c2": [first]}
        assert await store.triggering_dataset_events("c1", "r1") == [first]
        [(stored, runs)] = await store.dataset_events("s3://b/k")
        assert (stored, runs) == (first, [("c1", "r1")])
        assert await store.dataset_consumers("s3://b/nobody") == []
        infos = {d.uri: d for d in await store.list_datasets()}
        assert infos["s3://b/nobody"].last_updated == T0
        assert infos["s3://b/k"].consumers == ["c1", "c2"]
        assert infos["s3://b/k"].producers == ["p"]
        assert infos["s3://b/j"].last_updated is None


async def test_a_consumed_delivery_keeps_its_first_run(db_url: str) -> None:
    async with open_store(db_url) as store:
        await store.set_dataset_refs([DatasetRefs("c", consumes=frozenset({"a"}))])
        event = ev("e1", "a")
        await store.record_dataset_events([event])
        for run_id in ("r1", "r2"):
            run = RunRecord("c", run_id, RunState.QUEUED, "dataset_triggered", T0, T0)
            await store.insert_runs([run], [consumed_statement("c", run_id, event)])
        assert await store.triggering_dataset_events("c", "r1") == [event]
        assert await store.triggering_dataset_events("c", "r2") == []


async def test_pending_events_come_oldest_first_and_follow_the_condition(db_url: str) -> None:
    """A redefined consumer keeps the pending events of the URIs it still consumes."""
    async with open_store(db_url) as store:
        await store.set_dataset_refs([DatasetRefs("c", consumes=frozenset({"a", "b"}))])
        await store.record_dataset_events([ev("e2", "a", 2), ev("e1", "b", 1), ev("e3", "a", 3)])
        pending = await store.pending_dataset_events(["c"])
        assert [e.id for e in pending["c"]] == ["e1", "e2", "e3"]
        await store.set_dataset_refs([DatasetRefs("c", consumes=frozenset({"a", "b"}))])
        assert len((await store.pending_dataset_events(["c"]))["c"]) == 3
        await store.set_dataset_refs([DatasetRefs("c", consumes=frozenset({"a"}))])
        assert [e.id for e in (await store.pending_dataset_events(["c"]))["c"]] == ["e2", "e3"]


async def test_a_store_of_the_previous_schema_migrates(db_url: str) -> None:
    """A store made before datasets (versions 1 and 2) takes version 3 and then events."""
    async with open_store(db_url, migrate=False) as store:
        assert await store.backend.migrate(MIGRATIONS[:2], "then") == [1, 2]
    async with open_store(db_url) as store:
        await store.record_dataset_events([ev("e1", "s3://b/k")])
        assert [d.uri for d in await store.list_datasets()] == ["s3://b/k"]


# -- the run driver --------------------------------------------------------------------------


def test_a_success_emits_one_event_per_outlet_in_its_own_writes() -> None:
    """Success: an event per outlet, with the extra the try attached, in the step that
    records the success. Failed, skipped, upstream_failed: none. Cleared and run again: a
    new event."""
    with DAG("p") as dag:
        ok = EmptyOperator(task_id="ok", outlets=[Dataset("s3://b/x"), Dataset("s3://b/y")])
        bad = EmptyOperator(task_id="bad", outlets=[Dataset("s3://b/z")])
        skipper = EmptyOperator(task_id="skipper", outlets=[Dataset("s3://b/s")])
        bad >> EmptyOperator(task_id="after_bad", outlets=[Dataset("s3://b/u")])
    run = RunRecord("p", "r", RunState.QUEUED, "manual", T0, T0)
    driver = RunDriver(dag, run)
    driver.feed(Start(), T0)
    emitted: list[list[DatasetEvent]] = []
    for attempt in range(2):
        for task in (ok, bad, skipper):
            driver.feed(Queued(task.task_id), T0)
            driver.feed(TryStarted(task.task_id), T0)
        step = driver.feed(
            TryEnded("ok", TryOutcome.SUCCESS, outlet_extras={"s3://b/x": {"rows": attempt}}), T0
        )
        emitted.append([w.event for w in step.writes if isinstance(w, DatasetEventRecord)])
        others = [
            driver.feed(
                TryEnded("bad", TryOutcome.FAILED, "boom"), T0
            ),  # after_bad: upstream_failed
            driver.feed(TryEnded("skipper", TryOutcome.SKIPPED), T0),
        ]
        assert driver.tis["after_bad"].state == "upstream_failed"
        assert not [w for s in others for w in s.writes if isinstance(w, DatasetEventRecord)]
        driver.feed(Clear(frozenset({"ok", "bad", "skipper"})), T0)
    first, second = emitted
    assert [(e.uri, dict(e.extra)) for e in first] == [("s3://b/x", {"rows": 0}), ("s3://b/y", {})]
    assert (first[0].source_dag_id, first[0].source_run_id, first[0].source_task_id) == (
        "p",
        "r",
        "ok",
    )
    assert {e.id for e in first}.isdisjoint({e.id for e in second})


# -- the feed: S3 notifications, the orchestrator's own event ------------------------------

RECORDS = {
    "Records": [
        {
            "eventName": "ObjectCreated:Put",
            "s3": {
                "bucket": {"name": "lake"},
                "object": {"key": "daily/red+flower%3A1.csv", "size": 10, "eTag": "x"},
            },
        },
        {
            "eventName": "ObjectRemoved:Delete",
            "s3": {"bucket": {"name": "lake"}, "object": {"key": "k"}},
        },
        {
            "eventName": "ObjectCreated:Copy",
            "s3": {"bucket": {"name": "Lake"}, "object": {"key": "a/b/"}},
        },
    ]
}
BRIDGE = {
    "source": "aws.s3",
    "detail-type": "Object Created",
    "detail": {
        "bucket": {"name": "lake"},
        "object": {"key": "raw/2023-08-08T14:03:40.zip", "size": 3, "etag": "e"},
    },
}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            RECORDS,
            [("s3://lake/daily/red%20flower:1.csv", {"size": 10}), ("s3://lake/a/b", {})],
        ),
        (BRIDGE, [("s3://lake/raw/2023-08-08T14:03:40.zip", {"size": 3, "etag": "e"})]),
        ({"Event": "s3:TestEvent", "Bucket": "lake"}, []),
        ({**BRIDGE, "detail-type": "Object Deleted"}, []),
        ({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {}, "object": {}}}]}, []),
        ({"Records": "nope"}, []),
        ([1, 2], []),
    ],
)
def test_s3_object_created_messages_name_their_datasets(
    message: object, expected: list[tuple[str, dict[str, Any]]]
) -> None:
    """Both shapes (S3 notification Records, EventBridge Object Created); keys decoded from
    the Records shape's URL encoding and percent-encoded as a URI needs; others name none."""
    assert s3_object_created(message) == expected
    for uri, _ in expected:
        assert Dataset(uri).problem is None


async def test_every_update_is_also_a_dataset_updated_event(db_url: str) -> None:
    """Updates from outside (here an S3 notification) are stored, delivered and handed to
    the listeners as the orchestrator's own Dataset Updated event."""
    engine = TriggerEngine()
    woken: list[bool] = []
    feed = DatasetFeed(
        engine, ManualClock(T0), wake=lambda: woken.append(True), is_paused=lambda _: False
    )
    seen: list[dict[str, Any]] = []

    def failing(event: dict[str, Any]) -> None:
        raise RuntimeError("a listener's bug")

    feed.listeners += [failing, seen.append]  # a failing listener stops nothing
    async with open_store(db_url) as store:
        await feed.open(store, [])
        with DAG("c", schedule=[Dataset("s3://lake/raw/2023-08-08T14:03:40.zip")]) as dag:
            EmptyOperator(task_id="t")
        await feed.dags_changed([dag], [])
        [(event, consumers)] = await feed.from_s3(BRIDGE)
        assert consumers == ["c"]
        assert (await store.pending_dataset_events())["c"] == [event]
    [own] = seen
    assert (own["source"], own["detail-type"], own["resources"]) == (
        "orchestrator",
        "Dataset Updated",
        [event.uri],
    )
    assert own["detail"]["extra"] == {"size": 3, "etag": "e"}
    [fired] = [f for u in feed.take(T0) for f in engine.feed(u)]
    assert isinstance(fired, CreateRun)
    assert fired.consumes == (event,)
    assert woken


# -- the daemon, end to end -----------------------------------------------------------------

PRODUCER = """
from datetime import datetime
from orchestrator import DAG, Dataset, task

with DAG("producer", schedule=None, start_date=datetime(2026, 1, 1)):
    @task(outlets=[Dataset("s3://lake/orders")])
    def publish(**context):
        context["outlet_events"][Dataset("s3://lake/orders")].extra = {"rows": 42}

    publish()
"""

CONSUMER = """
import json, os, pathlib, time
from datetime import datetime
from orchestrator import DAG, Dataset, task

OUT = pathlib.Path({out!r})

with DAG("consumer", schedule={schedule}, start_date=datetime(2026, 1, 1),
         dataset_events={mode!r}):
    @task(isolation={isolation!r})
    def {task_id}(**context):
        while (OUT / "hold").exists():
            time.sleep(0.01)
        seen = {{
            uri: [
                {{"uri": e.uri, "extra": dict(e.extra), "source_dag_id": e.source_dag_id,
                  "source_run_id": e.source_run_id, "source_task_id": e.source_task_id,
                  "timestamp": e.timestamp.isoformat()}}
                for e in events
            ]
            for uri, events in context["triggering_dataset_events"].items()
        }}
        run = context["dag_run"]
        (OUT / (run.run_id.replace(":", "_") + ".json")).write_text(json.dumps({{
            "events": seen, "run_type": run.run_type,
            "interval": [run.data_interval_start.isoformat(), run.data_interval_end.isoformat()],
        }}))

    {task_id}()
"""


def consumer(
    dag_file: DagFile,
    out: Path,
    schedule: str = '[Dataset("s3://lake/orders")]',
    mode: str = "batch",
    task_id: str = "consume",
    isolation: str = "thread",
) -> None:
    out.mkdir(exist_ok=True)
    source = CONSUMER.format(
        out=str(out), schedule=schedule, mode=mode, task_id=task_id, isolation=isolation
    )
    dag_file("consumer.py", source)


def consumer_runs(d: DaemonProc, state: str | None = "success") -> list[dict[str, Any]]:
    runs = [r for r in d.runs("consumer") if state is None or r["state"] == state]
    return sorted(runs, key=lambda r: r["logical_date"])


def wait_runs(d: DaemonProc, count: int, what: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = d.wait_for(
        lambda: (r := consumer_runs(d)) and len(r) >= count and r, 20, what
    )
    return runs


def seen_by(out: Path, run: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        (out / (run["run_id"].replace(":", "_") + ".json")).read_text()
    )
    return doc


def update(d: DaemonProc, uri: str, **extra: Any) -> dict[str, Any]:
    response = d.api("POST", "/api/v1/datasets/events", json={"uri": uri, "extra": extra})
    assert response.status_code == 201, response.text
    doc: dict[str, Any] = response.json()
    return doc


cli = run_cli


@pytest.mark.timeout(120)
def test_a_producer_success_triggers_its_consumer_with_the_event(
    daemon: Daemon, dag_file: DagFile, tmp_path: Path
) -> None:
    """The producer's success stores the event (with its extra); the consumer's run is
    dataset_triggered, sees triggering_dataset_events, and the API lists both. Refused
    updates (a bad URI, an extra that is not an object) write nothing."""
    out = tmp_path / "out"
    dag_file("producer.py", PRODUCER)
    consumer(dag_file, out)
    d = daemon()
    for bad in ({"uri": "s3://lake/a b"}, {"uri": "s3://lake/orders", "extra": [1]}):
        refused = d.api("POST", "/api/v1/datasets/events", json=bad)
        assert refused.status_code == 400
    produced = d.api("POST", "/api/v1/dags/producer/runs", json={}).json()
    [run] = wait_runs(d, 1, "the consumer's run")
    assert run["run_type"] == "dataset_triggered"
    doc = seen_by(out, run)
    [event] = doc["events"]["s3://lake/orders"]
    assert event["extra"] == {"rows": 42}
    assert (event["source_dag_id"], event["source_run_id"], event["source_task_id"]) == (
        "producer",
        produced["run_id"],
        "publish",
    )
    assert doc["interval"] == [event["timestamp"], event["timestamp"]]
    [listed] = d.api("GET", "/api/v1/datasets").json()
    assert (listed["uri"], listed["consumers"], listed["producers"]) == (
        "s3://lake/orders",
        ["consumer"],
        ["producer"],
    )
    assert listed["last_updated"] is not None
    [stored] = d.api("GET", "/api/v1/datasets/events", params={"uri": "s3://lake/orders"}).json()
    assert stored["triggered_runs"] == [{"dag_id": "consumer", "run_id": run["run_id"]}]
    assert len(d.api("GET", "/api/v1/datasets/events").json()) == 1  # the refused wrote nothing
    metrics = d.api("GET", "/metrics").text
    assert "orchestrator_dataset_events_total 1.0" in metrics
    assert 'orchestrator_runs_created_total{run_type="dataset_triggered"} 1.0' in metrics


@pytest.mark.timeout(120)
def test_events_during_a_run_wait_for_the_next_one_none_lost_none_twice(
    daemon: Daemon, dag_file: DagFile, tmp_path: Path
) -> None:
    """batch: updates while a run is running make one next run with all of them; an update
    for a URI nobody uses is stored and answered with no consumers."""
    out = tmp_path / "out"
    consumer(dag_file, out)
    (out / "hold").write_text("")
    d = daemon()
    update(d, "s3://lake/orders", n=1)
    d.wait_for(lambda: consumer_runs(d, "running"), 20, "the first run running")
    for n in (2, 3, 4):
        assert update(d, "s3://LAKE/orders/", n=n)["consumers"] == ["consumer"]
    nobody = update(d, "s3://lake/nobody")
    assert nobody["consumers"] == []
    assert len(consumer_runs(d, None)) == 1
    (out / "hold").unlink()
    first, second = wait_runs(d, 2, "the second run")
    assert [e["extra"]["n"] for e in seen_by(out, first)["events"]["s3://lake/orders"]] == [1]
    later = seen_by(out, second)["events"]["s3://lake/orders"]
    assert [e["extra"]["n"] for e in later] == [2, 3, 4]
    assert len(consumer_runs(d, None)) == 2
    events = d.api("GET", "/api/v1/datasets/events").json()
    assert {e["uri"] for e in events} == {"s3://lake/orders", "s3://lake/nobody"}


@pytest.mark.timeout(120)
def test_a_paused_each_consumer_keeps_its_events_and_runs_them_in_order(
    daemon: Daemon, dag_file: DagFile, tmp_path: Path
) -> None:
    """each: three updates while paused make no run; unpaused, three runs, one event
    each, in the order of the updates."""
    out = tmp_path / "out"
    consumer(dag_file, out, mode="each")
    d = daemon()
    assert d.api("PATCH", "/api/v1/dags/consumer", json={"is_paused": True}).status_code == 200
    for n in (1, 2, 3):
        update(d, "s3://lake/orders", n=n)
    assert consumer_runs(d, None) == []
    assert d.api("PATCH", "/api/v1/dags/consumer", json={"is_paused": False}).status_code == 200
    runs = wait_runs(d, 3, "three runs")
    assert [
        [e["extra"]["n"] for e in seen_by(out, r)["events"]["s3://lake/orders"]] for r in runs
    ] == [
        [1],
        [2],
        [3],
    ]


@pytest.mark.timeout(120)
def test_a_changed_file_with_the_same_condition_keeps_pending_events(
    daemon: Daemon, dag_file: DagFile, tmp_path: Path, db_url: str
) -> None:
    out = tmp_path / "out"
    both = '[Dataset("s3://lake/a"), Dataset("s3://lake/b")]'
    consumer(dag_file, out, schedule=both)
    d = daemon()
    update(d, "s3://lake/a", n=1)
    waiting = d.api("GET", "/api/v1/dags/consumer").json()["datasets"]
    assert (waiting["updated"], waiting["waiting_for"]) == (["s3://lake/a"], ["s3://lake/b"])
    consumer(dag_file, out, schedule=both, task_id="renamed")
    d.wait_for(
        lambda: d.api("GET", "/api/v1/dags/consumer").json()["tasks"] == ["renamed"],
        20,
        "the file reloaded",
    )
    # the command goes through the daemon's API: the run follows at once
    sent = cli("datasets", "update", "s3://lake/b", "--extra", '{"n": 2}', db=db_url)
    assert sent.returncode == 0, sent.stderr
    assert "no daemon running" not in sent.stderr
    [run] = wait_runs(d, 1, "the run of a and b")
    events = seen_by(out, run)["events"]
    assert sorted(events) == ["s3://lake/a", "s3://lake/b"]


@pytest.mark.timeout(120)
def test_pending_events_survive_kill_9_and_a_restart_fires_them(
    daemon: Daemon, dag_file: DagFile, tmp_path: Path, db_url: str
) -> None:
    """a & b: a arrives, the daemon is killed; b is stored by the command with no daemon
    up; the restarted daemon fires one run with both."""
    out = tmp_path / "out"
    consumer(dag_file, out, schedule='Dataset("s3://lake/a") & Dataset("s3://lake/b")')
    d = daemon()
    update(d, "s3://lake/a", n=1)
    d.kill9()
    stored = cli("datasets", "update", "s3://lake/b", "--extra", '{"n": 2}', "--json", db=db_url)
    assert stored.returncode == 0, stored.stderr
    assert json.loads(stored.stdout)["consumers"] == ["consumer"]
    assert "no daemon running" in stored.stderr
    again = daemon()
    [run] = wait_runs(again, 1, "the run after the restart")
    events = seen_by(out, run)["events"]
    assert [e["extra"] for uri in sorted(events) for e in events[uri]] == [{"n": 1}, {"n": 2}]
    listed = cli("datasets", "list", "--json", db=db_url)
    assert listed.returncode == 0, listed.stderr
    assert {d["uri"] for d in json.loads(listed.stdout)} == {"s3://lake/a", "s3://lake/b"}


def test_the_update_command_refuses_bad_input_and_writes_nothing(tmp_path: Path) -> None:
    for args, says in (
        (["s3://lake/a key"], "whitespace"),
        (["s3://lake/a", "--extra", "[1]"], "JSON object"),
        (["s3://lake/a", "--extra", "{no"], "not valid JSON"),
    ):
        done = cli("datasets", "update", *args)
        assert done.returncode == 2
        assert says in done.stderr
    listed = cli("datasets", "list", "--json")
    assert json.loads(listed.stdout) == []


@pytest.mark.timeout(120)
def test_an_event_another_process_stored_is_picked_up(
    daemon: Daemon, dag_file: DagFile, tmp_path: Path, db_url: str
) -> None:
    """``dags test`` of the producer (its own process, its own writes) triggers the
    daemon's consumer: the daemon finds the delivery when it next reads the store. Both
    tasks run in child processes (isolation="process"): the extra and the triggering
    events cross the process boundary."""
    out = tmp_path / "out"
    dag_file("producer.py", PRODUCER.replace("@task(", '@task(isolation="process", '))
    consumer(dag_file, out, isolation="process")
    d = daemon(ORCHESTRATOR_RECONCILE_INTERVAL="0.2")
    tested = cli("dags", "test", "producer", db=db_url)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    [run] = wait_runs(d, 1, "the consumer's run")
    [event] = seen_by(out, run)["events"]["s3://lake/orders"]
    assert event["source_dag_id"] == "producer"
    assert event["extra"] == {"rows": 42}


@pytest.mark.timeout(120)
def test_dataset_and_time_runs_at_an_instant_only_after_an_update(
    daemon: Daemon, dag_file: DagFile, tmp_path: Path
) -> None:
    """Every second is an instant: instants pass without a run until an update arrives;
    the next instant makes one scheduled run that consumes it, then none again."""
    out = tmp_path / "out"
    schedule = 'DatasetAndTime(cron=timedelta(seconds=1), datasets=[Dataset("s3://lake/a")])'
    consumer(dag_file, out, schedule=schedule)
    source = (tmp_path / "dags" / "consumer.py").read_text()
    (tmp_path / "dags" / "consumer.py").write_text(
        "from datetime import timedelta\nfrom orchestrator import DatasetAndTime\n" + source
    )
    d = daemon()

    def next_instant() -> str:
        doc = d.api("GET", "/api/v1/dags/consumer").json()
        return str(doc["next_run"]["data_interval_end"])

    def instants_pass(count: int) -> None:
        seen = {next_instant()}

        def passed() -> bool:
            seen.add(next_instant())
            return len(seen) > count

        d.wait_for(passed, 20, "instants")

    instants_pass(2)
    assert consumer_runs(d, None) == []
    update(d, "s3://lake/a", n=1)
    [run] = wait_runs(d, 1, "the run at the next instant")
    assert run["run_type"] == "scheduled"
    doc = seen_by(out, run)
    assert [e["extra"] for e in doc["events"]["s3://lake/a"]] == [{"n": 1}]
    start, end = (datetime.fromisoformat(t) for t in doc["interval"])
    assert end - start == timedelta(seconds=1)
    instants_pass(2)
    assert len(consumer_runs(d, None)) == 1


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_an_extra_that_is_not_json_fails_the_task_naming_the_outlet(
    dag_file: DagFile, isolation: str
) -> None:
    dag_file(
        "bad_extra.py",
        f"""
        from orchestrator import DAG, Dataset, task

        with DAG("bad_extra"):
            @task(outlets=[Dataset("s3://lake/x")], isolation={isolation!r})
            def publish(outlet_events=None):
                outlet_events[Dataset("s3://lake/x")].extra = {{"when": object()}}

            publish()
        """,
    )
    done = cli("dags", "test", "bad_extra")
    assert done.returncode == 1
    assert "outlet_events['s3://lake/x'].extra" in done.stdout + done.stderr
    assert "not JSON-serialisable" in done.stdout + done.stderr
