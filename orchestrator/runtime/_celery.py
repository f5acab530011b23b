"""The Celery executor: each try runs on a worker (``orchestrator worker``).

The daemon writes the try's row (``store._work``, ``queued``) and sends a Celery message
that names only the row; the worker that claims it runs the try in a process of its
own and writes its heartbeats, its output and its outcome to the store. The daemon
watches its tries' rows in one loop:

1. output chunks are appended to the try's log file as they arrive, so ``tasks logs``,
   the API and the UI read a worker's try as they read a local one;
2. a finished row ends the wait with its outcome, turned into a ``TryResult`` as the
   local executor does;
3. a running try whose heartbeat lapsed for ``worker_lost_after`` seconds, or a try no
   worker claimed within ``task_queued_timeout``, is made ``lost`` (a retryable failure);
   a try still queued after ``celery_resend_after`` seconds is sent again (a message the
   broker lost), which the claim makes harmless;
4. a try the scheduler stops (a stopped run, a timeout) is cancelled in the store: a
   queued one never runs, a running one is killed by its worker;
5. a daemon that stops (``detach``) leaves its tries to run on: the next daemon to drive
   their runs (itself started again, or another one) adopts them.

Deferred sensors poke in the daemon, as with the local executor: a wait holds no worker.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
import structlog

from orchestrator._logging import TaskLog
from orchestrator.errors import StoreError
from orchestrator.resources._services import Services
from orchestrator.runtime._celeryapp import celery_app, queue_name
from orchestrator.runtime._executor import LocalExecutor, TryRequest, TryResult
from orchestrator.runtime._tryspec import TryKey, child_spec, outcome_value
from orchestrator.store._work import (
    OPEN,
    Work,
    adopt_work,
    cancel_work,
    lose_work,
    queued_work,
    sent_again,
    watch_work,
    work_chunks,
    work_of,
)

__all__ = ["CeleryExecutor"]

log = structlog.get_logger("orchestrator.celery")

WATCH_SECONDS = 0.05  # how often the rows of tries in flight are read
TASK_NAME = "orchestrator.run_try"


@dataclass(slots=True)
class _Waiter:
    request: TryRequest
    log: TaskLog
    queue: str
    seen: int = 0  # output chunks appended to the log
    worker: str | None = None  # the worker that claimed the try (host:pid)
    outcome: dict[str, Any] | None = None
    done: anyio.Event = field(default_factory=anyio.Event)


class CeleryExecutor(LocalExecutor):
    def __init__(self, services: Services, *, thread_slots: int, driver: str = "") -> None:
        super().__init__(services, thread_slots=thread_slots)
        settings = services.settings
        self.driver = driver
        self._app = celery_app(settings)
        self._waiters: dict[str, _Waiter] = {}
        self._send_lock = anyio.Lock()
        self._connection: Any = None
        self._producer: Any = None
        self._detached = False

    async def serve(self) -> None:
        """Watch the rows of the tries in flight until cancelled (rule 1-3)."""
        try:
            await self._watch()
        finally:
            with anyio.CancelScope(shield=True):  # the broker connections it holds
                await anyio.to_thread.run_sync(self._close)

    async def _watch(self) -> None:
        while True:
            await anyio.sleep(WATCH_SECONDS)
            if not self._waiters:
                continue
            try:
                rows = await watch_work(self.services.store.backend, list(self._waiters))
                for work in rows:
                    await self._look(work)
            except StoreError as exc:  # the store is away: the rows wait there
                log.warning("cannot read the tries on workers", error=str(exc))
                await anyio.sleep(1.0)

    async def run(self, request: TryRequest) -> TryResult:
        settings = self.services.settings
        task_log = TaskLog(request.log_path, settings.task_log_max_bytes)
        failed = await self._unmap(request, task_log)
        if failed is not None:
            return failed
        context = self.context_of(request)
        work_id = uuid.uuid4().hex
        queue = request.task.queue
        store = self.services.store
        spec = child_spec(request, settings.xcom_max_bytes)
        pool = (request.task.pool, request.task.pool_slots)
        row = queued_work(
            store.dialect,
            work_id,
            _key(request),
            queue=queue,
            driver=self.driver,
            spec=spec,
            pool=pool,
        )
        await store.write([row])
        waiter = self._waiters[work_id] = _Waiter(request, task_log, queue)
        return await self._wait(work_id, waiter, context, send=True)

    async def adoptable(self, tries: Mapping[str, TryKey]) -> dict[str, str]:
        """The tries sent to workers: a daemon started again (or one that took a lost
        daemon's runs over) waits for those still queued or running instead of running
        them again, and takes the outcome of those that ended while no daemon watched."""
        found = {}
        for key, at in tries.items():
            work = await work_of(self.services.store.backend, at)
            if work is not None:
                found[key] = work.id
        return found

    def detach(self) -> bool:
        """Rule 5."""
        self._detached = True
        return True

    async def adopt(self, request: TryRequest, handle: str) -> TryResult:
        settings = self.services.settings
        await anyio.Path(request.log_path).unlink(missing_ok=True)  # written again, whole
        task_log = TaskLog(request.log_path, settings.task_log_max_bytes)
        failed = await self._unmap(request, task_log)
        if failed is not None:
            return failed
        context = self.context_of(request)
        waiter = self._waiters[handle] = _Waiter(request, task_log, request.task.queue)
        log.info("try on a worker adopted", work_id=handle, task_id=request.task.task_id)
        try:  # its pool slots are this daemon's to count from now on
            await adopt_work(self.services.store.backend, handle, self.driver)
        except StoreError as exc:
            log.warning("cannot note an adopted try's daemon", work_id=handle, error=str(exc))
        return await self._wait(handle, waiter, context, send=False)

    async def _wait(
        self, work_id: str, waiter: _Waiter, context: dict[str, Any], *, send: bool
    ) -> TryResult:
        request, task_log = waiter.request, waiter.log
        try:
            if send:
                await self._send(work_id, waiter.queue)
            await waiter.done.wait()
        except BaseException:
            with anyio.CancelScope(shield=True):
                if self._detached:  # rule 5
                    await anyio.to_thread.run_sync(waiter.log.close)
                else:
                    await self._cancel(work_id, waiter)
            raise
        finally:
            self._waiters.pop(work_id, None)
        outcome = waiter.outcome
        assert outcome is not None
        kind = outcome.get("kind")
        if kind in ("lost", "cancelled", "timeout"):
            error = str(outcome.get("error") or kind)
            task_log.line(f"ERROR: {error}")
            await anyio.to_thread.run_sync(task_log.close)
            result = TryResult("failed", error, retryable=kind != "cancelled")
        else:
            ti = context["ti"]
            try:
                value, failure = outcome_value(ti, outcome), None
            except Exception as exc:
                value, failure = None, exc
            result = self._outcome(request, ti, task_log, value, failure)
            await anyio.to_thread.run_sync(task_log.close)
        if waiter.worker:
            result.hostname = waiter.worker.rpartition(":")[0]
        return self._finished(request, result, context, task_log)

    # -- the watch --------------------------------------------------------------------------

    async def _look(self, work: Work) -> None:
        waiter = self._waiters.get(work.id)
        if waiter is None or waiter.done.is_set():
            return
        backend = self.services.store.backend
        if work.worker:
            waiter.worker = work.worker
        if work.logged > waiter.seen:
            for seq, data in await work_chunks(backend, work.id, waiter.seen):
                waiter.log.write(data)
                waiter.seen = seq
        settings = self.services.settings
        if work.state not in OPEN:
            self._end(waiter, work.result or {"kind": "lost", "error": f"try {work.state}"})
        elif work.state == "running" and (work.silent_for or 0.0) > settings.worker_lost_after:
            reason = (
                f"lost: worker {work.worker} sent no heartbeat for {work.silent_for:.0f}s "
                f"(worker_lost_after {settings.worker_lost_after:g}s)"
            )
            if await lose_work(backend, work.id, "running", settings.worker_lost_after, reason):
                self._end(waiter, {"kind": "lost", "error": reason})
        elif work.state == "queued" and work.queued_for > settings.task_queued_timeout:
            reason = (
                f"lost: no worker took the try from queue {waiter.queue!r} within "
                f"{settings.task_queued_timeout:g}s (task_queued_timeout)"
            )
            if await lose_work(backend, work.id, "queued", settings.task_queued_timeout, reason):
                self._end(waiter, {"kind": "lost", "error": reason})
        elif work.state == "queued" and work.queued_for > settings.celery_resend_after * (
            work.sent + 1
        ):
            await sent_again(backend, work.id)
            await self._send(work.id, waiter.queue)

    def _end(self, waiter: _Waiter, outcome: dict[str, Any]) -> None:
        waiter.outcome = outcome
        waiter.done.set()

    async def _send(self, work_id: str, queue: str) -> None:
        """The message naming the try; a broker that cannot take it is logged, and the
        try is sent again later (rule 3)."""
        name = queue_name(self.services.settings, queue)
        try:
            async with self._send_lock:
                await anyio.to_thread.run_sync(self._send_sync, work_id, name)
        except Exception as exc:
            log.warning(
                "cannot send a try to the broker", work_id=work_id, queue=name, error=str(exc)
            )

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.release()
            self._connection = None

    def _send_sync(self, work_id: str, queue: str) -> None:
        """Over this executor's own broker connection (Celery's pools are shared by every
        app of the process), made again after a failure."""
        try:
            if self._connection is None:
                self._connection = self._app.connection_for_write()
                self._producer = self._app.amqp.Producer(self._connection)
            self._app.send_task(
                TASK_NAME, args=[work_id], queue=queue, producer=self._producer, retry=False
            )
        except Exception:
            self._close()
            raise

    async def _cancel(self, work_id: str, waiter: _Waiter) -> None:
        try:
            await cancel_work(self.services.store.backend, work_id, "stopped by the daemon")
        except StoreError as exc:
            log.warning("cannot cancel a try on a worker", work_id=work_id, error=str(exc))
        with anyio.move_on_after(1.0), contextlib.suppress(StoreError):  # what it printed
            backend = self.services.store.backend
            for seq, data in await work_chunks(backend, work_id, waiter.seen):
                waiter.log.write(data)
                waiter.seen = seq
        await anyio.to_thread.run_sync(waiter.log.close)


def _key(request: TryRequest) -> TryKey:
    task_id = request.task.task_id
    return (request.dag.dag_id, request.run.run_id, task_id, request.map_index, request.try_number)
