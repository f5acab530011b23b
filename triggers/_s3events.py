"""S3 object-created notifications as dataset updates: which ``s3://`` URIs a message names.

Two shapes reach a queue: an S3 event notification (``{"Records": [...]}``, each
record's ``eventName`` ``ObjectCreated:*``, its key URL-encoded with ``+`` for a space)
and an EventBridge event (``source`` ``aws.s3``, ``detail-type`` ``Object Created``,
the key as written). Each object created is one update of ``s3://bucket/key``, the key
percent-encoded where a URI needs it, with the object's size and ETag as ``extra``.
Anything else (other events, S3's test event) names no dataset. Pure: the daemon's
SQS reader hands each ``aws.s3`` event here through the dataset feed's ``from_s3``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from triggers._dataset import normalize_uri

__all__ = ["s3_object_created"]

_SAFE = "/:@!$&'()*+,;=-._~"


def _uri(bucket: object, key: object) -> str | None:
    if not isinstance(bucket, str) or not isinstance(key, str) or not bucket or not key:
        return None
    try:
        return normalize_uri(f"s3://{bucket}/{urllib.parse.quote(key, safe=_SAFE)}")
    except ValueError:
        return None


def _extra(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {name: obj[name] for name in ("size", "etag") if name in obj}


def s3_object_created(message: object) -> list[tuple[str, dict[str, Any]]]:
    """The (dataset URI, extra) of each object the message says was created."""
    if not isinstance(message, Mapping):
        return []
    found: list[tuple[str, dict[str, Any]]] = []
    if message.get("source") == "aws.s3" and message.get("detail-type") == "Object Created":
        detail = message.get("detail")
        if isinstance(detail, Mapping):
            bucket, obj = detail.get("bucket"), detail.get("object")
            if isinstance(bucket, Mapping) and isinstance(obj, Mapping):
                uri = _uri(bucket.get("name"), obj.get("key"))
                if uri is not None:
                    found.append((uri, _extra(obj)))
        return found
    records = message.get("Records")
    for record in records if isinstance(records, list) else []:
        if not isinstance(record, Mapping):
            continue
        name, s3 = record.get("eventName"), record.get("s3")
        if not (isinstance(name, str) and name.startswith("ObjectCreated:")):
            continue
        if not isinstance(s3, Mapping):
            continue
        bucket, obj = s3.get("bucket"), s3.get("object")
        if isinstance(bucket, Mapping) and isinstance(obj, Mapping):
            key = obj.get("key")
            key = urllib.parse.unquote_plus(key) if isinstance(key, str) else None
            uri = _uri(bucket.get("name"), key)
            if uri is not None:
                found.append((uri, _extra(obj)))
    return found
