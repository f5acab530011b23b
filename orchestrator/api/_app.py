"""The daemon's HTTP API (SPEC section 7) on Starlette.

Rules:
1. Every response is JSON (``/metrics`` is Prometheus text); every client mistake
   is a 4xx with ``{"error": ...}`` naming the field or the object. An unexpected
   failure is logged and answered 500 without details.
2. With a token configured, every route but ``/api/v1/health`` needs
   ``Authorization: Bearer <token>`` (compared in constant time).
3. Handlers validate everything before the first write, so a refused request
   changes nothing. A body is standard JSON (no NaN or Infinity) of at most
   ``max_body`` bytes (413 beyond); query integers are bounded.
4. No web page can drive the API from a browser: a request whose ``Host`` is not a
   name of this API is refused (DNS rebinding), and a write (POST, PATCH, PUT,
   DELETE) must say ``Content-Type: application/json`` and come from no other
   origin, so a cross-site form or ``text/plain`` request is refused before it acts.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator._clock import iso
from orchestrator.api._openapi import openapi_document
from orchestrator.api._protocol import ControlPlane, RunQueries
from orchestrator.authoring._dag import DAG
from orchestrator.core import RunRecord
from orchestrator.core._intake import check_conf, check_logical_date, check_run_id
from orchestrator.errors import Conflict, InvalidRequest, NotFound, StoreUnavailable
from orchestrator.store._datasets import event_json
from orchestrator.store._events import stored_event_json
from triggers._dataset import normalize_uri

__all__ = ["create_app"]

log = structlog.get_logger("orchestrator.api")
_OPEN = {"/api/v1/health"}
_STORE_WAIT = 10.0  # seconds a write request waits for an unavailable store
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}
_MAX_QUERY_INT = 10_000
_LOG_WINDOW = 1024 * 1024  # a log is served from its end, this much at a time by default
_MAX_LOG_WINDOW = 8 * 1024 * 1024
_MAX_OFFSET = 999_999_999_999_999


class ClientError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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
        dag_id = request.path_params["dag_id"]
        dag = self.control.dags.get(dag_id)
        if dag is None:
            raise NotFound(f"DAG {dag_id!r} not found")
        return dag

    def refusal(self, request: Request) -> Response | None:
        """Rules 2 and 4, before any handler runs: the refusal, or None to go on."""
        host = _host_name(request.headers.get("host", ""))
        if self.hosts is not None and host not in self.hosts:
            return _error(400, f"Host {host!r} is not a name of this API (api_allowed_hosts)")
        if request.method in _WRITES:
            origin = request.headers.get("origin")
            if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
                return _error(403, f"cross-origin write from {origin!r} refused")
            media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
            if media != "application/json":
                return _error(415, "a write needs Content-Type: application/json")
            length = request.headers.get("content-length", "0")
            if not (length.isascii() and length.isdigit()) or int(length) > self.max_body:
                return _error(413, f"the body is over the limit of {self.max_body} bytes")
        if self.token and request.url.path not in _OPEN:
            header = request.headers.get("authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.encode(), self.token.encode()
            ):
                return _error(401, "missing or wrong bearer token")
        return None

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
        body = await _json_object(request, self.max_body, allowed={"is_paused"})
        paused = body.get("is_paused")
        if not isinstance(paused, bool):
            raise ClientError(400, "is_paused: must be true or false")
        with _store_wait():
            await self.control.set_paused(dag.dag_id, paused)
        return JSONResponse(dag.to_json(paused))

    async def trigger(self, request: Request) -> Response:
        dag = self.dag(request)
        body = await _json_object(
            request, self.max_body, allowed={"conf", "logical_date", "run_id"}
        )
        conf = check_conf(body.get("conf") or {})
        run_id = body.get("run_id")
        if run_id is not None:
            check_run_id(run_id)
        logical = _parse_date(body.get("logical_date"), "logical_date")
        with _store_wait():
            record = await self.control.trigger(
                dag.dag_id, conf=conf, run_id=run_id, logical_date=logical
            )
        return JSONResponse(record.to_json(), status_code=201)

    async def dag_runs(self, request: Request) -> Response:
        dag_id = request.path_params["dag_id"]
        if dag_id not in self.control.dags and not await self.runs.list_runs(dag_id, limit=1):
            raise NotFound(f"DAG {dag_id!r} not found")
        state = request.query_params.get("state")
        limit = _int_param(request, "limit", 100)
        runs = await self.runs.list_runs(dag_id=dag_id, state=state, limit=limit)
        return JSONResponse([r.to_json() for r in runs])

    async def get_run(self, request: Request) -> Response:
        run = await self.resolve_run(request)
        tis = await self.runs.task_instances(run.dag_id, run.run_id)
        return JSONResponse({**run.to_json(), "tasks": [ti.to_json() for ti in tis]})

    async def task_logs(self, request: Request) -> Response:
        run = await self.resolve_run(request)
        task_id = request.path_params["task_id"]
        instances = await self.runs.task_instances(run.dag_id, run.run_id)
        if all(ti.task_id != task_id for ti in instances):
            raise NotFound(f"run {run.run_id!r} of DAG {run.dag_id!r} has no task {task_id!r}")
        map_index = _int_param(request, "map_index", -1)
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
            number = _int_param(request, "try", 0)
            tries = [t for t in tries if t.try_number == number]
            if not tries:
                raise NotFound(f"task {task_id!r} of run {run.run_id!r} has no try {number}")
        offset = _int_param(request, "offset", -1, maximum=_MAX_OFFSET)
        length = _int_param(request, "length", _LOG_WINDOW, maximum=_MAX_LOG_WINDOW)
        out = []
        for attempt in tries:
            text, start, size = await anyio.to_thread.run_sync(
                _read_log, attempt.log_path, offset, length
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
        limit = _int_param(request, "limit", 100)
        found = await self.runs.dataset_events(uri, limit)
        return JSONResponse([event_json(event, runs) for event, runs in found])

    async def update_dataset(self, request: Request) -> Response:
        body = await _json_object(request, self.max_body, allowed={"uri", "extra"})
        if "uri" not in body:
            raise ClientError(400, "uri: missing")
        with _store_wait():
            event, consumers = await self.control.update_dataset(body["uri"], body.get("extra"))
        return JSONResponse({**event_json(event), "consumers": consumers}, status_code=201)

    async def put_events(self, request: Request) -> Response:
        body = await _json_object(request, self.max_body, allowed={"Entries"})
        if "Entries" not in body:
            raise ClientError(400, "Entries: missing")
        with _store_wait():
            reply = await self.control.put_events(body["Entries"])
        return JSONResponse(reply)

    async def events(self, request: Request) -> Response:
        limit = _int_param(request, "limit", 100)
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
            limit=_int_param(request, "limit", 100),
        )
        return JSONResponse(found)

    async def retry_alert(self, request: Request) -> Response:
        with _store_wait():
            return JSONResponse(await self.control.retry_alert(request.path_params["alert_id"]))

    async def deadlines(self, request: Request) -> Response:
        found = await self.control.deadline_misses(
            dag_id=request.query_params.get("dag_id"), limit=_int_param(request, "limit", 100)
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
) -> Starlette:
    """The API on ``control`` and ``runs``; with ``token``, every route but health needs it.
    ``hosts`` are the names a request's Host header may give (None: any)."""
    api = _Handlers(control, runs, token, hosts, max_body)
    routes = [
        Route("/api/v1/health", api.health),
        Route("/api/v1/openapi.json", api.openapi),
        Route("/api/v1/dags", api.list_dags),
        Route("/api/v1/dags/{dag_id}", api.get_dag, methods=["GET"]),
        Route("/api/v1/dags/{dag_id}", api.patch_dag, methods=["PATCH"]),
        Route("/api/v1/dags/{dag_id}/runs", api.dag_runs, methods=["GET"]),
        Route("/api/v1/dags/{dag_id}/runs", api.trigger, methods=["POST"]),
        Route("/api/v1/runs/{run_id}", api.get_run),
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
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(_Guard, handlers=api)],
        exception_handlers={
            ClientError: _client_error,
            InvalidRequest: _invalid,
            NotFound: _not_found,
            Conflict: _conflict,
            StoreUnavailable: _unavailable,
            HTTPException: _http_error,
            Exception: _server_error,
        },
    )


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


def _host_name(header: str) -> str:
    """The host of a Host header, without its port (``[::1]:8080`` gives ``::1``)."""
    if header.startswith("["):
        return header[1:].partition("]")[0].lower()
    return header.rpartition(":")[0].lower() if header.count(":") == 1 else header.lower()


def _no_constant(name: str) -> Any:
    raise ClientError(400, f"malformed JSON body: {name} is not a JSON number")


async def _json_object(request: Request, limit: int, *, allowed: set[str]) -> dict[str, Any]:
    """The body as a JSON object with no field outside ``allowed`` (an empty body is {})."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ClientError(413, f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise ClientError(400, "malformed JSON body: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an overlong integer
        raise ClientError(400, f"malformed JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise ClientError(400, "the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ClientError(400, f"unknown field(s): {', '.join(unknown)}")
    return body


def _parse_date(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ClientError(400, f"{field}: must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ClientError(400, f"{field}: not an ISO 8601 date/time: {value!a}") from None
    parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
    return check_logical_date(parsed, field)


def _int_param(request: Request, name: str, default: int, *, maximum: int = _MAX_QUERY_INT) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 15 or int(raw) > maximum:
        raise ClientError(400, f"{name}: must be an integer from 0 to {maximum}")
    return int(raw)


def _read_log(path: str, offset: int, length: int) -> tuple[str, int, int]:
    """Up to ``length`` bytes of the log at ``path`` from ``offset`` (-1: its last
    ``length`` bytes), as (text, where the text starts, the log's size). Blocking."""
    if not path:
        return "", 0, 0
    try:
        with open(path, "rb") as log:
            size = os.fstat(log.fileno()).st_size
            start = max(0, size - length) if offset < 0 else min(offset, size)
            log.seek(start)
            data = log.read(length)
    except FileNotFoundError:
        return "", 0, 0
    return data.decode("utf-8", errors="replace"), start, size


@contextlib.contextmanager
def _store_wait() -> Iterator[None]:
    """Bound a write's wait for an unavailable store; the write itself stays queued."""
    with anyio.move_on_after(_STORE_WAIT) as scope:
        yield
    if scope.cancelled_caught:
        raise StoreUnavailable(
            f"the store did not answer within {_STORE_WAIT:.0f} s; the change is queued "
            "and is applied when the store is back"
        )


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _client_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ClientError)
    return _error(exc.status, exc.message)


async def _invalid(request: Request, exc: Exception) -> Response:
    return _error(400, str(exc))


async def _not_found(request: Request, exc: Exception) -> Response:
    return _error(404, str(exc))


async def _conflict(request: Request, exc: Exception) -> Response:
    return _error(409, str(exc))


async def _unavailable(request: Request, exc: Exception) -> Response:
    return _error(503, f"{exc}; try again")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "no such route", 405: "method not allowed"}.get(exc.status_code, exc.detail)
    return _error(exc.status_code, f"{message}: {request.method} {request.url.path}")


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("API request failed", method=request.method, path=request.url.path, exc_info=exc)
    return _error(500, "internal error (see the daemon's log)")
