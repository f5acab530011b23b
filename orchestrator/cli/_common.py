"""What every command group uses: usage errors, output, arguments, the store, the DAGs."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import anyio

from orchestrator._settings import Settings
from orchestrator.authoring._dag import DAG
from orchestrator.core import RunRecord
from orchestrator.dagfiles._loader import DagBag, load_dags
from orchestrator.dagfiles._plugins import plugin_errors, use_plugins
from orchestrator.store import Store, open_store

__all__ = [
    "Subcommands",
    "UsageError",
    "command",
    "date_arg",
    "fail",
    "find_dag",
    "find_dag_in_bag",
    "json_arg",
    "load_dags_of",
    "print_json",
    "resolve_run",
    "table",
    "via_daemon",
    "with_store",
]

T = TypeVar("T")
Subcommands = Any  # argparse's _SubParsersAction, private in typeshed


class UsageError(Exception):
    """Bad usage or input: printed, exit code 2."""


def fail(message: str) -> NoReturn:
    raise UsageError(message)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line.rstrip())
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def json_arg(text: str | None, flag: str, *, want_object: bool = True) -> Any:
    if text is None:
        return {} if want_object else None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{flag}: not valid JSON: {exc}")
    if want_object and not isinstance(value, dict):
        fail(f"{flag}: must be a JSON object")
    return value


def date_arg(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{flag}: not an ISO 8601 date/time: {text!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def with_store(settings: Settings, op: Callable[[Store], Awaitable[T]]) -> T:
    async def body() -> T:
        async with open_store(settings.db_url) as store:
            return await op(store)

    return anyio.run(body)


def load_dags_of(settings: Settings, *, report: bool = True) -> DagBag:
    if "s3://" in (settings.dags[:5], settings.plugins[:5]):
        from orchestrator.dagfiles._s3 import s3_mirrors

        for mirror in s3_mirrors(settings):
            with_store(settings, lambda store, m=mirror: m.sync_with(store, settings))  # type: ignore[misc]
    use_plugins(settings.plugins_location)
    bag = load_dags(settings.dags_folder, timeout=settings.dag_import_timeout)
    if report:
        for name, why in plugin_errors().items():
            print(f"plugin error: entry point {name!r}: {why}", file=sys.stderr)
    if report:
        for err in bag.import_errors:
            print(f"import error: {err.file}: {err.message}", file=sys.stderr)
    return bag


def find_dag(settings: Settings, dag_id: str) -> DAG:
    return find_dag_in_bag(settings, dag_id)[0]


def find_dag_in_bag(settings: Settings, dag_id: str) -> tuple[DAG, DagBag]:
    """The DAG, and every DAG of the folder (a run a task triggers takes its DAG's schedule)."""
    bag = load_dags_of(settings, report=False)
    dag = bag.get(dag_id)
    if dag is None:
        for err in bag.import_errors:
            print(f"import error: {err.file}: {err.message}", file=sys.stderr)
        fail(f"DAG {dag_id!r} not found in {settings.dags}")
    return dag, bag


async def resolve_run(store: Store, run_id: str, dag_id: str | None) -> RunRecord:
    return await store.resolve_run(run_id, dag_id, hint="pass --dag")


def command(
    sub: Subcommands, name: str, func: Callable[..., int], **kw: Any
) -> argparse.ArgumentParser:
    """Add the subcommand ``name`` running ``func(settings, args)``."""
    parser: argparse.ArgumentParser = sub.add_parser(name, **kw)
    parser.set_defaults(func=func)
    return parser


def via_daemon(settings: Settings, method: str, path: str, body: Any = None) -> Any | None:
    """The API's answer if a daemon is up (a 4xx fails the command), else None."""
    import httpx

    from orchestrator.cli._client import find_daemon

    client = find_daemon(settings)
    if client is None:
        return None
    try:
        status, doc = client.request(method, path, body)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # the request was never sent
        print(f"daemon at {client.url} not reachable ({exc}); using the store", file=sys.stderr)
        return None
    except httpx.TransportError as exc:
        # Sent but unanswered: the daemon may still apply it, so writing to the store as
        # well could make a second run.
        fail(
            f"daemon at {client.url} did not answer ({exc!r}); the change may still be "
            "applied: check with `orchestrator runs list`"
        )
    if status >= 400:
        fail(str(doc.get("error", doc)) if isinstance(doc, dict) else str(doc))
    return doc
