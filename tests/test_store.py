"""The metadata store, on SQLite and PostgreSQL: migrations, idempotent writes, group commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.core import RunRecord, TaskInstanceRecord, TryRecord
from orchestrator.core._state import RunState, TaskState
from orchestrator.errors import Conflict, NotFound, StoreError, StoreUnavailable
from orchestrator.store import MIGRATIONS, ConnectionRecord, Statement, open_store, plan_groups
from orchestrator.store._backend import ClaimLost, Group, collapse_upserts, upsert_shape
from orchestrator.store._writer import GroupCommitWriter
from tests.conftest import PG_URL

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def run(run_id: str = "r1", dag_id: str = "d") -> RunRecord:
    return RunRecord(dag_id, run_id, RunState.QUEUED, "manual", NOW, NOW, conf={"k": [1, 2]})


async def test_fresh_database_is_migrated_and_migrating_again_is_a_no_op(db_url: str) -> None:
    """open_store migrates a fresh database; a second migrate applies nothing."""
    async with open_store(db_url) as store:
        assert await store.migrate() == []
        rows = await store.backend.fetch("SELECT version FROM schema_migrations")
        assert [r["version"] for r in rows] == [m.version for m in MIGRATIONS]


async def test_one_daemon_lock_per_store_released_on_close(db_url: str) -> None:
    """A second claim on a store fails and names the holder; once the holder closes, it succeeds."""
    async with open_store(db_url) as first:
        await first.lock_for_daemon("daemon one")
        await first.lock_for_daemon("daemon one")  # the holder may ask again
        async with open_store(db_url) as second:
            with pytest.raises(
                StoreError, match=r"another daemon is running on this store \(daemon one\)"
            ):
                await second.lock_for_daemon("daemon two")
    async with open_store(db_url) as third:
        await third.lock_for_daemon("daemon three")


async def test_inserting_a_run_twice_stores_it_once(db_url: str) -> None:
    """Inserting the same (dag_id, run_id) twice stores it once, without an error."""
    async with open_store(db_url) as store:
        first = run()
        first.conf = {"first": True}
        await store.insert_runs([first])
        await store.insert_runs([run()])
        assert [r.run_id for r in await store.list_runs()] == ["r1"]
        assert (await store.get_run("d", "r1")).conf == {"first": True}
        assert await store.taken_runs([run()]) == {("d", "r1")}


async def test_a_trigger_key_is_a_second_key_of_a_run(db_url: str) -> None:
    """A run whose (dag_id, trigger_key) is taken is not inserted and raises nothing;
    other DAGs and runs without a key are not affected."""
    async with open_store(db_url) as store:
        keyed = run("r1")
        keyed.trigger_key = "event-1"
        await store.insert_runs([keyed])
        again, other_dag, unkeyed = run("r2"), run("r3", "other"), run("r4")
        again.trigger_key = other_dag.trigger_key = "event-1"
        assert await store.taken_runs([again, other_dag, unkeyed]) == {("d", "r2")}
        await store.insert_runs([again, other_dag, unkeyed])
        stored = {(r.dag_id, r.run_id) for r in await store.list_runs()}
        assert stored == {("d", "r1"), ("other", "r3"), ("d", "r4")}


async def test_resolve_run_names_missing_and_ambiguous_run_ids(db_url: str) -> None:
    """A run id used by one DAG resolves; none is NotFound; several is a Conflict with the hint."""
    async with open_store(db_url) as store:
        await store.insert_runs([run("only", "a")])
        await store.insert_runs([run("both", "a")])
        await store.insert_runs([run("both", "b")])
        assert (await store.resolve_run("only", None, hint="h")).dag_id == "a"
        assert (await store.resolve_run("both", "b", hint="h")).dag_id == "b"
        with pytest.raises(NotFound, match="no run with id 'none'"):
            await store.resolve_run("none", None, hint="h")
        with pytest.raises(NotFound, match="DAG 'b' has no run 'only'"):
            await store.resolve_run("only", "b", hint="h")
        with pytest.raises(Conflict, match=r"several DAGs \(a, b\); name it"):
            await store.resolve_run("both", None, hint="name it")


async def test_run_round_trips(db_url: str) -> None:
    """A run's fields, times and conf come back as written."""
    async with open_store(db_url) as store:
        await store.insert_runs([run()])
        got = await store.get_run("d", "r1")
        assert got.logical_date == NOW
        assert got.conf == {"k": [1, 2]}
        assert got.to_json()["logical_date"] == "2024-05-01T12:00:00.000000+00:00"


async def test_task_instance_and_tries_round_trip(db_url: str) -> None:
    """Upserting a task instance twice keeps the last; each try is its own row."""
    async with open_store(db_url) as store:
        ti = TaskInstanceRecord("d", "r1", "a", state=TaskState.RUNNING, try_number=1)
        first = TryRecord("d", "r1", "a", 1, TaskState.FAILED, error="boom")
        await store.write([store.ti_statement(ti), store.try_statement(first)])
        ti.state, ti.try_number = TaskState.SUCCESS, 2
        second = TryRecord("d", "r1", "a", 2, TaskState.SUCCESS)
        await store.write([store.ti_statement(ti), store.try_statement(second)])
        (stored,) = await store.task_instances("d", "r1")
        assert (stored.state, stored.try_number) == (TaskState.SUCCESS, 2)
        tries = await store.tries("d", "r1", "a")
        assert [(t.try_number, t.state, t.error) for t in tries] == [
            (1, TaskState.FAILED, "boom"),
            (2, TaskState.SUCCESS, None),
        ]


async def test_concurrent_writes_share_transactions(db_url: str) -> None:
    """Many writers at once are committed in fewer transactions than units."""
    async with open_store(db_url) as store:
        before = store.writer.batches

        async def one(i: int) -> None:
            await store.write([store.ti_statement(TaskInstanceRecord("d", "r1", f"t{i}"))])

        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(one, i)
        assert len(await store.task_instances("d", "r1")) == 200
        assert store.writer.batches - before < 50


async def test_a_failing_unit_does_not_fail_its_batch(db_url: str) -> None:
    """A unit that violates the schema fails alone; the others in its batch commit."""
    async with open_store(db_url) as store:
        bad = Statement("dag_run", "INSERT INTO dag_run (dag_id) VALUES (?)", ("x",))
        results: dict[str, BaseException | None] = {}

        async def submit(name: str, statements: list[Statement]) -> None:
            try:
                await store.write(statements)
                results[name] = None
            except StoreError as exc:
                results[name] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(submit, "good1", [store.ti_statement(TaskInstanceRecord("d", "r", "a"))])
            tg.start_soon(submit, "bad", [bad])
            tg.start_soon(submit, "good2", [store.ti_statement(TaskInstanceRecord("d", "r", "b"))])
        assert results["good1"] is None
        assert results["good2"] is None
        assert isinstance(results["bad"], StoreError)
        assert len(await store.task_instances("d", "r")) == 2


async def test_a_failing_unit_is_not_half_written(db_url: str) -> None:
    """A unit whose second statement fails leaves nothing of its first."""
    async with open_store(db_url) as store:
        bad = Statement("dag_run", "INSERT INTO dag_run (dag_id) VALUES (?)", ("x",))
        with pytest.raises(StoreError):
            await store.write([store.ti_statement(TaskInstanceRecord("d", "r", "a")), bad])
        assert await store.task_instances("d", "r") == []


async def test_acknowledged_writes_survive_reopening(db_url: str) -> None:
    """What write() acknowledged is there after the store is closed and opened again."""
    async with open_store(db_url) as store:
        await store.insert_runs([run()])
        await store.write([store.ti_statement(TaskInstanceRecord("d", "r1", "a"))])
    async with open_store(db_url) as store:
        assert (await store.get_run("d", "r1")).run_id == "r1"


async def test_variables_connections_pools(db_url: str) -> None:
    """Variables, connections and pools can be set, read, listed and deleted."""
    async with open_store(db_url) as store:
        await store.set_variable("k", "v")
        assert await store.get_variable("k") == ("v", False)
        assert await store.delete_variable("k")
        assert not await store.delete_variable("k")
        await store.set_connection(ConnectionRecord("c", "http", host="h", port=80))
        conn = await store.get_connection("c")
        assert conn is not None
        assert (conn.host, conn.port) == ("h", 80)
        assert await store.delete_connection("c")
        await store.set_pool("small", 2)
        assert (await store.get_pools())["small"] == 2
        assert (await store.get_pools())["default_pool"] == 128
        with pytest.raises(StoreError, match="default_pool"):
            await store.delete_pool("default_pool")


async def test_runs_with_the_same_id_in_two_dags(db_url: str) -> None:
    """runs_with_id finds every DAG that uses a run id."""
    async with open_store(db_url) as store:
        await store.insert_runs([run("same", "a")])
        await store.insert_runs([run("same", "b")])
        assert [r.dag_id for r in await store.runs_with_id("same")] == ["a", "b"]


async def test_unsupported_url_is_a_clear_error() -> None:
    """An unknown database URL scheme says which ones work."""
    with pytest.raises(StoreError, match="sqlite:///PATH or postgresql://"):
        async with open_store("mysql://x/y"):
            pass


statements = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["s1", "s2"]), st.integers(0, 9)),
    max_size=30,
)


@given(statements)
def test_plan_groups_keeps_per_table_order(items: list[tuple[str, str, int]]) -> None:
    """Grouped execution leaves every table with the statements in their original order."""
    stmts = [Statement(table, f"{table}:{sql}", (value,)) for table, sql, value in items]

    def per_table(seq: list[tuple[str, str, tuple[int, ...]]]) -> dict[str, list[object]]:
        out: dict[str, list[object]] = {}
        for table, sql, params in seq:
            out.setdefault(table, []).append((sql, params))
        return out

    grouped = [(g.table, g.sql, row) for g in plan_groups(stmts) for row in g.rows]
    assert per_table(grouped) == per_table([(s.table, s.sql, s.params) for s in stmts])
    assert len(grouped) == len(stmts)


def test_plan_groups_merges_interleaved_tables() -> None:
    """Alternating writes to two tables become two executemany groups."""
    stmts = [Statement(t, f"{t}-sql", (i,)) for i in range(5) for t in ("ti", "try")]
    assert [(g.table, len(g.rows)) for g in plan_groups(stmts)] == [("ti", 5), ("try", 5)]


UPSERT = (
    "INSERT INTO t (k1, k2, v) VALUES (?, ?, ?) ON CONFLICT (k1, k2) DO UPDATE SET v = excluded.v"
)


def test_upsert_shape_needs_every_non_key_column_in_set() -> None:
    """Only upserts that overwrite every non-key column may be collapsed."""
    assert upsert_shape(UPSERT) is not None
    partial = (
        "INSERT INTO t (k, a, b) VALUES (?, ?, ?) ON CONFLICT (k) DO UPDATE SET a = excluded.a"
    )
    assert upsert_shape(partial) is None
    assert upsert_shape("DELETE FROM t WHERE k = ?") is None
    assert upsert_shape("INSERT INTO t (k, v) VALUES (?, ?) ON CONFLICT DO NOTHING") is None


@given(st.lists(st.tuples(st.integers(0, 2), st.integers()), max_size=30))
def test_collapsing_inserts_if_absent_keeps_the_first_row_of_a_key(
    rows: list[tuple[int, int]],
) -> None:
    shape = upsert_shape("INSERT INTO t (k, v) VALUES (?, ?) ON CONFLICT (k) DO NOTHING")
    assert shape is not None
    sequential: dict[int, int] = {}
    for k, v in rows:
        sequential.setdefault(k, v)
    collapsed = collapse_upserts(shape, rows)
    assert dict(collapsed) == sequential
    assert len(collapsed) == len(sequential)


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers()), max_size=30))
def test_collapsing_upserts_equals_applying_them_in_order(rows: list[tuple[int, int, int]]) -> None:
    """Keeping the last row per key leaves the table as applying every row would."""
    shape = upsert_shape(UPSERT)
    assert shape is not None
    sequential: dict[tuple[int, int], int] = {}
    for k1, k2, v in rows:
        sequential[(k1, k2)] = v
    collapsed = collapse_upserts(shape, rows)
    assert {(k1, k2): v for k1, k2, v in collapsed} == sequential
    assert len(collapsed) == len(sequential)


async def test_one_batch_may_write_a_key_twice(db_url: str) -> None:
    """Two writes of one task instance in one batch leave the later one."""
    async with open_store(db_url) as store:
        first = TaskInstanceRecord("d", "r", "a", state=TaskState.QUEUED)
        second = TaskInstanceRecord("d", "r", "a", state=TaskState.RUNNING, try_number=1)
        acks = [
            store.write_nowait([store.ti_statement(first)]),
            store.write_nowait([store.ti_statement(second)]),
        ]
        for ack in acks:
            await ack.wait()
        (ti,) = await store.task_instances("d", "r")
        assert (ti.state, ti.try_number) == (TaskState.RUNNING, 1)


async def test_creating_a_run_never_overwrites_one(db_url: str) -> None:
    """A create that races with another keeps the first run as it was."""
    async with open_store(db_url) as store:
        first = run()
        first.state = RunState.RUNNING
        await store.write([store.run_statement(first)])
        late = run()
        await store.write([store.run_statement(late, insert_only=True)])
        assert (await store.get_run("d", "r1")).state == RunState.RUNNING


class FlakyBackend:
    """A backend whose connection is down for the first ``down`` batches (writer tests)."""

    dialect = "fake"

    def __init__(self, down: int, claim_lost: bool = False) -> None:
        self.down = down
        self.claim_lost = claim_lost
        self.committed: list[Any] = []

    async def execute_batch(self, groups: Sequence[Group]) -> None:
        if self.claim_lost:
            raise ClaimLost("the store was claimed by another daemon")
        if self.down:
            self.down -= 1
            raise StoreUnavailable("connection lost")
        self.committed += [row for g in groups for row in g.rows]


def unit(n: int) -> list[Statement]:
    return [Statement("t", "INSERT INTO t VALUES (?)", (n,))]


async def test_writes_wait_out_an_unavailable_store_in_order() -> None:
    """Units submitted while the store is unreachable commit, in order, once it is back."""
    backend = FlakyBackend(down=3)
    writer = GroupCommitWriter(backend)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        acks = [writer.submit_nowait(unit(n)) for n in range(5)]
        for ack in acks:
            await ack.wait()
        writer.close()
    assert backend.committed == [(n,) for n in range(5)]


async def test_writes_fail_after_close_when_the_store_stays_away() -> None:
    """After close, an unreachable store fails the waiting units within drain_for."""
    backend = FlakyBackend(down=10**6)
    writer = GroupCommitWriter(backend, drain_for=0.3)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        ack = writer.submit_nowait(unit(1))
        writer.close()
        with anyio.fail_after(5), pytest.raises(StoreUnavailable):
            await ack.wait()
    assert backend.committed == []


async def test_a_lost_claim_stops_the_writer_and_fails_every_waiting_unit() -> None:
    """ClaimLost ends the writer with that error; no submitted unit is left waiting."""
    backend = FlakyBackend(down=0, claim_lost=True)
    writer = GroupCommitWriter(backend)  # type: ignore[arg-type]
    acks = [writer.submit_nowait(unit(n)) for n in range(3)]
    with pytest.raises(ClaimLost):
        await writer.run()
    for ack in acks:
        with pytest.raises(StoreError, match="writer stopped"):
            await ack.wait()
    with pytest.raises(StoreError, match="closed"):
        writer.submit_nowait(unit(9))


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_a_reconnected_writer_waits_for_its_own_old_session_to_end(db_url: str) -> None:
    """Claim held by a session named as this daemon: unavailable, not lost, until it ends."""
    async with open_store(db_url) as store:
        await store.lock_for_daemon("daemon X")
        admin = await asyncpg.connect(PG_URL)
        stale = await asyncpg.connect(db_url)
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'daemon X'"
            )
            with anyio.fail_after(10):  # the backend ends a moment after it is told to
                while await admin.fetchval(  # noqa: ASYNC110 (another session)
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'daemon X'"
                ):
                    await anyio.sleep(0.01)
            # A session under the same name takes the claim, as the old session would still
            # hold it until the server notices that its client has gone.
            await stale.execute("SELECT set_config('application_name', 'daemon X', false)")
            key = "hashtextextended('orchestrator.daemon:' || current_schema(), 0)"
            assert await stale.fetchval(f"SELECT pg_try_advisory_lock({key})")
            batch = plan_groups([store.run_statement(run())])
            errors = []
            for _ in range(2):  # the first try may only find the old connection dead
                with pytest.raises(StoreUnavailable) as caught:
                    await store.backend.execute_batch(batch)
                errors.append(str(caught.value))
            assert "old session" in errors[-1]
        finally:
            await stale.close()
            await admin.close()
        await store.backend.execute_batch(batch)  # the claim is taken again, the write lands
        assert [r.run_id for r in await store.list_runs()] == ["r1"]
