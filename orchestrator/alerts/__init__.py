"""Alerts: the notifier interface and its email and webhook notifiers, deadline alerts.

The outbox that delivers every alert (``_outbox``), what each alert delivers
(``_plan``) and the deadline timers (``_deadlines``) are the daemon's.
"""

from orchestrator.alerts._notifiers import (
    BaseNotifier,
    EmailNotifier,
    WebhookDeliveryError,
    WebhookNotifier,
    sign,
)
from orchestrator.authoring._alerting import DeadlineAlert, DeadlineReference, Webhook

__all__ = [
    "BaseNotifier",
    "DeadlineAlert",
    "DeadlineReference",
    "EmailNotifier",
    "Webhook",
    "WebhookDeliveryError",
    "WebhookNotifier",
    "sign",
]
