"""The UI's routes on the API's app: pages, their data, one live stream per page, login.

Rules:
1. Every page has a stable URL (SPEC section 9); ``/ui/...`` serves what the pages'
   script asks for (the grid's data, a DAG list row), ``/static/...`` the script and
   styles shipped in the package. Nothing is loaded from outside the daemon.
2. With a token, ``/login`` takes it once and keeps it in an HttpOnly, SameSite=Strict
   cookie, which the API's guard accepts as it does the bearer header.
3. ``/ui/stream`` is the page's server-sent event stream: the changes of the hub
   (``_hub``) the page's filter takes, numbered, so a reconnect (``Last-Event-ID``)
   resumes or is told to reload; a 15 s heartbeat; with ``log=``, the log of one try as
   it grows. It ends when the client goes or the daemon stops.
"""

from __future__ import annotations

import codecs
import hmac
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, quote

import anyio
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from orchestrator.api import ControlPlane
from orchestrator.api._app import TOKEN_COOKIE
from orchestrator.api._http import ClientError, int_param
from orchestrator.errors import InvalidRequest, NotFound
from orchestrator.web._hub import ChangeHub
from orchestrator.web._pages import TEMPLATES, Pages, ViewQueries

__all__ = ["ui_routes"]

Handler = Callable[[Request], Awaitable[Response]]

HEARTBEAT = 15.0
_LOG_POLL = 0.25  # seconds between looks at a followed log's size
_LOG_CHUNK = 256 * 1024  # the most of a log one event carries


def ui_routes(
    control: ControlPlane, runs: ViewQueries, hub: ChangeHub, *, token: str = ""
) -> list[BaseRoute]:
    """The UI's routes, to mount beside the API's (``create_app(routes=...)``)."""
    pages = Pages(control, runs, login=bool(token))
    live = _Live(hub, runs)
    access = _Login(token)

    def page(handler: Handler) -> Handler:
        """A page's refusal as a page that names what is missing or wrong (a 404, a 400)."""

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except NotFound as exc:
                return pages.render(
                    request,
                    "error.html",
                    404,
                    heading="Not found",
                    message=str(exc),
                    title="Not found",
                )
            except (ClientError, InvalidRequest) as exc:
                status = exc.status if isinstance(exc, ClientError) else 400
                return pages.render(
                    request,
                    "error.html",
                    status,
                    heading="Bad request",
                    message=str(exc),
                    title="Bad request",
                )

        return answer

    return [
        Route("/", page(pages.dags)),
        Route("/import-errors", page(pages.import_errors_page)),
        Route("/dags/{dag_id}", page(pages.grid)),
        Route("/dags/{dag_id}/graph", page(pages.graph)),
        Route("/dags/{dag_id}/code", page(pages.code)),
        Route("/dags/{dag_id}/runs/{run_id}", page(pages.run_page)),
        Route("/dags/{dag_id}/runs/{run_id}/tasks/{task_id}", page(pages.task_page)),
        Route("/datasets", page(pages.datasets)),
        Route("/events", page(pages.events)),
        Route("/alerts", page(pages.alerts)),
        Route("/health", page(pages.health)),
        Route("/login", access.form, methods=["GET"]),
        Route("/login", access.login, methods=["POST"]),
        Route("/logout", access.logout, methods=["POST"]),
        Route("/ui/dag-row/{dag_id}", pages.dag_row),
        Route("/ui/grid/{dag_id}", pages.grid_data),
        Route("/ui/stream", live.stream),
        Mount("/static", StaticFiles(packages=[("orchestrator.web", "static")]), name="static"),
    ]


class _Login:
    """Rule 2."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def form(self, request: Request) -> Response:
        page = TEMPLATES.get_template("login.html").render(
            request=request,
            login=bool(self.token),
            import_errors=0,
            next=_safe_next(request.query_params.get("next")),
            failed=request.query_params.get("failed") == "1",
            title="Log in",
        )
        return Response(page, media_type="text/html")

    async def login(self, request: Request) -> Response:
        form = await _small_form(request)
        given = form.get("token", "")
        target = _safe_next(form.get("next", "/"))
        if not self.token:
            return RedirectResponse(target, status_code=303)
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return RedirectResponse(f"/login?failed=1&next={quote(target)}", status_code=303)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            TOKEN_COOKIE,
            self.token,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(TOKEN_COOKIE, path="/")
        return response


async def _small_form(request: Request, limit: int = 8192) -> dict[str, str]:
    """A URL-encoded form of at most ``limit`` bytes (the login form), first values only."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ClientError(413, f"the form is over the limit of {limit} bytes")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no host, no ``//``)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


class _Live:
    """Rule 3."""

    def __init__(self, hub: ChangeHub, runs: ViewQueries) -> None:
        self.hub = hub
        self.runs = runs

    async def stream(self, request: Request) -> Response:
        dag_id = request.query_params.get("dag_id") or None
        since_text = request.headers.get("last-event-id") or request.query_params.get("since")
        since = None
        if since_text:
            if not since_text.isdigit() or len(since_text) > 15:
                raise ClientError(400, "Last-Event-ID: must be an event number")
            since = int(since_text)
        follow = await self._log_target(request)
        kinds_text = request.query_params.get("kinds")
        kinds = frozenset(kinds_text.split(",")) if kinds_text else None
        return StreamingResponse(
            self._events(dag_id, since, kinds, follow),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _log_target(self, request: Request) -> dict[str, Any] | None:
        log = request.query_params.get("log")
        if not log:
            return None
        parts = log.split("/")
        if len(parts) != 5:
            raise ClientError(400, "log: must be DAG/RUN/TASK/MAP_INDEX/TRY")
        dag_id, run_id, task_id, map_text, try_text = parts
        if not map_text.lstrip("-").isdigit() or not try_text.isdigit():
            raise ClientError(400, "log: map index and try must be numbers")
        offset = int_param(request, "offset", 0, maximum=999_999_999_999_999)
        return {
            "key": (dag_id, run_id, task_id, int(map_text)),
            "try": int(try_text),
            "offset": offset,
            "path": "",
            "decoder": codecs.getincrementaldecoder("utf-8")(errors="replace"),
        }

    async def _events(
        self,
        dag_id: str | None,
        since: int | None,
        kinds: frozenset[str] | None,
        follow: dict[str, Any] | None,
    ) -> AsyncIterator[str]:
        with self.hub.subscribe(dag_id, since, kinds) as feed:
            yield f"retry: 2000\nid: {self.hub.version if since is None else since}\n\n"
            quiet = 0.0
            while not self.hub.closed:
                wait = _LOG_POLL if follow is not None else HEARTBEAT
                with anyio.move_on_after(wait):
                    await feed.wake.wait()
                changes, reload = feed.take()
                if self.hub.closed:
                    return
                if reload:
                    yield f"id: {self.hub.version}\nevent: reload\ndata: {{}}\n\n"
                    quiet = 0.0
                elif changes:
                    yield f"id: {changes[-1]['id']}\ndata: {json.dumps(changes)}\n\n"
                    quiet = 0.0
                if follow is not None:
                    text = await self._log_more(follow)
                    if text:
                        yield f"event: log\ndata: {json.dumps(text)}\n\n"
                        quiet = 0.0
                quiet += wait
                if quiet >= HEARTBEAT:
                    yield ": ping\n\n"
                    quiet = 0.0

    async def _log_more(self, follow: dict[str, Any]) -> dict[str, Any] | None:
        if not follow["path"]:
            dag_id, run_id, task_id, map_index = follow["key"]
            for attempt in await self.runs.tries(dag_id, run_id, task_id, map_index):
                if attempt.try_number == follow["try"]:
                    follow["path"] = attempt.log_path
            if not follow["path"]:
                return None
        path, offset = follow["path"], follow["offset"]
        chunk = await anyio.to_thread.run_sync(_read_from, path, offset)
        if chunk is None:
            return None
        data, size = chunk
        follow["offset"] = offset + len(data)
        text = follow["decoder"].decode(data)  # a character cut at the end waits for the rest
        return {"offset": offset, "text": text, "size": size}


def _read_from(path: str, offset: int) -> tuple[bytes, int] | None:
    """What the log at ``path`` has past ``offset`` (at most a chunk), and its size."""
    try:
        size = os.stat(path).st_size
        if size <= offset:
            return None
        with open(path, "rb") as log:
            log.seek(offset)
            return log.read(min(size - offset, _LOG_CHUNK)), size
    except FileNotFoundError:
        return None
