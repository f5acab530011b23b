"""The scheduler's shell on an injected clock: timers, stops and deferrals, with a real store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import anyio

from orchestrator import DAG
from orchestrator._clock import ManualClock
from orchestrator._settings import Settings
from orchestrator.core import (
    RunRecord,
    RunState,
    TaskInstanceRecord,
    TaskState,
    TryRecord,
)
from orchestrator.core._steps import Resumption
from orchestrator.operators import EmptyOperator, PythonOperator
from orchestrator.resources._services import Services
from orchestrator.runtime._executor import LocalExecutor
from orchestrator.runtime._live import LiveRun
from orchestrator.runtime._scheduler import Scheduler
from orchestrator.store import Store, open_store
from sensors import BaseSensor

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass
class Shell:
    """A scheduler on a manual clock, and a way to wait for what its runs do."""

    scheduler: Scheduler
    store: Store
    clock: ManualClock
    changed: anyio.Event = field(default_factory=anyio.Event)

    async def until(self, check: Callable[[], bool]) -> None:
        """Wait (at most 10 s) until ``check()`` holds, re-checking at each state change."""
        with anyio.fail_after(10):
            while not check():
                await self.changed.wait()

    def advance(self, delta: timedelta) -> None:
        self.clock.advance(delta)
        self.scheduler.timers.poke()

    async def start(self, dag: DAG, *tis: TaskInstanceRecord) -> LiveRun:
        record = RunRecord(dag.dag_id, "r1", RunState.QUEUED, "manual", T0, T0)
        await self.store.insert_runs([record])
        await self.store.write([self.store.ti_statement(ti) for ti in tis])
        return await self.scheduler.start_run(dag, record)


@asynccontextmanager
async def shell(settings: Settings, **kw: object) -> AsyncIterator[Shell]:
    clock = ManualClock(T0)
    async with open_store(settings.db_url, clock=clock) as store:
        executor = LocalExecutor(Services(settings, store), thread_slots=4)
        holder: list[Shell] = []

        def on_change(live: LiveRun, ti: TaskInstanceRecord | None) -> None:
            holder[0].changed.set()
            holder[0].changed = anyio.Event()

        scheduler = Scheduler(
            store,
            executor,
            clock,
            parallelism=4,
            logs_dir=settings.logs_dir,
            on_change=on_change,
            **kw,  # type: ignore[arg-type]
        )
        holder.append(Shell(scheduler, store, clock))
        async with anyio.create_task_group() as tg:
            await tg.start(scheduler.serve)
            yield holder[0]
            tg.cancel_scope.cancel()


async def test_a_retry_waits_for_its_delay_on_the_clock(settings: Settings) -> None:
    """The retry starts when the clock reaches end + retry_delay, not before."""
    tries: list[int] = []

    def flaky(try_number: int) -> None:
        tries.append(try_number)
        if try_number == 1:
            raise RuntimeError("once")

    with DAG("retry") as dag:
        PythonOperator(
            task_id="t", python_callable=flaky, retries=1, retry_delay=timedelta(hours=1)
        )
    async with shell(settings) as sh:
        live = await sh.start(dag)
        await sh.until(lambda: live.tis["t"].state == TaskState.UP_FOR_RETRY)
        assert live.tis["t"].next_retry_at == T0 + timedelta(hours=1)
        sh.advance(timedelta(minutes=59))
        await anyio.wait_all_tasks_blocked()
        assert live.tis["t"].state == TaskState.UP_FOR_RETRY
        sh.advance(timedelta(minutes=1))
        with anyio.fail_after(10):
            await live.done.wait()
    assert tries == [1, 2]
    assert live.record.state == RunState.SUCCESS


async def test_dagrun_timeout_stops_the_run_on_the_clock(settings: Settings) -> None:
    """At start + dagrun_timeout the running try is stopped and the run fails."""
    cancelled = anyio.Event()

    async def forever() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    with DAG("slow", dagrun_timeout=timedelta(minutes=30)) as dag:
        PythonOperator(task_id="wait", python_callable=forever) >> EmptyOperator(task_id="after")
    async with shell(settings) as sh:
        live = await sh.start(dag)
        await sh.until(lambda: live.tis["wait"].state == TaskState.RUNNING)
        sh.advance(timedelta(minutes=30))
        with anyio.fail_after(10):
            await live.done.wait()
        assert cancelled.is_set()
    assert live.record.state == RunState.FAILED
    assert {t: str(ti.state) for t, ti in live.tis.items()} == {
        "wait": "failed",
        "after": "skipped",
    }
    assert live.errors["<run>"] == "dagrun_timeout: the run took longer than 0:30:00"
    assert live.errors["wait"] == live.errors["<run>"]


async def test_stop_run_ends_it_and_keeps_what_was_written(settings: Settings) -> None:
    """stop_run: the store holds the failed run and its skipped and stopped instances."""
    release = anyio.Event()

    async def hold() -> None:
        await release.wait()

    with DAG("stopped") as dag:
        PythonOperator(task_id="busy", python_callable=hold) >> EmptyOperator(task_id="next")
    async with shell(settings) as sh:
        live = await sh.start(dag)
        await sh.until(lambda: live.tis["busy"].state == TaskState.RUNNING)
        await sh.scheduler.stop_run("stopped", "r1", "stopped by a test")
        with anyio.fail_after(10):
            await live.done.wait()
        stored = await sh.store.get_run("stopped", "r1")
        states = {ti.task_id: ti.state for ti in await sh.store.task_instances("stopped", "r1")}
    assert stored.state == RunState.FAILED
    assert states == {"busy": TaskState.FAILED, "next": TaskState.SKIPPED}


@dataclass
class Sink:
    """Deferrals received by the shell (the trigger engine's side, as a test sees it)."""

    deferred: list[tuple[str, object]] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)

    def defer(self, run: tuple[str, str], task_id: str, trigger: object) -> None:
        self.deferred.append((task_id, trigger))

    def withdraw(self, run: tuple[str, str], task_id: str) -> None:
        self.withdrawn.append(task_id)


def deferred_sensor() -> tuple[DAG, TaskInstanceRecord]:
    with DAG("sensing") as dag:
        EmptyOperator(task_id="sense") >> EmptyOperator(task_id="after")
    stored = TaskInstanceRecord(
        "sensing", "r1", "sense", state=TaskState.DEFERRED, try_number=1, start_date=T0
    )
    return dag, stored


async def test_a_stored_deferred_instance_waits_and_resumes(settings: Settings) -> None:
    """Started again, a deferred instance goes back to the engine; a resumption ends its try."""
    dag, stored = deferred_sensor()
    sink = Sink()
    async with shell(settings, deferrals=sink) as sh:
        await sh.store.write(
            [sh.store.try_statement(TryRecord("sensing", "r1", "sense", 1, TaskState.DEFERRED))]
        )
        live = await sh.start(dag, stored)
        assert sink.deferred == [("sense", None)]
        assert live.tis["sense"].state == TaskState.DEFERRED
        assert not live.done.is_set()
        await sh.scheduler.resume(live.key, "sense", Resumption.SUCCESS, xcoms={"k": "1"})
        with anyio.fail_after(10):
            await live.done.wait()
        tries = await sh.store.tries("sensing", "r1", "sense")
        xcoms = await sh.store.xcoms("sensing", "r1")
    assert live.record.state == RunState.SUCCESS
    assert [(t.try_number, t.state) for t in tries] == [(1, TaskState.SUCCESS)]
    assert xcoms[("sense", "k")] == "1"


async def test_stopping_a_run_withdraws_a_deferred_wait(settings: Settings) -> None:
    """A stop fails the deferred instance and takes its wait back from the engine."""
    dag, stored = deferred_sensor()
    sink = Sink()
    async with shell(settings, deferrals=sink) as sh:
        live = await sh.start(dag, stored)
        await sh.scheduler.stop_run("sensing", "r1", "stopped")
        with anyio.fail_after(10):
            await live.done.wait()
    assert sink.withdrawn == ["sense"]
    assert live.tis["sense"].state == TaskState.FAILED
    assert live.record.state == RunState.FAILED


async def test_a_resumed_try_gets_its_callback_with_the_try_context(settings: Settings) -> None:
    """A deferred try that the engine ends as a success runs on_success_callback, with ti."""
    seen: list[tuple[str, int]] = []
    with DAG("sensing") as dag:
        EmptyOperator(
            task_id="sense",
            on_success_callback=lambda c: seen.append((c["ti"].task_id, c["ti"].try_number)),
        )
    stored = TaskInstanceRecord(
        "sensing", "r1", "sense", state=TaskState.DEFERRED, try_number=1, start_date=T0
    )
    async with shell(settings, deferrals=Sink()) as sh:
        live = await sh.start(dag, stored)
        await sh.scheduler.resume(live.key, "sense", Resumption.SUCCESS)
        with anyio.fail_after(10):
            await live.done.wait()
            await sh.scheduler.alerts.settled()  # callbacks are delivered by the outbox
    assert seen == [("sense", 1)]


class _Watching(BaseSensor):
    """Reads DAG 'other' (so a change there pokes it at once); its first poke waits for
    ``gate`` and finds nothing, later ones find the condition."""

    gate: anyio.Event
    started: anyio.Event
    pokes: list[int]

    def wakes_on(self) -> str | None:
        return "other"

    async def poke(self, context: dict[str, object]) -> bool:
        self.pokes.append(len(self.pokes) + 1)
        if len(self.pokes) == 1:
            self.started.set()
            await self.gate.wait()
            return False
        return True


async def test_a_change_while_a_watching_sensor_pokes_makes_it_poke_again_at_once(
    settings: Settings,
) -> None:
    """The poke in flight may have read the other DAG's states before the change: when it
    does not end the wait, the next poke comes at once, not an interval (10 min) later."""
    _Watching.gate, _Watching.started, _Watching.pokes = anyio.Event(), anyio.Event(), []
    with DAG("watcher") as dag:
        _Watching(task_id="wait", poke_interval=600, timeout=3600)
    async with shell(settings) as sh:
        live = await sh.start(dag)
        sh.advance(timedelta(seconds=1))  # the first poke's spread is at most a second
        with anyio.fail_after(10):
            await _Watching.started.wait()
        sh.scheduler.sensors.changed("other")  # ...while that poke runs
        _Watching.gate.set()
        with anyio.fail_after(10):
            await live.done.wait()  # no clock advance: poked again at once
    assert _Watching.pokes == [1, 2]
    assert live.record.state == RunState.SUCCESS
