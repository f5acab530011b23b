"""Leases, fencing and shares of several daemons on one PostgreSQL store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import asyncpg
import pytest

from orchestrator.core._records import AlertRecord
from orchestrator.store import Statement, _postgres, open_store, plan_groups
from orchestrator.store._members import FENCE, LeaseLost, Membership
from orchestrator.store._postgres import PostgresBackend
from orchestrator.store._rows import alert_statement
from orchestrator.store._shards import SHARDS, driver_tag, release_statements, shard_of
from orchestrator.store._work import adopt_work, queued_work

pytestmark = pytest.mark.postgres


async def _until(check: Callable[[], Awaitable[Any]], what: str, within: float = 10.0) -> Any:
    """Poll ``check`` (a query) until it is truthy: for states another session reaches."""
    with anyio.fail_after(within):
        while not (found := await check()):  # noqa: ASYNC110 (another session)
            await anyio.sleep(0.02)
    return found


def _dag(dag_id: str, sql: str = "") -> Statement:
    return Statement(
        "dag",
        sql or "INSERT INTO dag (dag_id) VALUES (?) ON CONFLICT (dag_id) DO NOTHING",
        (dag_id,),
    )


async def test_a_takeover_waits_for_the_old_owners_write_and_a_stale_epoch_writes_nothing(
    pg_url: str,
) -> None:
    async with open_store(pg_url) as store:
        old, new = Membership(pg_url, ttl=5, name="old"), Membership(pg_url, ttl=5, name="new")
        spy = await asyncpg.connect(pg_url)
        owner = await asyncpg.connect(pg_url)
        try:
            await old.join()
            assert (await old.beat()).owned == frozenset(range(SHARDS))
            await new.join()
            # The old owner's lease has lapsed by the database's clock...
            await spy.execute(
                "UPDATE daemon SET heartbeat_at = heartbeat_at - 60 WHERE epoch = $1", old.epoch
            )
            # ...but a write transaction of it holds its fence when the takeover comes.
            tx = owner.transaction()
            await tx.start()
            assert await owner.fetchval(FENCE, old.epoch) == 1
            await owner.execute("INSERT INTO dag (dag_id) VALUES ('written in time')")
            async with anyio.create_task_group() as tg:
                shares = []

                async def takeover() -> None:
                    shares.append(await new.beat())

                tg.start_soon(takeover)
                await _until(
                    lambda: spy.fetchval(
                        "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND application_name = 'orchestrator new'"
                    ),
                    "the takeover waiting for the old owner's transaction",
                )
                assert not shares  # it waits
                await tx.commit()
            (share,) = shares
            assert share.ended == (old.epoch,)
            assert share.owned == frozenset(range(SHARDS))
            # Every write the old owner tries now changes nothing, in a transaction or
            # as one statement (the writer's two paths).
            backend = store.backend
            assert isinstance(backend, PostgresBackend)
            backend.fence_epoch = old.epoch
            for unit in (
                [_dag("one statement")],
                [_dag("a"), _dag("b", "INSERT INTO dag (dag_id, fileloc) VALUES (?, 'x')")],
            ):
                with pytest.raises(LeaseLost):
                    await backend.execute_batch(plan_groups(unit))
            with pytest.raises(LeaseLost):
                await old.beat()
            with pytest.raises(LeaseLost):
                await old.claim_runs([("d", "r")])
            backend.fence_epoch = new.epoch
            await backend.execute_batch(plan_groups([_dag("by the new owner")]))
            dags = {r["dag_id"] for r in await spy.fetch("SELECT dag_id FROM dag")}
            assert dags == {"written in time", "by the new owner"}
            epochs = {r["epoch"] for r in await spy.fetch("SELECT DISTINCT epoch FROM shard")}
            assert epochs == {2}  # taken twice: by the old owner, then by the new one
        finally:
            for conn in (spy, owner):
                await conn.close()
            for member in (old, new):
                await member.close()


async def test_shares_are_fair_each_shard_has_one_owner_and_a_run_one_driver(
    pg_url: str,
) -> None:
    async with open_store(pg_url) as store:
        members = [Membership(pg_url, ttl=5, name=f"d{i}") for i in range(3)]
        spy = await asyncpg.connect(pg_url)
        try:
            for member in members:
                await member.join()
            first = await members[0].beat()
            assert len(first.owned) == SHARDS // 3 + 1  # a fair share, though alone to start
            for member in members[1:]:
                await member.beat()
            owners = await spy.fetch("SELECT owner, COUNT(*) AS n FROM shard GROUP BY owner")
            assert sorted(r["n"] for r in owners) == [
                84,
                86,
                86,
            ]  # fair: at most ceil(256 / 3) each
            assert None not in {r["owner"] for r in owners}
            # A run is driven by one live daemon at a time.
            await store.write(
                [
                    Statement(
                        "dag_run",
                        "INSERT INTO dag_run (dag_id, run_id, state, run_type, queued_at) "
                        "VALUES (?, ?, 'queued', 'manual', 'x')",
                        ("etl", "r1"),
                    )
                ]
            )
            assert await members[0].claim_runs([("etl", "r1")]) == {("etl", "r1")}
            assert await members[0].claim_runs([("etl", "r1")]) == {("etl", "r1")}
            assert await members[1].claim_runs([("etl", "r1")]) == set()
            # One leaves: its shards are free at once, taken by the others' next beats, and
            # its runs may be claimed.
            await members[0].leave()
            shares = [await m.beat() for m in members[1:]]
            assert sorted(len(s.owned) for s in shares) == [128, 128]
            assert shares[0].owned.isdisjoint(shares[1].owned)
            assert await members[1].claim_runs([("etl", "r1")]) == {("etl", "r1")}
            with pytest.raises(LeaseLost):
                await members[0].beat()
            # A newcomer's fair share comes from the shards the others give back.
            late = Membership(pg_url, ttl=5, name="late")
            members.append(late)
            await late.join()
            assert (await late.beat()).owned == frozenset()
            excess = [await m.beat() for m in members[1:3]]
            assert [len(s.excess) for s in excess] == [42, 42]
            for member, share in zip(members[1:3], excess, strict=True):
                await store.write(release_statements(member.epoch, share.excess))
            assert len((await late.beat()).owned) == 84
        finally:
            await spy.close()
            for member in members:
                await member.close()


def test_a_dags_shard_is_stable() -> None:
    assert shard_of("etl") == shard_of("etl") == 3188343128 % SHARDS
    assert len({shard_of(f"dag_{i}") for i in range(1000)}) == SHARDS


async def test_an_alert_is_recovered_by_its_daemon_or_when_that_one_is_gone_by_its_dags(
    pg_url: str,
) -> None:
    """Pending alerts of a live daemon stay its own; a gone daemon's, or a CLI process's,
    go to the daemon whose share holds the alert's DAG."""
    async with open_store(pg_url) as store:
        members = [Membership(pg_url, ttl=5, name=f"d{i}") for i in range(3)]
        try:
            for member in members:
                await member.join()
            past = datetime(2026, 1, 1, tzinfo=UTC)
            for owner, alert_id in ((1, "mine"), (2, "alive other"), (3, "gone"), (None, "cli")):
                store.owner = owner
                await store.write(
                    [
                        alert_statement(
                            AlertRecord(
                                alert_id,
                                "email",
                                "task_failure",
                                f"dag-{alert_id}",
                                "r",
                                "t",
                                1,
                                "x@y",
                                {},
                                past,
                            ),
                            past,
                            owner,
                        )
                    ]
                )
            await members[2].leave()
            store.owner = members[0].epoch
            now = datetime(2026, 1, 2, tzinfo=UTC)
            due = await store.due_alerts(now, orphans=lambda dag_id: dag_id == "dag-gone")
            assert sorted(r.id for r, _ in due) == ["gone", "mine"]
            due = await store.due_alerts(now, orphans=lambda dag_id: True)
            assert sorted(r.id for r, _ in due) == ["cli", "gone", "mine"]
        finally:
            for member in members:
                await member.close()


async def test_pools_are_shared_out_between_the_daemons_and_slots_given_back_are_told(
    pg_url: str,
) -> None:
    async with open_store(pg_url) as store:
        await store.set_pool("db", 4, "")
        a, b = Membership(pg_url, ttl=5, name="a"), Membership(pg_url, ttl=5, name="b")
        spy = await asyncpg.connect(pg_url)
        told: list[str] = []
        try:
            await a.join()
            alone = await a.balance({})
            assert (alone.limits["db"], alone.limits["default_pool"]) == (4, 128)  # all of it
            assert alone.sizes["db"] == 4
            assert not alone.told
            await b.join()
            await spy.add_listener("orchestrator", lambda *args: told.append(args[-1]))
            # b wants 3 while a's grant covers the pool: b may start nothing yet, and says so.
            short = await b.balance({"db": (0, 3)})
            assert short.limits["db"] == 0
            assert short.told
            # a, told, holds one running try and wants no more: it keeps 1 and tells b.
            given = await a.balance({"db": (1, 1)})
            assert given.limits["db"] == 1
            assert given.told
            assert "db" in given.contended
            taken = await b.balance({"db": (0, 3)})
            assert taken.limits["db"] == 3
            grants = await spy.fetch("SELECT epoch, granted FROM pool_grant WHERE pool = 'db'")
            assert sorted(r["granted"] for r in grants) == [1, 3]
            await _until(lambda: _answer(len(told) >= 2), "both notices")
            assert told[:2] == [f"pools:{b.epoch}", f"pools:{a.epoch}"]
            # Now a wants 3 more: its limit is its fair share (2 of 4), over what b's
            # grant leaves it; b, over its share, keeps what it runs and shrinks as it ends.
            assert (await a.balance({"db": (1, 4)})).limits["db"] == 1
            over = await b.balance({"db": (3, 3)})
            assert over.limits["db"] == 2
            assert over.over == frozenset({"db"})
            assert (await b.balance({"db": (2, 3)})).over == frozenset()
            assert (await a.balance({"db": (1, 4)})).limits["db"] == 2
            # A pool deleted takes its grants with it.
            await store.set_pool("gone", 3, "")
            await a.balance({})
            await store.delete_pool("gone")
            await b.balance({"db": (2, 3)})
            pools = await spy.fetch("SELECT DISTINCT pool FROM pool_grant ORDER BY pool")
            assert [r["pool"] for r in pools] == ["db", "default_pool"]
            # b leaves: its grants go with it, and a gets the whole pool back.
            await b.leave()
            assert (await a.balance({"db": (2, 4)})).limits["db"] == 4
            assert [r["epoch"] for r in await spy.fetch("SELECT epoch FROM pool_grant")] == [
                a.epoch,
                a.epoch,
            ]
            with pytest.raises(LeaseLost):
                await b.balance({})
        finally:
            await spy.close()
            await a.close()
            await b.close()


async def _answer(value: Any) -> Any:
    return value


async def test_a_daemon_frozen_mid_transaction_holds_the_others_up_only_briefly(
    pg_url: str,
) -> None:
    """Its session is ended by the server once idle in the transaction for ttl / 4: the
    pools' rows and its fence are free again for a balance and a takeover."""
    async with open_store(pg_url):
        frozen, live = Membership(pg_url, ttl=4, name="frozen"), Membership(pg_url, ttl=4)
        spy = await asyncpg.connect(pg_url)
        try:
            await frozen.join()
            await live.join()
            conn = await frozen._connection()
            tx = conn.transaction()
            await tx.start()  # ...and the daemon stops right there
            assert await conn.fetchval(FENCE, frozen.epoch) == 1
            await conn.execute("SELECT * FROM pool FOR UPDATE")
            with anyio.fail_after(5):
                balanced = await live.balance({"default_pool": (0, 1)})
            assert balanced.limits["default_pool"] >= 1
            await spy.execute(
                "UPDATE daemon SET heartbeat_at = heartbeat_at - 60 WHERE epoch = $1",
                frozen.epoch,
            )
            with anyio.fail_after(5):
                assert (await live.beat()).ended == (frozen.epoch,)
            assert conn.is_closed()  # the server ended the frozen session
        finally:
            await spy.close()
            await frozen.close()
            await live.close()


async def test_a_gone_daemons_tries_on_workers_hold_their_pool_slots_until_adopted(
    pg_url: str,
) -> None:
    """Its grants go with its lease, but its tries still running on workers count against
    their pool until a live daemon adopts them (and counts them itself) or they end."""
    async with open_store(pg_url) as store:
        await store.set_pool("db", 4, "")
        gone, live = Membership(pg_url, ttl=5, name="gone"), Membership(pg_url, ttl=5)
        try:
            await gone.join()
            await live.join()
            await store.write(
                [
                    queued_work(
                        "postgresql",
                        f"w{i}",
                        ("etl", "r1", f"t{i}", -1, 1),
                        queue="default",
                        driver=driver_tag(gone.epoch),
                        spec={},
                        pool=("db", 1 + i),
                    )
                    for i in range(2)
                ]
            )
            assert (await gone.balance({"db": (3, 3)})).limits["db"] == 4
            await gone.leave()
            assert (await live.balance({"db": (0, 4)})).limits["db"] == 1
            await adopt_work(store.backend, "w1", driver_tag(live.epoch))
            assert (await live.balance({"db": (2, 4)})).limits["db"] == 3
            await store.backend.change("UPDATE try_work SET state = 'success' WHERE id = 'w0'", ())
            assert (await live.balance({"db": (2, 4)})).limits["db"] == 4
        finally:
            await gone.close()
            await live.close()


async def test_a_daemon_frozen_mid_write_holds_a_takeover_up_only_briefly(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its writer's session, idle inside a fenced transaction, is ended by the server (5 s;
    1 s here): the takeover goes through."""
    monkeypatch.setitem(_postgres._SESSION, "idle_in_transaction_session_timeout", "1000")
    async with open_store(pg_url) as store:
        frozen, live = Membership(pg_url, ttl=4, name="frozen"), Membership(pg_url, ttl=4)
        spy = await asyncpg.connect(pg_url)
        try:
            await frozen.join()
            await live.join()
            assert isinstance(store.backend, PostgresBackend)
            store.backend.fence_epoch = frozen.epoch
            writer = store.backend._writer
            await writer.transaction().start()  # ...and the daemon stops right there
            assert await writer.fetchval(FENCE, frozen.epoch) == 1
            await spy.execute(
                "UPDATE daemon SET heartbeat_at = heartbeat_at - 60 WHERE epoch = $1",
                frozen.epoch,
            )
            with anyio.fail_after(5):
                assert (await live.beat()).ended == (frozen.epoch,)
            assert writer.is_closed()  # its next write connects again and meets the fence
        finally:
            await spy.close()
            await frozen.close()
            await live.close()
