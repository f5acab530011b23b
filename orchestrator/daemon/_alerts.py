"""The daemon's alert parts: the scheduler's outbox, fed from the store too, and deadlines.

Rules:
1. Email and webhooks go out through the alert sender process (``alerts._sender``),
   kept running beside the scheduler, once the tries running end (for at most a
   second); callbacks are called here.
2. Once the DAGs are loaded (callbacks are found in them), and then at every
   reconcile, the pending alerts whose time has come are taken from the store: what a
   crash, a restart or a CLI process left is delivered.
3. Every run the daemon drives is watched for its DAG's deadlines from its creation
   (or from the start, for runs read from the store) to its end.
4. Delivered alerts are forgotten after ``alert_retention_days``; dead letters stay until
   retried (``alerts retry``), which makes one pending again and delivers it at once.
5. A graceful shutdown gives the alerts due a few seconds of its grace; the rest stay
   pending in the store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import anyio
import structlog

from orchestrator._clock import Clock
from orchestrator.alerts._deadlines import DeadlineWatch
from orchestrator.alerts._outbox import Outbox
from orchestrator.alerts._sender import Sender
from orchestrator.authoring._dag import DAG
from orchestrator.core import RunRecord
from orchestrator.daemon._metrics import Metrics
from orchestrator.errors import Conflict, NotFound
from orchestrator.store import Store, alert_json

__all__ = ["AlertFeed"]

log = structlog.get_logger("orchestrator.alerts")

_PRUNE_EVERY = timedelta(hours=1)


class AlertFeed:
    """The outbox and the deadline watch, as the daemon drives them (see the rules)."""

    def __init__(
        self,
        outbox: Outbox,
        store: Store,
        clock: Clock,
        metrics: Metrics,
        *,
        dags: Callable[[str], DAG | None],
        api_url: Callable[[], str],
        quiet: Callable[[], Awaitable[None]],
        retention_days: float,
    ) -> None:
        self.outbox = outbox
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.retention = timedelta(days=retention_days)
        self._pruned: datetime | None = None
        self._ready = False
        outbox.api_url = api_url
        outbox.on_outcome = self._counted
        self.sender = outbox.sender = Sender(outbox.services.settings)
        outbox.quiet = quiet
        self.deadlines = DeadlineWatch(
            store,
            clock,
            outbox.schedule,
            outbox,
            dags=dags,
            on_missed=metrics.deadlines_missed.inc,
        )

    def _counted(self, kind: str, outcome: str) -> None:
        self.metrics.alert_deliveries.labels(kind=kind, outcome=outcome).inc()

    async def open(self, unfinished: Iterable[RunRecord]) -> None:
        await self.deadlines.open(unfinished)

    async def ready(self) -> None:
        """The DAGs are loaded (rule 2)."""
        self._ready = True
        await self.outbox.recover()

    async def reconcile(self) -> None:
        if self._ready:
            await self.outbox.recover()
        now = self.clock.now()
        if self._pruned is None or now - self._pruned >= _PRUNE_EVERY:
            self._pruned = now
            await self.store.prune_alerts(now - self.retention)

    async def settle(self, grace: float) -> None:
        """Rule 5."""
        with anyio.move_on_after(grace):
            await self.outbox.settled()

    # -- the API's ----------------------------------------------------------------------

    async def list(
        self, *, state: str | None, dag_id: str | None, limit: int
    ) -> list[dict[str, Any]]:
        return [
            alert_json(r)
            for r in await self.store.list_alerts(state=state, dag_id=dag_id, limit=limit)
        ]

    async def retry(self, alert_id: str) -> dict[str, Any]:
        """Rule 4: a dead letter made pending and tried at once."""
        row = await self.store.alert_row(alert_id)
        if row is None:
            raise NotFound(f"alert {alert_id!r} not found")
        record = await self.store.retry_alert(alert_id)
        if record is None:
            raise Conflict(f"alert {alert_id!r} is {row['state']}, not failed: nothing to retry")
        self.outbox.retry(record)
        log.info("dead letter sent again", alert_id=alert_id)
        return alert_json({**row, "state": "pending", "attempts": 0, "finished_at": None})

    async def counts(self) -> dict[str, int]:
        return await self.store.count_alerts()
