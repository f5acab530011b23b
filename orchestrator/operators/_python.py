"""PythonOperator and its branching relatives."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from orchestrator.authoring._baseoperator import BaseOperator, find_xcom_args
from orchestrator.errors import DagDefinitionError
from triggers import Dataset

__all__ = ["BranchPythonOperator", "Metadata", "PythonOperator", "ShortCircuitOperator"]


class PythonOperator(BaseOperator):
    """Calls ``python_callable``: a sync callable in a worker thread, an async one on the loop.

    The callable gets ``op_args``, ``op_kwargs`` and the context keys it names (all of
    them if it accepts ``**kwargs``); its return value becomes the ``return_value`` XCom.
    """

    template_fields: ClassVar[Sequence[str]] = ("templates_dict", "op_args", "op_kwargs")

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Sequence[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        templates_dict: Mapping[str, Any] | None = None,
        templates_exts: Sequence[str] | None = None,
        multiple_outputs: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Values of templates_dict ending so are template files (beside the DAG file).
        self.templates_exts = tuple(templates_exts or ())
        if not callable(python_callable):
            raise DagDefinitionError(f"{self._where}: python_callable must be callable")
        self.python_callable = python_callable
        self.op_args = list(op_args or [])
        self.op_kwargs = dict(op_kwargs or {})
        self.templates_dict = dict(templates_dict) if templates_dict is not None else None
        self.multiple_outputs = bool(multiple_outputs)
        for arg in find_xcom_args([self.op_args, self.op_kwargs]):
            arg.operator.set_downstream(self)

    def runs_on_loop(self) -> bool:
        return inspect.iscoroutinefunction(self.python_callable)

    def _arguments(self, context: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        params = _parameters(self.python_callable)
        extra = {**context, "templates_dict": self.templates_dict}
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            kwargs = {**extra, **self.op_kwargs}
        else:
            positional = {
                name
                for name, p in list(params.items())[: len(self.op_args)]
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            }
            kwargs = {k: v for k, v in extra.items() if k in params and k not in positional}
            kwargs.update(self.op_kwargs)
        return list(self.op_args), kwargs

    def execute(self, context: dict[str, Any]) -> Any:
        args, kwargs = self._arguments(context)
        result = self.python_callable(*args, **kwargs)
        if inspect.isgenerator(result):
            result = _yielded(result, context)
        return self.handle_result(result, context)

    async def execute_async(self, context: dict[str, Any]) -> Any:
        args, kwargs = self._arguments(context)
        return self.handle_result(await self.python_callable(*args, **kwargs), context)

    def handle_result(self, result: Any, context: dict[str, Any]) -> Any:
        if self.multiple_outputs and result is not None:
            if not isinstance(result, Mapping):
                raise TypeError(
                    f"{self._where}: multiple_outputs needs a dict return value, got "
                    f"{type(result).__name__}"
                )
            for key, value in result.items():
                context["ti"].xcom_push(str(key), value)
        return result


class BranchPythonOperator(PythonOperator):
    """Follows the task id(s) the callable returns, skipping the other direct downstream tasks."""

    def handle_result(self, result: Any, context: dict[str, Any]) -> Any:
        follow = _task_ids(result, self._where)
        dag = self.dag
        assert dag is not None
        unknown = [tid for tid in follow if tid not in dag.task_dict]
        if unknown:
            raise DagDefinitionError(
                f"{self._where}: branch returned unknown task id(s): {', '.join(unknown)}"
            )
        context["ti"].skip_task_ids |= self.downstream_task_ids - set(follow)
        return result


class ShortCircuitOperator(PythonOperator):
    """Skips what follows when the callable returns a falsy value.

    With ``ignore_downstream_trigger_rules=True`` (the default) every task downstream
    is skipped; with False only the direct downstream tasks are, and trigger rules
    decide the rest.
    """

    def __init__(self, *, ignore_downstream_trigger_rules: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ignore_downstream_trigger_rules = bool(ignore_downstream_trigger_rules)

    def handle_result(self, result: Any, context: dict[str, Any]) -> Any:
        if result:
            return result
        if self.ignore_downstream_trigger_rules:
            context["ti"].skip_task_ids |= _descendants(self)
        else:
            context["ti"].skip_task_ids |= set(self.downstream_task_ids)
        return result


@dataclass(frozen=True, slots=True)
class Metadata:
    """What a task function yields to attach ``extra`` to the event its outlet ``asset``
    emits on success (Airflow's ``Metadata``; ``outlet_events[asset].extra`` does the same)."""

    asset: Dataset
    extra: dict[str, Any]
    alias: Any = None


def _yielded(values: Iterator[Any], context: dict[str, Any]) -> Any:
    """Run a generator task function out: each ``Metadata`` it yields sets its outlet's
    extra; what else it yields is the task's return value, as a list (None if nothing)."""
    out = []
    for item in values:
        if isinstance(item, Metadata):
            context["outlet_events"][item.asset].extra.update(item.extra)
        else:
            out.append(item)
    return out or None


@functools.lru_cache(maxsize=4096)
def _parameters(fn: Callable[..., Any]) -> Mapping[str, inspect.Parameter]:
    return inspect.signature(fn).parameters


def _task_ids(result: Any, where: str) -> list[str]:
    if result is None:
        return []
    if isinstance(result, str):
        return [result]
    if isinstance(result, Iterable) and all(isinstance(x, str) for x in result):
        return list(result)
    raise DagDefinitionError(f"{where}: a branch must return a task id or a list of them")


def _descendants(task: BaseOperator) -> set[str]:
    dag = task.dag
    assert dag is not None
    seen: set[str] = set()
    stack = list(task.downstream_task_ids)
    while stack:
        tid = stack.pop()
        if tid not in seen:
            seen.add(tid)
            stack.extend(dag.task_dict[tid].downstream_task_ids)
    return seen
