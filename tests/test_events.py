"""Events end to end: PutEvents over HTTP, the CLI, the orchestrator's own events, and
the pure envelope rules (entries, SQS message bodies)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator._clock import ManualClock
from orchestrator.store import open_store
from tests.daemon_proc import DaemonProc
from tests.helpers import run_cli
from triggers import EventPattern
from triggers._engine import CreateRun, EventReceived, TriggerEngine
from triggers._events import EntryError, events_from_message, from_entry

DagFile = Callable[[str, str], Path]
Daemon = Callable[..., DaemonProc]
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

RECORDER = """
import json, pathlib
from orchestrator import DAG, EventPattern
from orchestrator.operators import BashOperator, PythonOperator

OUT = pathlib.Path(r"{out}")

def record(**context):
    OUT.mkdir(exist_ok=True)
    name = context["dag"].dag_id + "-" + context["run_id"].replace(":", "_") + ".json"
    (OUT / name).write_text(json.dumps({{"event": context["event"], "conf": context["conf"]}}))

with DAG("{dag_id}", schedule=EventPattern({pattern}){paused}):
    PythonOperator(task_id="record", python_callable=record) >> BashOperator(
        task_id="echo", bash_command="echo total={{{{ event.detail.total }}}}"
    )
"""


def recorder(dag_file: DagFile, out: Path, dag_id: str, pattern: Any, paused: bool = False) -> None:
    flag = ", is_paused_upon_creation=True" if paused else ""
    dag_file(
        f"{dag_id}.py",
        RECORDER.format(out=out, dag_id=dag_id, pattern=json.dumps(pattern), paused=flag),
    )


def seen(out: Path, run: dict[str, Any]) -> dict[str, Any]:
    """What the recorder task of ``run`` saw."""
    name = run["dag_id"] + "-" + run["run_id"].replace(":", "_") + ".json"
    doc: dict[str, Any] = json.loads((out / name).read_text())
    return doc


def entry(source: str, detail: dict[str, Any], detail_type: str = "Order Placed") -> dict[str, Any]:
    return {"Source": source, "DetailType": detail_type, "Detail": json.dumps(detail)}


def put(d: DaemonProc, *entries: dict[str, Any]) -> dict[str, Any]:
    response = d.api("POST", "/api/v1/events", json={"Entries": list(entries)})
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


def finished(d: DaemonProc, dag_id: str, n: int) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        runs = d.runs(dag_id)
        ended = [r for r in runs if r["state"] in ("success", "failed")]
        return ended if len(ended) >= n else None

    runs: list[dict[str, Any]] = d.wait_for(done, 30, f"{n} runs of {dag_id}")
    return sorted(runs, key=lambda r: r["logical_date"])


BIG_ORDERS = {"source": ["shop"], "detail": {"total": [{"numeric": [">", 100]}]}}


@pytest.mark.timeout(120)
def test_put_events_starts_one_run_per_matching_dag_with_the_event(
    daemon: Daemon, dag_file: DagFile, tmp_path: Path
) -> None:
    """Each PutEvents entry is stored or refused on its own; a matching event starts one
    event_triggered run of each matching DAG (not of a paused one), with the event as the
    context's ``event``, in ``conf`` and in templates; GET /events lists it with its runs."""
    out = tmp_path / "out"
    recorder(dag_file, out, "big_orders", BIG_ORDERS)
    recorder(dag_file, out, "any_shop", {"source": ["shop"]})
    recorder(dag_file, out, "paused_shop", {"source": ["shop"]}, paused=True)
    d = daemon()
    reply = put(
        d,
        entry("shop", {"total": 250, "id": "o-1"}),
        {"Source": "shop", "DetailType": "Order Placed", "Detail": "[1, 2]"},
        entry("shop", {"total": 5}),
        {"Source": "", "DetailType": "x", "Detail": "{}"},
    )
    assert reply["FailedEntryCount"] == 2
    first, bad, small, no_source = reply["Entries"]
    assert set(first) == {"EventId"}
    assert set(small) == {"EventId"}
    assert bad["ErrorCode"] == "MalformedDetail"
    assert "Entries[1]" in bad["ErrorMessage"]
    assert no_source["ErrorCode"] == "InvalidArgument"
    assert "Source" in no_source["ErrorMessage"]
    [big] = finished(d, "big_orders", 1)
    assert finished(d, "any_shop", 2)
    assert big["run_type"] == "event_triggered"
    assert big["state"] == "success"
    seen_doc = seen(out, big)
    assert seen_doc["event"]["id"] == first["EventId"]
    assert seen_doc["event"]["detail"] == {"total": 250, "id": "o-1"}
    assert seen_doc["event"]["source"] == "shop"
    assert seen_doc["event"]["detail-type"] == "Order Placed"
    assert seen_doc["conf"] == {"event": seen_doc["event"]}
    logs = d.api(
        "GET", f"/api/v1/runs/{big['run_id']}/tasks/echo/logs", params={"dag_id": "big_orders"}
    ).json()
    assert "total=250" in logs["tries"][0]["log"]
    assert d.runs("paused_shop") == []
    listed = d.api("GET", "/api/v1/events").json()
    assert listed["next_cursor"] is None
    by_id = {e["id"]: e for e in listed["events"]}
    assert set(by_id) == {first["EventId"], small["EventId"]}
    assert sorted(r["dag_id"] for r in by_id[first["EventId"]]["runs"]) == [
        "any_shop",
        "big_orders",
    ]
    assert [r["dag_id"] for r in by_id[small["EventId"]]["runs"]] == ["any_shop"]
    assert by_id[first["EventId"]]["received_at"]
    metrics = d.api("GET", "/metrics").text
    assert 'orchestrator_events_total{origin="api"} 2.0' in metrics
    assert 'orchestrator_events_rejected_total{origin="api"} 2.0' in metrics
    assert 'orchestrator_runs_created_total{run_type="event_triggered"} 3.0' in metrics


@pytest.mark.timeout(60)
def test_a_bad_putevents_body_is_a_4xx_and_stores_nothing(daemon: Daemon) -> None:
    """No Entries, not a list, none, eleven, an unknown field, malformed JSON: 400 each,
    and no event is stored; an entry over 256 KB is refused on its own."""
    d = daemon()
    one = entry("s", {})
    bodies: tuple[dict[str, Any], ...] = (
        {},
        {"Entries": "x"},
        {"Entries": []},
        {"Entries": [one] * 11},
        {"Entries": [one], "EventBusName": "default"},
    )
    for body in bodies:
        response = d.api("POST", "/api/v1/events", json=body)
        assert response.status_code == 400, (body, response.text)
        assert "error" in response.json()
    response = d.api(
        "POST",
        "/api/v1/events",
        content=b'{"Entries": [',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    huge = put(d, entry("s", {"blob": "x" * (256 * 1024)}), one)
    assert huge["FailedEntryCount"] == 1
    assert huge["Entries"][0]["ErrorCode"] == "InvalidArgument"
    assert "at most 262144" in huge["Entries"][0]["ErrorMessage"]
    [stored] = d.api("GET", "/api/v1/events").json()["events"]
    assert stored["id"] == huge["Entries"][1]["EventId"]


FLAKY = """
from orchestrator import DAG
from orchestrator.operators import BashOperator

with DAG("flaky"):
    BashOperator(task_id="fail", bash_command="exit 3")
"""


@pytest.mark.timeout(120)
def test_a_dag_runs_on_another_dags_failure(
    daemon: Daemon, dag_file: DagFile, tmp_path: Path
) -> None:
    """The orchestrator's own DAG Run State Change event starts the DAG whose pattern
    names a failed run of another DAG; a task's state change and a dataset update are
    events too."""
    out = tmp_path / "out"
    dag_file("flaky.py", FLAKY)
    recorder(
        dag_file,
        out,
        "on_failure",
        {
            "source": ["orchestrator"],
            "detail-type": ["DAG Run State Change"],
            "detail": {"dag_id": ["flaky"], "state": ["failed"]},
        },
    )
    recorder(
        dag_file,
        out,
        "on_task_failure",
        {
            "source": ["orchestrator"],
            "detail-type": ["Task State Change"],
            "detail": {"task_id": ["fail"], "state": ["failed"]},
        },
    )
    recorder(
        dag_file,
        out,
        "on_dataset",
        {
            "source": ["orchestrator"],
            "detail-type": ["Dataset Updated"],
            "detail": {"uri": ["s3://lake/x"]},
        },
    )
    d = daemon()
    updated = d.api(
        "POST", "/api/v1/datasets/events", json={"uri": "s3://lake/x", "extra": {"n": 1}}
    )
    assert updated.status_code == 201
    [dataset_run] = finished(d, "on_dataset", 1)
    assert seen(out, dataset_run)["event"]["detail"]["extra"] == {"n": 1}
    assert seen(out, dataset_run)["event"]["id"] == updated.json()["id"]
    failed = d.api("POST", "/api/v1/dags/flaky/runs", json={}).json()
    [run] = finished(d, "on_failure", 1)
    seen_doc = seen(out, run)
    assert seen_doc["event"]["source"] == "orchestrator"
    assert seen_doc["event"]["detail"] == {
        "dag_id": "flaky",
        "run_id": failed["run_id"],
        "state": "failed",
    }
    [task_run] = finished(d, "on_task_failure", 1)
    seen_doc = seen(out, task_run)
    assert seen_doc["event"]["detail"]["try_number"] == 1
    listed = d.api("GET", "/api/v1/events", params={"source": "orchestrator"}).json()["events"]
    assert {e["detail-type"] for e in listed} == {
        "DAG Run State Change",
        "Task State Change",
        "Dataset Updated",
    }
    assert len(listed) == 3  # only the own events that matched a pattern are stored


@pytest.mark.timeout(120)
def test_the_cli_puts_and_lists_events_with_or_without_a_daemon(
    daemon: Daemon, dag_file: DagFile, tmp_path: Path, db_url: str
) -> None:
    """``events put`` with no daemon stores the event and the daemon matches it when it
    starts; with a daemon up it goes through the API; ``events list`` shows both with
    their runs; bad input exits 2 and stores nothing."""
    out = tmp_path / "out"
    recorder(dag_file, out, "big_orders", BIG_ORDERS)
    args = ("events", "put", "--source", "shop", "--detail-type", "Order Placed")
    bad = run_cli(*args, "--detail", "[1]", db=db_url)
    assert bad.returncode == 2
    assert "--detail" in bad.stderr
    offline = run_cli(*args, "--detail", '{"total": 500}', "--json", db=db_url)
    assert offline.returncode == 0, offline.stderr
    assert "no daemon running" in offline.stderr
    offline_id = json.loads(offline.stdout)["id"]
    d = daemon()
    [first] = finished(d, "big_orders", 1)
    online = run_cli(*args, "--detail", '{"total": 700}', "--json", db=db_url)
    assert online.returncode == 0, online.stderr
    assert "no daemon running" not in online.stderr
    finished(d, "big_orders", 2)
    listed = run_cli("events", "list", "--source", "shop", "--json", db=db_url)
    events = json.loads(listed.stdout)
    assert [e["detail"]["total"] for e in events] == [700, 500]  # newest first
    assert events[1]["id"] == offline_id
    assert events[1]["runs"] == [{"dag_id": "big_orders", "run_id": first["run_id"]}]
    assert (
        run_cli("events", "list", "--source", "nobody", "--json", db=db_url).stdout.strip() == "[]"
    )


@pytest.mark.timeout(60)
def test_the_event_list_pages_with_a_cursor(daemon: Daemon) -> None:
    """?limit= and the cursor it gives walk every event once, newest first; a cursor this
    API did not give is a 400."""
    d = daemon()
    ids = [put(d, entry("s", {"n": n}))["Entries"][0]["EventId"] for n in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = d.api("GET", "/api/v1/events", params=params).json()
        seen += [e["id"] for e in page["events"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    assert d.api("GET", "/api/v1/events", params={"cursor": "nonsense"}).status_code == 400


# -- pure: entries and message bodies ------------------------------------------------------


def test_an_entry_becomes_a_complete_envelope() -> None:
    """id and time are filled in; Time is kept (ISO or epoch); Resources kept."""
    event = from_entry(
        {**entry("shop", {"a": 1}), "Resources": ["arn:x"], "Time": "2026-01-02T03:04:05Z"}, NOW
    )
    assert event["time"] == "2026-01-02T03:04:05Z"
    assert event["resources"] == ["arn:x"]
    assert event["version"] == "0"
    assert event["id"]
    assert from_entry({**entry("s", {}), "Time": 0}, NOW)["time"] == "1970-01-01T00:00:00Z"
    assert from_entry(entry("s", {}), NOW)["time"] == "2026-11-30T12:00:00Z"


@pytest.mark.parametrize(
    ("bad", "code", "says"),
    [
        ("x", "InvalidArgument", "JSON object"),
        ({"DetailType": "t", "Detail": "{}"}, "InvalidArgument", "Source"),
        ({"Source": "s", "Detail": "{}"}, "InvalidArgument", "DetailType"),
        ({"Source": "s", "DetailType": "t"}, "MalformedDetail", "Detail"),
        ({"Source": "s", "DetailType": "t", "Detail": "{"}, "MalformedDetail", "not JSON"),
        ({"Source": "s", "DetailType": "t", "Detail": "NaN"}, "MalformedDetail", "not JSON"),
        ({"Source": "s", "DetailType": "t", "Detail": "1"}, "MalformedDetail", "JSON object"),
        ({**entry("s", {}), "Resources": "arn"}, "InvalidArgument", "Resources"),
        ({**entry("s", {}), "Time": "yesterday"}, "InvalidArgument", "Time"),
    ],
)
def test_a_bad_entry_gets_putevents_error_code(bad: object, code: str, says: str) -> None:
    with pytest.raises(EntryError, match=says) as caught:
        from_entry(bad, NOW)
    assert caught.value.code == code


S3_RECORD = {
    "eventVersion": "2.1",
    "eventSource": "aws:s3",
    "awsRegion": "us-east-1",
    "eventTime": "2026-11-30T11:00:00.000Z",
    "eventName": "ObjectCreated:Put",
    "s3": {
        "bucket": {"name": "lake"},
        "object": {"key": "orders/day+1.csv", "size": 12, "eTag": "e", "sequencer": "01"},
    },
}


def test_sqs_bodies_become_events_with_stable_ids() -> None:
    """An EventBridge envelope keeps its id; an S3 notification gives one aws.s3 Object
    Created event per record, ids derived from the message id; S3's test event is none;
    an SNS notification is unwrapped."""
    bridged = {"id": "e-1", "source": "aws.ec2", "detail-type": "X", "detail": {"a": 1}}
    [event] = events_from_message(json.dumps(bridged), "m-1", NOW)
    assert event["id"] == "e-1"
    assert event["detail"] == {"a": 1}
    no_id = {k: v for k, v in bridged.items() if k != "id"}
    assert events_from_message(json.dumps(no_id), "m-1", NOW)[0]["id"] == "m-1"
    records = json.dumps({"Records": [S3_RECORD, S3_RECORD]})
    first, second = events_from_message(records, "m-2", NOW)
    assert (first["source"], first["detail-type"]) == ("aws.s3", "Object Created")
    assert first["detail"]["bucket"] == {"name": "lake"}
    assert first["detail"]["object"]["key"] == "orders/day 1.csv"
    assert first["id"] != second["id"]
    assert [e["id"] for e in events_from_message(records, "m-2", NOW)] == [
        first["id"],
        second["id"],
    ]
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "lake"}
    assert events_from_message(json.dumps(test_event), "m-3", NOW) == []
    sns = {"Type": "Notification", "Message": json.dumps(bridged)}
    assert events_from_message(json.dumps(sns), "m-4", NOW)[0]["id"] == "e-1"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("not json", "not JSON"),
        ("[1]", "JSON list"),
        ('{"hello": 1}', "no source"),
        ('{"source": "s", "detail-type": "t", "detail": 1}', "detail must be a JSON object"),
        ('{"Records": [1]}', r"Records\[0\]"),
    ],
)
def test_a_malformed_body_says_why(body: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        events_from_message(body, "m", NOW)


def test_test_pattern_prints_true_or_false_and_refuses_what_is_invalid(tmp_path: Path) -> None:
    """``events test-pattern`` needs no daemon: true/false on stdout, exit 2 with the
    reason for an invalid pattern or event."""
    pattern = json.dumps(BIG_ORDERS)
    yes = run_cli("events", "test-pattern", "--pattern", pattern, "--event", SHOP_EVENT)
    assert (yes.returncode, yes.stdout) == (0, "true\n")
    small = SHOP_EVENT.replace("250", "5")
    no = run_cli("events", "test-pattern", "--pattern", pattern, "--event", small)
    assert (no.returncode, no.stdout) == (0, "false\n")
    bad = run_cli(
        "events",
        "test-pattern",
        "--pattern",
        '{"detail": {"total": [{"numeric": [">", "x"]}]}}',
        "--event",
        SHOP_EVENT,
    )
    assert bad.returncode == 2
    assert "detail.total: numeric: >: must be a number" in bad.stderr
    not_json = run_cli("events", "test-pattern", "--pattern", pattern, "--event", "{")
    assert not_json.returncode == 2
    assert "--event" in not_json.stderr


SHOP_EVENT = json.dumps({"source": "shop", "detail-type": "Order Placed", "detail": {"total": 250}})


async def test_the_store_keeps_one_event_per_id_and_prunes_only_handled_old_ones(
    db_url: str,
) -> None:
    """A second write of an id changes nothing; unhandled events come back oldest first;
    pruning forgets handled events received before the cut, never unhandled ones."""
    clock = ManualClock(NOW)
    async with open_store(db_url, clock=clock) as store:
        first = from_entry(entry("s", {"n": 1}), NOW)
        await store.record_events([first], "api")
        await store.record_events([{**first, "detail": {"n": 99}}], "sqs")
        clock.advance(timedelta(days=10))
        second = from_entry(entry("s", {"n": 2}), clock.now())
        third = from_entry(entry("s", {"n": 3}), clock.now())
        await store.record_events([second, third], "api", handled={third["id"]})
        assert [e["detail"] for e in await store.unhandled_events()] == [{"n": 1}, {"n": 2}]
        await store.events_handled([first["id"]])
        await store.prune_events(clock.now() - timedelta(days=7))
        found, cursor = await store.list_events()
        assert cursor is None
        assert sorted(e["detail"]["n"] for e, _, _ in found) == [2, 3]
        assert [e["id"] for e in await store.unhandled_events()] == [second["id"]]


def test_the_engine_fires_one_run_per_matching_dag_that_is_not_paused() -> None:
    """EventReceived: a CreateRun per matching DAG, keyed by the event id, with the event
    as payload and unique logical dates; a paused DAG's pattern matches nothing until
    it is unpaused; a forgotten pattern matches nothing."""
    engine = TriggerEngine()
    engine.set_pattern("big", EventPattern(BIG_ORDERS))
    engine.set_pattern("all", EventPattern({"source": ["shop"]}), paused=True)
    engine.set_pattern("other", EventPattern({"source": ["elsewhere"]}))
    event = from_entry(entry("shop", {"total": 500}), NOW)
    [run] = engine.feed(EventReceived(event, NOW))
    assert isinstance(run, CreateRun)
    assert (run.dag_id, run.run_type, run.trigger_key) == (
        "big",
        "event_triggered",
        f"event:{event['id']}",
    )
    assert run.payload == {"event": event}
    assert run.run.logical_date == run.run.data_interval_start == run.run.data_interval_end == NOW
    engine.set_pattern_paused("all", False)
    again = from_entry(entry("shop", {"total": 700}), NOW)
    fired = engine.feed(EventReceived(again, NOW))
    assert [f.dag_id for f in fired] == ["all", "big"]
    big_again = next(f for f in fired if f.dag_id == "big")
    assert isinstance(big_again, CreateRun)
    assert big_again.run.logical_date == NOW + timedelta(microseconds=1)
    engine.set_pattern("big", None)
    engine.set_pattern_paused("all", True)
    assert engine.feed(EventReceived(again, NOW)) == []
