"""The API's HTTP helpers: request parsing with bounds, errors as JSON, log windows."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from orchestrator.core._intake import check_logical_date
from orchestrator.errors import (
    Conflict,
    DrivenElsewhere,
    InvalidRequest,
    NotFound,
    StoreUnavailable,
)

__all__ = [
    "MAX_QUERY_INT",
    "ClientError",
    "error_handlers",
    "host_name",
    "int_param",
    "json_error",
    "json_object",
    "parse_date",
    "read_log",
    "store_wait",
]

log = structlog.get_logger("orchestrator.api")
STORE_WAIT = 10.0  # seconds a write request waits for an unavailable store
MAX_QUERY_INT = 10_000


class ClientError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def host_name(header: str) -> str:
    """The host of a Host header, without its port (``[::1]:8080`` gives ``::1``)."""
    if header.startswith("["):
        return header[1:].partition("]")[0].lower()
    return header.rpartition(":")[0].lower() if header.count(":") == 1 else header.lower()


def _no_constant(name: str) -> Any:
    raise ClientError(400, f"malformed JSON body: {name} is not a JSON number")


async def json_object(request: Request, limit: int, *, allowed: set[str]) -> dict[str, Any]:
    """The body as a JSON object with no field outside ``allowed`` (an empty body is {})."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ClientError(413, f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    request.state.raw_body = raw  # what a forwarded request carries on (_forwarded)
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


def parse_date(value: Any, field: str) -> datetime | None:
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


def int_param(request: Request, name: str, default: int, *, maximum: int = MAX_QUERY_INT) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 15 or int(raw) > maximum:
        raise ClientError(400, f"{name}: must be an integer from 0 to {maximum}")
    return int(raw)


def read_log(path: str, offset: int, length: int) -> tuple[str, int, int, int]:
    """Up to ``length`` bytes of the log at ``path`` from ``offset`` (-1: its last
    ``length`` bytes), as (text, where the text starts, where it ends, the log's size).
    Blocking."""
    if not path:
        return "", 0, 0, 0
    try:
        with open(path, "rb") as log:
            size = os.fstat(log.fileno()).st_size
            start = max(0, size - length) if offset < 0 else min(offset, size)
            log.seek(start)
            data = log.read(length)
    except FileNotFoundError:
        return "", 0, 0, 0
    return data.decode("utf-8", errors="replace"), start, start + len(data), size


@contextlib.contextmanager
def store_wait() -> Iterator[None]:
    """Bound a write's wait for an unavailable store; the write itself stays queued."""
    with anyio.move_on_after(STORE_WAIT) as scope:
        yield
    if scope.cancelled_caught:
        raise StoreUnavailable(
            f"the store did not answer within {STORE_WAIT:.0f} s; the change is queued "
            "and is applied when the store is back"
        )


def json_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _client_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ClientError)
    return json_error(exc.status, exc.message)


async def _invalid(request: Request, exc: Exception) -> Response:
    return json_error(400, str(exc))


async def _not_found(request: Request, exc: Exception) -> Response:
    return json_error(404, str(exc))


async def _conflict(request: Request, exc: Exception) -> Response:
    return json_error(409, str(exc))


FORWARDED = "x-orchestrator-forwarded"


async def _forwarded(request: Request, exc: Exception) -> Response:
    """The request, sent on to the daemon that drives its run, and that daemon's answer.

    Forwarded once: a daemon that finds the run driven elsewhere again answers 409.
    """
    assert isinstance(exc, DrivenElsewhere)
    if request.headers.get(FORWARDED) or not exc.api_url:
        return json_error(409, str(exc))
    headers = {FORWARDED: "1", "content-type": "application/json"}
    if "authorization" in request.headers:
        headers["authorization"] = request.headers["authorization"]
    token = request.cookies.get("orchestrator_token")
    if token and "authorization" not in headers:
        headers["authorization"] = f"Bearer {token}"
    url = exc.api_url + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.request(
                request.method,
                url,
                content=getattr(request.state, "raw_body", b""),
                headers=headers,
            )
    except httpx.HTTPError as error:
        return json_error(503, f"{exc}; its daemon at {exc.api_url} did not answer: {error}")
    return Response(
        answer.content,
        answer.status_code,
        media_type=answer.headers.get("content-type", "application/json"),
    )


async def _unavailable(request: Request, exc: Exception) -> Response:
    return json_error(503, f"{exc}; try again")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "no such route", 405: "method not allowed"}.get(exc.status_code, exc.detail)
    return json_error(exc.status_code, f"{message}: {request.method} {request.url.path}")


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("API request failed", method=request.method, path=request.url.path, exc_info=exc)
    return json_error(500, "internal error (see the daemon's log)")


def error_handlers() -> dict[Any, Any]:
    """Starlette's exception handlers for rule 1 of the API: each failure as JSON."""
    return {
        ClientError: _client_error,
        InvalidRequest: _invalid,
        NotFound: _not_found,
        Conflict: _conflict,
        DrivenElsewhere: _forwarded,
        StoreUnavailable: _unavailable,
        HTTPException: _http_error,
        Exception: _server_error,
    }
