"""The operator base: task arguments, dependencies (``>>``, ``<<``, ``chain``) and XComArg.

Rule: every argument is validated here, when the DAG file loads, and a bad one raises
DagDefinitionError naming the DAG, the task and the field.
"""

from __future__ import annotations

import functools
import inspect
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from orchestrator.authoring._alerting import Webhook, callbacks_of, webhooks_of
from orchestrator.authoring._dagcontext import KEY_PATTERN, DagContext, GroupContext, OwnerDag
from orchestrator.authoring._param import check_defaults
from orchestrator.authoring._setupteardown import SetupTeardown
from orchestrator.authoring._templates import render_value
from orchestrator.core._state import TriggerRule
from orchestrator.errors import DagDefinitionError
from triggers import Dataset

Callback = Callable[..., Any] | list[Callable[..., Any]]

__all__ = ["BaseOperator", "DependencyMixin", "XComArg", "chain", "cross_downstream"]

_NOTSET: Any = object()


class DependencyMixin:
    """``>>`` and ``<<`` between tasks, XComArgs and lists of them."""

    def _roots(self) -> list[BaseOperator]:
        raise NotImplementedError

    def _leaves(self) -> list[BaseOperator]:
        """The tasks ``self >> x`` makes upstream of ``x`` (a group's differ from its roots)."""
        return self._roots()

    def _takes_upstreams(self, leaves: list[BaseOperator]) -> bool:
        """An edge modifier (a ``Label``) keeps ``leaves`` and says True; others False."""
        return False

    def set_downstream(self, other: DependencyMixin | Sequence[DependencyMixin]) -> None:
        for item in _as_list(other):
            if item._takes_upstreams(self._leaves()):
                continue
            for up in self._leaves():
                for down in item._roots():
                    up._add_edge(down)

    def set_upstream(self, other: DependencyMixin | Sequence[DependencyMixin]) -> None:
        for item in _as_list(other):
            item.set_downstream(self)

    def __rshift__(self, other: Any) -> Any:
        self.set_downstream(other)
        return other

    def __lshift__(self, other: Any) -> Any:
        self.set_upstream(other)
        return other

    def __rrshift__(self, other: Any) -> Any:
        # [a, b] >> self
        self.set_upstream(other)
        return self

    def __rlshift__(self, other: Any) -> Any:
        # [a, b] << self
        self.set_downstream(other)
        return self


def _group_of(dag: Any) -> Any:
    """The task group a task being declared belongs to: the innermost open one, unless
    the task names another DAG than the group's."""
    group = GroupContext.current()
    if group is None or (dag is not None and dag is not group.dag):
        return None
    return group


def _as_list(value: Any) -> list[DependencyMixin]:
    items = list(value) if isinstance(value, list | tuple | set) else [value]
    for item in items:
        if not isinstance(item, DependencyMixin):
            raise TypeError(f"cannot set a dependency on {item!r}: not a task")
    return items


def _seconds(value: Any, owner: str, field: str, *, allow_none: bool) -> timedelta | None:
    if value is None and allow_none:
        return None
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise DagDefinitionError(f"{owner}: {field} must not be negative, got {value}")
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    raise DagDefinitionError(f"{owner}: {field} must be a timedelta or seconds, got {value!r}")


_accepted_by_class: dict[type, frozenset[str]] = {}
# What ``BaseOperator.partial`` makes: ``_mapping.OperatorPartial``, registered there.
_partials: list[Callable[[type[BaseOperator], dict[str, Any]], Any]] = []


def register_partials(maker: Callable[[type[BaseOperator], dict[str, Any]], Any]) -> None:
    """Make ``maker(operator_class, kwargs)`` what ``Operator.partial(**kwargs)`` returns."""
    _partials[:] = [maker]


def accepted_args(cls: type) -> frozenset[str]:
    """The keyword arguments ``cls`` accepts through its __init__ chain (cached per class)."""
    cached = _accepted_by_class.get(cls)
    if cached is not None:
        return cached
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        init = getattr(init, "__wrapped__", init)
        for param in inspect.signature(init).parameters.values():
            if param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD):
                names.add(param.name)
    accepted = _accepted_by_class[cls] = frozenset(names)
    return accepted


class BaseOperator(DependencyMixin, SetupTeardown):
    """A task: what runs (``execute``) and how (retries, timeout, trigger rule, pool...).

    Subclasses define ``execute(self, context)``, synchronous (it runs in a worker
    thread) or ``async def`` (it runs on the event loop). ``template_fields`` names the
    attributes rendered with Jinja before ``execute`` is called.
    """

    template_fields: ClassVar[Sequence[str]] = ()
    template_ext: ClassVar[Sequence[str]] = ()
    is_mapped: ClassVar[bool] = False
    ui_color: ClassVar[str] = "#fff"  # the UI's colours for the task, as Airflow's
    ui_fgcolor: ClassVar[str] = "#000"
    map_index: int = -1  # an instance of a mapped task: its place in the expansion

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _apply_defaults(cls.__dict__["__init__"])  # type: ignore[method-assign]

    def __init__(
        self,
        *,
        task_id: str,
        dag: OwnerDag | None = None,
        retries: int = 0,
        retry_delay: timedelta | float = timedelta(seconds=300),
        retry_exponential_backoff: bool = False,
        max_retry_delay: timedelta | float | None = None,
        execution_timeout: timedelta | float | None = None,
        trigger_rule: str | TriggerRule = TriggerRule.ALL_SUCCESS,
        depends_on_past: bool = False,
        pool: str | None = None,
        pool_slots: int = 1,
        queue: str = "default",
        priority_weight: int = 1,
        outlets: Dataset | Iterable[Dataset] | None = None,
        email: str | Iterable[str] | None = None,
        email_on_failure: bool = True,
        email_on_retry: bool = True,
        on_failure_callback: Callback | None = None,
        on_success_callback: Callback | None = None,
        on_retry_callback: Callback | None = None,
        alert_webhooks: Iterable[str | Webhook] | str | None = None,
        params: Mapping[str, Any] | None = None,
        isolation: str = "thread",
        do_xcom_push: bool = True,
        owner: str = "orchestrator",
        doc_md: str | None = None,
        doc: str | None = None,
        task_display_name: str | None = None,
        max_active_tis_per_dag: int | None = None,
        max_active_tis_per_dagrun: int | None = None,
        map_index_template: str | None = None,
        pre_execute: Callable[[dict[str, Any]], Any] | None = None,
        post_execute: Callable[[dict[str, Any], Any], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        group = _group_of(dag)
        if group is not None and isinstance(task_id, str):
            dag, task_id = group.dag, group.child_id(task_id)
        dag = dag if dag is not None else DagContext.current()
        where = f"DAG {dag.dag_id!r}, task {task_id!r}" if dag else f"task {task_id!r}"
        if kwargs:
            unknown = ", ".join(sorted(kwargs))
            raise DagDefinitionError(
                f"{where}: unexpected argument(s) for {type(self).__name__}: {unknown}"
            )
        if not isinstance(task_id, str) or not KEY_PATTERN.match(task_id):
            raise DagDefinitionError(
                f"{where}: task_id must be 1-250 letters, digits, '_', '.' or '-'"
            )
        self.task_id = task_id
        self._where = where
        self.retries = self._non_negative_int(retries, "retries")
        self.retry_delay = _seconds(retry_delay, where, "retry_delay", allow_none=False)
        self.retry_exponential_backoff = bool(retry_exponential_backoff)
        self.max_retry_delay = _seconds(max_retry_delay, where, "max_retry_delay", allow_none=True)
        self.execution_timeout = _seconds(
            execution_timeout, where, "execution_timeout", allow_none=True
        )
        try:
            self.trigger_rule = TriggerRule(trigger_rule)
        except ValueError:
            valid = ", ".join(rule.value for rule in TriggerRule)
            raise DagDefinitionError(
                f"{where}: unknown trigger_rule {trigger_rule!r} (valid: {valid})"
            ) from None
        self.depends_on_past = bool(depends_on_past)
        if pool is not None and (not isinstance(pool, str) or not KEY_PATTERN.match(pool)):
            raise DagDefinitionError(f"{where}: pool must be a pool name, got {pool!r}")
        self.pool = pool or "default_pool"
        self.pool_slots = self._non_negative_int(pool_slots, "pool_slots") or 1
        if not isinstance(queue, str) or not KEY_PATTERN.match(queue):
            raise DagDefinitionError(f"{where}: queue must be a queue name, got {queue!r}")
        self.queue = queue
        if not isinstance(priority_weight, int) or isinstance(priority_weight, bool):
            raise DagDefinitionError(f"{where}: priority_weight must be an int")
        self.priority_weight = priority_weight
        if isinstance(outlets, Dataset):
            outlets = [outlets]
        self.outlets: list[Dataset] = []
        for outlet in outlets or []:
            if not isinstance(outlet, Dataset):
                raise DagDefinitionError(
                    f"{where}: outlets must be Dataset objects, got {outlet!r}"
                )
            try:
                outlet.check(f"{where}: outlets")
            except ValueError as exc:
                raise DagDefinitionError(str(exc)) from None
            if outlet not in self.outlets:
                self.outlets.append(outlet)
        self.email = [email] if isinstance(email, str) else list(email or [])
        self.email_on_failure = bool(email_on_failure)
        self.email_on_retry = bool(email_on_retry)
        if not all(
            isinstance(e, str) and e and "\n" not in e and "\r" not in e for e in self.email
        ):
            raise DagDefinitionError(f"{where}: email must be addresses (strings on one line)")
        for name, callback in (
            ("on_failure_callback", on_failure_callback),
            ("on_success_callback", on_success_callback),
            ("on_retry_callback", on_retry_callback),
        ):
            callbacks_of(callback, where, name)
        self.on_failure_callback = on_failure_callback
        self.on_success_callback = on_success_callback
        self.on_retry_callback = on_retry_callback
        self.alert_webhooks = webhooks_of(alert_webhooks, where)
        if params is not None and not isinstance(params, Mapping):
            raise DagDefinitionError(f"{where}: params must be a mapping")
        self.params = dict(params or {})
        check_defaults(self.params, where)
        if isolation not in ("thread", "process"):
            raise DagDefinitionError(
                f"{where}: isolation must be 'thread' or 'process', got {isolation!r}"
            )
        self.isolation = isolation
        self.do_xcom_push = bool(do_xcom_push)
        self.owner = owner
        self.doc_md = doc_md
        self.doc = doc
        self.task_display_name = str(task_display_name) if task_display_name else task_id
        for name, limit in (
            ("max_active_tis_per_dag", max_active_tis_per_dag),
            ("max_active_tis_per_dagrun", max_active_tis_per_dagrun),
        ):
            if limit is not None and (not isinstance(limit, int) or limit < 1):
                raise DagDefinitionError(f"{where}: {name} must be an int >= 1, got {limit!r}")
        self.max_active_tis_per_dag = max_active_tis_per_dag
        self.max_active_tis_per_dagrun = max_active_tis_per_dagrun
        if map_index_template is not None and not isinstance(map_index_template, str):
            raise DagDefinitionError(f"{where}: map_index_template must be a string")
        self.map_index_template = map_index_template
        for name, hook in (("pre_execute", pre_execute), ("post_execute", post_execute)):
            if hook is not None and not callable(hook):
                raise DagDefinitionError(f"{where}: {name} must be callable")
        self._pre_execute, self._post_execute = pre_execute, post_execute
        self.upstream_task_ids: set[str] = set()
        self.downstream_task_ids: set[str] = set()
        self.dag: OwnerDag | None = None
        self.task_group = group
        if dag is not None:
            dag.add_task(self)
        if group is not None:
            group.add(self)

    def _non_negative_int(self, value: Any, field: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise DagDefinitionError(f"{self._where}: {field} must be an int >= 0, got {value!r}")
        return value

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:
        """``Operator.partial(task_id=..., **fixed)``: the arguments each mapped instance
        shares; ``.expand(...)`` or ``.expand_kwargs(...)`` makes the mapped task
        (``_mapping``, which registers itself as the maker of partials)."""
        if DagContext.current() is None and kwargs.get("dag") is None:
            raise DagDefinitionError(
                f"{cls.__name__}.partial() was called outside a DAG (use it inside `with DAG(...)`)"
            )
        assert _partials, "orchestrator.authoring._mapping is not imported"
        return _partials[0](cls, kwargs)

    def render_template(self, content: Any, context: Mapping[str, Any]) -> Any:
        """Airflow's ``render_template``: ``content`` rendered with ``context`` as the
        task's templated fields are."""
        dag = self.dag
        base = Path(dag.fileloc).parent if dag is not None and dag.fileloc else None
        return render_value(content, context, tuple(self.template_ext), base)

    # -- execution hooks -------------------------------------------------------------

    def pre_execute(self, context: dict[str, Any]) -> None:
        """Called just before ``execute`` (the ``pre_execute`` callable, if given)."""
        if self._pre_execute is not None:
            self._pre_execute(context)

    def post_execute(self, context: dict[str, Any], result: Any = None) -> None:
        """Called just after ``execute`` returns (the ``post_execute`` callable, if given)."""
        if self._post_execute is not None:
            self._post_execute(context, result)

    def execute(self, context: dict[str, Any]) -> Any:
        """Do the task's work. Override, as ``def`` or ``async def``."""
        raise NotImplementedError(f"{type(self).__name__} does not define execute()")

    def runs_on_loop(self) -> bool:
        """True when the work is a coroutine that runs on the event loop."""
        return inspect.iscoroutinefunction(self.execute)

    async def execute_async(self, context: dict[str, Any]) -> Any:
        return await self.execute(context)

    # -- dependencies ----------------------------------------------------------------

    def _roots(self) -> list[BaseOperator]:
        return [self]

    def _add_edge(self, downstream: BaseOperator) -> None:
        if self.dag is not None and downstream.dag is not None and self.dag is not downstream.dag:
            raise DagDefinitionError(
                f"cannot link task {self.task_id!r} of DAG {self.dag.dag_id!r} to task "
                f"{downstream.task_id!r} of DAG {downstream.dag.dag_id!r}"
            )
        if downstream is self:
            raise DagDefinitionError(f"{self._where}: a task cannot depend on itself")
        self.downstream_task_ids.add(downstream.task_id)
        downstream.upstream_task_ids.add(self.task_id)

    @property
    def output(self) -> XComArg:
        """The task's return value, as an argument for another task."""
        return XComArg(self)

    @property
    def task_type(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"<Task({self.task_type}): {self.task_id}>"


def _apply_defaults(init: Callable[..., None]) -> Callable[..., None]:
    """Fill arguments the caller left out from the DAG's ``default_args`` (outermost init only)."""

    @functools.wraps(init)
    def wrapper(self: BaseOperator, *args: Any, **kwargs: Any) -> None:
        if getattr(self, "_defaults_applied", False):
            init(self, *args, **kwargs)
            return
        self._defaults_applied = True  # type: ignore[attr-defined]
        group = _group_of(kwargs.get("dag"))
        dag = kwargs.get("dag") or (group.dag if group else None) or DagContext.current()
        defaults = dict(dag.default_args) if dag is not None else {}
        if group is not None:
            defaults.update(group.default_args)  # a group's win over its DAG's
        defaults.update(kwargs.pop("default_args", None) or {})
        accepted = accepted_args(type(self))
        for key, value in defaults.items():
            if key in accepted and key not in kwargs:
                kwargs[key] = value
        if "params" in kwargs and dag is not None and "params" in defaults:
            kwargs["params"] = {**defaults["params"], **(kwargs["params"] or {})}
        init(self, *args, **kwargs)

    return wrapper


# BaseOperator's own __init__ applies default_args too, for subclasses that define none.
BaseOperator.__init__ = _apply_defaults(BaseOperator.__init__)  # type: ignore[method-assign]


class XComArg(DependencyMixin):
    """A reference to a task's XCom, resolved when the consuming task runs."""

    def __init__(self, operator: BaseOperator, key: str = "return_value") -> None:
        self.operator = operator
        self.key = key

    def _roots(self) -> list[BaseOperator]:
        return [self.operator]

    def __getitem__(self, key: str) -> XComArg:
        return XComArg(self.operator, key)

    def resolve(self, pull: Callable[[str, str], Any]) -> Any:
        return pull(self.operator.task_id, self.key)

    # Setup and teardown, on a TaskFlow task's output as on the task.

    def as_setup(self) -> XComArg:
        self.operator.as_setup()
        return self

    def as_teardown(
        self, *, setups: Any = None, on_failure_fail_dagrun: bool | None = None
    ) -> XComArg:
        self.operator.as_teardown(setups=setups, on_failure_fail_dagrun=on_failure_fail_dagrun)
        return self

    def __enter__(self) -> XComArg:
        self.operator.__enter__()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.operator.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"XComArg({self.operator.task_id!r}, {self.key!r})"


def find_xcom_args(value: Any) -> list[XComArg]:
    """Every XComArg inside ``value`` (lists, tuples, sets and dict values)."""
    if isinstance(value, XComArg):
        return [value]
    if isinstance(value, list | tuple | set):
        return [arg for item in value for arg in find_xcom_args(item)]
    if isinstance(value, dict):
        return [arg for item in value.values() for arg in find_xcom_args(item)]
    return []


def resolve_xcom_args(value: Any, pull: Callable[[str, str], Any]) -> Any:
    """``value`` with every XComArg replaced by the value it refers to."""
    if isinstance(value, XComArg):
        return value.resolve(pull)
    if isinstance(value, list):
        return [resolve_xcom_args(item, pull) for item in value]
    if isinstance(value, tuple):
        return tuple(resolve_xcom_args(item, pull) for item in value)
    if isinstance(value, dict):
        return {key: resolve_xcom_args(item, pull) for key, item in value.items()}
    return value


def chain(*tasks: DependencyMixin | Sequence[DependencyMixin]) -> None:
    """Link tasks in sequence; two adjacent lists of equal length are linked pairwise."""
    for up, down in itertools.pairwise(tasks):
        if isinstance(up, Sequence) and isinstance(down, Sequence):
            if len(up) != len(down):
                raise DagDefinitionError(
                    f"chain(): adjacent lists must have the same length, got {len(up)} and "
                    f"{len(down)}"
                )
            for a, b in zip(up, down, strict=True):
                a.set_downstream(b)
        elif isinstance(up, Sequence):
            for a in up:
                a.set_downstream(down)
        else:
            up.set_downstream(down)


def cross_downstream(
    from_tasks: Sequence[DependencyMixin], to_tasks: Sequence[DependencyMixin]
) -> None:
    """Every task of ``from_tasks`` upstream of every task of ``to_tasks``."""
    for task in from_tasks:
        task.set_downstream(list(to_tasks))
