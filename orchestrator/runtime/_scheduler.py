"""The scheduler: drives DAG runs, from ready task instances to the run's end.

Rules:
1. Decisions are synchronous and in memory (trigger rules, the state machine,
   limits); they happen on the loop thread between awaits, so no locks are needed.
2. The store is the truth: a decision's writes are submitted before anything acts on
   it, and a try starts only once its ``running`` write is acknowledged. The writer
   commits units in order, so that ack also covers every earlier decision.
3. Event-driven: a finished try wakes its downstream at once. Each task keeps counts
   of its upstream states, so finishing a task costs O(its downstream), not O(DAG).
4. Limits: ``parallelism`` (running tries in this process), the DAG's
   ``max_active_tasks`` and pool slots. Ready work waits in lanes, one heap per
   (DAG, pool), each ordered by ``priority_weight`` (higher first) then by when it
   became ready. Dispatch takes the best head among lanes that are not at a limit,
   so a full DAG or pool costs nothing however much work waits behind it.
"""

from __future__ import annotations

import heapq
import itertools
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from orchestrator._clock import Clock
from orchestrator._logging import task_log_path
from orchestrator.alerts import run_callback
from orchestrator.authoring._dag import DAG
from orchestrator.core import RunRecord, TaskInstanceRecord, TryRecord
from orchestrator.core._state import (
    FINISHED_STATES,
    RunState,
    TaskEvent,
    TaskState,
    UpstreamCounts,
    Verdict,
    apply,
    decide_run_state,
    evaluate_trigger_rule,
    retry_delay,
)
from orchestrator.runtime._context import DagRunInfo
from orchestrator.runtime._executor import LocalExecutor, TryRequest, TryResult
from orchestrator.runtime._timers import Timers
from orchestrator.store import Statement, Store

__all__ = ["LiveRun", "Scheduler"]

log = structlog.get_logger("orchestrator.scheduler")
_HOSTNAME = socket.gethostname()

_COUNTED = {
    TaskState.SUCCESS: 0,
    TaskState.SKIPPED: 1,
    TaskState.FAILED: 2,
    TaskState.UPSTREAM_FAILED: 3,
}
_WAITING = {TaskState.NONE, TaskState.SCHEDULED}


@dataclass(eq=False)
class LiveRun:
    """A run being driven: its DAG, its task instances, and upstream counts per task."""

    dag: DAG
    record: RunRecord
    info: DagRunInfo
    tis: dict[str, TaskInstanceRecord]
    counts: dict[str, list[int]] = field(default_factory=dict)
    xcoms: dict[tuple[str, str], str] = field(default_factory=dict)
    unfinished: int = 0
    active: int = 0  # queued or running tries of this run
    blocked: dict[str, str] = field(default_factory=dict)  # task_id -> why it cannot run
    done: anyio.Event = field(default_factory=anyio.Event)
    errors: dict[str, str] = field(default_factory=dict)
    last_context: dict[str, Any] = field(default_factory=dict)
    scopes: dict[str, anyio.CancelScope] = field(default_factory=dict)  # running tries
    stop_reason: str | None = None  # set when the run is stopped before its end
    in_callbacks: int = 0  # task callbacks still running; the run ends after them
    ending: bool = False  # _end_run has begun

    @property
    def key(self) -> tuple[str, str]:
        return (self.record.dag_id, self.record.run_id)

    def upstream_counts(self, task_id: str) -> UpstreamCounts:
        c = self.counts[task_id]
        total = len(self.dag.task_dict[task_id].upstream_task_ids)
        return UpstreamCounts(total, c[0], c[1], c[2], c[3])


ChangeListener = Callable[[LiveRun, TaskInstanceRecord | None], None]


class Scheduler:
    def __init__(
        self,
        store: Store,
        executor: LocalExecutor,
        clock: Clock,
        *,
        parallelism: int,
        logs_dir: Path,
        on_change: ChangeListener | None = None,
        timers: Timers | None = None,
        on_run_end: Callable[[LiveRun], None] | None = None,
    ) -> None:
        self.store = store
        self.executor = executor
        self.clock = clock
        self.parallelism = parallelism
        self.logs_dir = logs_dir
        self.on_change = on_change
        self.on_run_end = on_run_end
        self.pools: dict[str, int] = {}
        self._runs: dict[tuple[str, str], LiveRun] = {}
        self._lanes: dict[tuple[str, str], list[tuple[int, int, tuple[str, str], str]]] = {}
        self._seq = itertools.count()
        self.timers = timers if timers is not None else Timers(clock)
        self._owns_timers = timers is None
        self._due_retries: list[tuple[tuple[str, str], str]] = []
        self._retry_wake = anyio.Event()
        self._draining = False
        self._idle = anyio.Event()
        self._running = 0
        self._per_dag: dict[str, int] = {}
        self._per_pool: dict[str, int] = {}
        self._tg: TaskGroup | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the task group in which every try runs; returns when cancelled."""
        self.pools = await self.store.get_pools()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            if self._owns_timers:
                await tg.start(self.timers.run)
            task_status.started()
            await self._retry_pump()

    @property
    def running(self) -> int:
        """Tries queued or running in this process."""
        return self._running

    @property
    def ready(self) -> int:
        """Instances waiting in ready lanes (an upper bound: stale entries count until popped)."""
        return sum(len(lane) for lane in self._lanes.values())

    async def drain(self, grace: float) -> bool:
        """Start no more tries; wait up to ``grace`` seconds for running ones. True if idle."""
        self._draining = True
        if self._running == 0:
            return True
        with anyio.move_on_after(grace):
            await self._idle.wait()
        return self._running == 0

    async def stop_run(self, dag_id: str, run_id: str, reason: str) -> None:
        """Fail a run now (``dagrun_timeout``): waiting tasks are skipped, running tries stopped."""
        live = self._runs.get((dag_id, run_id))
        if live is None or live.stop_reason is not None:
            return
        live.stop_reason = reason
        changed = []
        for ti in live.tis.values():
            if ti.state in (TaskState.NONE, TaskState.SCHEDULED, TaskState.UP_FOR_RETRY):
                ti.state = apply(ti.state, TaskEvent.SKIP, (dag_id, run_id, ti.task_id))
                ti.end_date = self.clock.now()
                self._count_finished(live, ti)
                changed.append(ti)
        if changed:
            await self.store.write([self.store.ti_statement(ti) for ti in changed])
            for ti in changed:
                self._notify(live, ti)
        for scope in live.scopes.values():
            scope.cancel()
        await self._maybe_finish(live)

    async def start_run(self, dag: DAG, record: RunRecord) -> LiveRun:
        """Load a run (and its task instances) from the store and start driving it."""
        assert self._tg is not None, "serve() must be running"
        tis = {ti.task_id: ti for ti in await self.store.task_instances(dag.dag_id, record.run_id)}
        logical = record.logical_date or record.queued_at
        info = DagRunInfo(
            dag_id=dag.dag_id,
            run_id=record.run_id,
            run_type=record.run_type,
            logical_date=logical,
            data_interval_start=record.data_interval_start or logical,
            data_interval_end=record.data_interval_end or logical,
            conf=dict(record.conf),
            start_date=record.start_date,
        )
        live = LiveRun(dag=dag, record=record, info=info, tis=tis)
        live.xcoms = await self.store.xcoms(dag.dag_id, record.run_id)
        statements: list[Statement] = []
        for task_id, task in dag.task_dict.items():
            ti = tis.get(task_id)
            if ti is None:
                ti = tis[task_id] = TaskInstanceRecord(
                    dag_id=dag.dag_id,
                    run_id=record.run_id,
                    task_id=task_id,
                    max_tries=task.retries,
                    pool=task.pool,
                    priority_weight=task.priority_weight,
                    operator=task.task_type,
                )
                statements.append(self.store.ti_statement(ti))
        for task_id, ti in tis.items():
            if task_id not in dag.task_dict and ti.state not in FINISHED_STATES:
                ti.state = apply(ti.state, TaskEvent.REMOVE, (dag.dag_id, record.run_id, task_id))
                statements.append(self.store.ti_statement(ti))
        await self._blocked_by_past(live)
        if record.state != RunState.RUNNING or record.start_date is None:
            record.state = RunState.RUNNING
            record.start_date = record.start_date or self.clock.now()
            record.end_date = None
        statements.append(self.store.run_statement(record))
        live.counts = {tid: [0, 0, 0, 0] for tid in dag.task_dict}
        for task_id, task in dag.task_dict.items():
            index = _COUNTED.get(tis[task_id].state)
            if index is not None:
                for down in task.downstream_task_ids:
                    live.counts[down][index] += 1
        live.unfinished = sum(1 for tid in dag.task_dict if tis[tid].state not in FINISHED_STATES)
        self._runs[live.key] = live
        changed = self._recover(live)
        changed += self._evaluate(live, dag.topological_order())
        statements += [self.store.ti_statement(ti) for ti in changed]
        await self.store.write(statements)
        self._notify(live, None)
        for ti in changed:
            self._notify(live, ti)
        self._dispatch()
        await self._maybe_finish(live)
        return live

    async def _blocked_by_past(self, live: LiveRun) -> None:
        """depends_on_past: a task waits for its previous run's instance to have succeeded."""
        tasks = [t for t in live.dag.task_dict.values() if t.depends_on_past]
        if not tasks or live.record.logical_date is None:
            return
        earlier = [
            r
            for r in await self.store.list_runs(dag_id=live.dag.dag_id)
            if r.logical_date is not None and r.logical_date < live.record.logical_date
        ]
        if not earlier:
            return
        previous = max(earlier, key=lambda r: r.logical_date or r.queued_at)
        states = {
            ti.task_id: ti.state
            for ti in await self.store.task_instances(live.dag.dag_id, previous.run_id)
        }
        for task in tasks:
            state = states.get(task.task_id)
            if state is not None and state not in (TaskState.SUCCESS, TaskState.SKIPPED):
                live.blocked[task.task_id] = (
                    f"depends_on_past: in run {previous.run_id!r} it ended {state}"
                )

    def _notify(self, live: LiveRun, ti: TaskInstanceRecord | None) -> None:
        """Tell the listener about a state the store has acknowledged."""
        if self.on_change is not None:
            self.on_change(live, ti)

    # -- decisions (synchronous) ------------------------------------------------------------

    def _recover(self, live: LiveRun) -> list[TaskInstanceRecord]:
        """Instances left queued or running by a stopped process: requeue or count the lost try."""
        changed = []
        now = self.clock.now()
        for ti in live.tis.values():
            key = (live.dag.dag_id, live.record.run_id, ti.task_id)
            if ti.state == TaskState.QUEUED:
                ti.state = apply(ti.state, TaskEvent.REQUEUE, key)
                changed.append(ti)
            elif ti.state in (TaskState.RUNNING, TaskState.DEFERRED):
                live.errors[ti.task_id] = "the process running this try stopped"
                event = TaskEvent.RETRY if ti.try_number <= ti.max_tries else TaskEvent.FAIL
                ti.state = apply(ti.state, event, key)
                ti.end_date = now
                if ti.state == TaskState.UP_FOR_RETRY:
                    ti.next_retry_at = now
                else:
                    self._count_finished(live, ti)
                changed.append(ti)
            if ti.state == TaskState.UP_FOR_RETRY and ti.next_retry_at is not None:
                self._add_timer(live, ti)
            elif ti.state == TaskState.SCHEDULED:
                self._make_ready(live, ti)
        return changed

    def _evaluate(self, live: LiveRun, task_ids: list[str]) -> list[TaskInstanceRecord]:
        """Apply trigger rules to the waiting instances among ``task_ids``, cascading flags."""
        changed: list[TaskInstanceRecord] = []
        work = list(reversed(task_ids))
        while work:
            task_id = work.pop()
            ti = live.tis[task_id]
            if ti.state != TaskState.NONE or task_id in live.blocked:
                continue
            task = live.dag.task_dict[task_id]
            verdict = evaluate_trigger_rule(task.trigger_rule, live.upstream_counts(task_id))
            key = (live.dag.dag_id, live.record.run_id, task_id)
            if verdict is Verdict.RUN:
                ti.state = apply(ti.state, TaskEvent.SCHEDULE, key)
                self._make_ready(live, ti)
                changed.append(ti)
            elif verdict is not Verdict.WAIT:
                event = (
                    TaskEvent.SKIP if verdict is Verdict.SKIP else TaskEvent.FLAG_UPSTREAM_FAILED
                )
                ti.state = apply(ti.state, event, key)
                ti.end_date = self.clock.now()
                changed.append(ti)
                self._count_finished(live, ti)
                work.extend(sorted(task.downstream_task_ids, reverse=True))
        return changed

    def _count_finished(self, live: LiveRun, ti: TaskInstanceRecord) -> None:
        live.unfinished -= 1
        index = _COUNTED.get(ti.state)
        if index is not None:
            for down in live.dag.task_dict[ti.task_id].downstream_task_ids:
                live.counts[down][index] += 1

    def _skip(self, live: LiveRun, task_ids: set[str]) -> list[TaskInstanceRecord]:
        """Skip instances a branch did not follow, then let trigger rules cascade."""
        changed = []
        downstream: list[str] = []
        for task_id in sorted(task_ids):
            ti = live.tis.get(task_id)
            if ti is None or ti.state not in _WAITING:
                continue
            # A skipped instance still in a ready lane is dropped when dispatch reaches it.
            ti.state = apply(
                ti.state, TaskEvent.SKIP, (live.dag.dag_id, live.record.run_id, task_id)
            )
            ti.end_date = self.clock.now()
            self._count_finished(live, ti)
            changed.append(ti)
            downstream.extend(live.dag.task_dict[task_id].downstream_task_ids)
        return changed + self._evaluate(live, sorted(set(downstream)))

    def _make_ready(self, live: LiveRun, ti: TaskInstanceRecord) -> None:
        lane = self._lanes.setdefault((live.dag.dag_id, ti.pool), [])
        heapq.heappush(lane, (-ti.priority_weight, next(self._seq), live.key, ti.task_id))

    def _head(self, lane: list[tuple[int, int, tuple[str, str], str]]) -> TaskInstanceRecord | None:
        """The lane's first instance still waiting to start, dropping stale entries."""
        while lane:
            _, _, run_key, task_id = lane[0]
            live = self._runs.get(run_key)
            if live is not None and live.tis[task_id].state == TaskState.SCHEDULED:
                return live.tis[task_id]
            heapq.heappop(lane)
        return None

    def _lane_open(self, dag_id: str, pool: str, ti: TaskInstanceRecord) -> bool:
        live = self._runs[(ti.dag_id, ti.run_id)]
        if self._per_dag.get(dag_id, 0) >= live.dag.max_active_tasks:
            return False
        if pool not in self.pools:
            return True  # dispatched only to be failed with the reason
        slots = live.dag.task_dict[ti.task_id].pool_slots
        return self._per_pool.get(pool, 0) + slots <= self.pools[pool]

    def _next_ready(self) -> tuple[LiveRun, TaskInstanceRecord] | None:
        best: tuple[int, int] | None = None
        best_lane: list[tuple[int, int, tuple[str, str], str]] | None = None
        for (dag_id, pool), lane in self._lanes.items():
            head = self._head(lane)
            if head is None or not self._lane_open(dag_id, pool, head):
                continue
            if best is None or lane[0][:2] < best:
                best, best_lane = lane[0][:2], lane
        if best_lane is None:
            return None
        _, _, run_key, task_id = heapq.heappop(best_lane)
        live = self._runs[run_key]
        return live, live.tis[task_id]

    def _dispatch(self) -> None:
        """Start ready instances while limits allow, highest priority first."""
        assert self._tg is not None
        if self._draining:
            return
        queued: list[Statement] = []
        while self._running < self.parallelism:
            picked = self._next_ready()
            if picked is None:
                break
            live, ti = picked
            task = live.dag.task_dict[ti.task_id]
            if task.pool not in self.pools:
                self._tg.start_soon(
                    self._fail_without_try, live, ti, f"pool {task.pool!r} does not exist"
                )
                continue
            ti.state = apply(
                ti.state, TaskEvent.QUEUE, (live.dag.dag_id, live.record.run_id, ti.task_id)
            )
            queued.append(self.store.ti_statement(ti))
            self._running += 1
            live.active += 1
            self._per_dag[live.dag.dag_id] = self._per_dag.get(live.dag.dag_id, 0) + 1
            self._per_pool[task.pool] = self._per_pool.get(task.pool, 0) + task.pool_slots
            self._tg.start_soon(self._run_try, live, ti)
        if queued:
            self.store.write_nowait(queued)

    def _release(self, live: LiveRun, ti: TaskInstanceRecord) -> None:
        task = live.dag.task_dict[ti.task_id]
        self._running -= 1
        if self._running == 0:
            self._idle.set()
            self._idle = anyio.Event()
        live.active -= 1
        self._per_dag[live.dag.dag_id] -= 1
        self._per_pool[task.pool] -= task.pool_slots

    # -- one try -----------------------------------------------------------------------------

    async def _run_try(self, live: LiveRun, ti: TaskInstanceRecord) -> None:
        dag = live.dag
        task = dag.task_dict[ti.task_id]
        attempt = await self._start_try(live, ti)
        path = Path(attempt.log_path)
        result = TryResult("failed", live.stop_reason, retryable=False)
        with anyio.CancelScope() as scope:
            live.scopes[ti.task_id] = scope
            if live.stop_reason is None:
                result = await self.executor.run(
                    TryRequest(
                        dag=dag,
                        task=task,
                        run=live.info,
                        try_number=ti.try_number,
                        max_tries=task.retries + 1,
                        xcoms=live.xcoms,
                        log_path=path,
                    )
                )
        live.scopes.pop(ti.task_id, None)
        if scope.cancelled_caught:
            result = TryResult("failed", live.stop_reason, retryable=False)
        self._release(live, ti)
        changed, statements = self._finish(live, ti, attempt, result)
        ended = ti.state  # a retry may reschedule the instance before the callbacks below
        if result.state == "failed":
            log.warning(
                "task try failed",
                dag_id=dag.dag_id,
                run_id=live.record.run_id,
                task_id=ti.task_id,
                try_number=attempt.try_number,
                error=result.error,
                state=str(ti.state),
            )
        ack = self.store.write_nowait(statements)
        # What was written, as written: dispatch may move these instances on before the ack.
        written = [replace(ti), *map(replace, changed)] if self.on_change is not None else []
        self._dispatch()
        await ack.wait()
        for pushed_key, value in result.pushed.items():
            live.xcoms[(ti.task_id, pushed_key)] = value
        for snapshot in written:
            self._notify(live, snapshot)
        live.last_context = result.context
        live.in_callbacks += 1
        try:
            await self._task_callbacks(task, ended, result)
        finally:
            live.in_callbacks -= 1
        await self._maybe_finish(live)

    async def _start_try(self, live: LiveRun, ti: TaskInstanceRecord) -> TryRecord:
        """Mark the instance running, as a new try, in the store; the try's record."""
        dag = live.dag
        task = dag.task_dict[ti.task_id]
        key = (dag.dag_id, live.record.run_id, ti.task_id)
        ti.state = apply(ti.state, TaskEvent.START, key)
        ti.try_number += 1
        ti.max_tries = task.retries
        ti.start_date = self.clock.now()
        ti.end_date = None
        ti.duration = None
        ti.next_retry_at = None
        path = task_log_path(
            self.logs_dir, dag.dag_id, live.record.run_id, ti.task_id, ti.try_number
        )
        attempt = TryRecord(
            dag_id=dag.dag_id,
            run_id=live.record.run_id,
            task_id=ti.task_id,
            try_number=ti.try_number,
            state=TaskState.RUNNING,
            start_date=ti.start_date,
            hostname=_HOSTNAME,
            log_path=str(path),
        )
        await self.store.write([self.store.ti_statement(ti), self.store.try_statement(attempt)])
        if self.on_change is not None:
            # The queued write was submitted before this one, so it is committed too.
            self._notify(live, replace(ti, state=TaskState.QUEUED))
            self._notify(live, ti)
        return attempt

    async def _task_callbacks(self, task: Any, ended: TaskState, result: TryResult) -> None:
        callback = {
            TaskState.SUCCESS: task.on_success_callback,
            TaskState.FAILED: task.on_failure_callback,
            TaskState.UP_FOR_RETRY: task.on_retry_callback,
        }.get(ended)
        if callback is not None:
            context = {**result.context, "exception": result.error}
            await run_callback(callback, context, kind=f"task {ended}")

    def _finish(
        self, live: LiveRun, ti: TaskInstanceRecord, attempt: TryRecord, result: TryResult
    ) -> tuple[list[TaskInstanceRecord], list[Statement]]:
        task = live.dag.task_dict[ti.task_id]
        key = (live.dag.dag_id, live.record.run_id, ti.task_id)
        now = self.clock.now()
        ti.end_date = now
        ti.duration = (now - ti.start_date).total_seconds() if ti.start_date else None
        if result.state == "success":
            ti.state = apply(ti.state, TaskEvent.SUCCEED, key)
        elif result.state == "skipped":
            ti.state = apply(ti.state, TaskEvent.SKIP, key)
        elif result.retryable and ti.try_number <= task.retries:
            ti.state = apply(ti.state, TaskEvent.RETRY, key)
            ti.next_retry_at = now + retry_delay(
                ti.try_number,
                task.retry_delay or timedelta(0),
                exponential=task.retry_exponential_backoff,
                max_delay=task.max_retry_delay,
                seed=f"{key}",
            )
        else:
            ti.state = apply(ti.state, TaskEvent.FAIL, key)
        if result.error:
            live.errors[ti.task_id] = result.error
        attempt.state = ti.state if ti.state != TaskState.UP_FOR_RETRY else TaskState.FAILED
        attempt.end_date = now
        attempt.duration = ti.duration
        attempt.error = result.error
        statements = [self.store.ti_statement(ti), self.store.try_statement(attempt)]
        statements += [
            self.store.xcom_statement(key[0], key[1], ti.task_id, k, v)
            for k, v in result.pushed.items()
        ]
        changed: list[TaskInstanceRecord] = []
        if ti.state == TaskState.UP_FOR_RETRY:
            self._add_timer(live, ti)
        else:
            self._count_finished(live, ti)
            if result.skip_task_ids:
                changed += self._skip(live, result.skip_task_ids)
            changed += self._evaluate(live, sorted(task.downstream_task_ids))
        statements += [self.store.ti_statement(other) for other in changed]
        return changed, statements

    async def _fail_without_try(self, live: LiveRun, ti: TaskInstanceRecord, reason: str) -> None:
        key = (live.dag.dag_id, live.record.run_id, ti.task_id)
        ti.state = apply(ti.state, TaskEvent.QUEUE, key)
        ti.state = apply(ti.state, TaskEvent.START, key)
        ti.state = apply(ti.state, TaskEvent.FAIL, key)
        ti.end_date = self.clock.now()
        live.errors[ti.task_id] = reason
        log.error("task cannot run", dag_id=key[0], run_id=key[1], task_id=key[2], reason=reason)
        self._count_finished(live, ti)
        changed = self._evaluate(live, sorted(live.dag.task_dict[ti.task_id].downstream_task_ids))
        await self.store.write([self.store.ti_statement(t) for t in (ti, *changed)])
        for t in (ti, *changed):
            self._notify(live, t)
        self._dispatch()
        await self._maybe_finish(live)

    # -- retries ------------------------------------------------------------------------------

    def _add_timer(self, live: LiveRun, ti: TaskInstanceRecord) -> None:
        assert ti.next_retry_at is not None
        key = (live.key, ti.task_id)
        self.timers.call_at(ti.next_retry_at, lambda: self._retry_due(key))

    def _retry_due(self, key: tuple[tuple[str, str], str]) -> None:
        self._due_retries.append(key)
        self._retry_wake.set()

    async def _retry_pump(self) -> None:
        """Move instances whose retry delay has passed back to scheduled, in batches."""
        while True:
            await self._retry_wake.wait()
            self._retry_wake = anyio.Event()
            batch, self._due_retries = self._due_retries, []
            due: list[tuple[LiveRun, TaskInstanceRecord]] = []
            for run_key, task_id in batch:
                live = self._runs.get(run_key)
                if live is not None and live.tis[task_id].state == TaskState.UP_FOR_RETRY:
                    due.append((live, live.tis[task_id]))
            if not due:
                continue
            statements = []
            for live, ti in due:
                ti.state = apply(
                    ti.state,
                    TaskEvent.SCHEDULE,
                    (live.dag.dag_id, live.record.run_id, ti.task_id),
                )
                statements.append(self.store.ti_statement(ti))
                self._make_ready(live, ti)
            await self.store.write(statements)
            for live, ti in due:
                self._notify(live, ti)
            self._dispatch()

    # -- the end of a run --------------------------------------------------------------------------

    async def _maybe_finish(self, live: LiveRun) -> None:
        if live.done.is_set() or live.in_callbacks:
            return  # a try still in its callbacks finishes the run after them
        if live.stop_reason is not None:
            if live.active == 0:
                await self._end_run(live, RunState.FAILED, live.stop_reason)
            return
        if live.unfinished > 0:
            if live.active == 0 and not self._has_pending(live):
                await self._end_run(live, RunState.FAILED, self._deadlock_reason(live))
            return
        state = decide_run_state(
            {tid: ti.state for tid, ti in live.tis.items() if tid in live.dag.task_dict},
            live.dag.leaves,
        )
        assert state is not None
        await self._end_run(live, state, None)

    def _has_pending(self, live: LiveRun) -> bool:
        return any(
            ti.state
            in (TaskState.SCHEDULED, TaskState.UP_FOR_RETRY, TaskState.QUEUED, TaskState.RUNNING)
            for ti in live.tis.values()
        )

    def _deadlock_reason(self, live: LiveRun) -> str:
        waiting = [tid for tid, ti in live.tis.items() if ti.state == TaskState.NONE]
        reasons = [f"{tid}: {live.blocked[tid]}" for tid in waiting if tid in live.blocked]
        return "no task can make progress; " + ("; ".join(reasons) or ", ".join(waiting))

    async def _end_run(self, live: LiveRun, state: RunState, reason: str | None) -> None:
        if live.ending:
            return
        live.ending = True
        record = live.record
        record.state = state
        record.end_date = self.clock.now()
        if reason:
            live.errors["<run>"] = reason
            log.error("run failed", dag_id=record.dag_id, run_id=record.run_id, reason=reason)
        await self.store.write([self.store.run_statement(record)])
        self._runs.pop(live.key, None)
        self._notify(live, None)
        dag = live.dag
        callback = dag.on_success_callback if state == RunState.SUCCESS else dag.on_failure_callback
        if callback is not None:
            context = {
                **live.last_context,
                "dag": dag,
                "dag_run": live.info,
                "run_id": record.run_id,
                "reason": reason or ("success" if state == RunState.SUCCESS else "task_failure"),
            }
            await run_callback(callback, context, kind=f"run {state}")
        if self.on_run_end is not None:
            self.on_run_end(live)
        live.done.set()
