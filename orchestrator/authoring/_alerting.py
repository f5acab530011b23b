"""What a DAG says about its alerts: webhook targets and deadlines (declarative, no I/O).

``alert_webhooks`` entries are URLs or :class:`Webhook` objects (a URL with its own
signing secret). ``DAG(deadline=DeadlineAlert(...))`` asks for one alert when a run
has not finished by its reference time plus an interval, as Airflow 3.1's deadline
alerts do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from orchestrator.errors import DagDefinitionError

__all__ = ["DeadlineAlert", "DeadlineReference", "Webhook", "callbacks_of", "webhooks_of"]


@dataclass(frozen=True)
class Webhook:
    """An alert webhook target: ``url``, and a ``secret`` that signs its bodies instead of
    ``ORCHESTRATOR_WEBHOOK_SECRET`` (``""``: this target's bodies go unsigned)."""

    url: str
    secret: str | None = None

    def __repr__(self) -> str:  # the secret stays out of logs and tracebacks
        return f"Webhook({self.url!r}{', secret=...' if self.secret is not None else ''})"


def webhooks_of(value: Any, where: str) -> list[Webhook]:
    """``alert_webhooks`` as Webhook targets, each URL checked (http or https, a host)."""
    if value is None:
        return []
    items = [value] if isinstance(value, str | Webhook) else value
    if not isinstance(items, Iterable):
        raise DagDefinitionError(f"{where}: alert_webhooks must be a list of URLs")
    targets = []
    for i, item in enumerate(items):
        target = Webhook(item) if isinstance(item, str) else item
        if not isinstance(target, Webhook) or not isinstance(target.url, str):
            raise DagDefinitionError(
                f"{where}: alert_webhooks[{i}] must be a URL or a Webhook, got {item!r}"
            )
        parts = urlsplit(target.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DagDefinitionError(
                f"{where}: alert_webhooks[{i}]: {target.url!r} is not an http(s) URL"
            )
        if target.secret is not None and not isinstance(target.secret, str):
            raise DagDefinitionError(f"{where}: alert_webhooks[{i}]: secret must be a string")
        targets.append(target)
    return targets


def callbacks_of(value: Any, where: str, name: str) -> list[Callable[..., Any]]:
    """A callback argument (a callable, a list of them, or None) as a list."""
    if value is None:
        return []
    items = list(value) if isinstance(value, list | tuple) else [value]
    for i, item in enumerate(items):
        if not callable(item):
            at = f"{name}[{i}]" if isinstance(value, list | tuple) else name
            raise DagDefinitionError(f"{where}: {at} must be callable, got {item!r}")
    return items


@dataclass(frozen=True)
class _Reference:
    """When a deadline's interval starts counting, for one run."""

    kind: str  # "queued_at", "logical_date" or "fixed"
    at: datetime | None = None

    def start(self, queued_at: datetime, logical_date: datetime | None) -> datetime | None:
        if self.kind == "queued_at":
            return queued_at
        if self.kind == "logical_date":
            return logical_date
        return self.at

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"FIXED_DATETIME({self.at.isoformat() if self.at else ''})"
        return "DAGRUN_QUEUED_AT" if self.kind == "queued_at" else "DAGRUN_LOGICAL_DATE"


class DeadlineReference:
    """What a deadline counts from: the run's queue time, its logical date, or a fixed time."""

    DAGRUN_QUEUED_AT = _Reference("queued_at")
    DAGRUN_LOGICAL_DATE = _Reference("logical_date")

    @staticmethod
    def FIXED_DATETIME(at: datetime) -> _Reference:
        if not isinstance(at, datetime):
            raise DagDefinitionError(f"FIXED_DATETIME needs a datetime, got {at!r}")
        return _Reference("fixed", at.replace(tzinfo=UTC) if at.tzinfo is None else at)


@dataclass(frozen=True)
class DeadlineAlert:
    """Call ``callback`` (a callable or a notifier) once if a run is not finished by
    ``reference`` + ``interval``; the run goes on."""

    reference: _Reference
    interval: timedelta
    callback: Callable[..., Any]

    def check(self, where: str) -> None:
        if not isinstance(self.reference, _Reference):
            raise DagDefinitionError(
                f"{where}: deadline reference must be one of DeadlineReference's, "
                f"got {self.reference!r}"
            )
        if not isinstance(self.interval, timedelta):
            raise DagDefinitionError(
                f"{where}: deadline interval must be a timedelta, got {self.interval!r}"
            )
        if not callable(self.callback):
            raise DagDefinitionError(
                f"{where}: deadline callback must be callable, got {self.callback!r}"
            )

    def deadline(self, queued_at: datetime, logical_date: datetime | None) -> datetime | None:
        """When a run queued at ``queued_at`` (of ``logical_date``) must have finished."""
        start = self.reference.start(queued_at, logical_date)
        return None if start is None else start + self.interval
