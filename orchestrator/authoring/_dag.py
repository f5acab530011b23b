"""The DAG: its arguments, its tasks and their graph.

Every DAG created while a DAG file is imported is registered with the loader's
collector (no ``as dag`` needed); ``with DAG(...)`` makes it the default DAG for the
operators created inside the block.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.authoring._alerting import DeadlineAlert, callbacks_of
from orchestrator.authoring._baseoperator import BaseOperator, find_xcom_args
from orchestrator.authoring._dagcontext import KEY_PATTERN, DagContext, OpenedOn
from orchestrator.authoring._param import check_defaults
from orchestrator.errors import CycleError, DagDefinitionError, DuplicateTaskError
from triggers import Cron, Schedule, parse_schedule
from triggers._timetable import Timetable, timetable_for

__all__ = ["DAG", "collect_dags"]

_collector: contextvars.ContextVar[list[DAG] | None] = contextvars.ContextVar(
    "orchestrator_dag_collector", default=None
)


@contextmanager
def collect_dags() -> Iterator[list[DAG]]:
    """Collect every DAG created inside the block (used by the loader)."""
    found: list[DAG] = []
    token = _collector.set(found)
    try:
        yield found
    finally:
        _collector.reset(token)


def _utc(value: Any, where: str, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise DagDefinitionError(f"{where}: {field} must be a datetime, got {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class DAG(OpenedOn):
    """A workflow: tasks, their dependencies, and when it runs."""

    _open_stack = DagContext

    def __init__(
        self,
        dag_id: str,
        *,
        schedule: Any = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        catchup: bool = False,
        max_active_runs: int = 16,
        max_active_tasks: int = 16,
        default_args: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: list[str] | None = None,
        description: str | None = None,
        dagrun_timeout: timedelta | None = None,
        on_failure_callback: Callable[..., Any] | list[Callable[..., Any]] | None = None,
        on_success_callback: Callable[..., Any] | list[Callable[..., Any]] | None = None,
        deadline: DeadlineAlert | list[DeadlineAlert] | None = None,
        is_paused_upon_creation: bool | None = None,
        dataset_events: str = "batch",
        doc_md: str | None = None,
        dag_display_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        where = f"DAG {dag_id!r}"
        if "schedule_interval" in kwargs:  # Airflow 2's name for it
            if schedule is not None:
                raise DagDefinitionError(f"{where}: give schedule or schedule_interval, not both")
            schedule = kwargs.pop("schedule_interval")
        if kwargs:
            raise DagDefinitionError(
                f"{where}: unexpected argument(s): {', '.join(sorted(kwargs))}"
            )
        if not isinstance(dag_id, str) or not KEY_PATTERN.match(dag_id):
            raise DagDefinitionError(
                f"{where}: dag_id must be 1-250 letters, digits, '_', '.' or '-'"
            )
        self.dag_id = dag_id
        self.fileloc = ""
        try:
            zone = _zone(start_date)
            if isinstance(schedule, str) and zone is not None:
                # As in Airflow, a plain cron string runs in the start_date's time zone.
                schedule = _cron_in_zone(schedule, zone)
            self.schedule: Schedule = parse_schedule(schedule)
        except ValueError as exc:
            raise DagDefinitionError(f"{where}: schedule: {exc}") from exc
        self.start_date = _utc(start_date, where, "start_date")
        self.end_date = _utc(end_date, where, "end_date")
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise DagDefinitionError(f"{where}: end_date is before start_date")
        if (self.schedule.time is not None or self.schedule.once) and self.start_date is None:
            raise DagDefinitionError(f"{where}: a time schedule needs a start_date")
        self.catchup = _bool(catchup, where, "catchup")
        self.max_active_runs = _positive(max_active_runs, where, "max_active_runs")
        self.max_active_tasks = _positive(max_active_tasks, where, "max_active_tasks")
        if default_args is not None and not isinstance(default_args, Mapping):
            raise DagDefinitionError(f"{where}: default_args must be a mapping")
        self.default_args = dict(default_args or {})
        if params is not None and not isinstance(params, Mapping):
            raise DagDefinitionError(f"{where}: params must be a mapping")
        self.params = dict(params or {})
        check_defaults(self.params, where)
        if tags is not None and (
            not isinstance(tags, list | tuple) or not all(isinstance(t, str) for t in tags)
        ):
            raise DagDefinitionError(f"{where}: tags must be a list of strings")
        self.tags = list(tags or [])
        self.description = description
        if dagrun_timeout is not None and not isinstance(dagrun_timeout, timedelta):
            raise DagDefinitionError(f"{where}: dagrun_timeout must be a timedelta")
        self.dagrun_timeout = dagrun_timeout
        for name, callback in (
            ("on_failure_callback", on_failure_callback),
            ("on_success_callback", on_success_callback),
        ):
            callbacks_of(callback, where, name)
        deadlines = (
            [] if deadline is None else deadline if isinstance(deadline, list) else [deadline]
        )
        for alert in deadlines:
            if not isinstance(alert, DeadlineAlert):
                raise DagDefinitionError(
                    f"{where}: deadline must be a DeadlineAlert, got {alert!r}"
                )
            alert.check(where)
        self.deadlines: list[DeadlineAlert] = deadlines
        self.on_failure_callback = on_failure_callback
        self.on_success_callback = on_success_callback
        self.is_paused_upon_creation = is_paused_upon_creation
        if dataset_events not in ("batch", "each"):
            raise DagDefinitionError(
                f"{where}: dataset_events must be 'batch' or 'each', got {dataset_events!r}"
            )
        self.dataset_events = dataset_events
        self.doc_md = doc_md
        self.dag_display_name = str(dag_display_name) if dag_display_name else dag_id
        self.task_dict: dict[str, BaseOperator] = {}
        self.task_group_dict: dict[str, Any] = {}  # group id -> TaskGroup
        self.edge_info: dict[tuple[str, str], dict[str, Any]] = {}  # (up, down) -> label
        self._timetable: Timetable | None = None
        collector = _collector.get()
        if collector is not None:
            collector.append(self)

    def to_json(self, is_paused: bool) -> dict[str, Any]:
        """The DAG as ``dags list --json`` and ``GET /api/v1/dags`` show it."""
        return {
            "dag_id": self.dag_id,
            "file": self.fileloc,
            "schedule": self.schedule.text,
            "is_paused": is_paused,
            "tags": self.tags,
        }

    def paused_on_creation(self, default: bool) -> bool:
        """Whether the DAG starts paused when first seen: its own say, else ``default``."""
        return default if self.is_paused_upon_creation is None else self.is_paused_upon_creation

    @property
    def timetable(self) -> Timetable | None:
        """The time part of the schedule as a timetable (None: no time schedule)."""
        if self._timetable is None:
            self._timetable = timetable_for(
                self.schedule, self.start_date, self.end_date, self.catchup
            )
        return self._timetable

    # -- tasks -----------------------------------------------------------------------

    def add_task(self, task: BaseOperator) -> None:
        if task.task_id in self.task_dict:
            raise DuplicateTaskError(f"DAG {self.dag_id!r}: duplicate task id {task.task_id!r}")
        task.dag = self
        self.task_dict[task.task_id] = task

    @property
    def tasks(self) -> list[BaseOperator]:
        return list(self.task_dict.values())

    @property
    def task_ids(self) -> list[str]:
        return list(self.task_dict)

    def get_task(self, task_id: str) -> BaseOperator:
        try:
            return self.task_dict[task_id]
        except KeyError:
            raise DagDefinitionError(f"DAG {self.dag_id!r} has no task {task_id!r}") from None

    @property
    def leaves(self) -> list[str]:
        return [t.task_id for t in self.task_dict.values() if not t.downstream_task_ids]

    @property
    def run_leaves(self) -> list[str]:
        """The tasks whose states decide the run's, as Airflow's: a teardown counts only
        with ``on_failure_fail_dagrun``, and a task followed only by teardowns that do not
        count is a leaf."""

        def ignored(task_id: str) -> bool:
            task = self.task_dict[task_id]
            return task.is_teardown and not task.on_failure_fail_dagrun

        found = [
            t.task_id
            for t in self.task_dict.values()
            if not ignored(t.task_id) and all(ignored(d) for d in t.downstream_task_ids)
        ]
        return found or self.leaves

    def validate(self) -> None:
        """Check the graph: every edge names a task of this DAG, and there is no cycle."""
        for task in self.task_dict.values():
            for arg in _task_xcom_args(task):
                if arg.operator.task_id not in self.task_dict:
                    raise DagDefinitionError(
                        f"DAG {self.dag_id!r}, task {task.task_id!r}: uses the output of task "
                        f"{arg.operator.task_id!r}, which is not in this DAG"
                    )
            for other in task.upstream_task_ids | task.downstream_task_ids:
                if other not in self.task_dict:
                    raise DagDefinitionError(
                        f"DAG {self.dag_id!r}, task {task.task_id!r}: linked to unknown task "
                        f"{other!r}"
                    )
        self.topological_order()

    def topological_order(self) -> list[str]:
        """Task ids, upstream before downstream; raises CycleError naming a cycle."""
        indegree = {tid: len(t.upstream_task_ids) for tid, t in self.task_dict.items()}
        ready = [tid for tid, n in indegree.items() if n == 0]
        order: list[str] = []
        while ready:
            tid = ready.pop()
            order.append(tid)
            for down in sorted(self.task_dict[tid].downstream_task_ids):
                indegree[down] -= 1
                if indegree[down] == 0:
                    ready.append(down)
        if len(order) != len(self.task_dict):
            cycle = self._find_cycle({tid for tid, n in indegree.items() if n > 0})
            raise CycleError(f"DAG {self.dag_id!r}: cycle between tasks {' -> '.join(cycle)}")
        return order

    def _find_cycle(self, remaining: set[str]) -> list[str]:
        # Every task left after Kahn's pass has an upstream task that is also left, so
        # walking upstream must come back to a task already seen: that loop is a cycle.
        path: list[str] = [min(remaining)]
        seen = {path[0]: 0}
        while True:
            prev = min(u for u in self.task_dict[path[-1]].upstream_task_ids if u in remaining)
            if prev in seen:
                loop = list(reversed(path[seen[prev] :]))
                start = loop.index(min(loop))
                loop = loop[start:] + loop[:start]
                return [*loop, loop[0]]
            seen[prev] = len(path)
            path.append(prev)

    def __repr__(self) -> str:
        return f"<DAG: {self.dag_id}>"


def _zone(start_date: Any) -> str | None:
    """The IANA zone name of an aware start_date, if it has one other than UTC."""
    tz = getattr(start_date, "tzinfo", None)
    key = getattr(tz, "key", None)
    return key if isinstance(key, str) and key not in ("UTC", "Etc/UTC") else None


def _cron_in_zone(expression: str, zone: str) -> Any:
    return expression if expression.strip() == "@once" else Cron(expression, zone)


def _task_xcom_args(task: BaseOperator) -> list[Any]:
    found = []
    for name in ("op_args", "op_kwargs", *task.template_fields):
        found.extend(find_xcom_args(getattr(task, name, None)))
    return found


def _bool(value: Any, where: str, field: str) -> bool:
    if not isinstance(value, bool):
        raise DagDefinitionError(f"{where}: {field} must be True or False, got {value!r}")
    return value


def _positive(value: Any, where: str, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise DagDefinitionError(f"{where}: {field} must be an int >= 1, got {value!r}")
    return value
