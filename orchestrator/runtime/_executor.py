"""The local executor: runs one try of a task and reports how it ended.

Where the work runs:
- ``async def`` work runs on the event loop;
- sync work runs in a worker thread, behind a capacity limiter;
- ``isolation="process"`` runs the task in a child interpreter (see ``_child.py``),
  so a hang, a crash, ``os._exit`` or a segfault ends only that try.

Timeouts: ``execution_timeout`` cancels async work and kills child processes (the
whole process group). A sync callable in a thread cannot be killed: the try fails
on time all the same, the thread is abandoned (its slot is given back) and it is
sent an asynchronous TaskTimeout exception, which stops pure-Python code at its
next bytecode but not a blocking C call. Use ``isolation="process"`` for code
that must really be stopped.

This module decides nothing about retries or states: it reports a TryResult and
the scheduler applies the state machine.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import json
import os
import signal
import threading
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

import anyio
import anyio.to_thread

from orchestrator._logging import (
    TaskLog,
    current_task_log,
    install_task_log_capture,
    mask,
    task_log_context,
)
from orchestrator._processes import marked, relay_output, sweep
from orchestrator.authoring._mapping import MappedOperator
from orchestrator.core._sensing import PokeResult
from orchestrator.errors import FailTask, SkipTask, TaskTimeout
from orchestrator.resources._connections import register_own_secrets
from orchestrator.resources._services import (
    Services,
    context_scope,
    services_context,
    worker_thread,
)
from orchestrator.runtime._context import (
    RETURN_VALUE,
    RuntimeTaskInstance,
    build_context,
    encode_xcom,
    map_label,
    render_task,
    rendered_fields,
    task_needs_render,
)
from orchestrator.runtime._tryspec import (
    TryKey,
    TryRequest,
    TryResult,
    child_spec,
    kill_child,
    open_child,
    outcome_value,
)
from sensors._base import BaseSensor

__all__ = ["Executor", "LocalExecutor", "TryRequest", "TryResult"]


class _ThreadHandle:
    """The identity of the worker thread running a sync try, to interrupt it on timeout."""

    def __init__(self) -> None:
        self.ident: int | None = None

    def interrupt(self) -> None:
        if self.ident is not None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self.ident), ctypes.py_object(TaskTimeout)
            )


class Executor(Protocol):
    """Runs a task's tries; the scheduler decides what runs and when (``_scheduler``).

    ``run`` runs one try to its end and reports it (cancelled: the try is stopped);
    ``context_of`` is the context the try's code and its callbacks see; ``poke`` is one
    poke of a deferred sensor, which runs in the daemon whatever the executor; ``serve``
    is the executor's own loop, run beside the scheduler's.
    """

    services: Services

    def context_of(self, request: TryRequest) -> dict[str, Any]: ...

    async def run(self, request: TryRequest) -> TryResult: ...

    async def poke(
        self, request: TryRequest, context: dict[str, Any], rendered: BaseSensor | None
    ) -> tuple[PokeResult, BaseSensor | None]: ...

    async def serve(self) -> None: ...

    async def adoptable(self, tries: Mapping[str, TryKey]) -> dict[str, str]:
        """Of these tries left running when their run was loaded (instance key -> try),
        those still running where they were sent: instance key -> the try's handle."""

    async def adopt(self, request: TryRequest, handle: str) -> TryResult:
        """Wait for a try ``adoptable`` named to end, as ``run`` would have."""

    def detach(self) -> bool:
        """The daemon is stopping: whether its tries run on without it (the next daemon
        adopts them), so that it need not wait for them; from then on a ``run``
        cancelled leaves its try running."""


class LocalExecutor:
    """Tries run in this process: on the loop, in worker threads, or in child processes."""

    def __init__(self, services: Services, *, thread_slots: int) -> None:
        self.services = services
        self._threads = anyio.CapacityLimiter(thread_slots)
        install_task_log_capture()
        register_own_secrets(services.settings)

    async def serve(self) -> None:
        """Nothing to watch: each try is awaited where it runs."""

    async def adoptable(self, tries: Mapping[str, TryKey]) -> dict[str, str]:
        """None: a try of this process ended with the process that ran it."""
        return {}

    async def adopt(self, request: TryRequest, handle: str) -> TryResult:
        raise AssertionError("the local executor adopts no try")

    def detach(self) -> bool:
        """No: a try of this process ends with it."""
        return False

    def context_of(self, request: TryRequest) -> dict[str, Any]:
        """The context the try's code (and its callbacks) see."""
        if request.map_index >= 0 and isinstance(request.task, MappedOperator):
            with contextlib.suppress(Exception):  # a callback's context: the mapped task then
                request.task = request.unmapped()
        ti = RuntimeTaskInstance(
            task=request.task,
            run=request.run,
            try_number=request.try_number,
            max_tries=request.max_tries,
            xcoms=request.xcoms,
            xcom_limit=self.services.settings.xcom_max_bytes,
            log_path=request.log_path,
        )
        return build_context(request.dag, ti)

    async def run(self, request: TryRequest) -> TryResult:
        log = TaskLog(request.log_path, self.services.settings.task_log_max_bytes)
        failed = await self._unmap(request, log)
        if failed is not None:
            return failed
        context = self.context_of(request)
        ti: RuntimeTaskInstance = context["ti"]
        # The try's start, end and state live in the store; the file holds only what the
        # try itself wrote (and its error), so a silent try costs no file at all.
        timeout = request.task.execution_timeout
        handle = _ThreadHandle()
        task = request.task
        in_thread = task.isolation != "process" and not task.runs_on_loop()
        with self._scoped(log, context):
            with anyio.move_on_after(timeout.total_seconds() if timeout else None) as scope:
                if in_thread:
                    result = await anyio.to_thread.run_sync(
                        worker_thread(self._attempt_in_thread),
                        request,
                        ti,
                        context,
                        log,
                        handle,
                        limiter=self._threads,
                        abandon_on_cancel=True,
                    )
                else:
                    result = await self._attempt_async(request, ti, context, log)
            if scope.cancelled_caught:
                handle.interrupt()
                message = f"timed out after {timeout} (execution_timeout)"
                log.line(f"ERROR: {message}")
                result = TryResult("failed", message)
                await anyio.to_thread.run_sync(log.close)
        return self._finished(request, result, context, log)

    def _finished(
        self, request: TryRequest, result: TryResult, context: dict[str, Any], log: TaskLog
    ) -> TryResult:
        """What every try's report carries beside its outcome: its context, a failed
        try's last log lines, a mapped instance's label."""
        result.context = context
        if result.state == "failed":
            result.log_excerpt = log.excerpt()
        task = request.task
        if request.map_index >= 0 and task.map_index_template:
            result.map_label = map_label(task.map_index_template, context)
        return result

    async def _unmap(self, request: TryRequest, log: TaskLog) -> TryResult | None:
        """A mapped instance's own operator into ``request``; the failed try if it
        cannot be built."""
        if request.map_index < 0:
            return None
        try:
            request.task = request.unmapped()
        except Exception as exc:  # what it maps over changed, or an argument is refused
            message = mask(f"{type(exc).__name__}: {exc}")
            log.line(f"ERROR: cannot build map_index {request.map_index}: {message}")
            await anyio.to_thread.run_sync(log.close)
            return TryResult("failed", message, retryable=False, log_excerpt=log.excerpt())
        return None

    def _attempt_in_thread(
        self,
        request: TryRequest,
        ti: RuntimeTaskInstance,
        context: dict[str, Any],
        log: TaskLog,
        handle: _ThreadHandle,
    ) -> TryResult:
        """A sync try, start to end, in its worker thread: rendering, work, XCom, log."""
        handle.ident = threading.get_ident()
        try:
            try:
                task = request.task
                shown = None
                if task_needs_render(task):
                    rendered = render_task(task, context)
                    shown = rendered_fields(rendered)
                else:
                    rendered = task
                rendered.pre_execute(context)
                value, error = rendered.execute(context), None
                rendered.post_execute(context, value)
            except Exception as exc:
                value, error = None, exc
            result = self._outcome(request, ti, log, value, error)
            result.rendered = shown
            return result
        finally:
            handle.ident = None
            log.close()

    async def _attempt_async(
        self, request: TryRequest, ti: RuntimeTaskInstance, context: dict[str, Any], log: TaskLog
    ) -> TryResult:
        """A try on the loop (async work) or in a child process."""
        shown: list[str | None] = [None]
        try:
            try:
                value, error = await self._execute_async(request, context, shown), None
            except Exception as exc:
                value, error = None, exc
            result = self._outcome(request, ti, log, value, error)
            result.rendered = shown[0]
            return result
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(log.close)

    def _outcome(
        self,
        request: TryRequest,
        ti: RuntimeTaskInstance,
        log: TaskLog,
        value: Any,
        error: Exception | None,
    ) -> TryResult:
        """How the try ended, from its return value or its exception; logged."""
        extras: dict[str, dict[str, Any]] = {}
        if error is None:
            try:
                if request.task.do_xcom_push and value is not None:
                    ti.xcom_push(RETURN_VALUE, value)
                extras = ti.outlet_events.checked_extras(self.services.settings.xcom_max_bytes)
            except Exception as exc:
                error = exc
        if error is None:
            return TryResult(
                "success", pushed=ti.pushed, skip_task_ids=ti.skip_task_ids, outlet_extras=extras
            )
        if isinstance(error, SkipTask):
            log.line(f"skipped: {error}")
            return TryResult("skipped", pushed=ti.pushed)
        if isinstance(error, FailTask):
            log.line(f"ERROR (no retry): {error}")
            return TryResult("failed", mask(str(error)) or "FailTask", retryable=False)
        log.write("".join(traceback.format_exception(error)))
        return TryResult("failed", mask(f"{type(error).__name__}: {error}"))

    async def poke(
        self, request: TryRequest, context: dict[str, Any], rendered: BaseSensor | None
    ) -> tuple[PokeResult, BaseSensor | None]:
        """One poke of a deferred sensor's try, outside any slot, in the try's
        ``context`` (``context_of``, made once per wait); its output goes on the try's
        log. The sensor's templated fields are rendered at the try's first poke: the
        rendered sensor comes back with the result, to be given to the next pokes."""
        sensor = request.task
        assert isinstance(sensor, BaseSensor)
        poke_timeout = sensor.poke_timeout
        log = TaskLog(request.log_path, self.services.settings.task_log_max_bytes)
        try:
            with self._scoped(log, context):
                if rendered is None:  # the try's own copy: a sensor may keep state across pokes
                    rendered = copy.copy(sensor)
                    if task_needs_render(sensor):
                        made = await anyio.to_thread.run_sync(
                            worker_thread(render_task), sensor, context, limiter=self._threads
                        )
                        assert isinstance(made, BaseSensor)
                        rendered = made
                sensor = rendered
                done, value = await sensor.poke_once(context)
                xcom = None
                if done and value is not None and sensor.do_xcom_push:
                    where = f"DAG {request.dag.dag_id!r}, task {sensor.task_id!r}"
                    limit = self.services.settings.xcom_max_bytes
                    xcom = encode_xcom(value, where=where, limit=limit)
                ready_at = None
                if not done:
                    with contextlib.suppress(Exception):  # only a hint: the interval stands
                        ready_at = sensor.ready_at(context)
                return PokeResult(done, xcom, ready_at=ready_at), rendered
        except SkipTask as exc:
            log.line(f"skipped: {exc}")
            return PokeResult(False, error=mask(str(exc)) or "skipped", skipped=True), rendered
        except FailTask as exc:
            log.line(f"ERROR (no retry): {exc}")
            failed = PokeResult(False, error=mask(str(exc)) or "FailTask", retryable=False)
            return failed, rendered
        except TimeoutError:
            message = f"the poke took longer than its poke_timeout ({poke_timeout})"
            log.line(f"ERROR: {message}")
            return PokeResult(False, error=message), rendered
        except Exception as exc:
            log.write("".join(traceback.format_exception(exc)))
            return PokeResult(False, error=mask(f"{type(exc).__name__}: {exc}")), rendered
        finally:
            if log.untouched:  # most pokes print nothing: no thread, no file
                log.close()
            else:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(log.close)

    @contextmanager
    def _scoped(self, log: TaskLog, context: dict[str, Any]) -> Iterator[None]:
        with context_scope(context), task_log_context(log), services_context(self.services):
            yield

    async def _execute_async(
        self, request: TryRequest, context: dict[str, Any], shown: list[str | None]
    ) -> Any:
        """The try's work on the loop or in a child process; ``shown[0]`` gets its
        templated fields as rendered, when they were rendered here."""
        task = request.task
        if task.isolation == "process":
            return await self._execute_in_process(request, context)
        if task_needs_render(task):
            task = await anyio.to_thread.run_sync(
                worker_thread(render_task), task, context, limiter=self._threads
            )
            shown[0] = rendered_fields(task)
        task.pre_execute(context)
        value = await task.execute_async(context)
        task.post_execute(context, value)
        return value

    async def _execute_in_process(self, request: TryRequest, context: dict[str, Any]) -> Any:
        ti: RuntimeTaskInstance = context["ti"]
        result_path = request.log_path.with_suffix(".result.json")
        spec = child_spec(request, self.services.settings.xcom_max_bytes)
        spec["result_path"] = str(result_path)
        settings = self.services.settings
        env, mark = marked(
            {
                **os.environ,
                "ORCHESTRATOR_HOME": str(settings.home.resolve()),
                "ORCHESTRATOR_DB": settings.db_url,
            }
        )
        await anyio.Path(request.log_path.parent).mkdir(parents=True, exist_ok=True)
        log = current_task_log()
        process = await open_child(spec, env)  # see BashOperator.execute: no unguarded child
        try:
            # Through this process's log: masked, bounded, like every try's output.
            code, _ = await relay_output(process, log.line if log is not None else print)
        except BaseException:
            await kill_child(process)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(sweep, mark)
        if not result_path.exists():
            reason = (
                f"killed by signal {signal.Signals(-code).name}"
                if code < 0
                else f"exit code {code}"
            )
            raise RuntimeError(f"the task's process ended without a result ({reason})")
        outcome = json.loads(result_path.read_text())
        result_path.unlink()
        return outcome_value(ti, outcome)
