"""SQS as an event source, end to end: the daemon against moto's server over real HTTP.

A queue fed directly, an EventBridge rule with an SQS target, an S3 bucket's
notifications to SQS; duplicates, a malformed message, a kill -9 between storing an
event and deleting its message, an endpoint that does not answer.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import get_session

from tests.daemon_proc import DaemonProc
from tests.test_events import recorder, seen

DagFile = Callable[[str, str], Path]
Daemon = Callable[..., DaemonProc]
KW = {
    "region_name": "us-east-1",
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
}


class Aws:
    """Blocking calls to moto's server through aiobotocore, for the test's side."""

    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, service: str, op: str, **params: Any) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            async with get_session().create_client(service, endpoint_url=self.url, **KW) as c:
                reply: dict[str, Any] = await getattr(c, op)(**params)
                return reply

        return asyncio.run(go())

    def queue(self, **attributes: str) -> tuple[str, str]:
        """A new queue's URL and ARN."""
        name = f"q-{uuid.uuid4().hex[:12]}"
        url = self.call("sqs", "create_queue", QueueName=name, Attributes=attributes)["QueueUrl"]
        attrs = self.call("sqs", "get_queue_attributes", QueueUrl=url, AttributeNames=["QueueArn"])
        return url, attrs["Attributes"]["QueueArn"]

    def send(self, url: str, body: Any) -> None:
        text = body if isinstance(body, str) else json.dumps(body)
        self.call("sqs", "send_message", QueueUrl=url, MessageBody=text)

    def counts(self, url: str) -> tuple[int, int]:
        """(visible, in flight) messages of the queue."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attrs = self.call("sqs", "get_queue_attributes", QueueUrl=url, AttributeNames=names)
        return tuple(int(attrs["Attributes"][n]) for n in names)  # type: ignore[return-value]


@pytest.fixture
def aws(moto_url: str, aws_conn: str) -> Aws:
    return Aws(moto_url)


@contextmanager
def reading(daemon: Daemon, *urls: str, **env: str) -> Iterator[DaemonProc]:
    yield daemon(ORCHESTRATOR_SQS_QUEUES=",".join(urls), **env)


def ended_runs(d: DaemonProc, dag_id: str, n: int, within: float = 30) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        ended = [r for r in d.runs(dag_id) if r["state"] in ("success", "failed")]
        return ended if len(ended) >= n else None

    runs: list[dict[str, Any]] = d.wait_for(done, within, f"{n} runs of {dag_id}")
    return runs


UPLOADS = {
    "source": ["aws.s3"],
    "detail-type": ["Object Created"],
    "detail": {"bucket": {"name": ["lake"]}, "object": {"key": [{"prefix": "orders/"}]}},
}

DATASET_CONSUMER = """
from orchestrator import DAG, Dataset
from orchestrator.operators import EmptyOperator

with DAG("orders_ds", schedule=[Dataset("s3://lake/orders/day1.csv")]):
    EmptyOperator(task_id="t")
"""


@pytest.mark.timeout(120)
def test_a_queue_a_rule_and_bucket_notifications_all_start_runs(
    aws: Aws, daemon: Daemon, dag_file: DagFile, tmp_path: Path
) -> None:
    """An event sent to the queue, an event put on EventBridge whose rule targets the
    queue, and an object put in a bucket that notifies the queue each start the runs
    their patterns say; the object also updates its s3:// dataset; S3's test event is
    no event and no error; every message is deleted."""
    out = tmp_path / "out"
    recorder(dag_file, out, "on_shop", {"source": ["shop"], "detail": {"via": ["queue"]}})
    recorder(dag_file, out, "on_rule", {"source": ["shop"], "detail": {"via": ["rule"]}})
    recorder(dag_file, out, "on_upload", UPLOADS)
    dag_file("orders_ds.py", DATASET_CONSUMER)
    url, arn = aws.queue()
    aws.call("events", "put_rule", Name=f"r-{arn[-8:]}", EventPattern='{"source": ["shop"]}')
    aws.call("events", "put_targets", Rule=f"r-{arn[-8:]}", Targets=[{"Id": "q", "Arn": arn}])
    aws.call("s3", "create_bucket", Bucket="lake")
    aws.call(
        "s3",
        "put_bucket_notification_configuration",
        Bucket="lake",
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    with reading(daemon, url) as d:
        aws.send(url, {"source": "shop", "detail-type": "Order", "detail": {"via": "queue"}})
        aws.call(
            "events",
            "put_events",
            Entries=[{"Source": "shop", "DetailType": "Order", "Detail": '{"via": "rule"}'}],
        )
        aws.call("s3", "put_object", Bucket="lake", Key="orders/day1.csv", Body=b"a,b\n")
        [queued] = ended_runs(d, "on_shop", 1)
        [ruled] = ended_runs(d, "on_rule", 1)
        [upload] = ended_runs(d, "on_upload", 1)
        [dataset_run] = ended_runs(d, "orders_ds", 1)
        assert dataset_run["run_type"] == "dataset_triggered"
        assert seen(out, queued)["event"]["detail"] == {"via": "queue"}
        event = seen(out, upload)["event"]
        assert (event["source"], event["detail-type"]) == ("aws.s3", "Object Created")
        assert event["detail"]["object"]["key"] == "orders/day1.csv"
        assert event["detail"]["object"]["size"] == 4
        assert seen(out, ruled)["event"]["source"] == "shop"
        d.wait_for(lambda: aws.counts(url) == (0, 0), 10, "every message deleted")
        health = d.api("GET", "/api/v1/health").json()["sqs"][url]
        assert health["state"] == "ok"
        assert health["malformed"] == 0
        assert health["received"] == 3
        [updated] = d.api("GET", "/api/v1/datasets/events").json()
        assert updated["uri"] == "s3://lake/orders/day1.csv"
        assert updated["extra"] == {"size": 4, "etag": event["detail"]["object"]["etag"]}


@pytest.mark.timeout(120)
def test_a_duplicate_makes_no_second_run_and_a_malformed_message_is_left_aside(
    aws: Aws, daemon: Daemon, dag_file: DagFile, tmp_path: Path
) -> None:
    """The same event id twice is one stored event and one run; a malformed message is
    logged, counted, kept out of sight on its queue (for its redrive policy) and the
    loop goes on to the next message."""
    recorder(dag_file, tmp_path / "out", "on_shop", {"source": ["shop"]})
    url, _ = aws.queue()
    same = {"id": "evt-1", "source": "shop", "detail-type": "Order", "detail": {"n": 1}}
    with reading(daemon, url) as d:
        aws.send(url, same)
        ended_runs(d, "on_shop", 1)
        aws.send(url, "this is not JSON")
        aws.send(url, same)
        aws.send(url, {**same, "id": "evt-2"})
        ended_runs(d, "on_shop", 2)
        d.wait_for(lambda: aws.counts(url) == (0, 1), 10, "only the malformed one left")
        events = d.api("GET", "/api/v1/events").json()["events"]
        assert sorted(e["id"] for e in events) == ["evt-1", "evt-2"]
        assert len(d.runs("on_shop")) == 2
        assert d.api("GET", "/api/v1/health").json()["sqs"][url]["malformed"] == 1
        assert (
            'orchestrator_events_rejected_total{origin="sqs"} 1.0' in d.api("GET", "/metrics").text
        )
        assert "malformed message left on its queue" in d.output()


@pytest.mark.timeout(120)
def test_kill_9_between_storing_and_deleting_loses_nothing_and_doubles_nothing(
    aws: Aws, daemon: Daemon, dag_file: DagFile, tmp_path: Path
) -> None:
    """The daemon dies (kill -9) after storing a message's event and before deleting the
    message: the restarted daemon starts the run once, and the message, received
    again, adds no event and no run."""
    recorder(dag_file, tmp_path / "out", "on_shop", {"source": ["shop"]})
    url, _ = aws.queue(VisibilityTimeout="1")
    first = daemon(ORCHESTRATOR_SQS_QUEUES=url, ORCHESTRATOR_FAULT="sqs-before-delete")
    aws.send(url, {"id": "evt-k", "source": "shop", "detail-type": "Order", "detail": {}})
    assert first.proc is not None
    first.proc.wait(30)
    assert first.proc.returncode == -9
    again = daemon(ORCHESTRATOR_SQS_QUEUES=url)
    [run] = ended_runs(again, "on_shop", 1)
    again.wait_for(lambda: aws.counts(url) == (0, 0), 15, "the redelivered message deleted")
    assert [e["id"] for e in again.api("GET", "/api/v1/events").json()["events"]] == ["evt-k"]
    assert [r["run_id"] for r in again.runs("on_shop")] == [run["run_id"]]


@pytest.mark.timeout(60)
def test_an_unreachable_endpoint_is_retried_and_reported(daemon: Daemon, tmp_path: Path) -> None:
    """A queue whose endpoint does not answer is retried with backoff, shown in /health
    and /metrics, and the daemon serves on."""
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    url = f"{dead}/123456789012/nowhere"
    d = daemon(
        ORCHESTRATOR_SQS_QUEUES=url,
        ORCHESTRATOR_CONN_AWS_DEFAULT=f"aws://a:b@/?endpoint_url={dead}&region_name=us-east-1",
    )
    health = d.wait_for(
        lambda: (h := d.api("GET", "/api/v1/health").json())["sqs"][url]["state"] == "error" and h,
        20,
        "the queue reported down",
    )
    assert "Connect" in health["sqs"][url]["error"] or "connect" in health["sqs"][url]["error"]
    metrics = d.api("GET", "/metrics").text
    assert f'orchestrator_sqs_up{{queue="{url}"}} 0.0' in metrics
    assert f'orchestrator_sqs_receive_errors_total{{queue="{url}"}}' in metrics
    assert d.api("GET", "/api/v1/dags").status_code == 200


@pytest.mark.timeout(120)
def test_an_s3_dags_folder_syncs_when_its_bucket_notifies_the_queue(
    aws: Aws, daemon: Daemon
) -> None:
    """With the DAGs folder in S3 and its bucket's notifications on a queue the daemon
    reads, a DAG file put in the bucket loads at once, not at the next timed sync."""
    bucket = f"dags-{uuid.uuid4().hex[:10]}"
    url, arn = aws.queue()
    aws.call("s3", "create_bucket", Bucket=bucket)
    aws.call(
        "s3",
        "put_bucket_notification_configuration",
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    d = daemon(
        ORCHESTRATOR_DAGS=f"s3://{bucket}/dags/",
        ORCHESTRATOR_DAGS_SYNC_INTERVAL="3600",
        ORCHESTRATOR_SQS_QUEUES=url,
    )
    source = b"from orchestrator import DAG\nwith DAG('pushed'):\n    pass\n"
    aws.call("s3", "put_object", Bucket=bucket, Key="dags/pushed.py", Body=source)
    d.wait_for(lambda: d.api("GET", "/api/v1/dags/pushed").status_code == 200, 20, "the pushed DAG")
