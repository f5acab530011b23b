"""TaskFlow: ``@dag`` and ``@task`` (with ``@task.branch``, ``@task.short_circuit``,
``@task.bash`` and, registered by ``sensors``, ``@task.sensor``)."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any, overload

from orchestrator.authoring._baseoperator import XComArg
from orchestrator.authoring._dag import DAG
from orchestrator.authoring._dagcontext import DagContext, GroupContext
from orchestrator.authoring._mapping import OperatorPartial
from orchestrator.errors import DagDefinitionError
from orchestrator.operators._bash import BashDecoratedOperator
from orchestrator.operators._python import (
    BranchPythonOperator,
    PythonOperator,
    ShortCircuitOperator,
)
from orchestrator.resources._services import current_context

__all__ = ["dag", "get_current_context", "setup", "task", "teardown"]


def _returns_dict(fn: Callable[..., Any]) -> bool:
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        return False
    ret = hints.get("return")
    return ret is dict or typing.get_origin(ret) is dict


class TaskDecorated:
    """A function turned into a task factory: each call adds a task to the current DAG."""

    def __init__(
        self,
        fn: Callable[..., Any],
        operator_class: type[PythonOperator],
        kwargs: dict[str, Any],
        role: dict[str, Any] | None = None,
    ) -> None:
        if not callable(fn):
            raise DagDefinitionError(f"@task needs a function, got {fn!r}")
        self.function = fn
        self.operator_class = operator_class
        self.kwargs = kwargs
        self.role = role  # {"setup": True} or {"teardown": True, ...}: @setup, @teardown
        functools.update_wrapper(self, fn)

    def override(self, **kwargs: Any) -> TaskDecorated:
        kw = {**self.kwargs, **kwargs}
        return TaskDecorated(self.function, self.operator_class, kw, self.role)

    def __call__(self, *args: Any, **kwargs: Any) -> XComArg:
        kw = self._operator_kwargs()
        operator = self.operator_class(
            python_callable=self.function, op_args=args, op_kwargs=kwargs, **kw
        )
        if self.role is not None and self.role.get("setup"):
            operator.as_setup()
        elif self.role is not None:
            operator.as_teardown(on_failure_fail_dagrun=self.role["on_failure_fail_dagrun"])
        return XComArg(operator)

    def partial(self, **kwargs: Any) -> _TaskPartial:
        """The function's arguments every mapped instance shares."""
        kw = self._operator_kwargs()
        fixed = {"python_callable": self.function, "op_args": (), "op_kwargs": kwargs, **kw}
        return _TaskPartial(
            OperatorPartial(self.operator_class, fixed, into="op_kwargs", signature=self.function)
        )

    def expand(self, **mapped: Any) -> XComArg:
        """One task instance per item (dynamic task mapping)."""
        return self.partial().expand(**mapped)

    def expand_kwargs(self, value: Any) -> XComArg:
        """One task instance per dict of the function's arguments."""
        return self.partial().expand_kwargs(value)

    def _operator_kwargs(self) -> dict[str, Any]:
        """The operator's arguments: the decorator's, a task id unique in the DAG."""
        current = DagContext.current()
        kw = dict(self.kwargs)
        task_id = kw.pop("task_id", None) or self.function.__name__
        if current is None and kw.get("dag") is None:
            raise DagDefinitionError(
                f"task {task_id!r} was called outside a DAG (use it inside `with DAG(...)` or @dag)"
            )
        owner = kw.get("dag") or current
        assert owner is not None
        group = GroupContext.current()
        full = group.child_id if group is not None and group.dag is owner else str
        if full(task_id) in owner.task_dict:
            n = 1
            while full(f"{task_id}__{n}") in owner.task_dict:
                n += 1
            task_id = f"{task_id}__{n}"
        kw.setdefault("multiple_outputs", _returns_dict(self.function))
        kw["task_id"] = task_id
        return kw


class _TaskPartial:
    """``task_fn.partial(...)``: awaiting ``expand`` or ``expand_kwargs``."""

    def __init__(self, partial: OperatorPartial) -> None:
        self._partial = partial

    def expand(self, **mapped: Any) -> XComArg:
        return XComArg(self._partial.expand(**mapped))

    def expand_kwargs(self, value: Any) -> XComArg:
        return XComArg(self._partial.expand_kwargs(value))


class _TaskFactory:
    """``@task``, ``@task(...)``, ``@task.branch``, ``@task.short_circuit``."""

    def __init__(self, operator_class: type[PythonOperator]) -> None:
        self._operator_class = operator_class

    @overload
    def __call__(self, python_callable: Callable[..., Any]) -> TaskDecorated: ...

    @overload
    def __call__(
        self, python_callable: None = None, **kwargs: Any
    ) -> Callable[[Callable[..., Any]], TaskDecorated]: ...

    def __call__(
        self, python_callable: Callable[..., Any] | None = None, **kwargs: Any
    ) -> TaskDecorated | Callable[[Callable[..., Any]], TaskDecorated]:
        if python_callable is not None:
            return TaskDecorated(python_callable, self._operator_class, kwargs)

        def decorator(fn: Callable[..., Any]) -> TaskDecorated:
            return TaskDecorated(fn, self._operator_class, kwargs)

        return decorator

    @property
    def branch(self) -> _TaskFactory:
        return _TaskFactory(BranchPythonOperator)

    @property
    def short_circuit(self) -> _TaskFactory:
        return _TaskFactory(ShortCircuitOperator)

    @property
    def python(self) -> _TaskFactory:
        return _TaskFactory(PythonOperator)

    @property
    def bash(self) -> _TaskFactory:
        """``@task.bash``: the function returns a Bash command to run."""
        return _TaskFactory(BashDecoratedOperator)

    def __getattr__(self, name: str) -> _TaskFactory:
        """``@task.sensor`` and the other kinds a higher layer registers."""
        kind = _KINDS.get(name)
        if kind is None:
            raise AttributeError(f"task has no attribute {name!r}")
        return _TaskFactory(kind)


_KINDS: dict[str, type[PythonOperator]] = {}


def register_task_kind(name: str, operator_class: type[PythonOperator]) -> None:
    """Make ``@task.<name>`` build ``operator_class`` (``sensors`` registers ``sensor``)."""
    _KINDS[name] = operator_class


task = _TaskFactory(PythonOperator)


def dag(dag_id: str | Callable[..., Any] | None = None, **dag_kwargs: Any) -> Any:
    """``@dag`` or ``@dag(...)``: calling the function builds and registers the DAG.

    The function's parameters with defaults become the DAG's ``params``.
    """

    def decorator(fn: Callable[..., Any]) -> Callable[..., DAG]:
        @functools.wraps(fn)
        def factory(*args: Any, **kwargs: Any) -> DAG:
            defaults = {
                name: p.default
                for name, p in inspect.signature(fn).parameters.items()
                if p.default is not inspect.Parameter.empty
            }
            params = {**defaults, **(dag_kwargs.get("params") or {})}
            options = {k: v for k, v in dag_kwargs.items() if k != "params"}
            name = dag_id if isinstance(dag_id, str) else fn.__name__
            with DAG(name, params=params, **options) as built:
                if built.doc_md is None and fn.__doc__:
                    built.doc_md = fn.__doc__
                fn(*args, **kwargs)
            return built

        return factory

    if callable(dag_id):
        return decorator(dag_id)
    return decorator


def setup(python_callable: Callable[..., Any]) -> TaskDecorated:
    """``@setup``: a TaskFlow task that is a setup task (Airflow's ``airflow.sdk.setup``)."""
    return TaskDecorated(python_callable, PythonOperator, {}, {"setup": True})


def teardown(
    python_callable: Callable[..., Any] | None = None, *, on_failure_fail_dagrun: bool = False
) -> Any:
    """``@teardown`` or ``@teardown(on_failure_fail_dagrun=True)``: a TaskFlow teardown task;
    its setups are the setup tasks it takes arguments from, or those of ``as_teardown``."""
    role = {"teardown": True, "on_failure_fail_dagrun": on_failure_fail_dagrun}
    if python_callable is not None:
        return TaskDecorated(python_callable, PythonOperator, {}, role)
    return lambda fn: TaskDecorated(fn, PythonOperator, {}, role)


def get_current_context() -> dict[str, Any]:
    """The context of the task running in this thread or coroutine."""
    ctx = current_context()
    if ctx is None:
        raise RuntimeError("get_current_context() called outside a running task")
    return ctx
