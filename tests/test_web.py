"""The web UI's pages, data, login and live stream, in process (httpx's ASGI transport) and
on a real server for the stream; its pure parts (the change hub, the grid's data, layout)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from orchestrator import DAG, Param
from orchestrator._logging import register_secret
from orchestrator._settings import Settings
from orchestrator.api import create_app, serve_api
from orchestrator.authoring._taskgroup import TaskGroup
from orchestrator.core import RunRecord, RunState, TaskInstanceRecord, TaskState, TryRecord
from orchestrator.dagfiles._loader import ImportErrorRecord
from orchestrator.operators import BashOperator, EmptyOperator, PythonOperator
from orchestrator.runtime._drive import run_dag_once
from orchestrator.store import Store, open_store
from orchestrator.web import ChangeHub, ui_routes
from orchestrator.web._data import grid_json, schedule_words, worst
from orchestrator.web._graph import NODE_W, layout
from tests.test_api import Control

T0 = datetime(2026, 2, 1, tzinfo=UTC)


def ui_dag() -> DAG:
    with DAG(
        "ui",
        tags=["team"],
        params={
            "n": Param(3, type="integer", description="how many"),
            "mode": Param("fast", enum=["fast", "slow"]),
        },
    ) as dag:
        start = EmptyOperator(task_id="start")
        with TaskGroup("g") as group:
            EmptyOperator(task_id="a") >> EmptyOperator(task_id="b")
        mapped = PythonOperator.partial(task_id="m", python_callable=print).expand(
            op_args=[[1], [2]]
        )
        start >> group >> mapped
    dag.fileloc = __file__
    return dag


def instances(run_id: str, states: dict[str, str]) -> list[TaskInstanceRecord]:
    found = []
    for key, state in states.items():
        task_id, _, index = key.partition("[")
        found.append(
            TaskInstanceRecord(
                "ui",
                run_id,
                task_id,
                TaskState(state),
                try_number=1,
                map_index=int(index.rstrip("]")) if index else -1,
            )
        )
    return found


async def fill(store: Store) -> None:
    """Two runs of "ui": r1 all success, r2 with g.b failed and one mapped instance."""
    r1 = RunRecord("ui", "r1", RunState.SUCCESS, "manual", T0, T0, conf={"n": 1})
    r2 = RunRecord("ui", "r2", RunState.FAILED, "scheduled", T0 + timedelta(days=1), T0)
    await store.insert_runs([r1, r2])
    done = {"start": "success", "g.a": "success", "g.b": "success", "m[0]": "success"}
    await store.write(store.statements([*instances("r1", {**done, "m[1]": "success"})]))
    await store.write(
        store.statements(instances("r2", {**done, "g.b": "failed", "m[0]": "upstream_failed"}))
    )


@asynccontextmanager
async def ui(
    db_url: str, token: str = "", control: Control | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, Store, ChangeHub]]:
    control = control or Control(dags={"ui": ui_dag()})
    hub = ChangeHub()
    async with open_store(db_url) as store:
        await fill(store)
        routes = ui_routes(control, store, hub, token=token)
        app = create_app(control, store, token=token, routes=routes)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://ui") as client:
            yield client, store, hub


def count_queries(store: Store) -> list[str]:
    """Every query the store's backend runs from now on."""
    seen: list[str] = []
    fetch = store.backend.fetch

    async def counted(sql: str, params: Any = ()) -> list[dict[str, Any]]:
        seen.append(sql)
        return await fetch(sql, params)

    store.backend.fetch = counted  # type: ignore[method-assign]
    return seen


# -- pages -------------------------------------------------------------------------------------


async def test_every_view_renders_with_its_data(db_url: str) -> None:
    """Each view of SPEC section 9 answers HTML with what it shows; cells and nodes carry
    data-run-id, data-task-id and data-state; states are named, not only coloured."""
    errors = [ImportErrorRecord("/dags/broken.py", "SyntaxError: bad", "Traceback: line 3")]
    control = Control(dags={"ui": ui_dag()}, import_errors=errors)
    async with ui(db_url, control=control) as (client, _, _):
        home = (await client.get("/")).text
        assert 'data-dag-id="ui"' in home
        assert "1 DAG file failed to import" in home
        assert 'href="/import-errors"' in home
        assert 'aria-label="last 2 runs: 1 success, 1 failed"' in home  # oldest first
        assert '<i class="st" data-state="success">✓</i><i class="st" data-state="failed">' in home
        assert "manual only" in home
        assert "team" in home
        assert "Traceback: line 3" in (await client.get("/import-errors")).text
        grid = (await client.get("/dags/ui")).text
        assert 'id="grid"' in grid
        assert 'role="grid"' in grid
        assert 'data-param="n"' in grid
        assert 'data-type="integer"' in grid
        assert '<option value="&#34;slow&#34;"' in grid  # an enum's values as JSON
        graph = (await client.get("/dags/ui/graph", params={"run_id": "r2"})).text
        nodes = re.findall(r'data-task-id="([^"]+)" data-run-id="r2" data-state="(\w+)"', graph)
        assert dict(nodes) == {
            "start": "success",
            "g.a": "success",
            "g.b": "failed",
            "m": "upstream_failed",  # the mapped task's state that matters most
        }
        assert "def ui_dag" in (await client.get("/dags/ui/code")).text
        run = (await client.get("/dags/ui/runs/r1")).text
        assert "&#34;n&#34;: 1" in run
        assert "A manual trigger" in run
        assert 'data-task-id="m" data-map-index="1" data-run-id="r1" data-state="success"' in run
        task = (await client.get("/dags/ui/runs/r1/tasks/m", params={"map_index": "1"})).text
        assert 'data-map-index="1"' in task
        assert "Mapped instance" in task
        for path, marker in [
            ("/datasets", "Lineage"),
            ("/events", "No events yet"),
            ("/alerts", "Failed deliveries"),
            ("/health", "Tasks running"),
        ]:
            response = await client.get(path)
            assert response.status_code == 200, path
            assert marker in response.text, path
            assert response.headers["content-type"].startswith("text/html")


async def test_the_grid_and_the_dag_list_each_come_from_one_query(db_url: str) -> None:
    """The grid's data: runs oldest first, groups before their tasks, one code per run,
    a group's and a mapped task's cell the state that matters most, instance counts."""
    async with ui(db_url) as (client, store, _):
        queries = count_queries(store)
        grid = (await client.get("/ui/grid/ui")).json()
        assert len(queries) == 1
        assert [r["run_id"] for r in grid["runs"]] == ["r1", "r2"]
        assert [(r["id"], r["depth"], r["group"]) for r in grid["rows"]] == [
            ("start", 0, False),
            ("g", 0, True),
            ("g.a", 1, False),
            ("g.b", 1, False),
            ("m", 0, False),
        ]
        assert grid["cells"] == {"start": "ss", "g": "sf", "g.a": "ss", "g.b": "sf", "m": "sU"}
        assert grid["counts"] == {"m": [2, 1]}
        queries.clear()
        await client.get("/")
        assert len(queries) == 1
        limited = (await client.get("/ui/grid/ui", params={"runs": "1"})).json()
        assert [r["run_id"] for r in limited["runs"]] == ["r2"]


async def test_missing_things_are_404_pages_and_bad_parameters_400(db_url: str) -> None:
    async with ui(db_url) as (client, _, _):
        for path, named in [
            ("/dags/nope", "DAG 'nope' not found"),
            ("/dags/ui/runs/nope", "has no run 'nope'"),
            ("/dags/ui/runs/r1/tasks/nope", "has no task 'nope'"),
            ("/dags/ui/runs/r1/tasks/m?map_index=7", "has no map_index 7"),
            ("/dags/ui/runs/r1/tasks/start?try=9", "has no try 9"),
        ]:
            response = await client.get(path)
            assert response.status_code == 404, path
            assert named in html.unescape(response.text)
            assert "<html" in response.text
        for path, field in [
            ("/dags/ui?runs=many", "runs"),
            ("/dags/ui?runs=1001", "runs"),
            ("/dags/ui/graph?run_id=nope", "run_id"),
        ]:
            response = await client.get(path)
            assert response.status_code == 400, path
            assert field in response.text
        assert (await client.get("/ui/grid/ui?runs=x")).json()["error"].startswith("runs")


async def test_with_a_token_the_ui_asks_once_and_keeps_it_in_a_strict_httponly_cookie(
    db_url: str,
) -> None:
    async with ui(db_url, token="s3cret") as (client, _, _):
        asked = await client.get("/dags/ui?runs=50")
        assert asked.status_code == 303
        assert asked.headers["location"] == "/login?next=/dags/ui%3Fruns%3D50"
        assert (await client.get("/ui/grid/ui")).status_code == 401
        assert (await client.get("/static/ui.css")).status_code == 200
        assert "API token" in (await client.get("/login")).text
        wrong = await client.post("/login", data={"token": "nope", "next": "/dags/ui"})
        assert wrong.headers["location"].startswith("/login?failed=1")
        assert "set-cookie" not in wrong.headers
        evil = await client.post(
            "/login", data={"token": "s3cret"}, headers={"Origin": "http://evil.example"}
        )
        assert evil.status_code == 403
        right = await client.post("/login", data={"token": "s3cret", "next": "//evil.example"})
        assert right.headers["location"] == "/"
        cookie = right.headers["set-cookie"]
        assert "orchestrator_token=s3cret" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Path=/" in cookie
        assert (await client.get("/dags/ui")).status_code == 200  # the client keeps the cookie
        assert (await client.get("/api/v1/dags")).status_code == 200
        out = await client.post("/logout")
        assert out.status_code == 303
        client.cookies.clear()
        assert (await client.get("/")).status_code == 303
        bearer = await client.get("/", headers={"Authorization": "Bearer s3cret"})
        assert bearer.status_code == 200


# -- the live stream ------------------------------------------------------------------------------


@asynccontextmanager
async def served(
    db_url: str, hub: ChangeHub | None = None
) -> AsyncIterator[tuple[str, Store, ChangeHub]]:
    """The API and the UI on a real server on a free port."""
    control = Control(dags={"ui": ui_dag()})
    hub = hub or ChangeHub()
    async with open_store(db_url) as store, anyio.create_task_group() as tg:
        await fill(store)
        url = await tg.start(
            lambda task_status: serve_api(
                control,
                store,
                host="127.0.0.1",
                port=0,
                routes=ui_routes(control, store, hub),
                task_status=task_status,
            )
        )
        yield url, store, hub
        tg.cancel_scope.cancel()


async def events(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """The server-sent events of a streaming response, as dicts of their fields."""
    event: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if event:
                yield event
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            event[name] = value


@pytest.mark.slow
async def test_the_stream_sends_what_changed_and_resumes_or_reloads(db_url: str) -> None:
    """A page's stream sends the changes its filter takes, numbered; a reconnect with
    Last-Event-ID gets what it missed; one from before what is kept is told to reload."""
    async with (
        served(db_url, ChangeHub(keep=3)) as (url, _, hub),
        httpx.AsyncClient(timeout=10) as client,
    ):
        async with client.stream("GET", f"{url}/ui/stream?dag_id=ui") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = events(response)
            assert (await anext(stream))["id"] == "0"
            assert hub.watched
            hub.publish("ti", dag_id="other", run_id="r", task_id="t", state="running")
            hub.publish("ti", dag_id="ui", run_id="r1", task_id="start", state="running")
            got = await anext(stream)
            assert got["id"] == "2"
            assert json.loads(got["data"]) == [
                {
                    "id": 2,
                    "kind": "ti",
                    "dag_id": "ui",
                    "run_id": "r1",
                    "task_id": "start",
                    "state": "running",
                }
            ]
        await anyio.sleep(0.05)
        assert not hub.watched
        for n in range(3):
            hub.publish("run", dag_id="ui", run_id=f"r{n}", state="queued")
        async with client.stream(
            "GET", f"{url}/ui/stream", params={"dag_id": "ui"}, headers={"Last-Event-ID": "2"}
        ) as response:
            stream = events(response)
            await anext(stream)
            got = await anext(stream)
            assert [c["run_id"] for c in json.loads(got["data"])] == ["r0", "r1", "r2"]
        async with client.stream(
            "GET", f"{url}/ui/stream", headers={"Last-Event-ID": "1"}
        ) as response:
            stream = events(response)
            await anext(stream)
            assert (await anext(stream))["event"] == "reload"
        bad = await client.get(f"{url}/ui/stream", headers={"Last-Event-ID": "x"})
        assert bad.status_code == 400


@pytest.mark.slow
async def test_the_stream_follows_a_try_log_as_it_grows(db_url: str, tmp_path: Path) -> None:
    """With log=, the stream carries what the try's log gets past the offset the page has,
    whole characters only, in order."""
    log = tmp_path / "try.log"
    log.write_bytes(b"first line\n")
    async with served(db_url) as (url, store, _), httpx.AsyncClient(timeout=10) as client:
        attempt = TryRecord("ui", "r1", "start", 1, TaskState.RUNNING, T0, log_path=str(log))
        await store.write(store.statements([attempt]))
        params = {"dag_id": "ui", "log": "ui/r1/start/-1/1", "offset": "11"}
        async with client.stream("GET", f"{url}/ui/stream", params=params) as response:
            stream = events(response)
            await anext(stream)
            with log.open("ab") as out:
                out.write("second \u00e9".encode()[:-1])  # half of a two-byte character
                out.flush()
                got = json.loads((await anext(stream))["data"])
                assert got["offset"] == 11
                assert got["text"] == "second "
                out.write("\u00e9".encode()[-1:] + b" third\n")
            got = json.loads((await anext(stream))["data"])
            assert got["text"] == "\u00e9 third\n"
        bad = await client.get(f"{url}/ui/stream", params={"log": "ui/r1"})
        assert bad.status_code == 400
        assert "log" in bad.json()["error"]


# -- the pure parts ----------------------------------------------------------------------------


def test_the_hub_filters_numbers_and_tells_a_slow_reader_to_reload() -> None:
    hub = ChangeHub(keep=10, limit=3)
    active: list[bool] = []
    hub.on_active = active.append
    with hub.subscribe("d") as feed, hub.subscribe(kinds=frozenset({"run"})) as runs:
        hub.publish("ti", dag_id="d", task_id="a")
        hub.publish("ti", dag_id="e", task_id="a")
        hub.publish("dags")
        hub.publish("run", dag_id="e", run_id="r")
        assert [c["id"] for c in feed.take()[0]] == [1, 3]
        assert [c["id"] for c in runs.take()[0]] == [4]
        for _ in range(4):
            hub.publish("ti", dag_id="d", task_id="a")
        assert feed.take() == ([], True)  # fell behind: reload, nothing skipped silently
        assert feed.take() == ([], False)
    assert active == [True, False]
    assert hub.version == 8


def test_grid_codes_and_the_state_that_matters_most() -> None:
    assert worst("sfk") == "f"
    assert worst("sk") == "s"
    assert worst("kk") == "k"
    assert worst("-") == "-"
    assert worst("") == "-"
    assert worst("rU") == "U"
    dag = ui_dag()
    empty = grid_json(dag, [])
    assert empty["runs"] == []
    assert empty["cells"]["g"] == ""


def test_schedules_in_words() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    said = {
        "@daily": "daily at 00:00",
        "*/5 * * * *": "every 5 minutes",
        "30 6 * * *": "daily at 06:30",
        "0 6 * * 1-5": "weekdays at 06:00",
        "15 * * * *": "hourly, at minute 15",
        "0 0 1 * *": "cron 0 0 1 * *",
        timedelta(hours=2): "every 2 hours",
        timedelta(minutes=1): "every minute",
        None: "manual only",
        "@once": "once",
    }
    for schedule, words in said.items():
        assert (
            schedule_words(DAG(f"s{len(str(schedule))}", schedule=schedule, start_date=start))
            == words
        )


def test_a_layout_points_every_edge_right_and_overlaps_no_node() -> None:
    nodes = [f"t{i}" for i in range(1000)]
    edges = [(f"t{i}", f"t{j}") for i in range(1000) for j in (2 * i + 1, 2 * i + 2) if j < 1000]
    drawn = layout(nodes, edges)
    where = {n.id: (n.x, n.y) for n in drawn.nodes}
    assert len(set(where.values())) == 1000
    assert all(where[a][0] + NODE_W < where[b][0] for a, b in edges)
    assert layout(nodes, edges) is drawn  # cached by structure


def echo(run: str) -> str:
    return run


async def test_a_tries_templated_fields_are_stored_as_rendered_and_shown(
    settings: Settings,
) -> None:
    """A try stores its templated fields as it rendered them (secrets masked), for sync
    and async tasks; the task's page shows them beside the fields as written."""
    register_secret("hunter2-secret")
    with DAG("templated", params={"who": "world"}) as dag:
        BashOperator(task_id="say", bash_command="echo hello {{ params.who }} {{ run_id }}")
        BashOperator(task_id="secret", bash_command="echo hunter2-secret")
        PythonOperator(task_id="py", python_callable=echo, op_kwargs={"run": "{{ run_id }}"})
    dag.fileloc = __file__
    live = await run_dag_once(settings, dag)
    assert live.record.state == RunState.SUCCESS
    run_id = live.record.run_id
    async with open_store(settings.db_url) as store:
        (say,) = await store.tries("templated", run_id, "say")
        assert json.loads(say.rendered or "{}")["bash_command"] == f"echo hello world {run_id}"
        (secret,) = await store.tries("templated", run_id, "secret")
        assert "hunter2" not in (secret.rendered or "")
        (py,) = await store.tries("templated", run_id, "py")  # a sync try, in a thread
        assert json.loads(json.loads(py.rendered or "{}")["op_kwargs"]) == {"run": run_id}
    control = Control(dags={"templated": dag})
    async with ui(settings.db_url, control=control) as (client, _, _):
        page = (await client.get(f"/dags/templated/runs/{run_id}/tasks/say")).text
        row = re.search(r'<tr data-field="bash_command">(.*?)</tr>', page, re.S)
        assert row is not None
        rendered, written = re.findall(r"<pre[^>]*>(.*?)</pre>", row.group(1), re.S)
        assert html.unescape(rendered) == f"echo hello world {run_id}"
        assert html.unescape(written) == "echo hello {{ params.who }} {{ run_id }}"
