"""The HTTP API in process (httpx's ASGI transport): a control plane, the store's reads."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from structlog.testing import capture_logs

from orchestrator import DAG, Dataset
from orchestrator.api import ControlPlane, create_app
from orchestrator.api import _http as http_module
from orchestrator.api._server import host_names
from orchestrator.core import RunRecord, RunState, TaskInstanceRecord, TaskState, TryRecord
from orchestrator.daemon._datasets import external_event
from orchestrator.dagfiles._loader import ImportErrorRecord
from orchestrator.errors import Conflict, InvalidRequest, NotFound, StoreUnavailable
from orchestrator.operators import EmptyOperator
from orchestrator.store import DatasetRefs, Store, open_store
from triggers._dataset import DatasetEvent
from triggers._timetable import RunInfo

T0 = datetime(2026, 2, 1, tzinfo=UTC)
JSON = {"Content-Type": "application/json"}


@dataclass
class Control:
    """A control plane the test holds the strings of."""

    dags: Mapping[str, DAG] = field(default_factory=dict)
    import_errors: Sequence[ImportErrorRecord] = ()
    paused: dict[str, bool] = field(default_factory=dict)
    triggered: list[dict[str, Any]] = field(default_factory=list)
    fail_with: BaseException | None = None
    hang: bool = False
    updates: list[DatasetEvent] = field(default_factory=list)
    put: list[object] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    actions: list[tuple[Any, ...]] = field(default_factory=list)

    def is_paused(self, dag_id: str) -> bool:
        return self.paused.get(dag_id, False)

    def next_run(self, dag_id: str) -> RunInfo | None:
        return RunInfo(T0, T0, T0) if dag_id == "d" else None

    def health(self) -> dict[str, Any]:
        return {"dags": len(self.dags), "import_errors": 0, "running_tasks": 3}

    def pending_dataset_events(self, dag_id: str) -> list[DatasetEvent]:
        return [DatasetEvent("e1", "s3://b/a", T0)]

    async def metrics_text(self) -> bytes:
        return b"orchestrator_dags 1.0\n"

    async def trigger(
        self,
        dag_id: str,
        *,
        conf: dict[str, Any],
        run_id: str | None,
        logical_date: datetime | None,
    ) -> RunRecord:
        if self.hang:
            await anyio.sleep_forever()
        if self.fail_with is not None:
            raise self.fail_with
        self.triggered.append({"conf": conf, "run_id": run_id, "logical_date": logical_date})
        return RunRecord(
            dag_id, run_id or "manual__x", RunState.QUEUED, "manual", T0, T0, conf=conf
        )

    async def set_paused(self, dag_id: str, paused: bool) -> None:
        self.paused[dag_id] = paused

    async def update_dataset(self, uri: object, extra: object) -> tuple[DatasetEvent, list[str]]:
        event = external_event(uri, extra, T0)  # the daemon's own checks
        self.updates.append(event)
        return event, ["consumer"]

    async def put_events(self, entries: object) -> dict[str, Any]:
        if not isinstance(entries, list):
            raise InvalidRequest("Entries: must be a list")
        self.put.extend(entries)
        return {
            "FailedEntryCount": 0,
            "Entries": [{"EventId": str(i)} for i in range(len(entries))],
        }

    async def list_alerts(
        self, *, state: str | None = None, dag_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        return [a for a in self.alerts if state in (None, a["state"])][:limit]

    async def retry_alert(self, alert_id: str) -> dict[str, Any]:
        for alert in self.alerts:
            if alert["id"] == alert_id:
                if alert["state"] != "failed":
                    raise Conflict(f"alert {alert_id!r} is {alert['state']}, not failed")
                alert["state"] = "pending"
                return alert
        raise NotFound(f"alert {alert_id!r} not found")

    async def deadline_misses(
        self, *, dag_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        return []

    async def clear_tasks(
        self,
        dag_id: str,
        run_id: str,
        task_ids: Collection[str],
        *,
        map_indexes: Collection[int] = (),
        downstream: bool = False,
    ) -> list[str]:
        self.actions.append(
            ("clear", dag_id, run_id, list(task_ids), list(map_indexes), downstream)
        )
        if "x" in task_ids:
            raise InvalidRequest(f"DAG {dag_id!r} has no task(s) x")
        return sorted(task_ids)

    async def mark_run(self, dag_id: str, run_id: str, state: str) -> RunRecord:
        self.actions.append(("mark_run", dag_id, run_id, state))
        return RunRecord(dag_id, run_id, RunState(state), "manual", T0, T0)

    async def mark_task(
        self, dag_id: str, run_id: str, task_id: str, map_index: int, state: str
    ) -> TaskInstanceRecord:
        self.actions.append(("mark_task", dag_id, run_id, task_id, map_index, state))
        if state == "failed" and task_id == "a":
            raise Conflict("task 'a' is running: only a finished instance is marked")
        return TaskInstanceRecord(dag_id, run_id, task_id, TaskState(state), map_index=map_index)


def one_dag() -> DAG:
    with DAG("d", tags=["t"]) as dag:
        EmptyOperator(task_id="a") >> EmptyOperator(task_id="b")
    return dag


@asynccontextmanager
async def serving(
    control: ControlPlane, db_url: str, token: str = ""
) -> AsyncIterator[tuple[httpx.AsyncClient, Store]]:
    """A client of the API on ``control`` and a fresh store (its RunQueries)."""
    async with open_store(db_url) as store:
        app = create_app(control, store, token=token)
        # As under uvicorn: a bug is answered 500; the re-raise after it goes to the server.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
            yield api, store


async def test_health_and_dags(db_url: str) -> None:
    """GET /health, /dags and /dags/{id} answer from the control plane."""
    control = Control(dags={"d": one_dag()}, paused={"d": True})
    async with serving(control, db_url) as (api, _):
        health = (await api.get("/api/v1/health")).json()
        listed = (await api.get("/api/v1/dags")).json()
        one = (await api.get("/api/v1/dags/d")).json()
    assert health == {"status": "ok", "dags": 1, "import_errors": 0, "running_tasks": 3}
    assert listed == [
        {"dag_id": "d", "file": "", "schedule": "None", "is_paused": True, "tags": ["t"]}
    ]
    assert one["tasks"] == ["a", "b"]
    assert one["next_run"]["logical_date"] == "2026-02-01T00:00:00.000000+00:00"


async def test_the_token_guards_every_route_but_health(db_url: str) -> None:
    """401 without or with a wrong bearer token; health stays open."""
    control = Control(dags={"d": one_dag()})
    async with serving(control, db_url, token="s3cret") as (api, _):
        assert (await api.get("/api/v1/health")).status_code == 200
        for path in ("/api/v1/dags", "/api/v1/dags/d", "/api/v1/import-errors", "/metrics"):
            assert (await api.get(path)).status_code == 401, path
            wrong = await api.get(path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401, path
            right = await api.get(path, headers={"Authorization": "Bearer s3cret"})
            assert right.status_code == 200, path


async def test_a_trigger_passes_the_parsed_body_to_the_control_plane(db_url: str) -> None:
    """201 with the run; conf, run_id and logical_date arrive parsed."""
    control = Control(dags={"d": one_dag()})
    async with serving(control, db_url) as (api, _):
        response = await api.post(
            "/api/v1/dags/d/runs",
            json={"conf": {"x": 1}, "run_id": "r1", "logical_date": "2026-02-01T00:00:00"},
        )
    assert response.status_code == 201
    assert response.json()["run_id"] == "r1"
    assert control.triggered == [{"conf": {"x": 1}, "run_id": "r1", "logical_date": T0}]


@pytest.mark.parametrize(
    ("method", "path", "kw", "status", "message"),
    [
        ("POST", "/api/v1/dags/nope/runs", {"json": {}}, 404, "DAG 'nope' not found"),
        ("POST", "/api/v1/dags/d/runs", {"content": b"{no", "headers": JSON}, 400, "malformed"),
        ("POST", "/api/v1/dags/d/runs", {"json": {"conf": [1]}}, 400, "conf: must be a JSON"),
        ("POST", "/api/v1/dags/d/runs", {"json": [1]}, 400, "the body must be a JSON object"),
        ("POST", "/api/v1/dags/d/runs", {"json": {"run_id": " "}}, 400, "run_id: must be"),
        ("POST", "/api/v1/dags/d/runs", {"json": {"logical_date": 5}}, 400, "logical_date"),
        ("POST", "/api/v1/dags/d/runs", {"json": {"colour": 1}}, 400, "unknown field(s): colour"),
        ("PATCH", "/api/v1/dags/d", {"json": {"is_paused": "yes"}}, 400, "is_paused: must be"),
        ("GET", "/api/v1/dags/d/runs?limit=-1", {}, 400, "limit: must be an integer from 0"),
        ("GET", "/api/v1/nowhere", {}, 404, "no such route: GET /api/v1/nowhere"),
        ("DELETE", "/api/v1/dags/d", {"headers": JSON}, 405, "method not allowed"),
    ],
)
async def test_bad_requests_get_a_4xx_naming_the_field_and_change_nothing(
    db_url: str, method: str, path: str, kw: dict[str, Any], status: int, message: str
) -> None:
    """Every client mistake is a JSON 4xx; the control plane is never asked to act."""
    control = Control(dags={"d": one_dag()})
    async with serving(control, db_url) as (api, _):
        response = await api.request(method, path, **kw)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert control.triggered == []
    assert control.paused == {}


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (Conflict("DAG 'd' already has a run 'r1'"), 409, "already has a run 'r1'"),
        (StoreUnavailable("connection lost"), 503, "connection lost; try again"),
    ],
)
async def test_control_plane_refusals_map_to_statuses(
    db_url: str, error: BaseException, status: int, message: str
) -> None:
    """A taken run id is 409; an unreachable store 503."""
    control = Control(dags={"d": one_dag()}, fail_with=error)
    async with serving(control, db_url) as (api, _):
        response = await api.post("/api/v1/dags/d/runs", json={"run_id": "r1"})
    assert response.status_code == status
    assert message in response.json()["error"]


async def test_a_write_waiting_on_the_store_answers_503(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trigger the store does not take in time: 503, the change stays queued."""
    monkeypatch.setattr(http_module, "STORE_WAIT", 0.05)
    control = Control(dags={"d": one_dag()}, hang=True)
    async with serving(control, db_url) as (api, _):
        response = await api.post("/api/v1/dags/d/runs", json={})
    assert response.status_code == 503
    assert "the change is queued" in response.json()["error"]


async def test_an_unexpected_failure_is_a_500_without_details_and_is_logged(db_url: str) -> None:
    """A bug answers 500 with no traceback in the body; the log has it."""
    control = Control(dags={"d": one_dag()}, fail_with=RuntimeError("secret detail"))
    with capture_logs() as logs:
        async with serving(control, db_url) as (api, _):
            response = await api.post("/api/v1/dags/d/runs", json={})
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (see the daemon's log)"}
    assert any(entry["event"] == "API request failed" for entry in logs)


async def test_pause_goes_to_the_control_plane(db_url: str) -> None:
    """PATCH is_paused sets the flag and answers with the DAG."""
    control = Control(dags={"d": one_dag()})
    async with serving(control, db_url) as (api, _):
        response = await api.patch("/api/v1/dags/d", json={"is_paused": True})
    assert response.json()["is_paused"] is True
    assert control.paused == {"d": True}


async def test_run_views_read_the_store(db_url: str, tmp_path: Path) -> None:
    """Runs of a DAG, one run with its tasks, a task's tries with their log text."""
    log_file = tmp_path / "attempt=1.log"
    log_file.write_text("hello from the task\n")
    control = Control(dags={"d": one_dag()})
    async with serving(control, db_url) as (api, store):
        await fill(store, log_file)
        runs = (await api.get("/api/v1/dags/d/runs")).json()
        run = (await api.get("/api/v1/runs/r1")).json()
        logs = (await api.get("/api/v1/runs/r1/tasks/a/logs", params={"try": 1})).json()
        missing = await api.get("/api/v1/runs/r1/tasks/a/logs", params={"try": 2})
        metrics = await api.get("/metrics")
    assert [r["run_id"] for r in runs] == ["r1"]
    assert [(t["task_id"], t["state"]) for t in run["tasks"]] == [("a", "success")]
    assert logs["tries"][0]["log"] == "hello from the task\n"
    assert missing.status_code == 404
    assert metrics.text == "orchestrator_dags 1.0\n"


async def test_the_logs_of_a_task_the_run_does_not_have_are_404(
    db_url: str, tmp_path: Path
) -> None:
    """Not 200 with no tries: the task is named in the error."""
    control = Control(dags={"d": one_dag()})
    async with serving(control, db_url) as (api, store):
        await fill(store, tmp_path / "attempt=1.log")
        response = await api.get("/api/v1/runs/r1/tasks/nope/logs")
    assert response.status_code == 404
    assert "has no task 'nope'" in response.json()["error"]


DEEP = b'{"conf": ' + b'{"a": ' * 10_000 + b"1" + b"}" * 10_001


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"conf": {"x": NaN}}', 400, "NaN is not a JSON number"),
        (b'{"conf": {"x": -Infinity}}', 400, "-Infinity is not a JSON number"),
        (b'{"conf": {"x": ' + b"9" * 4_301 + b"}}", 400, "malformed JSON body"),
        (b'{"conf": {"x": ' + b"9" * 1_200 + b"}}", 400, "conf.x: integer longer than"),
        (DEEP, 400, "malformed JSON body: nested too deeply"),
        (b'{"conf": ' + b'{"a": ' * 70 + b"1" + b"}" * 71, 400, "nested deeper than 64"),
        (b'{"conf": {"s": "a\\ud800b"}}', 400, "conf.s: string holds a lone surrogate"),
        (b'{"conf": {"a\\udfffb": 1}}', 400, "lone surrogate"),
        (b'{"run_id": "a\\u0000b"}', 400, "run_id: must be 1 to 200 characters"),
        (b'{"run_id": "a\\ud800b"}', 400, "run_id: must be"),
        (b'{"run_id": "' + b"r" * 201 + b'"}', 400, "run_id: must be"),
        (b'{"run_id": "x; touch /tmp/INJECTED #"}', 400, "run_id: must be"),
        (b'{"run_id": "../../etc"}', 400, "run_id: must be"),
        (b'{"run_id": ""}', 400, "run_id: must be"),
        (b'{"run_id": 7}', 400, "run_id: must be"),
        (b'{"logical_date": "9999-12-31T23:59:59-14:00"}', 400, "logical_date: must lie"),
        (b'{"logical_date": "0001-01-01"}', 400, "logical_date: must lie between 1900"),
        (b'{"logical_date": "2026-13-01"}', 400, "not an ISO 8601"),
        (b'{"conf": {"big": "' + b"x" * 1_048_576 + b'"}}', 413, "over the limit of 1048576"),
    ],
)
async def test_hostile_trigger_bodies_are_4xx_and_trigger_nothing(
    db_url: str, body: bytes, status: int, message: str
) -> None:
    """Non-standard JSON, overlong numbers, deep nesting, surrogates, ids that are not names
    and dates at the calendar's ends: a 4xx naming the field, never a 500 or a run."""
    control = Control(dags={"d": one_dag()})
    async with serving(control, db_url) as (api, _):
        response = await api.post("/api/v1/dags/d/runs", content=body, headers=JSON)
    assert (response.status_code, message in response.json()["error"]) == (status, True), (
        response.text[:300]
    )
    assert control.triggered == []


async def test_a_chunked_body_over_the_limit_is_413(db_url: str) -> None:
    """A body with no Content-Length is counted as it arrives."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"conf": {"x": "'
        for _ in range(20):
            yield b"x" * 65_536
        yield b'"}}'

    control = Control(dags={"d": one_dag()})
    async with serving(control, db_url) as (api, _):
        response = await api.post("/api/v1/dags/d/runs", content=chunks(), headers=JSON)
    assert response.status_code == 413
    assert control.triggered == []


@pytest.mark.parametrize("limit", ["99999999999999999999", "10001", "-1", "1e3", "\u00b2"])
async def test_query_integers_are_bounded(db_url: str, limit: str) -> None:
    """A 20-digit ?limit is a 400, not an overflow in the store's driver."""
    async with serving(Control(dags={"d": one_dag()}), db_url) as (api, _):
        response = await api.get("/api/v1/dags/d/runs", params={"limit": limit})
    assert response.status_code == 400
    assert "limit: must be an integer from 0 to 10000" in response.json()["error"]


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({"Content-Type": "text/plain"}, 415, "needs Content-Type: application/json"),
        ({}, 415, "needs Content-Type: application/json"),
        ({**JSON, "Origin": "https://evil.example"}, 403, "cross-origin write"),
        ({**JSON, "Host": "evil.example:8080"}, 400, "Host 'evil.example' is not a name"),
    ],
)
async def test_cross_site_writes_are_refused(
    db_url: str, headers: dict[str, str], status: int, message: str
) -> None:
    """What a web page can send without a CORS preflight (a text/plain POST, a form), from
    its own origin or through a rebound DNS name, triggers nothing."""
    control = Control(dags={"d": one_dag()})
    async with open_store(db_url) as store:
        app = create_app(control, store, hosts=frozenset({"127.0.0.1", "localhost", "::1"}))
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as api:
            refused = await api.post("/api/v1/dags/d/runs", content=b"{}", headers=headers)
            same_origin = await api.post(
                "/api/v1/dags/d/runs",
                content=b"{}",
                headers={**JSON, "Origin": "http://127.0.0.1:8080"},
            )
            rebound_read = await api.get("/api/v1/dags", headers={"Host": "evil.example"})
            v6 = await api.get("/api/v1/dags", headers={"Host": "[::1]:8080"})
    assert (refused.status_code, message in refused.json()["error"]) == (status, True)
    assert same_origin.status_code == 201
    assert rebound_read.status_code == 400
    assert v6.status_code == 200
    assert len(control.triggered) == 1


@pytest.mark.parametrize(
    ("bound", "allowed", "names"),
    [
        ("127.0.0.1", "", {"127.0.0.1", "localhost", "::1"}),
        ("::1", "", {"127.0.0.1", "localhost", "::1"}),
        ("127.0.0.1", "orch.internal", {"127.0.0.1", "localhost", "::1", "orch.internal"}),
        ("0.0.0.0", "", None),
        ("0.0.0.0", "Orch.Example.com, ", {"orch.example.com", "127.0.0.1", "localhost", "::1"}),
        ("10.1.2.3", "", {"10.1.2.3"}),
    ],
)
def test_the_host_names_an_api_answers_to(bound: str, allowed: str, names: set[str] | None) -> None:
    assert host_names(bound, allowed) == (None if names is None else frozenset(names))


async def fill(store: Store, log_file: Path) -> None:
    await store.insert_runs([RunRecord("d", "r1", RunState.SUCCESS, "manual", T0, T0)])
    await store.write(
        [
            store.ti_statement(TaskInstanceRecord("d", "r1", "a", TaskState.SUCCESS, 1)),
            store.try_statement(
                TryRecord("d", "r1", "a", 1, TaskState.SUCCESS, T0, log_path=str(log_file))
            ),
        ]
    )


async def test_a_log_is_served_from_its_end_in_windows(db_url: str, tmp_path: Path) -> None:
    """A big log is never sent whole: its last MiB by default, any window on request."""
    log_file = tmp_path / "attempt=1.log"
    lines = [f"line {i:07d}\n" for i in range(400_000)]  # 5.2 MB
    log_file.write_text("".join(lines))
    size = log_file.stat().st_size
    control = Control(dags={"d": one_dag()})
    async with serving(control, db_url) as (api, store):
        await fill(store, log_file)
        path = "/api/v1/runs/r1/tasks/a/logs"
        tail = (await api.get(path)).json()["tries"][0]
        head = (await api.get(path, params={"offset": 0, "length": 26})).json()["tries"][0]
        past = (await api.get(path, params={"offset": size + 5})).json()["tries"][0]
        too_big = await api.get(path, params={"length": 8 * 1024 * 1024 + 1})
    assert (tail["log_size"], tail["log_offset"]) == (size, size - 1024 * 1024)
    assert tail["log"].endswith("line 0399999\n")
    assert len(tail["log"]) == 1024 * 1024
    assert (head["log"], head["log_offset"]) == ("line 0000000\nline 0000001\n", 0)
    assert (past["log"], past["log_offset"]) == ("", size)
    assert too_big.status_code == 400


async def test_the_openapi_document_describes_exactly_the_routes(db_url: str) -> None:
    """Every route and method is in the served document, and the document names no other;
    the document is valid OpenAPI 3.1."""
    import schemathesis
    from starlette.routing import Route

    async with open_store(db_url) as store:
        app = create_app(Control(dags={"d": one_dag()}), store)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
            doc = (await api.get("/api/v1/openapi.json")).json()
    routes = {
        (r.path, m.lower())
        for r in app.routes
        if isinstance(r, Route)
        for m in (r.methods or set()) - {"HEAD"}
    }
    documented = {
        (path, method)
        for path, item in doc["paths"].items()
        for method in item
        if method in ("get", "post", "patch", "put", "delete")
    }
    assert documented == routes
    assert doc["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(doc).validate()


# -- datasets ----------------------------------------------------------------------------


async def test_a_dataset_update_is_checked_and_answered_with_its_consumers(db_url: str) -> None:
    """POST /datasets/events: 201 with the normalised event; a bad URI or extra is a 400
    naming the field, and nothing is recorded."""
    control = Control()
    async with serving(control, db_url) as (api, _):
        ok = await api.post(
            "/api/v1/datasets/events", json={"uri": "S3://B/k/", "extra": {"rows": 3}}
        )
        bodies: list[dict[str, Any]] = [
            {"uri": "s3://b/a key"},
            {"uri": 7},
            {"uri": "s3://b/k", "extra": [1]},
            {"uri": "s3://b/k", "extra": "x"},
            {"extra": {}},
            {"uri": "s3://b/k", "other": 1},
        ]
        bad = [await api.post("/api/v1/datasets/events", json=body) for body in bodies]
    assert ok.status_code == 201
    doc = ok.json()
    assert (doc["uri"], doc["extra"], doc["consumers"]) == ("s3://b/k", {"rows": 3}, ["consumer"])
    assert [r.status_code for r in bad] == [400] * 6
    messages = [r.json()["error"] for r in bad]
    assert messages[0].startswith("uri:")
    assert "whitespace" in messages[0]
    assert messages[1].startswith("uri:")
    assert messages[2].startswith("extra:")
    assert messages[3].startswith("extra:")
    assert messages[4] == "uri: missing"
    assert [e.uri for e in control.updates] == ["s3://b/k"]


async def test_datasets_and_their_events_are_listed_from_the_store(db_url: str) -> None:
    """GET /datasets (uri, last_updated, consumers, producers) and GET /datasets/events
    (newest first, ?uri= filters, with the runs each event triggered)."""
    async with serving(Control(), db_url) as (api, store):
        await store.set_dataset_refs(
            [
                DatasetRefs("down", consumes=frozenset({"s3://b/k"})),
                DatasetRefs("up", produces=frozenset({"s3://b/k", "s3://b/other"})),
            ]
        )
        first = DatasetEvent("e1", "s3://b/k", T0, {"n": 1})
        second = DatasetEvent("e2", "s3://b/other", T0.replace(hour=1))
        await store.record_dataset_events([first, second])
        listed = (await api.get("/api/v1/datasets")).json()
        events = (await api.get("/api/v1/datasets/events")).json()
        only = (await api.get("/api/v1/datasets/events", params={"uri": "S3://b/k"})).json()
        bad = await api.get("/api/v1/datasets/events", params={"uri": "a b"})
    assert listed == [
        {
            "uri": "s3://b/k",
            "last_updated": "2026-02-01T00:00:00.000000+00:00",
            "consumers": ["down"],
            "producers": ["up"],
        },
        {
            "uri": "s3://b/other",
            "last_updated": "2026-02-01T01:00:00.000000+00:00",
            "consumers": [],
            "producers": ["up"],
        },
    ]
    assert [e["id"] for e in events] == ["e2", "e1"]
    assert [(e["id"], e["extra"], e["triggered_runs"]) for e in only] == [("e1", {"n": 1}, [])]
    assert bad.status_code == 400


async def test_a_consumer_shows_what_it_has_received_and_waits_for(db_url: str) -> None:
    with DAG("c", schedule=[Dataset("s3://b/a"), Dataset("s3://b/b")]) as dag:
        EmptyOperator(task_id="t")
    async with serving(Control(dags={"c": dag, "d": one_dag()}), db_url) as (api, _):
        consumer = (await api.get("/api/v1/dags/c")).json()
        plain = (await api.get("/api/v1/dags/d")).json()
    assert consumer["datasets"] == {
        "condition": "(Dataset('s3://b/a') & Dataset('s3://b/b'))",
        "pending_events": 1,
        "updated": ["s3://b/a"],
        "waiting_for": ["s3://b/b"],
    }
    assert "datasets" not in plain


async def test_clear_and_mark_check_their_bodies_then_ask_the_control_plane(db_url: str) -> None:
    """Clear and mark name a bad field with 400 and reach the control plane only when
    the whole body is good; its refusals come back as 400 and 409."""
    control = Control(dags={"d": one_dag()})
    async with serving(control, db_url) as (api, store):
        run = RunRecord("d", "r1", RunState.FAILED, "manual", T0, T0)
        await store.insert_runs([run])
        bad = [
            ("POST", "/api/v1/runs/r1/clear", {"task_ids": "a"}, "task_ids"),
            ("POST", "/api/v1/runs/r1/clear", {"task_ids": [1]}, "task_ids"),
            ("POST", "/api/v1/runs/r1/clear", {"map_index": [-1]}, "map_index"),
            ("POST", "/api/v1/runs/r1/clear", {"map_index": True}, "map_index"),
            ("POST", "/api/v1/runs/r1/clear", {"downstream": "yes"}, "downstream"),
            ("POST", "/api/v1/runs/r1/clear", {"tasks": []}, "tasks"),
            ("PATCH", "/api/v1/runs/r1", {"state": "running"}, "state"),
            ("PATCH", "/api/v1/runs/r1", {}, "state"),
            (
                "PATCH",
                "/api/v1/runs/r1/tasks/a",
                {"state": "success", "map_index": -2},
                "map_index",
            ),
        ]
        for method, path, body, field_name in bad:
            response = await api.request(method, path, json=body)
            assert response.status_code == 400, (path, body, response.text)
            assert field_name in response.json()["error"]
        assert control.actions == []
        assert (await api.post("/api/v1/runs/nope/clear", json={})).status_code == 404
        cleared = await api.post(
            "/api/v1/runs/r1/clear", json={"task_ids": ["b"], "map_index": 2, "downstream": True}
        )
        assert cleared.json() == {"dag_id": "d", "run_id": "r1", "cleared": ["b"]}
        refused = await api.post("/api/v1/runs/r1/clear", json={"task_ids": ["x"]})
        assert refused.status_code == 400
        assert "no task(s) x" in refused.json()["error"]
        marked = await api.patch("/api/v1/runs/r1?dag_id=d", json={"state": "success"})
        assert marked.json()["state"] == "success"
        ti = await api.patch("/api/v1/runs/r1/tasks/b", json={"state": "failed", "map_index": 0})
        assert (ti.json()["task_id"], ti.json()["state"], ti.json()["map_index"]) == (
            "b",
            "failed",
            0,
        )
        conflict = await api.patch("/api/v1/runs/r1/tasks/a", json={"state": "failed"})
        assert conflict.status_code == 409
    assert control.actions == [
        ("clear", "d", "r1", ["b"], [2], True),
        ("clear", "d", "r1", ["x"], [], False),
        ("mark_run", "d", "r1", "success"),
        ("mark_task", "d", "r1", "b", 0, "failed"),
        ("mark_task", "d", "r1", "a", -1, "failed"),
    ]
