"""Dynamic task mapping: ``partial(...).expand(...)``, ``expand_kwargs(...)``.

A mapped task is one task of the DAG (a :class:`MappedOperator`) whose instances are
made when it is ready to run, one per item of what it maps over: literal lists and
dicts in the DAG file, or upstream XComs. Rules, as Airflow's:

1. ``expand(a=[...], b=[...])`` maps over the cartesian product of its arguments, the
   last varying fastest; a dict maps over its ``(key, value)`` pairs.
2. ``expand_kwargs([...])`` maps over a list of dicts of keyword arguments.
3. An XComArg maps over the value its task pushed; for a mapped upstream, the list of
   its instances' values, in map order.
4. Instance ``i`` runs the operator built from ``partial``'s arguments and its own
   mapped ones (``unmap``), so it renders templates and runs as any other task.
"""

from __future__ import annotations

import contextvars
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.authoring._baseoperator import (
    BaseOperator,
    XComArg,
    accepted_args,
    find_xcom_args,
    register_partials,
    resolve_xcom_args,
)
from orchestrator.errors import DagDefinitionError

__all__ = ["MappedOperator", "OperatorPartial", "expand_length"]

Pull = Callable[[str, str], Any]  # (task id, XCom key) -> the value (a mapped task's: a list)

_NOT_MAPPABLE = frozenset({"task_id", "dag", "default_args", "task_group"})


class OperatorPartial:
    """``SomeOperator.partial(task_id=..., **fixed)``: awaiting ``expand``."""

    def __init__(
        self,
        operator_class: type[BaseOperator],
        kwargs: dict[str, Any],
        *,
        into: str | None = None,
        signature: Callable[..., Any] | None = None,
    ) -> None:
        self.operator_class = operator_class
        self.kwargs = kwargs
        self.into = into  # "op_kwargs": mapped values are the TaskFlow function's arguments
        self.signature = signature
        name = kwargs.get("task_id")
        self.where = f"task {name!r}"
        if not isinstance(name, str):
            raise DagDefinitionError(f"{operator_class.__name__}.partial() needs a task_id")

    def expand(self, **mapped: Any) -> MappedOperator:
        if not mapped:
            raise DagDefinitionError(f"{self.where}: expand() needs at least one argument")
        for name, value in mapped.items():
            self._check_name(name)
            if not isinstance(value, XComArg | list | tuple | dict):
                raise DagDefinitionError(
                    f"{self.where}: expand() argument {name!r} must be a list, a dict or a "
                    f"task's output (XComArg), got {type(value).__name__}"
                )
        return self._build(dict(mapped), None)

    def expand_kwargs(self, value: Any) -> MappedOperator:
        if isinstance(value, XComArg):
            return self._build(None, value)
        if not isinstance(value, list | tuple):
            raise DagDefinitionError(
                f"{self.where}: expand_kwargs() takes a list of dicts or a task's output "
                f"(XComArg), got {type(value).__name__}"
            )
        for item in value:
            if isinstance(item, XComArg):
                continue
            if not isinstance(item, dict):
                raise DagDefinitionError(
                    f"{self.where}: expand_kwargs() items must be dicts, got {item!r}"
                )
            for name in item:
                self._check_name(name)
        return self._build(None, list(value))

    def _check_name(self, name: str) -> None:
        if name in _NOT_MAPPABLE:
            raise DagDefinitionError(f"{self.where}: {name!r} cannot be mapped")
        if name in self._fixed():
            raise DagDefinitionError(
                f"{self.where}: {name!r} is given to both partial() and expand()"
            )
        if self.signature is not None:
            params = inspect.signature(self.signature).parameters
            if name not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
                raise DagDefinitionError(
                    f"{self.where}: expand() argument {name!r} is not a parameter of "
                    f"{self.signature.__name__}()"
                )
        elif name not in accepted_args(self.operator_class):
            raise DagDefinitionError(
                f"{self.where}: {self.operator_class.__name__} has no argument {name!r} to map"
            )

    def _fixed(self) -> Mapping[str, Any]:
        return self.kwargs.get(self.into, {}) if self.into else self.kwargs

    def _build(
        self, mapped: dict[str, Any] | None, kwargs_list: list[Any] | XComArg | None
    ) -> MappedOperator:
        fixed = dict(self.kwargs)
        base = accepted_args(BaseOperator)
        own = {k: fixed.pop(k) for k in list(fixed) if k in base}
        return MappedOperator(
            operator_class=self.operator_class,
            partial_kwargs=fixed,
            mapped_kwargs=mapped,
            kwargs_list=kwargs_list,
            into=self.into,
            **own,
        )


register_partials(OperatorPartial)


class MappedOperator(BaseOperator):
    """A task whose instances are made when it runs, one per mapped item."""

    is_mapped = True

    def __init__(
        self,
        *,
        operator_class: type[BaseOperator],
        partial_kwargs: dict[str, Any],
        mapped_kwargs: dict[str, Any] | None,
        kwargs_list: list[Any] | XComArg | None,
        into: str | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.operator_class = operator_class
        self.partial_kwargs = partial_kwargs
        self.mapped_kwargs = mapped_kwargs
        self.kwargs_list = kwargs_list
        self.into = into
        dag = self.dag
        group = self.task_group
        self._defaults = {
            **(dict(dag.default_args) if dag is not None else {}),
            **(group.default_args if group is not None else {}),
        }
        own = {k: v for k, v in kwargs.items() if k not in ("task_id", "dag")}
        self._base_kwargs = own
        for arg in find_xcom_args([partial_kwargs, mapped_kwargs, kwargs_list]):
            arg.operator.set_downstream(self)

    @property
    def task_type(self) -> str:
        return self.operator_class.__name__

    def unmap(self, map_index: int, pull: Pull) -> BaseOperator:
        """The operator of instance ``map_index``: ``partial``'s arguments and its own."""
        values = mapped_values(self, map_index, pull)
        kwargs = {**self._base_kwargs, **self.partial_kwargs}
        if self.into:
            kwargs[self.into] = {**kwargs.get(self.into, {}), **values}
        else:
            kwargs.update(values)

        def build() -> BaseOperator:
            return self.operator_class(task_id=self.task_id, default_args=self._defaults, **kwargs)

        operator = contextvars.Context().run(build)  # no open DAG or group takes it in
        operator.dag = self.dag
        operator.task_group = self.task_group
        operator.upstream_task_ids = self.upstream_task_ids
        operator.downstream_task_ids = self.downstream_task_ids
        operator.map_index_template = self.map_index_template
        operator.map_index = map_index
        return operator


def _sequence(value: Any, where: str) -> list[Any]:
    """What a mapped argument maps over: a list's items, a dict's (key, value) pairs."""
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, list | tuple):
        return list(value)
    raise ValueError(f"{where} must be a list or a dict to map over, got {type(value).__name__}")


def _resolved(value: Any, pull: Pull, where: str) -> Any:
    if isinstance(value, XComArg):
        got = value.resolve(pull)
        if got is None:
            raise ValueError(
                f"{where}: task {value.operator.task_id!r} pushed no XCom {value.key!r} to map over"
            )
        return got
    return value


def _kwargs_items(task: MappedOperator, pull: Pull) -> list[Any]:
    where = f"task {task.task_id!r}: expand_kwargs()"
    value = _resolved(task.kwargs_list, pull, where)
    if not isinstance(value, list | tuple):
        raise ValueError(f"{where} maps over a list of dicts, got {type(value).__name__}")
    return list(value)


def expand_length(task: BaseOperator, pull: Pull) -> int:
    """How many instances the mapped ``task`` expands to; ValueError naming why not."""
    assert isinstance(task, MappedOperator)
    if task.mapped_kwargs is None:
        return len(_kwargs_items(task, pull))
    lengths = [
        len(_sequence(_resolved(v, pull, f"task {task.task_id!r}: {k!r}"), f"expand({k}=...)"))
        for k, v in task.mapped_kwargs.items()
    ]
    return math.prod(lengths)


def mapped_values(task: MappedOperator, map_index: int, pull: Pull) -> dict[str, Any]:
    """The mapped arguments of instance ``map_index`` (rule 1's order; rule 2)."""
    where = f"task {task.task_id!r}"
    if task.mapped_kwargs is None:
        items = _kwargs_items(task, pull)
        item = _resolved(items[map_index], pull, where)
        if not isinstance(item, dict) or not all(isinstance(k, str) for k in item):
            raise ValueError(f"{where}: expand_kwargs() item {map_index} is not a dict: {item!r}")
        return {k: resolve_xcom_args(v, pull) for k, v in item.items()}
    values: dict[str, Any] = {}
    rest = map_index
    for name, value in reversed(task.mapped_kwargs.items()):  # the last varies fastest
        items = _sequence(_resolved(value, pull, f"{where}: {name!r}"), f"{where}: {name!r}")
        if not items:
            raise ValueError(f"{where}: {name!r} has no item to map over any more")
        values[name] = items[rest % len(items)]
        rest //= len(items)
    if rest:
        raise ValueError(f"{where}: there is no item {map_index} to map over any more")
    return values
