"""The DAG and task group a task is declared in: the ``with DAG(...)`` and
``with TaskGroup(...)`` stacks, and ids' shape.

A leaf of the authoring package: tasks and DAGs both use it, so neither has to
import the other to find the DAG a task belongs to.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Mapping
from types import TracebackType
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

__all__ = [
    "GROUP_PATTERN",
    "KEY_PATTERN",
    "ContextStack",
    "DagContext",
    "GroupContext",
    "OpenedOn",
    "OwnerDag",
]

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


T = TypeVar("T")


class ContextStack(Generic[T]):
    """A stack of open ``with`` blocks, per thread of execution."""

    def __init__(self, name: str) -> None:
        self._stack: contextvars.ContextVar[tuple[T, ...]] = contextvars.ContextVar(
            name, default=()
        )

    def current(self) -> T | None:
        """The innermost open one, or None."""
        stack = self._stack.get()
        return stack[-1] if stack else None

    def push(self, item: T) -> contextvars.Token[tuple[T, ...]]:
        return self._stack.set((*self._stack.get(), item))

    def pop(self, token: contextvars.Token[tuple[T, ...]]) -> None:
        self._stack.reset(token)


# The ``with DAG(...)`` blocks, and the ``with TaskGroup(...)`` ones (TaskGroup objects).
DagContext: ContextStack[OwnerDag] = ContextStack("orchestrator_dag_stack")
GroupContext: ContextStack[Any] = ContextStack("orchestrator_group_stack")


class OpenedOn:
    """``with obj:`` pushes ``obj`` on its class's ``_open_stack`` while the block runs
    (``DAG`` and ``TaskGroup``)."""

    _open_stack: ClassVar[ContextStack[Any]]
    _token: contextvars.Token[tuple[Any, ...]] | None = None

    def __enter__(self) -> Self:
        self._token = self._open_stack.push(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            self._open_stack.pop(self._token)
            self._token = None
