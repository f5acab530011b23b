"""Pools that hold across the daemons sharing a PostgreSQL store.

Each daemon counts its own tries against a limit per pool, and the limits are shared
out in the store (``store._members``, rule 7; ``core._slots``), so the tries of all
the daemons together never hold more of a pool than its slots, whichever daemon
drives their runs and whichever worker runs them.

Rules:
1. Before any try starts, the daemon balances once: its limits come from the store,
   never from the pool's size alone. While the store cannot be reached at that
   moment, its limits are nought (nothing starts in a pool) until a balance succeeds.
2. It balances again when a waiting try found no room in a pool it holds less of
   than the pool's size; when room is given back in a pool where its tries hold more
   than its limit, or another daemon wants more than it holds; when another daemon
   tells it to (``pools:`` notices); and every ``interval`` seconds (a pool resized
   with ``orchestrator pools set`` is seen then).
3. Balances are one at a time, at least ``GAP`` seconds apart, so a burst of the
   reasons above costs one transaction.
4. A lost lease (``LeaseLost``) ends the daemon, as the heartbeat's does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import structlog

from orchestrator.errors import StoreError
from orchestrator.runtime._scheduler import Scheduler
from orchestrator.store._backend import ClaimLost

if TYPE_CHECKING:
    from orchestrator.store._members import Membership

__all__ = ["PoolBalance"]

log = structlog.get_logger("orchestrator.daemon")

GAP = 0.05


class PoolBalance:
    """See the module's rules."""

    def __init__(self, membership: Membership, scheduler: Scheduler, interval: float) -> None:
        self.membership = membership
        self.scheduler = scheduler
        self.interval = interval
        self.limits: dict[str, int] = {}
        self.sizes: dict[str, int] = {}
        self.over: frozenset[str] = frozenset()
        self.contended: frozenset[str] = frozenset()
        self._wake = anyio.Event()
        queue = scheduler.queue
        queue.on_starved = self._starved
        queue.on_release = self._released

    def wake(self) -> None:
        """Balance soon (rule 2)."""
        self._wake.set()

    def _starved(self, pool: str) -> None:
        if self.limits.get(pool, 0) < self.sizes.get(pool, 0):
            self._wake.set()

    def _released(self, pool: str) -> None:
        if pool in self.over or pool in self.contended:
            self._wake.set()

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Rules 1 to 3, until cancelled."""
        self.scheduler.set_pools(dict.fromkeys(self.scheduler.queue.pools, 0))
        await self._balance()
        task_status.started()
        while True:
            with anyio.move_on_after(self.interval):
                await self._wake.wait()
            self._wake = anyio.Event()
            await self._balance()
            await anyio.sleep(GAP)

    async def _balance(self) -> None:
        try:
            found = await self.membership.balance(self.scheduler.queue.demand())
        except ClaimLost:
            raise
        except StoreError as exc:
            log.warning("store unavailable: pools not balanced", error=str(exc))
            return
        self.sizes = found.sizes
        self.over = found.over
        self.contended = found.contended
        if found.limits != self.limits:
            self.limits = found.limits
            self.scheduler.set_pools(dict(found.limits))
