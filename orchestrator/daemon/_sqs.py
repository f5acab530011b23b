"""SQS queues as event sources: one long-poll loop per queue, shared by every DAG.

Rules:
1. A message is deleted only after its events (and, for S3 object-created records,
   its dataset updates) are stored. A crash in between leaves it on the queue; when it
   comes back it is the same events (ids kept or derived from the message id), stored
   once, starting no second run (``_events`` rule 1).
2. A malformed message (not JSON, not an event, an S3 notification, S3's test event
   or one of those inside SNS) is logged and counted, and left on the queue out of
   sight for ``ASIDE_SECONDS``: the queue's redrive policy moves it to its dead-letter
   queue after ``maxReceiveCount`` receives; without one it comes back, and is logged,
   every ``ASIDE_SECONDS``. It never stops the loop.
3. A failing receive (endpoint unreachable, credentials refused) is retried with
   exponential backoff up to ``MAX_BACKOFF`` seconds; the queue's state is in
   ``/health`` and ``/metrics`` until it answers again.
4. ``WaitTimeSeconds`` long polls: an empty queue costs one request per wait, and a
   message sent to it is received at once.
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Callable
from typing import Any

import anyio
import structlog

from orchestrator._clock import Clock, iso
from orchestrator._settings import Settings
from orchestrator.daemon._datasets import DatasetFeed
from orchestrator.daemon._events import EventFeed, checked_event
from orchestrator.daemon._metrics import Metrics
from orchestrator.errors import InvalidRequest
from orchestrator.store import Store
from triggers._events import events_from_message

__all__ = ["ASIDE_SECONDS", "MAX_BACKOFF", "QueueReader", "queue_readers"]

log = structlog.get_logger("orchestrator.sqs")

ASIDE_SECONDS = 300
MAX_BACKOFF = 30.0
ClientFactory = Callable[[], Any]  # an async context manager giving an aiobotocore SQS client


class QueueReader:
    """One queue's long-poll loop (see the module's rules)."""

    def __init__(
        self,
        url: str,
        client: ClientFactory,
        events: EventFeed,
        datasets: DatasetFeed,
        metrics: Metrics,
        clock: Clock,
        *,
        wait_seconds: int = 20,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.url = url
        self.client = client
        self.events = events
        self.datasets = datasets
        self.metrics = metrics
        self.clock = clock
        self.wait_seconds = wait_seconds
        self.on_event = on_event  # told of each event stored (the S3 DAGs folder's sync)
        self.error: str | None = None
        self.error_since: str | None = None
        self.received = 0
        self.malformed = 0

    def status(self) -> dict[str, Any]:
        state = "error" if self.error else "ok"
        return {
            "state": state,
            "error": self.error,
            "since": self.error_since,
            "received": self.received,
            "malformed": self.malformed,
        }

    async def run(self) -> None:
        backoff = 1.0
        while True:
            try:
                async with self.client() as client:
                    while True:
                        await self._poll(client)
                        self._ok()
                        backoff = 1.0
            except Exception as exc:  # rule 3: any failure of the endpoint
                self._failed(exc)
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    def _ok(self) -> None:
        if self.error is not None:
            log.info("queue reachable again", queue=self.url)
        self.error = self.error_since = None
        self.metrics.sqs_up.labels(queue=self.url).set(1)

    def _failed(self, exc: Exception) -> None:
        if self.error is None:
            self.error_since = iso(self.clock.now())
        self.error = f"{type(exc).__name__}: {exc}"[:500]
        self.metrics.sqs_up.labels(queue=self.url).set(0)
        self.metrics.sqs_errors.labels(queue=self.url).inc()
        log.warning("queue receive failed: retrying", queue=self.url, error=self.error)

    async def _poll(self, client: Any) -> None:
        reply = await client.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=self.wait_seconds
        )
        messages = reply.get("Messages", [])
        if not messages:
            return
        self._ok()
        done: list[dict[str, str]] = []
        for message in messages:
            if await self._take(client, message):
                done.append({"Id": str(len(done)), "ReceiptHandle": message["ReceiptHandle"]})
        if os.environ.get("ORCHESTRATOR_FAULT") == "sqs-before-delete" and done:
            os.kill(os.getpid(), signal.SIGKILL)  # the crash test's kill -9 (rule 1)
        if done:
            await client.delete_message_batch(QueueUrl=self.url, Entries=done)

    async def _take(self, client: Any, message: dict[str, Any]) -> bool:
        """Store the message's events; False (left on the queue) when it is malformed."""
        message_id = str(message.get("MessageId", ""))
        try:
            found = events_from_message(message.get("Body", ""), message_id, self.clock.now())
            for event in found:
                checked_event(event)
        except (ValueError, InvalidRequest) as exc:
            self.malformed += 1
            self.metrics.events_rejected.labels(origin="sqs").inc()
            log.error(
                "malformed message left on its queue",
                queue=self.url,
                message_id=message_id,
                error=str(exc)[:300],
            )
            await client.change_message_visibility(
                QueueUrl=self.url,
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=ASIDE_SECONDS,
            )
            return False
        if found:
            await self.events.receive(found, "sqs")
        for event in found:
            await self.datasets.from_s3(event, event_id=event["id"])
            if self.on_event is not None:
                self.on_event(event)
        self.received += len(found)
        return True


def queue_readers(
    settings: Settings,
    store: Store,
    events: EventFeed,
    datasets: DatasetFeed,
    metrics: Metrics,
    clock: Clock,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> list[QueueReader]:
    """A reader for each queue ``ORCHESTRATOR_SQS_QUEUES`` lists, through ``aws_default``."""
    urls = [u.strip() for u in settings.sqs_queues.split(",") if u.strip()]
    if not urls:
        return []
    from orchestrator.resources._aws import aws_client  # aiobotocore only when it is needed

    client = functools.partial(aws_client, "sqs", store, settings)
    return [
        QueueReader(
            url,
            client,
            events,
            datasets,
            metrics,
            clock,
            wait_seconds=settings.sqs_wait_seconds,
            on_event=on_event,
        )
        for url in urls
    ]
