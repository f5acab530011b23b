"""The built-in sensors of SPEC section 4, Airflow's arguments and meanings.

Each is a few lines on :class:`BaseSensor`: its ``poke`` says whether the condition
holds; the base waits, stores and times out. S3 and HTTP pokes share the process's
clients (``resources._clients``): one aiobotocore client per connection, one httpx
client.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

import anyio

from orchestrator._clock import SystemClock
from orchestrator.errors import DagDefinitionError, FailTask
from orchestrator.resources._connections import Connection
from orchestrator.resources._services import current_services
from sensors._base import BaseSensor

__all__ = [
    "DateTimeSensor",
    "ExternalTaskSensor",
    "FileSensor",
    "HttpSensor",
    "S3KeySensor",
    "TimeDeltaSensor",
]


def _services() -> Any:
    services = current_services()
    if services is None:
        raise RuntimeError("a sensor pokes inside a try (no services here)")
    return services


class FileSensor(BaseSensor):
    """A file (or a glob pattern's match) exists; ``recursive`` lets ``**`` match folders."""

    template_fields: ClassVar[Sequence[str]] = ("filepath",)

    def __init__(self, *, filepath: str, recursive: bool = False, **kwargs: Any) -> None:
        kwargs.pop("fs_conn_id", None)  # Airflow's filesystem connection: paths are local here
        super().__init__(**kwargs)
        self.filepath = filepath
        self.recursive = bool(recursive)

    async def poke(self, context: dict[str, Any]) -> bool:
        return await anyio.to_thread.run_sync(self._exists)

    def _exists(self) -> bool:
        path = os.path.expanduser(str(self.filepath))
        if glob.has_magic(path):
            return any(True for _ in glob.iglob(path, recursive=self.recursive))
        return os.path.exists(path)


def _aware(value: datetime | str, where: str) -> datetime:
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(when, datetime):
        raise FailTask(f"{where}: target_time must be a datetime or ISO 8601 text")
    return when if when.tzinfo is not None else when.astimezone()


class DateTimeSensor(BaseSensor):
    """The time is ``target_time`` or later (a datetime, or ISO text that may be templated)."""

    template_fields: ClassVar[Sequence[str]] = ("target_time",)

    def __init__(self, *, target_time: datetime | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target_time = target_time

    async def poke(self, context: dict[str, Any]) -> bool:
        return SystemClock().now() >= _aware(self.target_time, self._where)

    def ready_at(self, context: dict[str, Any]) -> datetime | None:
        return _aware(self.target_time, self._where)


class TimeDeltaSensor(BaseSensor):
    """The run's data interval ended at least ``delta`` ago (Airflow's meaning)."""

    def __init__(self, *, delta: timedelta, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(delta, timedelta):
            raise DagDefinitionError(f"{self._where}: delta must be a timedelta")
        self.delta = delta

    async def poke(self, context: dict[str, Any]) -> bool:
        return SystemClock().now() >= self.ready_at(context)

    def ready_at(self, context: dict[str, Any]) -> datetime:
        end: datetime = context["data_interval_end"]
        return end + self.delta


class S3KeySensor(BaseSensor):
    """Every key in ``bucket_key`` exists (``s3://bucket/key`` or a key in ``bucket_name``).

    ``wildcard_match``: the key is a glob, matched against a listing of its prefix;
    ``use_regex``: a regular expression, matched against a listing of the bucket;
    ``check_fn(objects)``: called with the matched objects' metadata (``Key``, ``Size``,
    ``LastModified``...), must say True too.
    """

    template_fields: ClassVar[Sequence[str]] = ("bucket_key", "bucket_name")

    def __init__(
        self,
        *,
        bucket_key: str | Sequence[str],
        bucket_name: str | None = None,
        wildcard_match: bool = False,
        use_regex: bool = False,
        check_fn: Callable[[list[dict[str, Any]]], bool] | None = None,
        aws_conn_id: str = "aws_default",
        verify: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if wildcard_match and use_regex:
            raise DagDefinitionError(
                f"{self._where}: wildcard_match and use_regex exclude each other"
            )
        self.bucket_key = bucket_key
        self.bucket_name = bucket_name
        self.wildcard_match = bool(wildcard_match)
        self.use_regex = bool(use_regex)
        self.check_fn = check_fn
        self.aws_conn_id = aws_conn_id

    def _keys(self) -> list[tuple[str, str]]:
        keys = [self.bucket_key] if isinstance(self.bucket_key, str) else list(self.bucket_key)
        found = []
        for key in keys:
            if key.startswith("s3://"):
                bucket, _, name = key.removeprefix("s3://").partition("/")
            elif self.bucket_name:
                bucket, name = self.bucket_name, key
            else:
                raise FailTask(f"{self._where}: {key!r} is not s3://bucket/key and no bucket_name")
            found.append((bucket, name))
        return found

    async def poke(self, context: dict[str, Any]) -> bool:
        from orchestrator.resources._aws import connection_kwargs  # aiobotocore, when used

        services = _services()
        client = await services.clients.aws(
            "s3",
            self.aws_conn_id,
            lambda: connection_kwargs(services.store, services.settings, self.aws_conn_id),
        )
        matched: list[dict[str, Any]] = []
        for bucket, key in self._keys():
            objects = await self._match(client, bucket, key)
            if not objects:
                return False
            matched += objects
        return self.check_fn(matched) if self.check_fn is not None else True

    async def _match(self, client: Any, bucket: str, key: str) -> list[dict[str, Any]]:
        if not self.wildcard_match and not self.use_regex:
            try:
                head = await client.head_object(Bucket=bucket, Key=key)
            except client.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return []
                raise
            return [{"Key": key, "Size": head.get("ContentLength"), **head}]
        if self.wildcard_match:
            prefix = re.split(r"[*?\[]", key, maxsplit=1)[0]
            wanted: Callable[[str], bool] = lambda name: fnmatch.fnmatchcase(name, key)  # noqa: E731
        else:
            prefix, pattern = "", re.compile(key)
            wanted = lambda name: pattern.fullmatch(name) is not None  # noqa: E731
        matched = []
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            matched += [o for o in page.get("Contents", []) if wanted(o["Key"])]
        return matched


# Answers that mean "not yet" rather than an error: HttpSensor keeps waiting on them.
_NOT_YET = frozenset({404, 408, 425, 429, 500, 502, 503, 504})


class HttpSensor(BaseSensor):
    """An HTTP endpoint answers as wanted: ``response_check(response)`` says True, or (without
    one) any 2xx. 404, 429 and 5xx answers mean "not yet"; other errors fail the poke.

    The URL is the connection's host (with its scheme, or ``schema`` as the scheme, and
    its port) joined with ``endpoint``.
    """

    template_fields: ClassVar[Sequence[str]] = ("endpoint", "request_params", "headers")

    def __init__(
        self,
        *,
        endpoint: str,
        http_conn_id: str = "http_default",
        method: str = "GET",
        request_params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        response_check: Callable[..., bool] | None = None,
        extra_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        unknown = set(extra_options or {}) - {"timeout", "follow_redirects", "allow_redirects"}
        if unknown:
            raise DagDefinitionError(
                f"{self._where}: extra_options may hold timeout and follow_redirects, "
                f"not {', '.join(sorted(unknown))}"
            )
        self.endpoint = endpoint
        self.http_conn_id = http_conn_id
        self.method = method.upper()
        self.request_params = dict(request_params or {})
        self.headers = dict(headers or {})
        self.response_check = response_check
        self.extra_options = dict(extra_options or {})
        self._resolved: str | None = None
        self._last_status: int | None = None

    async def _url(self) -> str:
        """The URL, resolved at the try's first poke and kept for its wait (the hub pokes
        the same rendered sensor each time)."""
        if self._resolved is None:
            self._resolved = await self._resolve()
        return self._resolved

    async def _resolve(self) -> str:
        conn = await Connection.aget(self.http_conn_id)
        host = conn.host or ""
        if "://" not in host:
            scheme = conn.schema or "http"
            host = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
        return host.rstrip("/") + "/" + str(self.endpoint).lstrip("/")

    async def poke(self, context: dict[str, Any]) -> bool:
        import aiohttp

        session = _services().clients.http()
        options = self.extra_options
        follow = bool(options.get("follow_redirects", options.get("allow_redirects", True)))
        timeout = float(options.get("timeout", 30.0))
        params = self.request_params
        query = self.method in ("GET", "HEAD", "DELETE")
        url = await self._url()
        try:
            async with session.request(
                self.method,
                url,
                params=_query(params) if query and params else None,
                json=params if not query and params else None,
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=follow,
            ) as answer:
                status, body = answer.status, await answer.read()
                where, headers = str(answer.url), list(answer.headers.items())
        except TimeoutError:
            raise RuntimeError(f"{self.method} {url}: no answer within {timeout} s") from None
        if status in _NOT_YET:
            if status != self._last_status:  # a line per change, not per poke
                print(f"{self.method} {where}: {status}, not yet")
            self._last_status = status
            return False
        if status >= 400:
            raise FailTask(f"{self.method} {where} answered {status}")
        if self.response_check is None:
            return True
        response = _response(self.method, where, status, headers, body)
        return bool(_call_check(self.response_check, response, context))


def _query(params: dict[str, Any]) -> list[tuple[str, str]]:
    """Query parameters as httpx (and requests) encode them: a list repeats its key,
    booleans are ``true``/``false``, None is left out."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is None:
                continue
            text = ("true" if item else "false") if isinstance(item, bool) else str(item)
            pairs.append((str(key), text))
    return pairs


def _response(method: str, url: str, status: int, headers: Any, body: bytes) -> Any:
    """The answer as an ``httpx.Response`` (``status_code``, ``json()``, ``text``,
    ``headers``), what ``response_check`` is given, like Airflow's ``requests.Response``."""
    import httpx

    return httpx.Response(status, headers=headers, content=body, request=httpx.Request(method, url))


def _call_check(check: Callable[..., Any], response: Any, context: dict[str, Any]) -> Any:
    """Airflow calls ``response_check(response, **context)`` when it takes keywords."""
    import inspect

    params = inspect.signature(check).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return check(response, **context)
    wanted = {k: v for k, v in context.items() if k in params}
    return check(response, **wanted)


class ExternalTaskSensor(BaseSensor):
    """Another DAG's task (or, without ``external_task_id``, its run) reached one of
    ``allowed_states``, in its run of the same logical date (or ``execution_delta``
    earlier, or the date ``execution_date_fn(logical_date)`` gives). A state in
    ``failed_states`` fails the sensor (skipped with ``soft_fail``). A state change of the
    other DAG's tasks in the same daemon pokes it at once."""

    def __init__(
        self,
        *,
        external_dag_id: str,
        external_task_id: str | None = None,
        allowed_states: Sequence[str] | None = None,
        failed_states: Sequence[str] | None = None,
        execution_delta: timedelta | None = None,
        execution_date_fn: Callable[..., datetime] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if execution_delta is not None and execution_date_fn is not None:
            raise DagDefinitionError(
                f"{self._where}: give execution_delta or execution_date_fn, not both"
            )
        self.external_dag_id = external_dag_id
        self.external_task_id = external_task_id
        self.allowed_states = set(allowed_states or ["success"])
        self.failed_states = set(failed_states or [])
        self.execution_delta = execution_delta
        self.execution_date_fn = execution_date_fn

    def wakes_on(self) -> str | None:
        return self.external_dag_id

    def _date(self, context: dict[str, Any]) -> datetime:
        logical: datetime = context["logical_date"]
        if self.execution_delta is not None:
            return logical - self.execution_delta
        if self.execution_date_fn is not None:
            when: datetime = _call_check(self.execution_date_fn, logical, context)
            return when
        return logical

    async def poke(self, context: dict[str, Any]) -> bool:
        store = _services().store
        when = self._date(context)
        runs = [
            r for r in await store.list_runs(dag_id=self.external_dag_id) if r.logical_date == when
        ]
        if not runs:
            print(f"no run of {self.external_dag_id!r} at {when.isoformat()} yet")
            return False
        run = runs[0]
        if self.external_task_id is None:
            state = str(run.state)
        else:
            tis = {ti.task_id: ti for ti in await store.task_instances(run.dag_id, run.run_id)}
            ti = tis.get(self.external_task_id)
            state = str(ti.state) if ti is not None else "none"
        what = f"{self.external_dag_id}.{self.external_task_id or '(run)'} in {run.run_id!r}"
        if state in self.failed_states:
            message = f"{what} is {state}"
            if self.soft_fail:
                from orchestrator.errors import SkipTask

                raise SkipTask(message)
            raise FailTask(message)
        print(f"{what} is {state}")
        return state in self.allowed_states
