"""The sensor base: a task that waits for a condition by poking.

A sensor subclasses :class:`BaseSensor` and writes ``poke(context)``: ``async def``
(it runs on the event loop) or a plain ``def`` (it runs in a worker thread), returning
``True`` when the condition holds, or a :class:`PokeReturnValue` to push an XCom too.
The base does the rest: the waiting, the stored wait state, timeouts and backoff.

Modes:
- deferrable (the default; ``mode="reschedule"`` is Airflow's name for it): the try
  starts ``deferred`` and holds no executor slot: its wait is stored and the
  scheduler's sensor hub makes every poke when it is due, so a restart resumes it.
- ``mode="poke"``: the try holds its slot and pokes in a loop, as Airflow's poke mode.
  A deferrable sensor's try that runs all the same (``tasks test``: alone, there is no
  hub) pokes that way too.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

import anyio

from orchestrator._clock import SystemClock
from orchestrator.authoring._baseoperator import BaseOperator
from orchestrator.core._sensing import (
    EndWait,
    PokeResult,
    SensorPolicy,
    after_poke,
    first_wait,
    sensor_seed,
)
from orchestrator.core._steps import Resumption
from orchestrator.errors import DagDefinitionError, FailTask, SkipTask
from orchestrator.operators._python import PythonOperator

__all__ = ["BaseSensor", "DecoratedSensor", "PokeReturnValue"]

_MODES = ("reschedule", "deferrable", "poke")
_WEEK = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class PokeReturnValue:
    """A poke's answer with a value: when ``is_done``, ``xcom_value`` is the task's XCom."""

    is_done: bool
    xcom_value: Any = None


def _duration(value: object, where: str, name: str, *, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | timedelta):
        raise DagDefinitionError(f"{where}: {name} must be seconds or a timedelta, got {value!r}")
    delta = value if isinstance(value, timedelta) else timedelta(seconds=value)
    if delta < timedelta(0):
        raise DagDefinitionError(f"{where}: {name} must not be negative")
    return delta


class BaseSensor(BaseOperator):
    """Wait for ``poke`` to say the condition holds (see the module's text)."""

    ui_color: ClassVar[str] = "#e6f1f2"

    def __init__(
        self,
        *,
        poke_interval: float | timedelta = 60,
        timeout: float | timedelta = _WEEK,
        soft_fail: bool = False,
        mode: str = "reschedule",
        exponential_backoff: bool = False,
        max_wait: float | timedelta | None = None,
        poke_timeout: float | timedelta | None = 60,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = self._where
        if deferrable is not None:  # Airflow's switch for its deferrable sensors
            mode = "reschedule" if deferrable else "poke"
        self.poke_interval: timedelta = _duration(poke_interval, where, "poke_interval")
        if self.poke_interval <= timedelta(0):
            raise DagDefinitionError(f"{where}: poke_interval must be positive")
        self.timeout: timedelta = _duration(timeout, where, "timeout")
        self.max_wait: timedelta | None = _duration(max_wait, where, "max_wait", allow_none=True)
        self.poke_timeout: timedelta | None = _duration(
            poke_timeout, where, "poke_timeout", allow_none=True
        )
        if mode not in _MODES:
            raise DagDefinitionError(
                f"{where}: mode must be 'reschedule' (deferrable, the default) or 'poke', "
                f"got {mode!r}"
            )
        if self.isolation == "process":
            raise DagDefinitionError(
                f"{where}: a sensor waits on the event loop; isolation='process' is not "
                "supported for sensors"
            )
        self.mode = mode
        self.soft_fail = bool(soft_fail)
        self.exponential_backoff = bool(exponential_backoff)

    # -- what a sensor writes ------------------------------------------------------------

    async def poke(self, context: dict[str, Any]) -> bool | PokeReturnValue:
        """True (or ``PokeReturnValue(True, value)``) once the condition holds."""
        raise NotImplementedError(f"{type(self).__name__} must define poke(context)")

    def ready_at(self, context: dict[str, Any]) -> datetime | None:
        """When the condition will hold, if the sensor knows (a time): the next poke comes
        then rather than up to ``poke_interval`` later. None: it cannot know."""
        return None

    # -- what the base does --------------------------------------------------------------

    @property
    def deferrable(self) -> bool:
        return self.mode != "poke"

    @functools.cached_property
    def policy(self) -> SensorPolicy:
        return SensorPolicy(
            poke_interval=self.poke_interval,
            timeout=self.timeout,
            soft_fail=self.soft_fail,
            exponential_backoff=self.exponential_backoff,
            max_wait=self.max_wait,
            poke_timeout=self.poke_timeout,
        )

    def runs_on_loop(self) -> bool:
        return True  # a sync poke goes to a worker thread itself

    def wakes_on(self) -> str | None:
        """A DAG whose task states this sensor reads: a change there pokes it at once
        (in the process that runs both), instead of at its next interval."""
        return None

    async def poke_once(self, context: dict[str, Any]) -> tuple[bool, Any]:
        """One poke, cut off after ``poke_timeout``: (done, the XCom value if any)."""
        limit = self.poke_timeout.total_seconds() if self.poke_timeout is not None else None
        with anyio.fail_after(limit):
            poke: Callable[[dict[str, Any]], Any] = self.poke
            if inspect.iscoroutinefunction(poke):
                answer = await poke(context)
            else:
                answer = await anyio.to_thread.run_sync(poke, context)
        if isinstance(answer, PokeReturnValue):
            return bool(answer.is_done), answer.xcom_value if answer.is_done else None
        return bool(answer), None

    def seed(self, context: dict[str, Any]) -> str:
        ti = context["ti"]
        return sensor_seed(ti.dag_id, ti.run_id, ti.task_id, ti.try_number)

    async def execute_async(self, context: dict[str, Any]) -> Any:
        """The try, when it runs (``mode="poke"``, or alone): poke until done."""
        clock = SystemClock()
        policy, seed = self.policy, self.seed(context)
        started = clock.now()
        done, value = await self.poke_once(context)
        if done:
            return value
        wait = first_wait(policy, context["ti"].try_number, started, seed)
        while True:  # the hub's decisions, holding the slot
            await anyio.sleep(max(0.0, (wait.next_poke - clock.now()).total_seconds()))
            done, value = await self.poke_once(context)
            ready_at = None
            if not done:
                with contextlib.suppress(Exception):  # only a hint: the interval stands
                    ready_at = self.ready_at(context)
            decision = after_poke(
                policy, wait, PokeResult(done, ready_at=ready_at), clock.now(), seed
            )
            if isinstance(decision, EndWait):
                return _ended(decision, value)
            wait = decision


def _ended(decision: EndWait, value: Any) -> Any:
    if decision.outcome is Resumption.SUCCESS:
        return value
    if decision.outcome is Resumption.SKIPPED:
        raise SkipTask(decision.error or "skipped")
    raise FailTask(decision.error or "failed")


class DecoratedSensor(BaseSensor, PythonOperator):
    """``@task.sensor``: the function is the poke (sync or async, context by parameter)."""

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Sequence[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("multiple_outputs", None)
        super().__init__(
            python_callable=python_callable, op_args=op_args, op_kwargs=op_kwargs, **kwargs
        )

    def poke(self, context: dict[str, Any]) -> Any:
        args, kwargs = self._arguments(context)
        return self.python_callable(*args, **kwargs)

    async def poke_once(self, context: dict[str, Any]) -> tuple[bool, Any]:
        if not inspect.iscoroutinefunction(self.python_callable):
            return await super().poke_once(context)
        limit = self.poke_timeout.total_seconds() if self.poke_timeout is not None else None
        with anyio.fail_after(limit):
            answer = await self.poke(context)
        if isinstance(answer, PokeReturnValue):
            return bool(answer.is_done), answer.xcom_value if answer.is_done else None
        return bool(answer), None

    def runs_on_loop(self) -> bool:
        return True

    def execute(self, context: dict[str, Any]) -> Any:
        raise NotImplementedError  # a sensor's try is execute_async
