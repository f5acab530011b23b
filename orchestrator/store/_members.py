"""Several daemons on one PostgreSQL store: leases, fencing and shares of the work.

Each daemon incarnation is a row of ``daemon`` with a new ``epoch`` (never reused).
The DAGs are split into ``SHARDS`` shards by a stable hash of their id (``_shards``); each shard is
scheduled by one live daemon (``shard.owner``), and each run is driven by the daemon
named in its ``driver`` column (``daemon:{epoch}``).

Rules (the invariants are in docs/ARCHITECTURE.md, "Several daemons"):
1. Time is the database's (``clock_timestamp()``), never a daemon's: a daemon is alive
   while its row says ``alive`` and its heartbeat is younger than ``ttl`` seconds.
2. Fencing: every write transaction of a daemon begins with ``FENCE``, a ``FOR KEY
   SHARE`` lock on its own row while it is ``alive``. Another daemon ends a lapsed lease
   by locking that row ``FOR UPDATE`` (which waits for a write in flight to commit) and
   marking it ended; after that every write of the lapsed daemon finds no row and
   changes nothing (``LeaseLost``). The heartbeat's own update of the row takes a lock
   that does not conflict with the fence, so it never holds the daemon's writes up.
3. A heartbeat (``beat``) finds its own row alive or raises ``LeaseLost``; then, in the
   same transaction, it ends the leases that lapsed, frees their shards and takes free
   shards up to a fair share (the shard's epoch counts each change of hands). Shards
   over the fair share are named, and given back (``_shards.release_statements``) by the
   daemon once it has stopped scheduling them.
4. A run is claimed (``claim_runs``) in a fenced transaction, only if nobody live drives
   it: a run is driven by one live daemon at a time.
5. A daemon that leaves (a graceful stop) ends its own lease and frees its shards, so
   the others take them over at their next heartbeat, not after ``ttl``.
6. ``NOTIFY`` on ``NOTICE_CHANNEL`` (sent in the transaction of the write it tells of, so it
   arrives after the commit) only wakes the other daemons to read the store at once;
   each also reads it every reconcile, so a notice lost with a connection delays
   nothing for longer than that.
7. Pools hold across the daemons (``balance``): in a fenced transaction that locks
   every pool's row, a daemon reads what the live daemons hold and want of each pool
   and stores its own grant (``core._slots``); grants of ended daemons are dropped,
   but the slots their tries on workers hold count against the pool until another
   daemon adopts those tries (``try_work.driver``) or they end. It tells the others
   (``pools:``) when it gave slots back while one of them wanted more, or when it
   wants more than it may hold.
8. A lease transaction left open by a daemon that froze mid-way is ended by the server
   after ``ttl / 4`` seconds (at least one) idle in it, releasing its locks: the fence
   on its row (which a takeover waits for) and the pools' rows.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import asyncpg

from orchestrator._clock import iso
from orchestrator.core._slots import Claim, limit_of
from orchestrator.errors import StoreError, StoreUnavailable
from orchestrator.store._backend import ClaimLost
from orchestrator.store._pgerrors import CLIENT_ERRORS, LOST
from orchestrator.store._rows import NOTICE_CHANNEL
from orchestrator.store._shards import SHARDS, driver_tag

__all__ = ["FENCE", "Balance", "LeaseLost", "Membership", "Share", "daemon_json", "fence"]

NOW = "extract(epoch from clock_timestamp())"
FENCE = "SELECT 1 FROM daemon WHERE epoch = $1 AND state = 'alive' FOR KEY SHARE"
_LOST = (*LOST, *CLIENT_ERRORS)


class LeaseLost(ClaimLost):
    """This daemon's lease lapsed and another daemon ended it: it must write no more."""

    @classmethod
    def of(cls, epoch: int) -> LeaseLost:
        return cls(f"this daemon's lease (epoch {epoch}) was ended by another")


@dataclass(frozen=True, slots=True)
class Share:
    """What a heartbeat found: the shards this daemon holds, and what changed."""

    owned: frozenset[int]
    excess: tuple[int, ...] = ()  # held over the fair share: to give back
    ended: tuple[int, ...] = ()  # the epochs of lapsed daemons this heartbeat ended
    alive: int = 1


@dataclass(frozen=True, slots=True)
class Balance:
    """What a balance of the pools found (rule 7)."""

    limits: dict[str, int]  # every pool: the slots this daemon's tries may hold
    sizes: dict[str, int]  # every pool: its slots
    over: frozenset[str] = frozenset()  # where they hold more: balance as they end
    contended: frozenset[str] = frozenset()  # where another daemon wants more than it holds
    told: bool = False  # the others were told to balance


@dataclass(slots=True)
class Membership:
    """One daemon's lease on a PostgreSQL store, on a connection of its own."""

    url: str
    ttl: float
    name: str = ""
    api_url: str = ""
    epoch: int = 0
    _conn: Any = field(default=None, repr=False)
    _lock: anyio.Lock = field(default_factory=anyio.Lock, repr=False)

    async def _connect(self) -> Any:
        """A new session, named after this daemon (so its sessions can be found). One
        left in a transaction by a daemon frozen mid-write (stopped, its machine
        suspended) is ended by the server, so its locks never hold the others up for
        long (rule 8)."""
        idle = max(1.0, self.ttl / 4)
        return await asyncpg.connect(
            self.url,
            server_settings={
                "application_name": f"orchestrator {self.name}",
                "idle_in_transaction_session_timeout": str(int(idle * 1000)),
            },
        )

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            try:
                self._conn = await self._connect()
            except (*_LOST, asyncpg.PostgresError) as exc:
                raise StoreUnavailable(f"PostgreSQL unreachable for the lease: {exc}") from exc
        return self._conn

    async def _transaction(self, body: Any) -> Any:
        """``body(conn)`` in one transaction, one at a time; StoreUnavailable if the
        connection is lost."""
        async with self._lock:
            return await self._transaction_now(body)

    async def _transaction_now(self, body: Any) -> Any:
        conn = await self._connection()
        try:
            async with conn.transaction():
                return await body(conn)
        except ClaimLost:
            raise
        except _LOST as exc:
            conn.terminate()
            raise StoreUnavailable(
                f"PostgreSQL connection lost during a lease write: {exc}"
            ) from exc
        except asyncpg.PostgresError as exc:
            raise StoreError(f"lease write failed: {exc}") from exc
        except BaseException:  # cancelled mid-transaction: the session is not used again
            conn.terminate()
            raise

    async def join(self) -> int:
        """Register a new incarnation (a new epoch) and return its epoch.

        Earlier incarnations on this host whose process is gone are ended at once, so a
        restarted daemon takes back its work without waiting out their lease.
        """
        host, pid = socket.gethostname(), os.getpid()

        async def body(conn: Any) -> int:
            await conn.execute(
                f"INSERT INTO shard (id) SELECT g FROM generate_series(0, {SHARDS - 1}) g "
                "ON CONFLICT (id) DO NOTHING"
            )
            rows = await conn.fetch(
                "SELECT epoch, pid FROM daemon WHERE state = 'alive' AND host = $1", host
            )
            gone = [r["epoch"] for r in rows if r["pid"] != pid and not _process_alive(r["pid"])]
            epoch = await conn.fetchval(
                "INSERT INTO daemon (epoch, name, host, pid, api_url, state, started_at, "
                f"heartbeat_at) SELECT COALESCE(MAX(epoch), 0) + 1, $1, $2, $3, $4, 'alive', "
                f"{NOW}, {NOW} FROM daemon RETURNING epoch",
                self.name,
                host,
                pid,
                self.api_url,
            )
            await _end(conn, epoch, gone)
            return int(epoch)

        self.epoch = await self._transaction(_serialised(body))
        return self.epoch

    async def beat(self) -> Share:
        """Heartbeat, end lapsed leases, take a fair share (rule 3); LeaseLost if ours ended."""

        async def body(conn: Any) -> Share:
            if (
                await conn.fetchval(
                    f"UPDATE daemon SET heartbeat_at = {NOW}, api_url = $2 "
                    "WHERE epoch = $1 AND state = 'alive' RETURNING 1",
                    self.epoch,
                    self.api_url,
                )
                is None
            ):
                raise LeaseLost.of(self.epoch)
            lapsed = await conn.fetch(
                "SELECT epoch FROM daemon WHERE state = 'alive' "
                f"AND heartbeat_at < {NOW} - $1 ORDER BY epoch FOR UPDATE",
                self.ttl,
            )
            ended = [r["epoch"] for r in lapsed]
            await _end(conn, self.epoch, ended)
            alive = await conn.fetchval("SELECT COUNT(*) FROM daemon WHERE state = 'alive'")
            fair = math.ceil(SHARDS / max(1, alive))
            mine = {
                r["id"]
                for r in await conn.fetch("SELECT id FROM shard WHERE owner = $1", self.epoch)
            }
            if len(mine) < fair:
                rows = await conn.fetch(
                    f"UPDATE shard SET owner = $1, epoch = epoch + 1, taken_at = {NOW} "
                    "WHERE id IN (SELECT id FROM shard WHERE owner IS NULL ORDER BY id "
                    "LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id",
                    self.epoch,
                    fair - len(mine),
                )
                mine |= {r["id"] for r in rows}
            await conn.execute(
                "UPDATE daemon SET shards = $2, takeovers = takeovers + $3 WHERE epoch = $1",
                self.epoch,
                len(mine),
                len(ended),
            )
            excess = tuple(sorted(mine)[fair:])
            return Share(frozenset(mine), excess, tuple(ended), int(alive))

        share: Share = await self._transaction(body)
        return share

    async def claim_runs(self, runs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """The runs among ``runs`` this daemon now drives (rule 4)."""
        if not runs:
            return set()

        async def body(conn: Any) -> set[tuple[str, str]]:
            await fence(conn, self.epoch)
            rows = await conn.fetch(
                "UPDATE dag_run r SET driver = $1 FROM unnest($2::text[], $3::text[]) AS k(d, i) "
                "WHERE r.dag_id = k.d AND r.run_id = k.i AND r.state IN ('queued', 'running') "
                "AND (r.driver IS NULL OR r.driver = $1 OR (r.driver LIKE 'daemon:%' AND "
                "NOT EXISTS (SELECT 1 FROM daemon d WHERE r.driver = 'daemon:' || d.epoch "
                "AND d.state = 'alive'))) RETURNING r.dag_id, r.run_id",
                driver_tag(self.epoch),
                [d for d, _ in runs],
                [r for _, r in runs],
            )
            return {(r["dag_id"], r["run_id"]) for r in rows}

        claimed: set[tuple[str, str]] = await self._transaction(body)
        return claimed

    async def balance(self, demand: Mapping[str, tuple[int, int]]) -> Balance:
        """This daemon's limit in every pool, for ``demand`` (pool: slots its tries hold,
        slots they want in all), its grants stored (rule 7)."""

        async def body(conn: Any) -> Balance:
            await fence(conn, self.epoch)
            pools = await conn.fetch("SELECT name, slots FROM pool ORDER BY name FOR UPDATE")
            alive = await conn.fetch("SELECT epoch FROM daemon WHERE state = 'alive'")
            await conn.execute(
                "DELETE FROM pool_grant g WHERE NOT EXISTS (SELECT 1 FROM daemon d "
                "WHERE d.epoch = g.epoch AND d.state = 'alive') "
                "OR NOT EXISTS (SELECT 1 FROM pool p WHERE p.name = g.pool)"
            )
            claims: dict[tuple[str, int], Claim] = {
                (r["pool"], r["epoch"]): (r["granted"], r["wanted"])
                for r in await conn.fetch("SELECT pool, epoch, granted, wanted FROM pool_grant")
            }
            gone = {  # tries on workers whose daemon is gone and that none adopted yet
                r["pool"]: r["slots"]
                for r in await conn.fetch(
                    "SELECT pool, SUM(pool_slots) AS slots FROM try_work w "
                    "WHERE state IN ('queued', 'running') AND NOT EXISTS (SELECT 1 FROM "
                    "daemon d WHERE w.driver = 'daemon:' || d.epoch AND d.state = 'alive') "
                    "GROUP BY pool"
                )
            }
            others = [r["epoch"] for r in alive if r["epoch"] != self.epoch]
            limits: dict[str, int] = {}
            over: set[str] = set()
            contended: set[str] = set()
            tell = False
            rows = []
            for pool in pools:
                name = pool["name"]
                theirs = {e: claims.get((name, e), (0, 0)) for e in others}
                used, wanted = demand.get(name, (0, 0))
                slots = pool["slots"] - gone.get(name, 0)
                limit, granted = limit_of(slots, self.epoch, used, wanted, theirs)
                before = claims.get((name, self.epoch), (0, 0))
                limits[name] = limit
                if granted > limit:
                    over.add(name)
                if any(w > g for g, w in theirs.values()):
                    contended.add(name)
                if granted < before[0] and name in contended:
                    tell = True  # slots given back that another wants
                if theirs and wanted > limit and wanted > before[1]:
                    tell = True  # short, and wanting more than the others know
                if (granted, wanted) != before:
                    rows.append((name, self.epoch, granted, wanted))
            await conn.executemany(
                "INSERT INTO pool_grant (pool, epoch, granted, wanted) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (pool, epoch) DO UPDATE SET granted = EXCLUDED.granted, "
                "wanted = EXCLUDED.wanted",
                rows,
            )
            if tell:
                await conn.execute(
                    "SELECT pg_notify($1, $2)", NOTICE_CHANNEL, f"pools:{self.epoch}"
                )
            sizes = {pool["name"]: pool["slots"] for pool in pools}
            return Balance(limits, sizes, frozenset(over), frozenset(contended), tell)

        balance: Balance = await self._transaction(body)
        return balance

    async def leave(self) -> None:
        """End this daemon's own lease and free its shards (rule 5)."""

        async def body(conn: Any) -> None:
            await _end(conn, self.epoch, [self.epoch])

        await self._transaction(body)

    async def listen(self, on_notice: Callable[[str], None]) -> None:
        """Call ``on_notice`` with each payload sent to ``NOTICE_CHANNEL`` by another daemon, and
        with ``"resync"`` after each (re)connection, when notices may have been missed;
        until cancelled. A lost connection is made again, with backoff."""
        delay = 0.1
        own = f":{self.epoch}"
        while True:
            try:
                conn = await self._connect()
            except (*_LOST, asyncpg.PostgresError):
                await anyio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.1
            closed = anyio.Event()
            try:
                conn.add_termination_listener(lambda _, ended=closed: ended.set())
                await conn.add_listener(
                    NOTICE_CHANNEL,
                    lambda _c, _pid, _ch, payload: (
                        None if payload.endswith(own) else on_notice(payload)
                    ),
                )
                on_notice("resync")
                while not closed.is_set():
                    with anyio.move_on_after(5):
                        await closed.wait()
                    if not closed.is_set():
                        await conn.execute("SELECT 1")  # a half-open connection shows here
            except (*_LOST, asyncpg.PostgresError):
                pass
            finally:
                conn.terminate()

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None


DAEMONS_SQL = (
    "SELECT epoch, name, host, pid, api_url, state, started_at, ended_at, ended_by, shards, "
    f"takeovers, {NOW} - heartbeat_at AS heartbeat_age FROM daemon "
    f"WHERE state = 'alive' OR ended_at > {NOW} - 86400 ORDER BY epoch"
)


def daemon_json(row: dict[str, Any]) -> dict[str, Any]:
    """A daemon's row as ``daemons list --json``, the API and ``/health`` show it."""

    def when(seconds: float | None) -> str | None:
        return None if seconds is None else iso(datetime.fromtimestamp(seconds, UTC))

    return {
        "epoch": row["epoch"],
        "name": row["name"],
        "host": row["host"],
        "pid": row["pid"],
        "api_url": row["api_url"],
        "state": row["state"],
        "started_at": when(row["started_at"]),
        "heartbeat_age_s": round(float(row["heartbeat_age"]), 3),
        "shards": row["shards"] if row["state"] == "alive" else 0,
        "takeovers": row["takeovers"],
        "ended_at": when(row["ended_at"]),
        "ended_by": row["ended_by"],
    }


async def fence(conn: Any, epoch: int) -> None:
    """Rule 2, at the start of a write transaction: LeaseLost if the lease was ended."""
    if await conn.fetchval(FENCE, epoch) is None:
        raise LeaseLost.of(epoch)


async def _end(conn: Any, by: int, epochs: Sequence[int]) -> None:
    """End these daemons' leases and free their shards."""
    if epochs:
        # FOR UPDATE conflicts with the fence's FOR KEY SHARE: a write in flight ends first.
        await conn.execute(
            "SELECT 1 FROM daemon WHERE epoch = ANY($1::int[]) FOR UPDATE", list(epochs)
        )
        await conn.execute(
            f"UPDATE daemon SET state = 'ended', ended_at = {NOW}, ended_by = $1 "
            "WHERE epoch = ANY($2::int[]) AND state = 'alive'",
            by,
            list(epochs),
        )
        await conn.execute(
            "UPDATE shard SET owner = NULL WHERE owner = ANY($1::int[])", list(epochs)
        )


def _serialised(body: Any) -> Any:
    """``body`` after a lock that makes registrations one at a time (epochs never clash)."""

    async def locked(conn: Any) -> Any:
        await conn.execute("LOCK TABLE daemon IN SHARE ROW EXCLUSIVE MODE")
        return await body(conn)

    return locked


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
