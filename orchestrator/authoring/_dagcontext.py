"""The DAG and task group a task is declared in: the ``with DAG(...)`` and
``with TaskGroup(...)`` stacks, and ids' shape.

A leaf of the authoring package: tasks and DAGs both use it, so neither has to
import the other to find the DAG a task belongs to.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["GROUP_PATTERN", "KEY_PATTERN", "DagContext", "GroupContext", "OwnerDag"]

# The shape of a DAG id, task id or pool name.
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,250}$")
# The shape of a task group's own id ("." joins it to its children's ids).
GROUP_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{1,200}$")


class OwnerDag(Protocol):
    """What a task sees of the DAG it belongs to (``DAG`` is one)."""

    @property
    def dag_id(self) -> str: ...

    @property
    def fileloc(self) -> str: ...

    @property
    def default_args(self) -> Mapping[str, Any]: ...

    @property
    def task_dict(self) -> Mapping[str, Any]: ...  # task id -> BaseOperator

    @property
    def task_group_dict(self) -> dict[str, Any]: ...  # group id -> TaskGroup

    def add_task(self, task: Any) -> None: ...


class DagContext:
    """The stack of ``with DAG(...)`` blocks, per thread of execution."""

    _stack: contextvars.ContextVar[tuple[OwnerDag, ...]] = contextvars.ContextVar(
        "orchestrator_dag_stack", default=()
    )

    @classmethod
    def current(cls) -> OwnerDag | None:
        stack = cls._stack.get()
        return stack[-1] if stack else None

    @classmethod
    def push(cls, dag: OwnerDag) -> contextvars.Token[tuple[OwnerDag, ...]]:
        return cls._stack.set((*cls._stack.get(), dag))

    @classmethod
    def pop(cls, token: contextvars.Token[tuple[OwnerDag, ...]]) -> None:
        cls._stack.reset(token)


class GroupContext:
    """The stack of ``with TaskGroup(...)`` blocks, per thread of execution."""

    _stack: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar(
        "orchestrator_group_stack", default=()
    )

    @classmethod
    def current(cls) -> Any:
        """The innermost open task group (a ``TaskGroup``), or None."""
        stack = cls._stack.get()
        return stack[-1] if stack else None

    @classmethod
    def push(cls, group: Any) -> contextvars.Token[tuple[Any, ...]]:
        return cls._stack.set((*cls._stack.get(), group))

    @classmethod
    def pop(cls, token: contextvars.Token[tuple[Any, ...]]) -> None:
        cls._stack.reset(token)
