"""The Celery application the daemon sends tries with and the workers take them from.

A message carries only a try's id (``store._work``): the try's description, its claim,
heartbeats, output and outcome live in the store. So the settings favour never losing
a message over never delivering one twice (a second delivery finds the try claimed):
one message prefetched at a time, acknowledged on receipt (a try that outlives a
broker's redelivery timeout is never delivered again under it), persistent messages,
retried connections. A message lost with a worker that took it before its claim is
sent again by the daemon (``celery_resend_after``).
"""

from __future__ import annotations

from typing import Any

from orchestrator._settings import Settings
from orchestrator.errors import ConfigError

__all__ = ["celery_app", "queue_name"]


def queue_name(settings: Settings, queue: str) -> str:
    """The broker's name for a task's ``queue=``: prefixed, so installations can share a
    broker (``ORCHESTRATOR_CELERY_QUEUE_PREFIX``)."""
    return settings.celery_queue_prefix + queue


def celery_app(settings: Settings) -> Any:
    try:
        from celery import Celery
    except ImportError:
        raise ConfigError(
            "the celery executor needs Celery: pip install 'orchestrator[celery]'"
        ) from None
    if not settings.celery_broker:
        raise ConfigError("ORCHESTRATOR_CELERY_BROKER is not set (amqp://... or redis://...)")
    app = Celery("orchestrator", broker=settings.celery_broker, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=False,
        task_default_queue=queue_name(settings, "default"),
        task_create_missing_queues=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        worker_enable_remote_control=False,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_heartbeat=10,
    )
    return app
