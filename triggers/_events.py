"""Events: the EventBridge envelope, made from each way an event comes in.

An event is ``{"version", "id", "source", "detail-type", "detail", "time", "account",
"region", "resources"}``. Pure: the caller gives ``now``; ids a source does not give are
made here (random for a new event, derived from the SQS message id for a message, so a
redelivered message is the same event).

Rules:
1. A PutEvents entry needs ``Source`` and ``DetailType`` (non-empty strings) and
   ``Detail``, a JSON object as a string; ``Resources`` is a list of strings; ``Time``
   an ISO 8601 string or epoch seconds. A bad entry is an ``EntryError`` with
   PutEvents' codes (``InvalidArgument``, ``MalformedDetail``), naming the field.
2. An SQS message body is one of: an EventBridge event (a rule with an SQS target; its
   ``id`` kept), an S3 event notification (``Records``: one ``aws.s3`` event per record,
   shaped as EventBridge's own S3 events, so one pattern serves both), S3's test event
   (no event), or either of these inside an SNS notification. Anything else is
   malformed (ValueError saying why).
3. The orchestrator's own events have ``source`` ``orchestrator``; their ids derive from
   what they tell, so telling the same change twice is one event.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "MAX_ENTRY_BYTES",
    "OWN_SOURCE",
    "EntryError",
    "dag_run_state_change",
    "envelope",
    "events_from_message",
    "from_entry",
    "task_state_change",
]

MAX_ENTRY_BYTES = 256 * 1024
OWN_SOURCE = "orchestrator"
_NS = uuid.UUID("6f1c3b1e-2d7a-4e55-9a0c-5b8f0e7d4a21")
_S3_TYPES = {
    "ObjectCreated": "Object Created",
    "ObjectRemoved": "Object Deleted",
    "ObjectRestore": "Object Restore Completed",
    "ObjectTagging": "Object Tags Added",
}

_S3_OBJECT_FIELDS = {
    "size": "size",
    "eTag": "etag",
    "sequencer": "sequencer",
    "versionId": "version-id",
}


class EntryError(ValueError):
    """A PutEvents entry that cannot be an event: ``code`` and message as PutEvents has them."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def envelope(
    *,
    source: str,
    detail_type: str,
    detail: Mapping[str, Any],
    now: datetime,
    event_id: str | None = None,
    time: str | None = None,
    resources: Sequence[str] = (),
    account: str = "",
    region: str = "",
) -> dict[str, Any]:
    """A complete event; ``id`` and ``time`` are filled in when not given."""
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": account,
        "time": time or _time(now),
        "region": region,
        "resources": list(resources),
        "detail": dict(detail),
    }


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _entry_time(value: object) -> str | None:
    if value is None:
        return None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _time(datetime.fromtimestamp(value, UTC))
        if isinstance(value, str):
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return _time(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    except (ValueError, OverflowError, OSError):
        pass
    raise EntryError("InvalidArgument", f"Time: not an ISO 8601 time or epoch seconds: {value!r}")


def from_entry(entry: object, now: datetime) -> dict[str, Any]:
    """The event a PutEvents entry makes (rule 1)."""
    if not isinstance(entry, Mapping):
        raise EntryError("InvalidArgument", "the entry must be a JSON object")
    for name in ("Source", "DetailType"):
        value = entry.get(name)
        if not isinstance(value, str) or not value.strip():
            raise EntryError("InvalidArgument", f"{name}: a non-empty string is required")
    text = entry.get("Detail")
    if not isinstance(text, str):
        raise EntryError("MalformedDetail", "Detail: a JSON object, as a string, is required")
    size = (
        len(text.encode("utf-8", "surrogatepass")) + len(entry["Source"]) + len(entry["DetailType"])
    )
    if size > MAX_ENTRY_BYTES:
        raise EntryError("InvalidArgument", f"the entry is {size} bytes; at most {MAX_ENTRY_BYTES}")
    try:
        detail = json.loads(text, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise EntryError("MalformedDetail", f"Detail: not JSON: {exc}") from None
    if not isinstance(detail, dict):
        raise EntryError("MalformedDetail", "Detail: must be a JSON object")
    resources = entry.get("Resources", [])
    if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
        raise EntryError("InvalidArgument", "Resources: must be a list of strings")
    return envelope(
        source=entry["Source"],
        detail_type=entry["DetailType"],
        detail=detail,
        now=now,
        time=_entry_time(entry.get("Time")),
        resources=resources,
    )


# -- SQS messages (rule 2) -----------------------------------------------------------------------


def events_from_message(body: str, message_id: str, now: datetime) -> list[dict[str, Any]]:
    """The events an SQS message body holds; ValueError (why) when it is malformed."""
    try:
        doc = json.loads(body, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"the body is a JSON {type(doc).__name__}, not an object")
    if doc.get("Type") == "Notification" and isinstance(doc.get("Message"), str):
        return events_from_message(doc["Message"], message_id, now)  # through SNS
    if doc.get("Event") == "s3:TestEvent":
        return []
    if isinstance(doc.get("Records"), list):
        return _s3_records(doc["Records"], message_id, now)
    return [_bridged(doc, message_id, now)]


def _bridged(doc: Mapping[str, Any], message_id: str, now: datetime) -> dict[str, Any]:
    source, detail_type, detail = doc.get("source"), doc.get("detail-type"), doc.get("detail")
    if not isinstance(source, str) or not source:
        raise ValueError("not an event: no source (a non-empty string)")
    if not isinstance(detail_type, str) or not detail_type:
        raise ValueError("not an event: no detail-type (a non-empty string)")
    if not isinstance(detail, dict):
        raise ValueError("not an event: detail must be a JSON object")
    event_id = doc.get("id")
    resources = doc.get("resources", [])
    if not isinstance(resources, list):
        raise ValueError("not an event: resources must be a list")
    time = doc.get("time")
    return envelope(
        source=source,
        detail_type=detail_type,
        detail=detail,
        now=now,
        event_id=event_id if isinstance(event_id, str) and event_id else message_id,
        time=time if isinstance(time, str) else None,
        resources=resources,
        account=str(doc.get("account", "")),
        region=str(doc.get("region", "")),
    )


def _s3_records(records: list[Any], message_id: str, now: datetime) -> list[dict[str, Any]]:
    events = []
    for i, record in enumerate(records):
        if not isinstance(record, Mapping) or not isinstance(record.get("s3"), Mapping):
            raise ValueError(f"Records[{i}]: not an S3 event record")
        name = str(record.get("eventName", ""))
        s3 = record["s3"]
        bucket = s3.get("bucket") if isinstance(s3.get("bucket"), Mapping) else {}
        obj = s3.get("object") if isinstance(s3.get("object"), Mapping) else {}
        key = obj.get("key")
        detail = {
            "version": "0",
            "bucket": {"name": bucket.get("name")},
            "object": {
                "key": urllib.parse.unquote_plus(key) if isinstance(key, str) else key,
                **{
                    ours: obj[theirs] for theirs, ours in _S3_OBJECT_FIELDS.items() if theirs in obj
                },
            },
            "request-id": (record.get("responseElements") or {}).get("x-amz-request-id"),
            "requester": (record.get("userIdentity") or {}).get("principalId"),
            "source-ip-address": (record.get("requestParameters") or {}).get("sourceIPAddress"),
            "reason": name.partition(":")[2] or name,
        }
        kind = name.partition(":")[0]
        events.append(
            envelope(
                source="aws.s3",
                detail_type=_S3_TYPES.get(kind, name or "S3 Event"),
                detail=detail,
                now=now,
                event_id=str(uuid.uuid5(_NS, f"{message_id}/{i}")),
                time=record.get("eventTime") if isinstance(record.get("eventTime"), str) else None,
                resources=[f"arn:aws:s3:::{bucket.get('name')}"],
                region=str(record.get("awsRegion", "")),
            )
        )
    return events


# -- the orchestrator's own events (rule 3) --------------------------------------------------------


def _own(detail_type: str, detail: dict[str, Any], now: datetime) -> dict[str, Any]:
    event_id = str(uuid.uuid5(_NS, json.dumps([detail_type, detail], sort_keys=True)))
    return envelope(
        source=OWN_SOURCE, detail_type=detail_type, detail=detail, now=now, event_id=event_id
    )


def dag_run_state_change(dag_id: str, run_id: str, state: str, now: datetime) -> dict[str, Any]:
    return _own("DAG Run State Change", {"dag_id": dag_id, "run_id": run_id, "state": state}, now)


def task_state_change(
    dag_id: str, run_id: str, task_id: str, state: str, try_number: int, now: datetime
) -> dict[str, Any]:
    detail = {
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "state": state,
        "try_number": try_number,
    }
    return _own("Task State Change", detail, now)
