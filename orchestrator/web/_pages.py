"""The UI's pages (SPEC section 9), rendered on the server from the control plane and the
store's reads.

Rules:
1. A page is HTML a browser shows without its script; the script (``static/ui.js``)
   makes it live and drives the actions through the JSON API.
2. Each view reads what it shows in one query where the data is large (the DAG list's
   runs, the grid), and never more than a handful otherwise.
3. A missing DAG, run or task is a 404 page naming it; a bad query parameter is a 400
   page naming it. Nothing here writes.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import anyio
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import Response

from orchestrator._clock import iso, parse_iso
from orchestrator.api import ControlPlane, RunQueries
from orchestrator.api._http import ClientError, int_param
from orchestrator.api._protocol import dag_or_404
from orchestrator.authoring._dag import DAG
from orchestrator.core import RunRecord, TaskInstanceRecord, TryRecord
from orchestrator.errors import NotFound
from orchestrator.store._datasets import event_json
from orchestrator.store._events import stored_event_json
from orchestrator.web._data import STATES, grid_json, rows_of, schedule_words, symbol, worst
from orchestrator.web._graph import NODE_H, NODE_W, layout
from triggers._dataset import DatasetEvent

__all__ = ["Pages", "ViewQueries"]

RECENT_RUNS = 10  # the DAG list's run squares
GRID_RUNS = 25  # the grid's runs by default
MAX_GRID_RUNS = 1000


class ViewQueries(RunQueries, Protocol):
    """The store's reads the pages need beyond the API's."""

    async def dag_summaries(
        self, per_dag: int, dag_id: str | None = None
    ) -> dict[str, dict[str, Any]]: ...

    async def grid_rows(self, dag_id: str, runs: int) -> list[dict[str, Any]]: ...

    async def find_run(self, dag_id: str, run_id: str) -> RunRecord | None: ...

    async def xcoms(self, dag_id: str, run_id: str) -> dict[tuple[str, str], str]: ...

    async def sensor_wait_row(
        self, dag_id: str, run_id: str, task_id: str, map_index: int
    ) -> dict[str, Any] | None: ...

    async def triggering_dataset_events(self, dag_id: str, run_id: str) -> list[DatasetEvent]: ...


def _when(value: datetime | str | None) -> str:
    """A time as the pages show it: UTC, to the second."""
    if isinstance(value, str):
        value = parse_iso(value)
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


TEMPLATES = Environment(
    loader=PackageLoader("orchestrator.web", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.globals.update(symbol=symbol, when=_when, duration=_duration, STATES=STATES)
TEMPLATES.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True, default=str)


class Pages:
    """The page handlers, on one control plane and the store's reads."""

    def __init__(self, control: ControlPlane, runs: ViewQueries, *, login: bool) -> None:
        self.control = control
        self.runs = runs
        self.login = login

    def render(self, request: Request, name: str, status: int = 200, **values: Any) -> Response:
        page = TEMPLATES.get_template(name).render(
            request=request,
            login=self.login,
            import_errors=len(self.control.import_errors),
            **values,
        )
        return compressed(request, page.encode(), "text/html; charset=utf-8", status)

    def dag(self, request: Request) -> DAG:
        return dag_or_404(self.control, request.path_params["dag_id"])

    async def run(self, request: Request, dag: DAG) -> RunRecord:
        run_id = request.path_params["run_id"]
        run = await self.runs.find_run(dag.dag_id, run_id)
        if run is None:
            raise NotFound(f"DAG {dag.dag_id!r} has no run {run_id!r}")
        return run

    # -- the DAG list ---------------------------------------------------------------------

    async def dags(self, request: Request) -> Response:
        rows = await self.dag_rows()
        query = request.query_params.get("q", "")
        return self.render(request, "dags.html", dags=rows, q=query, title="DAGs")

    async def dag_rows(self, only: str | None = None) -> list[dict[str, Any]]:
        summaries = await self.runs.dag_summaries(RECENT_RUNS, only)
        found = []
        for dag_id in sorted(self.control.dags):
            if only is not None and dag_id != only:
                continue
            dag = self.control.dags[dag_id]
            summary = summaries.get(dag_id, {"running": 0, "failed": 0, "runs": []})
            pending = self.control.next_run(dag_id)
            found.append(
                {
                    "dag_id": dag_id,
                    "search": f"{dag_id} {' '.join(dag.tags)}".lower(),
                    "runs_html": _run_squares(dag_id, summary["runs"][::-1]),
                    "display": getattr(dag, "dag_display_name", dag_id) or dag_id,
                    "schedule": schedule_words(dag),
                    "paused": self.control.is_paused(dag_id),
                    "next_run": iso(pending.logical_date) if pending else None,
                    "tags": list(dag.tags),
                    "running": summary["running"],
                    "failed": summary["failed"],
                }
            )
        return found

    async def dag_row(self, request: Request) -> Response:
        """One row of the DAG list, as the list renders it (for its live updates)."""
        rows = await self.dag_rows(self.dag(request).dag_id)
        return self.render(request, "dag_row.html", d=rows[0], q="")

    async def import_errors_page(self, request: Request) -> Response:
        errors = sorted(self.control.import_errors, key=lambda e: e.file)
        return self.render(request, "import_errors.html", errors=errors, title="Import errors")

    # -- one DAG --------------------------------------------------------------------------

    def dag_values(self, dag: DAG) -> dict[str, Any]:
        return {
            "dag": dag,
            "paused": self.control.is_paused(dag.dag_id),
            "schedule": schedule_words(dag),
            "params": _params(dag),
            "title": dag.dag_id,
        }

    async def grid(self, request: Request) -> Response:
        dag = self.dag(request)
        runs = int_param(request, "runs", GRID_RUNS, maximum=MAX_GRID_RUNS)
        return self.render(request, "grid.html", runs=runs, tab="grid", **self.dag_values(dag))

    async def grid_data(self, request: Request) -> Response:
        dag = self.dag(request)
        runs = int_param(request, "runs", GRID_RUNS, maximum=MAX_GRID_RUNS)
        stored = await self.runs.grid_rows(dag.dag_id, runs)
        body = json.dumps(grid_json(dag, stored), separators=(",", ":")).encode()
        return compressed(request, body, "application/json")

    async def graph(self, request: Request) -> Response:
        dag = self.dag(request)
        recent = await self.runs.list_runs(dag.dag_id, limit=25)
        chosen = request.query_params.get("run_id") or (recent[0].run_id if recent else None)
        states: dict[str, str] = {}
        if chosen is not None:
            run = await self.runs.find_run(dag.dag_id, chosen)
            if run is None:
                raise ClientError(400, f"run_id: DAG {dag.dag_id!r} has no run {chosen!r}")
            states = _task_states(await self.runs.task_instances(dag.dag_id, chosen))
        edges = [(t.task_id, d) for t in dag.task_dict.values() for d in t.downstream_task_ids]
        drawn = layout([r["id"] for r in rows_of(dag) if not r["group"]], edges)
        return self.render(
            request,
            "graph.html",
            tab="graph",
            drawing=drawn,
            node_w=NODE_W,
            node_h=NODE_H,
            states=states,
            recent=recent,
            chosen=chosen,
            **self.dag_values(dag),
        )

    async def code(self, request: Request) -> Response:
        dag = self.dag(request)
        path = Path(dag.fileloc) if dag.fileloc else None
        try:
            source = await anyio.to_thread.run_sync(path.read_text) if path else ""
        except (OSError, UnicodeDecodeError) as exc:
            source = f"# the file cannot be read: {exc}"
        return self.render(request, "code.html", tab="code", source=source, **self.dag_values(dag))

    # -- a run, a task instance --------------------------------------------------------------

    async def run_page(self, request: Request) -> Response:
        dag = self.dag(request)
        run = await self.run(request, dag)
        tis = await self.runs.task_instances(dag.dag_id, run.run_id)
        order = {r["id"]: i for i, r in enumerate(rows_of(dag))}
        tis.sort(key=lambda ti: (order.get(ti.task_id, len(order)), ti.map_index))
        triggered_by = await self.triggered_by(run)
        return self.render(
            request,
            "run.html",
            run=run,
            tis=tis,
            gantt=_gantt(run, tis),
            triggered_by=triggered_by,
            **self.dag_values(dag) | {"title": f"{run.run_id} · {dag.dag_id}"},
        )

    async def triggered_by(self, run: RunRecord) -> dict[str, Any]:
        if run.run_type == "dataset_triggered":
            events = await self.runs.triggering_dataset_events(run.dag_id, run.run_id)
            return {"datasets": [event_json(e) for e in events]}
        if run.run_type == "event_triggered":
            return {"event": run.conf.get("event")}
        return {}

    async def task_page(self, request: Request) -> Response:
        dag = self.dag(request)
        run = await self.run(request, dag)
        task_id = request.path_params["task_id"]
        task = dag.task_dict.get(task_id)
        instances = [
            ti
            for ti in await self.runs.task_instances(dag.dag_id, run.run_id)
            if ti.task_id == task_id
        ]
        if task is None and not instances:
            raise NotFound(f"run {run.run_id!r} of DAG {dag.dag_id!r} has no task {task_id!r}")
        map_index = int_param(request, "map_index", -1)
        mapped = sorted(ti.map_index for ti in instances if ti.map_index >= 0)
        if mapped and map_index < 0:
            map_index = mapped[0]
        ti = next((t for t in instances if t.map_index == map_index), None)
        if instances and ti is None:
            raise NotFound(f"task {task_id!r} of run {run.run_id!r} has no map_index {map_index}")
        tries: Sequence[TryRecord] = await self.runs.tries(
            dag.dag_id, run.run_id, task_id, map_index
        )
        chosen = int_param(request, "try", tries[-1].try_number if tries else 0)
        if "try" in request.query_params and all(t.try_number != chosen for t in tries):
            raise NotFound(f"task {task_id!r} of run {run.run_id!r} has no try {chosen}")
        xcoms = {
            key: value
            for (instance, key), value in (await self.runs.xcoms(dag.dag_id, run.run_id)).items()
            if instance == (f"{task_id}[{map_index}]" if map_index >= 0 else task_id)
        }
        wait = await self.runs.sensor_wait_row(dag.dag_id, run.run_id, task_id, map_index)
        return self.render(
            request,
            "task.html",
            run=run,
            task=task,
            task_id=task_id,
            ti=ti,
            map_index=map_index,
            mapped=mapped,
            tries=tries,
            chosen_try=chosen,
            xcoms=xcoms,
            wait=_wait(wait),
            fields=_template_fields(task, next((t for t in tries if t.try_number == chosen), None)),
            **self.dag_values(dag) | {"title": f"{task_id} · {run.run_id}"},
        )

    # -- datasets, events, alerts, health ----------------------------------------------------

    async def datasets(self, request: Request) -> Response:
        datasets = await self.runs.list_datasets()
        events = await self.runs.dataset_events(None, 50)
        nodes: list[str] = []
        edges: list[tuple[str, str]] = []
        for info in datasets:
            node = f"dataset:{info.uri}"
            nodes.append(node)
            edges += [(f"dag:{p}", node) for p in info.producers]
            edges += [(node, f"dag:{c}") for c in info.consumers]
        dag_nodes = sorted({n for edge in edges for n in edge if n.startswith("dag:")})
        drawn = layout(dag_nodes + nodes, edges)
        return self.render(
            request,
            "datasets.html",
            datasets=datasets,
            events=[event_json(e, r) for e, r in events],
            drawing=drawn,
            node_w=NODE_W,
            node_h=NODE_H,
            title="Datasets",
        )

    async def events(self, request: Request) -> Response:
        found, cursor = await self.runs.list_events(
            source=request.query_params.get("source") or None,
            limit=int_param(request, "limit", 100),
            cursor=request.query_params.get("cursor") or None,
        )
        shown = [stored_event_json(event, at, runs) for event, at, runs in found]
        return self.render(
            request,
            "events.html",
            events=shown,
            cursor=cursor,
            source=request.query_params.get("source", ""),
            title="Events",
        )

    async def alerts(self, request: Request) -> Response:
        recent = await self.control.list_alerts(limit=100)
        failed = await self.control.list_alerts(state="failed", limit=100)
        misses = await self.control.deadline_misses(limit=50)
        return self.render(
            request, "alerts.html", recent=recent, failed=failed, misses=misses, title="Alerts"
        )

    async def health(self, request: Request) -> Response:
        return self.render(request, "health.html", health=self.control.health(), title="Health")


def _run_squares(dag_id: str, runs: Sequence[Mapping[str, Any]]) -> Markup:
    """A DAG's recent runs (oldest first) as small squares, each its state's symbol and
    colour, linking to the grid; their summary as the link's name and tooltip."""
    parts = []
    tally: dict[str, int] = {}
    for run in runs:
        state = str(run["state"])
        tally[state] = tally.get(state, 0) + 1
        parts.append(f'<i class="st" data-state="{state}">{symbol(state)}</i>')
    said = escape(
        f"last {len(runs)} runs: " + (", ".join(f"{n} {s}" for s, n in tally.items()) or "none")
    )
    return Markup(
        f'<a href="/dags/{escape(dag_id)}" class="squares" aria-label="{said}" title="{said}">'
        + "".join(parts)
        + "</a>"
    )


def compressed(request: Request, body: bytes, media: str, status: int = 200) -> Response:
    """``body`` gzipped when the client takes it and it is worth it (a big list or grid is
    a tenth of its size on the wire)."""
    headers = {"Cache-Control": "no-store", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", "") and len(body) > 4096:
        body = gzip.compress(body, compresslevel=5)
        headers["Content-Encoding"] = "gzip"
    return Response(body, status_code=status, media_type=media, headers=headers)


def _task_states(tis: Sequence[TaskInstanceRecord]) -> dict[str, str]:
    """Each task's state in a run; a mapped task's is the state that matters most."""
    codes: dict[str, list[str]] = {}
    for ti in tis:
        codes.setdefault(ti.task_id, []).append(STATES.get(str(ti.state), ("n", ""))[0])
    by_code = {code: state for state, (code, _) in STATES.items()}
    return {task_id: by_code.get(worst(c), "none") for task_id, c in codes.items()}


def _params(dag: DAG) -> list[dict[str, Any]]:
    """The trigger form's fields, from the DAG's ``params``."""
    fields = []
    for name, value in dag.params.items():
        schema = dict(getattr(value, "schema", {}) or {})
        default = getattr(value, "value", value)
        kind = schema.get("type", _json_type(default))
        fields.append(
            {
                "name": name,
                "default": None if type(default).__name__ == "ArgNotSet" else default,
                "type": kind if isinstance(kind, str) else "string",
                "enum": schema.get("enum"),
                "description": getattr(value, "description", None) or schema.get("title") or "",
            }
        )
    return fields


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return "string"


def _gantt(run: RunRecord, tis: Sequence[TaskInstanceRecord]) -> list[dict[str, Any]]:
    """Each started instance's bar as percentages of the run's span."""
    starts = [ti.start_date for ti in tis if ti.start_date]
    if not starts:
        return []
    first = min(starts)
    ends = [ti.end_date or ti.start_date for ti in tis if ti.start_date]
    last = max([*ends, run.end_date or max(ends)])
    span = max((last - first).total_seconds(), 0.001)
    bars = []
    for ti in tis:
        if ti.start_date is None:
            continue
        end = ti.end_date or last
        bars.append(
            {
                "ti": ti,
                "left": 100 * (ti.start_date - first).total_seconds() / span,
                "width": max(0.5, 100 * (end - ti.start_date).total_seconds() / span),
            }
        )
    return bars


def _wait(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    state = json.loads(row["state"] or "{}")
    return {
        "next_poke": row["next_poke_at"],
        "pokes": state.get("pokes", row["attempt"]),
        "first_poke": state.get("first_poke"),
        "deadline": row["deadline"],
    }


def _template_fields(task: Any, attempt: TryRecord | None) -> list[tuple[str, str, str]]:
    """Each templated field: (name, as the try rendered it, as the file writes it); the
    rendered text is the written one when the try had nothing to render."""
    if task is None:
        return []
    rendered: dict[str, str] = {}
    if attempt is not None and attempt.rendered:
        rendered = json.loads(attempt.rendered)
    shown = []
    for name in getattr(task, "template_fields", ()) or ():
        value = getattr(task, name, None)
        if callable(value):
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=repr, indent=2)
        used = "(no try yet)" if attempt is None else rendered.get(name, text)
        shown.append((name, used, text))
    return shown
