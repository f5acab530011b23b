"""More sensors, as Airflow's standard provider has them: the time of day, the day of the
week, a Bash command's exit code, a Python callable's answer."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, time
from typing import Any, ClassVar

import anyio

from orchestrator._clock import SystemClock
from orchestrator._logging import current_task_log
from orchestrator._processes import without_daemon_secrets
from orchestrator.errors import DagDefinitionError
from orchestrator.operators._branching import WeekDay, week_days
from sensors._base import BaseSensor, DecoratedSensor

__all__ = ["BashSensor", "DayOfWeekSensor", "PythonSensor", "TimeSensor"]


class TimeSensor(BaseSensor):
    """Today's ``target_time`` has come (a ``datetime.time``, UTC unless it has a tzinfo)."""

    def __init__(self, *, target_time: time, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(target_time, time):
            raise DagDefinitionError(f"{self._where}: target_time must be a datetime.time")
        self.target_time = target_time

    async def poke(self, context: dict[str, Any]) -> bool:
        return SystemClock().now() >= self.ready_at(context)

    def ready_at(self, context: dict[str, Any]) -> datetime:
        tz = self.target_time.tzinfo or UTC
        today = SystemClock().now().astimezone(tz).date()
        return datetime.combine(today, self.target_time.replace(tzinfo=None), tzinfo=tz)


class DayOfWeekSensor(BaseSensor):
    """Today (or the run's logical date, with ``use_task_logical_date``) is one of
    ``week_day``."""

    def __init__(
        self,
        *,
        week_day: str | WeekDay | Iterable[str | WeekDay],
        use_task_logical_date: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.week_day = week_days(week_day, self._where)
        self.use_task_logical_date = bool(use_task_logical_date)

    async def poke(self, context: dict[str, Any]) -> bool:
        day = context["logical_date"] if self.use_task_logical_date else SystemClock().now()
        return day.isoweekday() in self.week_day


class BashSensor(BaseSensor):
    """``bash_command`` exits 0 (any other code: not yet; its output goes to the log)."""

    template_fields: ClassVar[Sequence[str]] = ("bash_command", "env")
    template_ext: ClassVar[Sequence[str]] = (".sh", ".bash")

    def __init__(
        self,
        *,
        bash_command: str,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(bash_command, str) or not bash_command.strip():
            raise DagDefinitionError(f"{self._where}: bash_command must be a non-empty string")
        self.bash_command = bash_command
        self.env = dict(env) if env is not None else None
        self.cwd = cwd

    async def poke(self, context: dict[str, Any]) -> bool:
        env = self.env if self.env is not None else without_daemon_secrets(os.environ)
        done = await anyio.run_process(
            ["bash", "-c", self.bash_command],
            cwd=self.cwd,
            env={k: str(v) for k, v in env.items()},
            stdin=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            check=False,
        )
        log = current_task_log()
        for line in done.stdout.decode(errors="replace").splitlines():
            if log is not None:
                log.line(line)
        return done.returncode == 0


class PythonSensor(DecoratedSensor):
    """``python_callable(*op_args, **op_kwargs)`` answers truthy (or a ``PokeReturnValue``)."""
