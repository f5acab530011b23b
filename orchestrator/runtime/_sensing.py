"""The sensor hub: deferred sensors' waits, poked when due, ended through the scheduler.

The scheduler's sink for ``Defer`` commands (its ``Deferrals``). It decides nothing:
``core._sensing`` says what a poke's result means.

Rules:
1. A wait is an entry on the scheduler's timers (the one deadline heap), armed at its
   next poke; a waiting sensor holds no executor slot and no coroutine.
2. A wait that arrives without its state (an instance found ``deferred`` when its run
   is started again) is read from the store; when the store has none for that try, the
   try runs again from its first poke.
3. After a poke: a wait that goes on is armed again; a wait that ends is handed to the
   scheduler as a resumption, whose step clears the stored wait. The stored wait keeps
   what a restart needs (the try, its first poke, hence its deadline); with
   exponential backoff each poke also stores its count and next poke, since they shape
   the waits to come. Without, a restart pokes at once and goes on at the interval.
   A wait withdrawn while its poke ran is left alone.
4. At most ``concurrency`` pokes run at once; the rest wait their turn.
5. A sensor that reads another DAG's states (``wakes_on``) is poked as soon as a step
   of a run of that DAG is committed here, instead of at its next interval; a step
   committed while its poke runs (which may have read the states before it) makes it
   poke again at once when that poke does not end the wait.
6. A deferrable sensor's try starts deferred (``start``): its first poke comes within
   a spread of a tenth of its interval (at most a second), as ``core._sensing`` says;
   so does the overdue poke of a wait read back after a restart, so that thousands of
   waits do not all poke in the restart's first instant, and in lockstep after it.
7. A mapped sensor's instances defer too: each pokes as its own sensor, built from the
   mapped task (``sensor_of``), and holds no slot.
"""

from __future__ import annotations

import collections
import functools
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.lowlevel
import structlog

from orchestrator._clock import Clock
from orchestrator._logging import task_log_path
from orchestrator.authoring._mapping import MappedOperator
from orchestrator.core import Deferred, Resumption, Step, TryStarted, split_key
from orchestrator.core._records import SensorWaitRecord
from orchestrator.core._sensing import (
    EndWait,
    WaitState,
    after_poke,
    deferred_at_once,
    sensor_seed,
)
from orchestrator.runtime._context import pull_xcom
from orchestrator.runtime._executor import Executor, TryRequest
from orchestrator.runtime._live import LiveRun, RunKey, try_request
from orchestrator.runtime._timers import TimerHandle, Timers
from orchestrator.store import Store
from sensors._base import BaseSensor

__all__ = ["SensorHub"]

log = structlog.get_logger("orchestrator.sensors")

Key = tuple[RunKey, str]
_HOSTNAME = socket.gethostname()


class Shell(Protocol):
    """What the hub uses of the scheduler."""

    store: Store
    executor: Executor
    clock: Clock
    timers: Timers
    logs_dir: Path

    def live(self, run: RunKey) -> LiveRun | None: ...

    async def resume(
        self,
        run: RunKey,
        task_id: str,
        outcome: Resumption,
        *,
        error: str | None = None,
        xcoms: dict[str, str] | None = None,
        retryable: bool = True,
    ) -> None: ...


@dataclass(eq=False)
class _Prepared:
    """What every poke of one try shares: its request, its context, the rendered sensor."""

    request: TryRequest
    context: dict[str, Any]
    rendered: BaseSensor | None = None


@dataclass(eq=False)
class _Wait:
    state: WaitState
    handle: TimerHandle
    watches: str | None = None  # the DAG whose changes poke it at once
    prepared: _Prepared | None = None  # made at the first poke
    poking: bool = False
    changed: bool = False  # what it watches changed while it poked (rule 5)


class SensorHub:
    """See the module's rules."""

    def __init__(self, scheduler: Shell, *, concurrency: int = 256) -> None:
        self._scheduler = scheduler
        self._waits: dict[Key, _Wait] = {}
        self._loads: list[Key] = []
        self._due: list[Key] = []
        self._ready: collections.deque[Key] = collections.deque()  # due, for the pokers
        self._idle: list[anyio.Event] = []  # the idle pokers' wake-ups
        self._wake = anyio.Event()
        self._concurrency = concurrency
        self._watchers: dict[str, set[Key]] = {}  # DAG id -> the waits that read its states
        self._mapped: dict[Key, BaseSensor] = {}  # a mapped sensor's instances (rule 7)
        self.on_lateness: Callable[[float], None] | None = None  # seconds a poke started late

    @property
    def waiting(self) -> int:
        return len(self._waits)

    # -- the scheduler's Deferrals ---------------------------------------------------------

    def defer(self, run: RunKey, task_id: str, trigger: object) -> None:
        if isinstance(trigger, SensorWaitRecord):
            self._arm((run, task_id), WaitState.from_json(trigger.state))
        else:
            self._loads.append((run, task_id))  # rule 2
            self._wake.set()

    def sensor_of(self, live: LiveRun, key: str) -> BaseSensor | None:
        """The sensor the instance ``key`` runs, if it is one that defers: the task, or for
        a mapped sensor's instance its own sensor (rule 7; None if it cannot be built)."""
        task_id, map_index = split_key(key)
        task = live.dag.task_dict.get(task_id)
        if map_index < 0 or not isinstance(task, MappedOperator):
            return task if isinstance(task, BaseSensor) else None
        if not issubclass(task.operator_class, BaseSensor):
            return None
        built = self._mapped.get((live.key, key))
        if built is None:
            try:
                made = task.unmap(map_index, functools.partial(pull_xcom, live.dag, live.xcoms))
            except Exception:  # the try runs and fails saying why
                return None
            assert isinstance(made, BaseSensor)
            built = self._mapped[(live.key, key)] = made
        return built

    def withdraw(self, run: RunKey, task_id: str) -> None:
        self._mapped.pop((run, task_id), None)
        wait = self._waits.pop((run, task_id), None)
        if wait is not None:
            wait.handle.cancel()
            if wait.watches is not None:
                self._watchers.get(wait.watches, set()).discard((run, task_id))

    def changed(self, dag_id: str) -> None:
        """A step of a run of ``dag_id`` was committed: poke at once the sensors that read
        its states (rule 5)."""
        watching = self._watchers.get(dag_id)
        if not watching:
            return
        now = self._scheduler.clock.now()
        for key in list(watching):
            wait = self._waits.get(key)
            if wait is not None and wait.poking:
                wait.changed = True
            elif wait is not None and wait.state.next_poke > now:
                self._arm(key, replace(wait.state, next_poke=now), wait.prepared)

    def start(
        self, live: LiveRun, task_id: str, sensor: BaseSensor, now: datetime
    ) -> list[tuple[LiveRun, Step]]:
        """The steps that start a deferrable sensor's try deferred, its first poke within
        rule 6's spread: for the scheduler to apply (it holds no slot)."""
        try_number = live.driver.next_try(task_id)
        name, map_index = split_key(task_id)
        logs = self._scheduler.logs_dir
        log_path = task_log_path(logs, *live.key, name, try_number, map_index)
        started = live.driver.feed(TryStarted(task_id, _HOSTNAME, str(log_path)), now)
        seed = sensor_seed(*live.key, task_id, try_number)
        wait = deferred_at_once(sensor.policy, try_number, now, seed)
        record = wait.record(*live.key, task_id, sensor.policy)
        return [(live, started), (live, live.driver.feed(Deferred(task_id, record), now))]

    # -- waits -------------------------------------------------------------------------------

    def _arm(
        self,
        key: Key,
        state: WaitState,
        prepared: _Prepared | None = None,
    ) -> None:
        self.withdraw(*key)

        def due() -> None:
            self._due.append(key)
            self._wake.set()

        live = self._scheduler.live(key[0])
        sensor = self.sensor_of(live, key[1]) if live is not None else None
        watches = sensor.wakes_on() if sensor is not None else None
        if watches is not None:
            self._watchers.setdefault(watches, set()).add(key)
        handle = self._scheduler.timers.call_at(state.next_poke, due)
        self._waits[key] = _Wait(state, handle, watches, prepared)

    async def serve(self) -> None:
        """Hand due waits to ``concurrency`` long-lived pokers (rule 4): no task is made
        per poke, and a slow poke holds up only its own poker. Due keys wait in one
        queue; an idle poker is woken per key, and a busy one takes the next key when it
        is done, without a hand-off."""
        async with anyio.create_task_group() as tg:
            for _ in range(self._concurrency):
                tg.start_soon(self._poker)
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                loads, self._loads = self._loads, []
                due, self._due = self._due, []
                for key in loads:
                    tg.start_soon(self._load, key)
                self._ready.extend(due)
                for _ in range(min(len(due), len(self._idle))):
                    self._idle.pop().set()

    async def _poker(self) -> None:
        ready = self._ready
        while True:
            taken = 0
            while ready:
                await self._poke(ready.popleft())
                taken += 1
                if taken % 64 == 0:  # a long run of pokes that never wait lets others in
                    await anyio.lowlevel.checkpoint()
            idle = anyio.Event()
            self._idle.append(idle)
            await idle.wait()

    async def _load(self, key: Key) -> None:
        (dag_id, run_id), task_id = key
        live = self._scheduler.live(key[0])
        if live is None:
            return
        stored = await self._scheduler.store.sensor_wait(dag_id, run_id, task_id)
        state = WaitState.from_json(stored) if stored is not None else None
        ti = live.tis.get(task_id)
        if ti is None:
            return
        sensor = self.sensor_of(live, task_id)
        if state is not None and state.try_number == ti.try_number and sensor is not None:
            now = self._scheduler.clock.now()
            if state.next_poke < now:  # overdue after the restart: spread again (rule 6)
                seed = sensor_seed(dag_id, run_id, task_id, state.try_number)
                again = deferred_at_once(sensor.policy, state.try_number, now, seed)
                state = replace(state, next_poke=again.next_poke)
            self._arm(key, state)
            return
        log.info("sensor wait not stored: the try runs again", dag_id=dag_id, task_id=task_id)
        await self._scheduler.resume(key[0], task_id, Resumption.RUN)

    async def _poke(self, key: Key) -> None:
        wait = self._waits.get(key)
        live = self._scheduler.live(key[0])
        if wait is None or live is None:
            self.withdraw(key[0], key[1])
            return
        (dag_id, run_id), task_id = key
        sensor = self.sensor_of(live, task_id)
        if sensor is None:  # the DAG changed under the wait
            self.withdraw(key[0], task_id)
            await self._scheduler.resume(key[0], task_id, Resumption.RUN)
            return
        try:
            if self.on_lateness is not None:
                late = self._scheduler.clock.now() - wait.state.next_poke
                self.on_lateness(max(0.0, late.total_seconds()))
            prepared = wait.prepared
            if prepared is None:  # the try's request and context, once per wait
                logs = self._scheduler.logs_dir
                request = try_request(live, task_id, wait.state.try_number, logs)
                prepared = _Prepared(request, self._scheduler.executor.context_of(request))
                wait.prepared = prepared
            wait.poking = True
            try:
                result, prepared.rendered = await self._scheduler.executor.poke(
                    prepared.request, prepared.context, prepared.rendered
                )
            finally:
                wait.poking = False
        except Exception:  # a poker goes on whatever one poke does
            log.exception("sensor poke failed", dag_id=dag_id, task_id=task_id)
            return
        if self._waits.get(key) is not wait:
            return  # withdrawn (stopped) while it poked: rule 3
        policy = sensor.policy
        seed = sensor_seed(dag_id, run_id, task_id, wait.state.try_number)
        decision = after_poke(policy, wait.state, result, self._scheduler.clock.now(), seed)
        if isinstance(decision, EndWait):
            self.withdraw(key[0], task_id)
            await self._scheduler.resume(
                key[0],
                task_id,
                decision.outcome,
                error=decision.error,
                xcoms=decision.xcoms,
                retryable=decision.retryable,
            )
            return
        if policy.exponential_backoff:  # rule 3: only then does the count shape the wait
            record = decision.record(dag_id, run_id, task_id, policy)
            self._scheduler.store.write_nowait(self._scheduler.store.statements([record]))
        if wait.changed:  # rule 5
            decision = replace(decision, next_poke=self._scheduler.clock.now())
        self._arm(key, decision, wait.prepared)
