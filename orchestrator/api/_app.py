"""The daemon's HTTP API (SPEC section 7) on Starlette.

Rules:
1. Every response is JSON (``/metrics`` is Prometheus text); every client mistake
   is a 4xx with ``{"error": ...}`` naming the field or the object. An unexpected
   failure is logged and answered 500 without details.
2. With a token configured, every route but ``/api/v1/health`` (and the web UI's login
   page and static files) needs ``Authorization: Bearer <token>`` or the UI's cookie
   holding it (compared in constant time); a page asked for without it is sent to
   ``/login``.
3. Handlers validate everything before the first write, so a refused request
   changes nothing. A body is standard JSON (no NaN or Infinity) of at most
   ``max_body`` bytes (413 beyond); query integers are bounded.
4. No web page can drive the API from a browser: a request whose ``Host`` is not a
   name of this API is refused (DNS rebinding), and a write (POST, PATCH, PUT,
   DELETE) must say ``Content-Type: application/json`` and come from no other
   origin, so a cross-site form or ``text/plain`` request is refused before it acts.
   The UI's login and logout forms are the only form writes, and come from no other
   origin either.
5. Other routes (the web UI's, ``create_app(routes=...)``) are served behind the same
   guard.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import anyio
import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator._clock import iso
from orchestrator.api._http import (
    MAX_QUERY_INT,
    ClientError,
    error_handlers,
    host_name,
    int_param,
    json_error,
    json_object,
    parse_date,
    read_log,
    store_wait,
)
from orchestrator.api._openapi import openapi_document
from orchestrator.api._protocol import ControlPlane, RunQueries, dag_or_404
from orchestrator.authoring._dag import DAG
from orchestrator.core import RunRecord
from orchestrator.core._intake import check_conf, check_run_id
from orchestrator.errors import NotFound
from orchestrator.store._datasets import event_json
from orchestrator.store._events import stored_event_json
from triggers._dataset import normalize_uri

__all__ = ["TOKEN_COOKIE", "create_app"]

log = structlog.get_logger("orchestrator.api")
_OPEN = {"/api/v1/health", "/login"}
_OPEN_PREFIX = "/static/"
_FORM_WRITES = {"/login", "/logout"}
TOKEN_COOKIE = "orchestrator_token"
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}
_LOG_WINDOW = 1024 * 1024  # a log is served from its end, this much at a time by default
_MAX_LOG_WINDOW = 8 * 1024 * 1024
_MAX_OFFSET = 999_999_999_999_999


class _Handlers:
    """The routes' handlers, on one control plane and one store."""

    def __init__(
        self,
        control: ControlPlane,
        runs: RunQueries,
        token: str,
        hosts: frozenset[str] | None,
        max_body: int,
    ) -> None:
        self.control = control
        self.runs = runs
        self.token = token
        self.hosts = hosts
        self.max_body = max_body

    def dag(self, request: Request) -> DAG:
        return dag_or_404(self.control, request.path_params["dag_id"])

    def refusal(self, request: Request) -> Response | None:
        """Rules 2 and 4, before any handler runs: the refusal, or None to go on."""
        host = host_name(request.headers.get("host", ""))
        if self.hosts is not None and host not in self.hosts:
            return json_error(400, f"Host {host!r} is not a name of this API (api_allowed_hosts)")
        if request.method in _WRITES:
            origin = request.headers.get("origin")
            if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
                return json_error(403, f"cross-origin write from {origin!r} refused")
            media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
            if media != "application/json" and request.url.path not in _FORM_WRITES:
                return json_error(415, "a write needs Content-Type: application/json")
            length = request.headers.get("content-length", "0")
            if not (length.isascii() and length.isdigit()) or int(length) > self.max_body:
                return json_error(413, f"the body is over the limit of {self.max_body} bytes")
        path = request.url.path
        guarded = path not in _OPEN and not path.startswith(_OPEN_PREFIX)
        if self.token and guarded and not self.authorized(request):
            if request.method == "GET" and _is_page(path):
                wanted = path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(wanted)}", status_code=303)
            return json_error(401, "missing or wrong bearer token")
        return None

    def authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer":
            given = request.cookies.get(TOKEN_COOKIE, "")
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", **self.control.health()})

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def list_dags(self, request: Request) -> Response:
        dags = sorted(self.control.dags.values(), key=lambda d: d.dag_id)
        return JSONResponse([d.to_json(self.control.is_paused(d.dag_id)) for d in dags])

    async def get_dag(self, request: Request) -> Response:
        dag = self.dag(request)
        doc = dag.to_json(self.control.is_paused(dag.dag_id))
        pending = self.control.next_run(dag.dag_id)
        doc["next_run"] = (
            None
            if pending is None
            else {
                "logical_date": iso(pending.logical_date),
                "data_interval_start": iso(pending.data_interval_start),
                "data_interval_end": iso(pending.data_interval_end),
            }
        )
        doc["tasks"] = dag.task_ids
        if dag.schedule.datasets is not None:  # what a consumer has received and waits with
            events = self.control.pending_dataset_events(dag.dag_id)
            doc["datasets"] = {
                "condition": str(dag.schedule.datasets),
                "pending_events": len(events),
                "updated": sorted({e.uri for e in events}),
                "waiting_for": sorted(dag.schedule.datasets.uris() - {e.uri for e in events}),
            }
        return JSONResponse(doc)

    async def patch_dag(self, request: Request) -> Response:
        dag = self.dag(request)
        body = await json_object(request, self.max_body, allowed={"is_paused"})
        paused = body.get("is_paused")
        if not isinstance(paused, bool):
            raise ClientError(400, "is_paused: must be true or false")
        with store_wait():
            await self.control.set_paused(dag.dag_id, paused)
        return JSONResponse(dag.to_json(paused))

    async def trigger(self, request: Request) -> Response:
        dag = self.dag(request)
        body = await json_object(request, self.max_body, allowed={"conf", "logical_date", "run_id"})
        conf = check_conf(body.get("conf") or {})
        run_id = body.get("run_id")
        if run_id is not None:
            check_run_id(run_id)
        logical = parse_date(body.get("logical_date"), "logical_date")
        with store_wait():
            record = await self.control.trigger(
                dag.dag_id, conf=conf, run_id=run_id, logical_date=logical
            )
        return JSONResponse(record.to_json(), status_code=201)

    async def dag_runs(self, request: Request) -> Response:
        dag_id = request.path_params["dag_id"]
        if dag_id not in self.control.dags and not await self.runs.list_runs(dag_id, limit=1):
            raise NotFound(f"DAG {dag_id!r} not found")
        state = request.query_params.get("state")
        limit = int_param(request, "limit", 100)
        runs = await self.runs.list_runs(dag_id=dag_id, state=state, limit=limit)
        return JSONResponse([r.to_json() for r in runs])

    async def get_run(self, request: Request) -> Response:
        run = await self.resolve_run(request)
        tis = await self.runs.task_instances(run.dag_id, run.run_id)
        return JSONResponse({**run.to_json(), "tasks": [ti.to_json() for ti in tis]})

    async def patch_run(self, request: Request) -> Response:
        run = await self.resolve_run(request)
        body = await json_object(request, self.max_body, allowed={"state"})
        state = _mark_state(body)
        with store_wait():
            marked = await self.control.mark_run(run.dag_id, run.run_id, state)
        return JSONResponse(marked.to_json())

    async def clear_run(self, request: Request) -> Response:
        run = await self.resolve_run(request)
        body = await json_object(
            request, self.max_body, allowed={"task_ids", "map_index", "downstream"}
        )
        task_ids = body.get("task_ids", [])
        if not isinstance(task_ids, list) or not all(isinstance(t, str) for t in task_ids):
            raise ClientError(400, "task_ids: must be a list of task ids")
        indexes = body.get("map_index", [])
        indexes = [indexes] if isinstance(indexes, int) else indexes
        if not isinstance(indexes, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= MAX_QUERY_INT
            for i in indexes
        ):
            raise ClientError(400, "map_index: must be a map index or a list of them")
        downstream = body.get("downstream", False)
        if not isinstance(downstream, bool):
            raise ClientError(400, "downstream: must be true or false")
        with store_wait():
            cleared = await self.control.clear_tasks(
                run.dag_id, run.run_id, task_ids, map_indexes=indexes, downstream=downstream
            )
        return JSONResponse({"dag_id": run.dag_id, "run_id": run.run_id, "cleared": cleared})

    async def patch_task(self, request: Request) -> Response:
        run = await self.resolve_run(request)
        body = await json_object(request, self.max_body, allowed={"state", "map_index"})
        state = _mark_state(body)
        map_index = body.get("map_index", -1)
        if not isinstance(map_index, int) or isinstance(map_index, bool) or map_index < -1:
            raise ClientError(400, "map_index: must be an integer, -1 for an unmapped task")
        with store_wait():
            ti = await self.control.mark_task(
                run.dag_id, run.run_id, request.path_params["task_id"], map_index, state
            )
        return JSONResponse(ti.to_json())

    async def task_logs(self, request: Request) -> Response:
        run = await self.resolve_run(request)
        task_id = request.path_params["task_id"]
        instances = await self.runs.task_instances(run.dag_id, run.run_id)
        if all(ti.task_id != task_id for ti in instances):
            raise NotFound(f"run {run.run_id!r} of DAG {run.dag_id!r} has no task {task_id!r}")
        map_index = int_param(request, "map_index", -1)
        indexes = sorted(ti.map_index for ti in instances if ti.task_id == task_id)
        if map_index not in indexes:
            if map_index < 0:
                raise ClientError(
                    400,
                    f"map_index: task {task_id!r} is mapped: give map_index "
                    f"({indexes[0]}..{indexes[-1]})",
                )
            raise NotFound(f"task {task_id!r} of run {run.run_id!r} has no map_index {map_index}")
        tries = await self.runs.tries(run.dag_id, run.run_id, task_id, map_index)
        wanted = request.query_params.get("try")
        if wanted is not None:
            number = int_param(request, "try", 0)
            tries = [t for t in tries if t.try_number == number]
            if not tries:
                raise NotFound(f"task {task_id!r} of run {run.run_id!r} has no try {number}")
        offset = int_param(request, "offset", -1, maximum=_MAX_OFFSET)
        length = int_param(request, "length", _LOG_WINDOW, maximum=_MAX_LOG_WINDOW)
        out = []
        for attempt in tries:
            text, start, end, size = await anyio.to_thread.run_sync(
                read_log, attempt.log_path, offset, length
            )
            out.append(
                {
                    "try_number": attempt.try_number,
                    "state": str(attempt.state),
                    "start_date": iso(attempt.start_date),
                    "end_date": iso(attempt.end_date),
                    "error": attempt.error,
                    "log": text,
                    "log_offset": start,
                    "log_end": end,
                    "log_size": size,
                }
            )
        return JSONResponse(
            {
                "dag_id": run.dag_id,
                "run_id": run.run_id,
                "task_id": task_id,
                "map_index": map_index,
                "tries": out,
            }
        )

    async def datasets(self, request: Request) -> Response:
        return JSONResponse([d.to_json() for d in await self.runs.list_datasets()])

    async def dataset_events(self, request: Request) -> Response:
        uri = request.query_params.get("uri")
        if uri is not None:
            try:
                uri = normalize_uri(uri)
            except ValueError as exc:
                raise ClientError(400, f"uri: {exc}") from None
        limit = int_param(request, "limit", 100)
        found = await self.runs.dataset_events(uri, limit)
        return JSONResponse([event_json(event, runs) for event, runs in found])

    async def update_dataset(self, request: Request) -> Response:
        body = await json_object(request, self.max_body, allowed={"uri", "extra"})
        if "uri" not in body:
            raise ClientError(400, "uri: missing")
        with store_wait():
            event, consumers = await self.control.update_dataset(body["uri"], body.get("extra"))
        return JSONResponse({**event_json(event), "consumers": consumers}, status_code=201)

    async def put_events(self, request: Request) -> Response:
        body = await json_object(request, self.max_body, allowed={"Entries"})
        if "Entries" not in body:
            raise ClientError(400, "Entries: missing")
        with store_wait():
            reply = await self.control.put_events(body["Entries"])
        return JSONResponse(reply)

    async def events(self, request: Request) -> Response:
        limit = int_param(request, "limit", 100)
        found, cursor = await self.runs.list_events(
            source=request.query_params.get("source"),
            limit=limit,
            cursor=request.query_params.get("cursor"),
        )
        shown = [stored_event_json(event, at, runs) for event, at, runs in found]
        return JSONResponse({"events": shown, "next_cursor": cursor})

    async def alerts(self, request: Request) -> Response:
        state = request.query_params.get("state")
        if state is not None and state not in ("pending", "delivered", "failed"):
            raise ClientError(400, f"state: must be pending, delivered or failed, got {state!r}")
        found = await self.control.list_alerts(
            state=state,
            dag_id=request.query_params.get("dag_id"),
            limit=int_param(request, "limit", 100),
        )
        return JSONResponse(found)

    async def retry_alert(self, request: Request) -> Response:
        with store_wait():
            return JSONResponse(await self.control.retry_alert(request.path_params["alert_id"]))

    async def deadlines(self, request: Request) -> Response:
        found = await self.control.deadline_misses(
            dag_id=request.query_params.get("dag_id"), limit=int_param(request, "limit", 100)
        )
        return JSONResponse(found)

    async def import_errors(self, request: Request) -> Response:
        return JSONResponse([e.to_json() for e in self.control.import_errors])

    async def metrics(self, request: Request) -> Response:
        text = await self.control.metrics_text()
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def resolve_run(self, request: Request) -> RunRecord:
        return await self.runs.resolve_run(
            request.path_params["run_id"], request.query_params.get("dag_id"), hint="add ?dag_id="
        )


def create_app(
    control: ControlPlane,
    runs: RunQueries,
    *,
    token: str = "",
    hosts: frozenset[str] | None = None,
    max_body: int = 1_048_576,
    routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The API on ``control`` and ``runs``; with ``token``, every route but health needs it.
    ``hosts`` are the names a request's Host header may give (None: any); ``routes`` are
    served beside the API's, behind the same guard (rule 5)."""
    api = _Handlers(control, runs, token, hosts, max_body)
    routes = [
        Route("/api/v1/health", api.health),
        Route("/api/v1/openapi.json", api.openapi),
        Route("/api/v1/dags", api.list_dags),
        Route("/api/v1/dags/{dag_id}", api.get_dag, methods=["GET"]),
        Route("/api/v1/dags/{dag_id}", api.patch_dag, methods=["PATCH"]),
        Route("/api/v1/dags/{dag_id}/runs", api.dag_runs, methods=["GET"]),
        Route("/api/v1/dags/{dag_id}/runs", api.trigger, methods=["POST"]),
        Route("/api/v1/runs/{run_id}", api.get_run, methods=["GET"]),
        Route("/api/v1/runs/{run_id}", api.patch_run, methods=["PATCH"]),
        Route("/api/v1/runs/{run_id}/clear", api.clear_run, methods=["POST"]),
        Route("/api/v1/runs/{run_id}/tasks/{task_id}", api.patch_task, methods=["PATCH"]),
        Route("/api/v1/runs/{run_id}/tasks/{task_id}/logs", api.task_logs),
        Route("/api/v1/datasets", api.datasets),
        Route("/api/v1/datasets/events", api.dataset_events, methods=["GET"]),
        Route("/api/v1/datasets/events", api.update_dataset, methods=["POST"]),
        Route("/api/v1/events", api.events, methods=["GET"]),
        Route("/api/v1/events", api.put_events, methods=["POST"]),
        Route("/api/v1/alerts", api.alerts),
        Route("/api/v1/alerts/{alert_id}/retry", api.retry_alert, methods=["POST"]),
        Route("/api/v1/deadlines", api.deadlines),
        Route("/api/v1/import-errors", api.import_errors),
        Route("/metrics", api.metrics),
        *routes,
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(_Guard, handlers=api)],
        exception_handlers=error_handlers(),
    )


def _is_page(path: str) -> bool:
    """A web UI page (not the API, its data or the metrics)."""
    return not path.startswith(("/api/", "/ui/")) and path != "/metrics"


def _mark_state(body: dict[str, Any]) -> str:
    state = body.get("state")
    if state not in ("success", "failed"):
        raise ClientError(400, f"state: must be 'success' or 'failed', got {state!r}")
    return str(state)


class _Guard:
    """``_Handlers.refusal`` as plain ASGI middleware (no task group per request, unlike
    Starlette's ``BaseHTTPMiddleware``)."""

    def __init__(self, app: ASGIApp, handlers: _Handlers) -> None:
        self.app = app
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refused = self.handlers.refusal(Request(scope))
            if refused is not None:
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)
