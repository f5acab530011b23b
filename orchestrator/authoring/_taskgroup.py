"""Task groups: ``with TaskGroup("g"):`` and ``@task_group``, as in Airflow.

Rules:
1. A task declared inside a group gets the group's id as a prefix (``g.t``; nested
   groups ``outer.inner.t``), unless the group says ``prefix_group_id=False``.
2. A group's ``default_args`` apply to its tasks (over the DAG's and any outer
   group's); arguments given to a task win over all of them.
3. ``group >> x`` makes every task of the group without a downstream inside the group
   (its leaves) an upstream of ``x``; ``x >> group`` does the same to its roots. What
   the roots and leaves are is taken when the dependency is set.
4. A ``@task_group`` function called twice in one DAG makes ``g`` then ``g__1``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar, overload

from orchestrator.authoring._baseoperator import BaseOperator, DependencyMixin
from orchestrator.authoring._dagcontext import GROUP_PATTERN, DagContext, GroupContext, OpenedOn
from orchestrator.errors import DagDefinitionError

__all__ = ["TaskGroup", "task_group"]


class TaskGroup(DependencyMixin, OpenedOn):
    """A named group of tasks (see the module's rules)."""

    _open_stack = GroupContext

    def __init__(
        self,
        group_id: str,
        *,
        prefix_group_id: bool = True,
        parent_group: TaskGroup | None = None,
        dag: Any = None,
        default_args: Mapping[str, Any] | None = None,
        tooltip: str = "",
        ui_color: str = "CornflowerBlue",
        ui_fgcolor: str = "#000",
        add_suffix_on_collision: bool = False,
    ) -> None:
        self.parent_group: TaskGroup | None = (
            parent_group if parent_group is not None else GroupContext.current()
        )
        owner: Any = dag or (self.parent_group.dag if self.parent_group else None)
        self.dag: Any = owner or DagContext.current()  # a DAG
        where = f"DAG {self.dag.dag_id!r}, task group {group_id!r}" if self.dag else ""
        if self.dag is None:
            raise DagDefinitionError(f"task group {group_id!r} is declared outside a DAG")
        if not isinstance(group_id, str) or not GROUP_PATTERN.match(group_id):
            raise DagDefinitionError(f"{where}: group_id must be 1-200 letters, digits, '_' or '-'")
        if default_args is not None and not isinstance(default_args, Mapping):
            raise DagDefinitionError(f"{where}: default_args must be a mapping")
        self.prefix_group_id = bool(prefix_group_id)
        groups: dict[str, TaskGroup] = self.dag.task_group_dict
        label = group_id
        full = self._qualified(label)
        if full in groups and add_suffix_on_collision:
            n = 1
            while self._qualified(f"{group_id}__{n}") in groups:
                n += 1
            label = f"{group_id}__{n}"
            full = self._qualified(label)
        if full in groups:
            raise DagDefinitionError(f"{where}: duplicate task group id {full!r}")
        self._group_id = label
        self.group_id = full
        groups[full] = self
        outer = self.parent_group.default_args if self.parent_group is not None else {}
        self.default_args: dict[str, Any] = {**outer, **dict(default_args or {})}
        self.tooltip = tooltip
        self.ui_color = ui_color
        self.ui_fgcolor = ui_fgcolor
        self.children: dict[str, BaseOperator | TaskGroup] = {}
        if self.parent_group is not None:
            self.parent_group.children[full] = self

    def _qualified(self, label: str) -> str:
        parent = self.parent_group
        if parent is None or not parent.prefix_group_id or parent.group_id is None:
            return label
        return f"{parent.group_id}.{label}"

    def child_id(self, label: str) -> str:
        """The id a task or group declared in this group gets (rule 1)."""
        if self.prefix_group_id:
            return f"{self.group_id}.{label}"
        parent = self.parent_group
        return parent.child_id(label) if parent is not None else label

    # -- its tasks -----------------------------------------------------------------

    def add(self, task: BaseOperator) -> None:
        self.children[task.task_id] = task

    @property
    def tasks(self) -> list[BaseOperator]:
        """Every task in the group, nested groups' included, in declaration order."""
        out: list[BaseOperator] = []
        for child in self.children.values():
            out += child.tasks if isinstance(child, TaskGroup) else [child]
        return out

    def _roots(self) -> list[BaseOperator]:
        inside = {t.task_id for t in self.tasks}
        return [t for t in self.tasks if not t.upstream_task_ids & inside]

    def _leaves(self) -> list[BaseOperator]:
        """The tasks with nothing after them in the group; for a teardown, the work before
        it (as Airflow's: ``group >> x`` does not wait on the group's teardowns)."""
        tasks = {t.task_id: t for t in self.tasks}
        out: dict[str, BaseOperator] = {}

        def before_teardown(teardown: BaseOperator) -> None:
            for up in sorted(teardown.upstream_task_ids & tasks.keys()):
                task = tasks[up]
                if task.is_teardown:
                    before_teardown(task)
                elif not task.is_setup:
                    out.setdefault(up, task)

        for task in tasks.values():
            if not task.downstream_task_ids & tasks.keys():
                if task.is_teardown:
                    before_teardown(task)
                else:
                    out.setdefault(task.task_id, task)
        return list(out.values())

    def get_roots(self) -> list[BaseOperator]:
        return self._roots()

    def get_leaves(self) -> list[BaseOperator]:
        return self._leaves()

    def __repr__(self) -> str:
        return f"<TaskGroup: {self.group_id}>"


P = ParamSpec("P")
R = TypeVar("R")


@overload
def task_group(python_callable: Callable[P, R], **group_kwargs: Any) -> Callable[P, Any]: ...


@overload
def task_group(
    python_callable: None = None, **group_kwargs: Any
) -> Callable[[Callable[P, R]], Callable[P, Any]]: ...


def task_group(python_callable: Callable[..., Any] | None = None, **group_kwargs: Any) -> Any:
    """``@task_group`` or ``@task_group(group_id=..., default_args=...)``: each call of the
    function opens a group named after it (rule 4) and declares its tasks in it; the call
    returns what the function returns, or the group if that is None."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            options = {"add_suffix_on_collision": True, **group_kwargs}
            group_id = options.pop("group_id", None) or fn.__name__
            with TaskGroup(group_id, **options) as group:
                result = fn(*args, **kwargs)
            return group if result is None else result

        return call

    if python_callable is not None:
        return wrap(python_callable)
    return wrap
