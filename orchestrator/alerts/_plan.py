"""Which deliveries an alert makes, and when a failed delivery is tried again (pure).

Rules:
1. A task's failure mails its ``email`` (with ``email_on_failure``) and posts to each of
   its ``alert_webhooks``; a retry does the same with ``email_on_retry``; each end of a
   try calls the task's callback for it, and a run's end the DAG's. A missed deadline
   calls the deadline's callback.
2. One delivery per notifier: each address list, each URL, each callback of a list.
3. A delivery's id is its idempotency key: the moment the alert was raised and what it
   is about (run, task, try, event, target), so writing it again stores nothing new,
   and ids sort by time (the store appends them to its index).
4. A webhook's own secret travels sealed (encrypted with the store's key).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from orchestrator.authoring._dag import DAG
from orchestrator.core import Alert, AlertEvent, AlertRecord, instance_key

__all__ = ["DEADLINE_MISSED", "RetryPolicy", "alert_id", "callback_of", "plan_alerts"]

DEADLINE_MISSED = "deadline_missed"

_CALLBACK = {
    AlertEvent.TASK_SUCCESS: "on_success_callback",
    AlertEvent.TASK_FAILURE: "on_failure_callback",
    AlertEvent.TASK_RETRY: "on_retry_callback",
    AlertEvent.RUN_SUCCESS: "on_success_callback",
    AlertEvent.RUN_FAILURE: "on_failure_callback",
}
_STATE = {
    AlertEvent.TASK_SUCCESS: "success",
    AlertEvent.TASK_FAILURE: "failed",
    AlertEvent.TASK_RETRY: "up_for_retry",
    AlertEvent.RUN_SUCCESS: "success",
    AlertEvent.RUN_FAILURE: "failed",
}


def alert_id(at: datetime, *parts: object) -> str:
    """An alert's id: when it was raised (microseconds, hex, so ids sort by time and the
    store appends them at the end of its index), then a hash of what it is about."""
    key = "\x00".join("" if p is None else str(p) for p in parts)
    return f"{int(at.timestamp() * 1_000_000):014x}-{hashlib.sha256(key.encode()).hexdigest()[:20]}"


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def callback_of(dag: DAG, target: str) -> Callable[..., Any] | None:
    """The callable a ``callback`` delivery names (``task:<id>:<attr>:<i>``,
    ``dag:<attr>:<i>`` or ``deadline:<i>``), if the DAG still defines it."""
    parts = target.split(":")
    try:
        if parts[0] == "deadline":
            return dag.deadlines[int(parts[1])].callback
        if parts[0] == "dag":
            return _listed(getattr(dag, parts[1]))[int(parts[2])]  # type: ignore[no-any-return]
        task = dag.task_dict.get(":".join(parts[1:-2]))
        if task is None:
            return None
        return _listed(getattr(task, parts[-2]))[int(parts[-1])]  # type: ignore[no-any-return]
    except (IndexError, ValueError, AttributeError):
        return None


def plan_alerts(
    dag: DAG,
    run: tuple[str, str],
    alerts: Iterable[Alert],
    now: datetime,
    *,
    seal: Callable[[str], str],
) -> list[AlertRecord]:
    """The deliveries ``alerts`` of a run of ``dag`` make (rules 1-4), in order."""
    dag_id, run_id = run
    out: list[AlertRecord] = []

    def add(kind: str, alert: Alert, target: str, **payload: Any) -> None:
        task_key = alert.task_id
        if alert.map_index >= 0:
            task_key = instance_key(str(alert.task_id), alert.map_index)
            payload = {**payload, "map_index": alert.map_index}
        key = (dag_id, run_id, task_key, alert.try_number, alert.event, target)
        out.append(
            AlertRecord(
                id=alert_id(now, *key),
                kind=kind,
                event=str(alert.event),
                dag_id=dag_id,
                run_id=run_id,
                task_id=alert.task_id,
                try_number=alert.try_number,
                target=target,
                payload={"state": _STATE[alert.event], "error": alert.error, **payload},
                created_at=now,
                seq=len(out),
            )
        )

    for alert in alerts:
        attr = _CALLBACK[alert.event]
        if alert.task_id is None:
            for i, _ in enumerate(_listed(getattr(dag, attr))):
                add("callback", alert, f"dag:{attr}:{i}")
            continue
        task = dag.task_dict[alert.task_id]
        if alert.event in (AlertEvent.TASK_FAILURE, AlertEvent.TASK_RETRY):
            wants_mail = (
                task.email_on_failure
                if alert.event == AlertEvent.TASK_FAILURE
                else task.email_on_retry
            )
            if task.email and wants_mail:
                add("email", alert, ", ".join(task.email))
            for hook in task.alert_webhooks:
                extra = {} if hook.secret is None else {"secret": seal(hook.secret)}
                add("webhook", alert, hook.url, **extra)
        for i, _ in enumerate(_listed(getattr(task, attr))):
            add("callback", alert, f"task:{alert.task_id}:{attr}:{i}")
    return out


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Failed deliveries are tried again after ``delay`` seconds, doubling up to
    ``max_delay``, until ``max_attempts`` attempts or ``max_age`` seconds since the alert."""

    max_attempts: int = 8
    delay: float = 2.0
    max_delay: float = 300.0
    max_age: float = 86_400.0

    def next_attempt(self, attempts: int, created_at: datetime, now: datetime) -> datetime | None:
        """When to try again after ``attempts`` failed attempts; None: give up."""
        if attempts >= self.max_attempts:
            return None
        wait = min(self.max_delay, self.delay * 2 ** max(0, attempts - 1))
        at = now + timedelta(seconds=wait)
        if (at - created_at).total_seconds() > self.max_age:
            return None
        return at
