"""The try protocol in the store (``store._work``), on both backends: a try is claimed
once, only its claimant's heartbeats and outcome count, and a lapse makes it lost."""

from __future__ import annotations

import anyio

from orchestrator.store import Store, open_store
from orchestrator.store._work import (
    cancel_work,
    claim_work,
    finish_work,
    heartbeat_work,
    lose_work,
    queued_work,
    watch_work,
    work_chunks,
    work_log,
    work_of,
)

KEY = ("d", "r", "t", -1, 1)


async def queue(store: Store, work_id: str) -> None:
    row = queued_work(store.dialect, work_id, KEY, queue="default", driver="x", spec={"a": 1})
    await store.write([row])


async def test_a_try_is_claimed_once_and_only_its_claimant_finishes_it(db_url: str) -> None:
    async with open_store(db_url) as store:
        backend = store.backend
        await queue(store, "w1")
        assert await claim_work(backend, "w1", "worker-a", 11) == {"a": 1}
        # The same message again, or on another worker: nothing to run.
        assert await claim_work(backend, "w1", "worker-a", 11) is None
        assert await claim_work(backend, "w1", "worker-b", 22) is None
        assert await heartbeat_work(backend, "w1", "worker-a") is None
        assert await heartbeat_work(backend, "w1", "worker-b") == "lost"
        assert not await finish_work(backend, "w1", "worker-b", "success", {"kind": "success"})
        assert await finish_work(backend, "w1", "worker-a", "failed", {"kind": "failed"})
        # Finished: a late write of anyone changes nothing.
        assert not await finish_work(backend, "w1", "worker-a", "success", {"kind": "success"})
        assert await heartbeat_work(backend, "w1", "worker-a") == "lost"
        (work,) = await watch_work(backend, ["w1"])
        assert (work.state, work.worker, work.result) == ("failed", "worker-a", {"kind": "failed"})
        found = await work_of(backend, KEY)
        assert found is not None
        assert (found.id, found.state) == ("w1", "failed")


async def test_a_lapsed_heartbeat_makes_the_try_lost_and_its_late_result_changes_nothing(
    db_url: str,
) -> None:
    async with open_store(db_url) as store:
        backend = store.backend
        await queue(store, "w2")
        assert await claim_work(backend, "w2", "worker-a", 11) is not None
        # A heartbeat within the lapse wins over the loss.
        assert not await lose_work(backend, "w2", "running", 60.0, "lost: silent")
        await anyio.sleep(0.05)
        assert await lose_work(backend, "w2", "running", 0.01, "lost: silent")
        assert await heartbeat_work(backend, "w2", "worker-a") == "lost"
        assert not await finish_work(backend, "w2", "worker-a", "success", {"kind": "success"})
        (work,) = await watch_work(backend, ["w2"])
        assert work.state == "lost"
        assert work.result == {"kind": "lost", "error": "lost: silent"}


async def test_a_try_never_claimed_is_lost_after_the_queued_timeout(db_url: str) -> None:
    async with open_store(db_url) as store:
        backend = store.backend
        await queue(store, "w3")
        assert not await lose_work(backend, "w3", "queued", 60.0, "no worker")
        await anyio.sleep(0.05)
        assert await lose_work(backend, "w3", "queued", 0.01, "no worker")
        assert await claim_work(backend, "w3", "worker-a", 11) is None


async def test_cancel_ends_a_queued_try_and_stops_a_running_one_at_its_heartbeat(
    db_url: str,
) -> None:
    async with open_store(db_url) as store:
        backend = store.backend
        await queue(store, "w4")
        assert await cancel_work(backend, "w4", "stopped")
        assert await claim_work(backend, "w4", "worker-a", 11) is None
        await queue(store, "w5")
        assert await claim_work(backend, "w5", "worker-a", 11) is not None
        assert not await cancel_work(backend, "w5", "stopped")
        assert await heartbeat_work(backend, "w5", "worker-a") == "cancelled"
        # Its claimant still writes how it ended.
        assert await finish_work(backend, "w5", "worker-a", "cancelled", {"kind": "cancelled"})


async def test_output_chunks_are_read_in_order_up_to_the_count(db_url: str) -> None:
    async with open_store(db_url) as store:
        backend = store.backend
        await queue(store, "w6")
        assert await claim_work(backend, "w6", "worker-a", 11) is not None
        await work_log(backend, "w6", 1, ["one\n"])
        await work_log(backend, "w6", 2, ["two\nthree\n"])
        (work,) = await watch_work(backend, ["w6"])
        assert work.logged == 2
        assert await work_chunks(backend, "w6", 0) == [(1, "one\n"), (2, "two\nthree\n")]
        assert await work_chunks(backend, "w6", 1) == [(2, "two\nthree\n")]
        # A chunk written again after a lost reply is not doubled.
        await work_log(backend, "w6", 2, ["two\nthree\n"])
        assert len(await work_chunks(backend, "w6", 0)) == 2
