"""What a running task sees: the ``ti`` object, the context mapping, templating, XCom."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import jinja2.sandbox

from orchestrator._logging import mask
from orchestrator.authoring._baseoperator import XComArg, resolve_xcom_args
from orchestrator.authoring._dagcontext import OwnerDag
from orchestrator.authoring._param import resolve_params
from orchestrator.authoring._templates import TEMPLATE_ENV, render_value
from orchestrator.core import split_key
from orchestrator.errors import TemplateError, XComError
from orchestrator.resources._macros import MACROS
from orchestrator.resources._variables import Variable
from triggers._dataset import Dataset, DatasetEvent, normalize_uri

if TYPE_CHECKING:
    from orchestrator.authoring._baseoperator import BaseOperator
    from orchestrator.authoring._dag import DAG

__all__ = [
    "DagRunInfo",
    "OutletEventAccessors",
    "RuntimeTaskInstance",
    "build_context",
    "encode_xcom",
    "pull_xcom",
    "render_task",
]

RETURN_VALUE = "return_value"


def encode_xcom(value: Any, *, where: str, limit: int) -> str:
    """The JSON text of an XCom value; XComError if it is not JSON or too large."""
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise XComError(
            f"{where}: XCom value of type {type(value).__name__} is not JSON-serialisable ({exc})"
        ) from None
    size = len(text.encode())
    if size > limit:
        raise XComError(
            f"{where}: XCom value is {size} bytes, over the limit of {limit} bytes "
            "(ORCHESTRATOR_XCOM_MAX_BYTES)"
        )
    return text


def pull_xcom(
    dag: OwnerDag | None, xcoms: Mapping[tuple[str, str], str], task_id: str, key: str
) -> Any:
    """The XCom ``key`` of ``task_id`` in a run's ``xcoms`` (keyed by instance key), None if
    absent; of a mapped task, the list of its instances' values in map order (those that
    pushed one), as Airflow hands a mapped task's results downstream."""
    text = xcoms.get((task_id, key))
    if text is not None:
        return json.loads(text)
    task = dag.task_dict.get(task_id) if dag is not None else None
    if task is None or not task.is_mapped:
        return None
    prefix = task_id + "["
    found = sorted(
        (split_key(k)[1], v)
        for (k, name), v in xcoms.items()
        if name == key and k.startswith(prefix)
    )
    return [json.loads(v) for _, v in found]


@dataclass(slots=True)
class DagRunInfo:
    """The ``dag_run`` of the context."""

    dag_id: str
    run_id: str
    run_type: str
    logical_date: datetime
    data_interval_start: datetime
    data_interval_end: datetime
    conf: dict[str, Any] = field(default_factory=dict)
    start_date: datetime | None = None
    # the dataset events the run consumed (a dataset-triggered run; DatasetAndTime's)
    triggering_events: list[DatasetEvent] = field(default_factory=list)

    @property
    def triggering_dataset_events(self) -> dict[str, list[DatasetEvent]]:
        """URI -> its events, oldest first (Airflow's context key of the same name)."""
        by_uri: dict[str, list[DatasetEvent]] = {}
        for event in self.triggering_events:
            by_uri.setdefault(event.uri, []).append(event)
        return by_uri

    @property
    def external_trigger(self) -> bool:
        return self.run_type == "manual"


class OutletEventAccessor:
    """What a running task attaches to the event one of its outlets emits on success."""

    __slots__ = ("extra", "uri")

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.extra: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<outlet event {self.uri!r} extra={self.extra!r}>"


class OutletEventAccessors:
    """The context's ``outlet_events``: ``outlet_events[Dataset(uri)].extra = {...}``."""

    def __init__(self, task: BaseOperator, where: str) -> None:
        self._where = where
        self._by_uri = {o.uri: OutletEventAccessor(o.uri) for o in task.outlets}

    def __getitem__(self, key: Dataset | str) -> OutletEventAccessor:
        uri = key.uri if isinstance(key, Dataset) else normalize_uri(key)
        accessor = self._by_uri.get(uri)
        if accessor is None:
            outlets = ", ".join(sorted(self._by_uri)) or "none"
            raise KeyError(f"{self._where}: {uri!r} is not an outlet of this task ({outlets})")
        return accessor

    def __contains__(self, key: object) -> bool:
        uri = key.uri if isinstance(key, Dataset) else key
        return uri in self._by_uri

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_uri)

    def __len__(self) -> int:
        return len(self._by_uri)

    def extras(self) -> dict[str, dict[str, Any]]:
        """Each outlet's extra as the task set it (unchecked), when it set one."""
        return {uri: a.extra for uri, a in self._by_uri.items() if a.extra}

    def checked_extras(self, limit: int) -> dict[str, dict[str, Any]]:
        """The extras, each a JSON object of at most ``limit`` bytes; XComError otherwise."""
        out: dict[str, dict[str, Any]] = {}
        for uri, extra in self.extras().items():
            where = f"{self._where}: outlet_events[{uri!r}].extra"
            if not isinstance(extra, dict):
                raise XComError(f"{where} must be a dict, got {type(extra).__name__}")
            out[uri] = json.loads(encode_xcom(extra, where=where, limit=limit))
        return out


class RuntimeTaskInstance:
    """The ``ti`` of the context: identity of the try, XCom push and pull."""

    def __init__(
        self,
        *,
        task: BaseOperator,
        run: DagRunInfo,
        try_number: int,
        max_tries: int,
        xcoms: Mapping[tuple[str, str], str],
        xcom_limit: int,
        log_path: Path | None = None,
    ) -> None:
        self.task = task
        self.dag_id = run.dag_id
        self.run_id = run.run_id
        self.task_id = task.task_id
        self.map_index = task.map_index
        self.try_number = try_number
        self.max_tries = max_tries
        self.dag_run = run
        self.logical_date = run.logical_date
        self.log_path = log_path
        self._xcoms = xcoms
        self._limit = xcom_limit
        self.pushed: dict[str, str] = {}
        # Set by branching operators: the downstream task ids to skip.
        self.skip_task_ids: set[str] = set()
        self.outlet_events = OutletEventAccessors(task, self.where)

    @property
    def where(self) -> str:
        if self.map_index >= 0:
            return f"DAG {self.dag_id!r}, task {self.task_id!r}, map_index {self.map_index}"
        return f"DAG {self.dag_id!r}, task {self.task_id!r}"

    def xcom_push(self, key: str, value: Any) -> None:
        if not isinstance(key, str) or not key:
            raise XComError(f"{self.where}: XCom key must be a non-empty string")
        self.pushed[key] = encode_xcom(value, where=self.where, limit=self._limit)

    def xcom_pull(
        self,
        task_ids: str | list[str] | tuple[str, ...] | None = None,
        key: str = RETURN_VALUE,
        default: Any = None,
    ) -> Any:
        """The XCom ``key`` of ``task_ids`` in this run; a list when ``task_ids`` is a list."""
        if task_ids is None:
            task_ids = sorted(self.task.upstream_task_ids)
            if len(task_ids) == 1:
                task_ids = task_ids[0]
        if isinstance(task_ids, str):
            return self._pull_one(task_ids, key, default)
        return [self._pull_one(tid, key, default) for tid in task_ids]

    def _pull_one(self, task_id: str, key: str, default: Any) -> Any:
        text = self.pushed.get(key) if task_id == self.task_id else None
        if text is not None:
            return json.loads(text)
        value = pull_xcom(self.task.dag, self._xcoms, task_id, key)
        return default if value is None else value

    def __repr__(self) -> str:
        index = f"[{self.map_index}]" if self.map_index >= 0 else ""
        return (
            f"<TaskInstance {self.dag_id}.{self.task_id}{index} {self.run_id} "
            f"try {self.try_number}>"
        )


class _VariableAccessor:
    def __init__(self, deserialize_json: bool) -> None:
        self._json = deserialize_json

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        return Variable.get(key, deserialize_json=self._json)

    def get(self, key: str, default_var: Any = None) -> Any:
        return Variable.get(key, default_var=default_var, deserialize_json=self._json)


class _VarNamespace:
    value = _VariableAccessor(False)
    json = _VariableAccessor(True)


def build_context(dag: DAG, ti: RuntimeTaskInstance) -> dict[str, Any]:
    run = ti.dag_run
    params = {**resolve_params({**dag.params, **ti.task.params}, run.conf), **run.conf}
    logical = run.logical_date
    return {
        "dag": dag,
        "task": ti.task,
        "ti": ti,
        "task_instance": ti,
        "dag_run": run,
        "run_id": run.run_id,
        "logical_date": logical,
        "ds": logical.strftime("%Y-%m-%d"),
        "ds_nodash": logical.strftime("%Y%m%d"),
        "task_instance_key_str": f"{dag.dag_id}__{ti.task.task_id}__{logical:%Y%m%d}",
        "macros": MACROS,
        "ts": logical.isoformat(),
        "ts_nodash": logical.strftime("%Y%m%dT%H%M%S"),
        "data_interval_start": run.data_interval_start,
        "data_interval_end": run.data_interval_end,
        "params": params,
        "conf": run.conf,
        "var": _VarNamespace(),
        "triggering_dataset_events": run.triggering_dataset_events,
        "outlet_events": ti.outlet_events,
        "event": run.conf.get("event") if run.run_type == "event_triggered" else None,
        "try_number": ti.try_number,
        "map_index": ti.map_index,
    }


def _needs_render(value: Any, exts: tuple[str, ...]) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value or (bool(exts) and value.endswith(exts))
    if isinstance(value, list | tuple | set):
        return any(_needs_render(v, exts) for v in value)
    if isinstance(value, dict):
        return any(_needs_render(v, exts) for v in value.values())
    return isinstance(value, XComArg)


def _exts(task: BaseOperator, field: str) -> tuple[str, ...]:
    """The endings that make a field's string a template file's name (a PythonOperator's
    ``templates_exts``, else the class's ``template_ext``)."""
    return tuple(getattr(task, "templates_exts", ())) or tuple(task.template_ext)


def task_needs_render(task: BaseOperator) -> bool:
    return any(
        _needs_render(getattr(task, name, None), _exts(task, name)) for name in task.template_fields
    )


def map_label(template: str, context: Mapping[str, Any]) -> str | None:
    """A mapped instance's ``map_index_template``, rendered after its work (so the work
    can set what it names); None when it does not render."""
    try:
        return TEMPLATE_ENV.from_string(template).render(context)[:250] or None
    except Exception:
        return None


_FIELD_SHOWN = 16 * 1024  # the most of one rendered field the UI is given


def rendered_fields(task: BaseOperator) -> str | None:
    """A rendered task's templated fields as JSON, for the UI (each cut at 16 KiB, the
    secrets the logs mask masked too); None when it has none."""
    shown = {}
    for name in task.template_fields:
        value = getattr(task, name, None)
        text = value if isinstance(value, str) else json.dumps(value, default=repr, indent=2)
        if len(text) > _FIELD_SHOWN:
            text = text[:_FIELD_SHOWN] + f"\n[... {len(text) - _FIELD_SHOWN} more characters]"
        shown[name] = mask(text)
    return json.dumps(shown) if shown else None


def render_task(task: BaseOperator, context: dict[str, Any]) -> BaseOperator:
    """A copy of ``task`` with XComArgs resolved and templated fields rendered."""
    ti: RuntimeTaskInstance = context["ti"]
    rendered = copy.copy(task)

    def pull(task_id: str, key: str) -> Any:
        return ti.xcom_pull(task_ids=task_id, key=key)

    base = Path(task.dag.fileloc).parent if task.dag is not None and task.dag.fileloc else None
    for name in task.template_fields:
        value = resolve_xcom_args(getattr(task, name, None), pull)
        try:
            value = render_value(value, context, _exts(task, name), base)
        except TemplateError as exc:
            raise TemplateError(f"{ti.where}: field {name!r}: {exc}") from exc
        except jinja2.TemplateError as exc:
            raise TemplateError(f"{ti.where}: cannot render field {name!r}: {exc}") from exc
        setattr(rendered, name, value)
    context["task"] = rendered
    return rendered
