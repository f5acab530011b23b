"""Which DAGs and runs this daemon drives, alone or beside other daemons.

On SQLite the daemon is alone (a second one refuses to start) and drives everything.
On PostgreSQL it is one of any number of daemons (``store._members``): it schedules the
DAGs of the shards it holds and drives the runs it claimed.

Rules:
1. Before anything is read or written, the daemon joins: its writes are fenced by its
   lease from then on (``fence_epoch``), and its first heartbeat gives it its share.
2. A heartbeat every ``ttl / 5`` seconds keeps the lease and takes shards freed by
   daemons that stopped or lapsed; ``on_change`` is told of shards gained and shards
   to give back, and shards are given back only after it returns, through the writer,
   so every write the daemon made for them is committed first.
3. A lost lease (``LeaseLost``) ends the daemon at once: it writes nothing more.
   While the store is unreachable the heartbeat waits and tries again; the fence
   keeps a daemon whose lease lapsed meanwhile from writing.
4. A graceful stop ends the lease, so the others take the shards over at once.
5. What another daemon must act on (a run it schedules, a pause, a dataset update) is
   told with ``notify``, in the writer's order after the write itself; ``listen`` hands
   the notices of the others to ``on_notice``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from orchestrator.core import RunRecord
from orchestrator.errors import StoreError, StoreUnavailable
from orchestrator.store import Store
from orchestrator.store._shards import driver_tag, release_statements, shard_of

if TYPE_CHECKING:
    from orchestrator.store._members import Membership, Share
from orchestrator.store._rows import notice_statement

__all__ = ["Shares"]

log = structlog.get_logger("orchestrator.daemon")

OnChange = Callable[[frozenset[int], frozenset[int]], Awaitable[None]]


class Shares:
    """See the module's rules."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.membership: Membership | None = None
        self.owned: frozenset[int] = frozenset()
        self.takeovers = 0
        self.on_change: OnChange | None = None
        self.on_notice: Callable[[str], None] = lambda _: None
        self.members: list[dict[str, Any]] = []  # the daemons, as of the last heartbeat
        self._store: Store | None = None

    @property
    def shared(self) -> bool:
        """Whether other daemons may share this store (PostgreSQL)."""
        return self.membership is not None

    @property
    def tag(self) -> str | None:
        """The ``driver`` of the runs this daemon drives (None when alone)."""
        return driver_tag(self.membership.epoch) if self.membership is not None else None

    def owns(self, dag_id: str) -> bool:
        """Whether this daemon schedules ``dag_id`` (its firings, admission, deadlines)."""
        return self.membership is None or shard_of(dag_id) in self.owned

    def drives(self, run: RunRecord, alive: Collection[str] = ()) -> bool:
        """Whether a stored unfinished run is this daemon's to drive: a run of one of its
        DAGs that no live daemon drives, or one it drives already."""
        if run.driver is not None and not run.driver.startswith("daemon:"):
            return False  # a CLI process drives it
        if self.membership is None:
            return True
        if run.driver == self.tag:
            return True
        return self.owns(run.dag_id) and (run.driver is None or run.driver not in alive)

    # -- lifecycle ---------------------------------------------------------------------

    async def join(self, store: Store, url: str) -> None:
        """Rule 1 (a store of one's own: the store's lock instead)."""
        self._store = store
        name = f"pid {os.getpid()} on {socket.gethostname()}"
        if store.dialect != "postgresql":
            await store.lock_for_daemon(f"orchestrator daemon {name}")
            return
        # Only a daemon on PostgreSQL loads the driver and the leases over it.
        from orchestrator.store._members import Membership
        from orchestrator.store._postgres import PostgresBackend

        assert isinstance(store.backend, PostgresBackend)
        self.membership = Membership(url, self.ttl, name=name)
        epoch = await self.membership.join()
        store.backend.fence_epoch = store.owner = epoch
        share = await self.membership.beat()
        self.owned = share.owned
        self.members = await self._members()
        log.info(
            "joined the daemons on this store",
            epoch=epoch,
            shards=len(self.owned),
            daemons=share.alive,
        )

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Rules 2 and 3: heartbeats until cancelled."""
        task_status.started()
        if self.membership is None:
            return
        interval = max(0.1, self.ttl / 5)
        while True:
            await anyio.sleep(interval)
            try:
                share = await self.membership.beat()
                self.members = await self._members()
            except StoreUnavailable as exc:
                log.warning("store unavailable: heartbeat missed", error=str(exc))
                continue
            await self._apply(share)

    async def _members(self) -> list[dict[str, Any]]:
        assert self._store is not None
        return await self._store.daemons()

    def health(self) -> dict[str, Any]:
        """This daemon's part of ``/health``: its lease and share, and the others."""
        if self.membership is None:
            return {}
        return {
            "epoch": self.membership.epoch,
            "shards": len(self.owned),
            "takeovers": self.takeovers,
            "daemons": self.members,
        }

    async def _apply(self, share: Share) -> None:
        if share.ended:
            self.takeovers += len(share.ended)
            log.warning(
                "daemons' leases lapsed: their work is taken over", epochs=list(share.ended)
            )
        gained = share.owned - self.owned
        excess = frozenset(share.excess)
        self.owned = share.owned - excess
        if (gained or excess) and self.on_change is not None:
            await self.on_change(gained, excess)
        if excess:
            await self.release(excess)
        if gained or excess:
            log.info(
                "share changed", shards=len(self.owned), gained=len(gained), given_back=len(excess)
            )

    async def release(self, shards: Iterable[int]) -> None:
        """Give shards back after every write before (rule 2)."""
        assert self._store is not None
        assert self.membership is not None
        await self._store.write(release_statements(self.membership.epoch, shards))

    async def leave(self) -> None:
        """Rule 4."""
        if self.membership is None:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            try:
                await self.membership.leave()
            except StoreError as exc:
                log.warning(
                    "could not end the lease: the others wait for it to lapse", error=str(exc)
                )
        await self.membership.close()

    def serving(self, api_url: str) -> None:
        """The API's address, shown to the other daemons (and forwarded to)."""
        if self.membership is not None:
            self.membership.api_url = api_url

    def notify(self, kind: str) -> None:
        """Rule 5: wake the other daemons to read the store (alone: nothing to do)."""
        if self.membership is not None and self._store is not None:
            self._store.write_nowait([notice_statement(f"{kind}:{self.membership.epoch}")])

    async def listen(self) -> None:
        """Rule 5, until cancelled."""
        if self.membership is not None:
            await self.membership.listen(self.on_notice)

    # -- runs ---------------------------------------------------------------------------

    async def claim(self, runs: Sequence[RunRecord]) -> list[RunRecord]:
        """The runs among ``runs`` this daemon may drive now; their ``driver`` set to it."""
        if self.membership is None or not runs:
            return list(runs)
        claimed = await self.membership.claim_runs([(r.dag_id, r.run_id) for r in runs])
        mine = [r for r in runs if (r.dag_id, r.run_id) in claimed]
        for run in mine:
            run.driver = self.tag
        return mine

    def alive_tags(self) -> set[str]:
        """The ``driver`` of every live daemon, as of the last heartbeat. One that ended
        since is still in it until the next (its runs are taken over a heartbeat later);
        one that joined since is not, and a claim of its runs fails in the store."""
        return {driver_tag(d["epoch"]) for d in self.members if d["state"] == "alive"}
