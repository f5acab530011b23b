"""The web UI in a real browser: Debian's Chromium driven by Playwright, the daemon as a
subprocess on the bundled examples and this module's DAGs.

Skipped when Chromium or Playwright is missing, unless ``ORCHESTRATOR_TEST_REQUIRE_BROWSER=1``
(CI sets it). Every page a test opens fails it on a console error or an uncaught exception.
"""

from __future__ import annotations

import os
import shutil
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.daemon_proc import DaemonProc

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

CHROMIUM = "/usr/bin/chromium"
REQUIRE = os.environ.get("ORCHESTRATOR_TEST_REQUIRE_BROWSER") == "1"
ARGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-gpu",
    "--no-sandbox",
]
EXAMPLES = Path(__file__).parent.parent / "examples" / "dags"
WAIT_MS = 15_000

DAGS = {
    "ui_params.py": """
        from orchestrator import DAG, Param
        from orchestrator.operators import PythonOperator

        def show(params=None, dag_run=None, **_):
            print("conf", dag_run.conf, "params", params)

        with DAG("ui_params", tags=["ui"], params={
            "n": Param(3, type="integer", description="how many"),
            "mode": Param("fast", enum=["fast", "slow"]),
        }):
            PythonOperator(task_id="show", python_callable=show) >> PythonOperator(
                task_id="after", python_callable=print
            )
        """,
    "ui_log.py": """
        import time
        from pathlib import Path
        from orchestrator import DAG
        from orchestrator.operators import PythonOperator

        def talk():
            print("line one", flush=True)
            while not Path({flag!r}).exists():
                time.sleep(0.05)
            print("line two", flush=True)

        with DAG("ui_log"):
            PythonOperator(task_id="talk", python_callable=talk)
        """,
    "ui_flaky.py": """
        from pathlib import Path
        from orchestrator import DAG
        from orchestrator.operators import EmptyOperator, PythonOperator

        def work():
            if not Path({fixed!r}).exists():
                raise RuntimeError("not yet")

        with DAG("ui_flaky"):
            PythonOperator(task_id="work", python_callable=work) >> EmptyOperator(task_id="done")
        """,
    "ui_sensor.py": """
        from sensors import FileSensor
        from orchestrator import DAG

        with DAG("ui_sensor"):
            FileSensor(task_id="wait", filepath={never!r}, poke_interval=600, timeout=86400)
        """,
}


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    reason = None
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is not installed (apt-get install -y chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = reason or "playwright is not installed (pip install -e '.[dev]')"
    if reason is not None:
        if REQUIRE:
            pytest.fail(f"{reason} (ORCHESTRATOR_TEST_REQUIRE_BROWSER=1)")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def start_daemon(root: Path, **env: str) -> DaemonProc:
    home = root / "home"
    dags = root / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    keep = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    settings = {
        "ORCHESTRATOR_HOME": str(home),
        "ORCHESTRATOR_DAGS": str(dags),
        "ORCHESTRATOR_DB": f"sqlite:///{home / 'orchestrator.db'}",
        **env,
    }
    proc = DaemonProc(home, {**keep, **settings})
    proc.env = {**keep, "ORCHESTRATOR_API_PORT": "0", **settings}
    return proc.start(within=60)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProc, Path]]:
    """The daemon on the bundled examples and this module's DAGs."""
    root = tmp_path_factory.mktemp("ui")
    dags = root / "dags"
    dags.mkdir()
    for example in EXAMPLES.glob("*.py"):
        shutil.copy(example, dags / example.name)
    paths = {"flag": str(root / "flag"), "fixed": str(root / "fixed"), "never": str(root / "no")}
    for name, source in DAGS.items():
        for key, value in paths.items():
            source = source.replace(f"{{{key}!r}}", repr(value))
        (dags / name).write_text(textwrap.dedent(source))
    d = start_daemon(root)
    d.wait_for(lambda: len(d.api("GET", "/api/v1/dags").json()) >= 9, 60, "the DAGs")
    yield d, root
    d.stop()


Page = Any


@pytest.fixture
def open_page(chromium: Any) -> Iterator[Callable[..., Page]]:
    """Pages in fresh contexts; each fails the test on a console error or a page error."""
    contexts: list[Any] = []
    problems: list[str] = []

    def make(url: str, *, scheme: str = "light", refusals: bool = False) -> Page:
        """``refusals``: the test sends bad input on purpose, so the browser's own report
        of a 4xx answer is not a problem."""
        context = chromium.new_context(color_scheme=scheme, viewport={"width": 1280, "height": 800})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)

        def console(message: Any) -> None:
            refused = "the server responded with a status of 4" in message.text
            if message.type == "error" and not (refusals and refused):
                problems.append(f"{url}: {message.text}")

        page.on("console", console)
        page.on("pageerror", lambda e: problems.append(f"{url}: {e}"))
        page.goto(url)
        return page

    yield make
    for context in contexts:
        context.close()
    assert problems == []


def trigger(d: DaemonProc, dag_id: str, **body: Any) -> str:
    response = d.api("POST", f"/api/v1/dags/{dag_id}/runs", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["run_id"])


def run_state(d: DaemonProc, dag_id: str, run_id: str) -> str | None:
    return d.run_state(dag_id, run_id)


def task_reaches(d: DaemonProc, run_id: str, state: str) -> None:
    """Wait until a task instance of the run is in ``state``."""
    d.wait_for(
        lambda: any(
            t["state"] == state for t in d.api("GET", f"/api/v1/runs/{run_id}").json()["tasks"]
        ),
        20,
        f"a task {state}",
    )


def cell(page: Page, run_id: str, task_id: str) -> Any:
    return page.locator(f'#grid [data-run-id="{run_id}"][data-task-id="{task_id}"]')


# -- journeys ---------------------------------------------------------------------------------


def test_trigger_from_the_form_built_from_params_and_watch_the_grid_live(
    site: tuple[DaemonProc, Path], open_page: Callable[..., Page]
) -> None:
    """The Trigger form has a field per param; the run it makes appears as a new column,
    whose cells turn to success without a reload."""
    d, _ = site
    page = open_page(f"{d.url}/dags/ui_params", refusals=True)
    page.wait_for_selector('#grid[data-loaded="true"]')
    page.evaluate("window.__stay = 1")
    page.get_by_role("button", name="Trigger").click()
    page.get_by_label("n integer").fill("7")
    page.get_by_label("mode").select_option(label="slow")
    assert '"n": 7' in page.locator("#trigger-conf").input_value()
    page.locator("#trigger-form button[type=submit]").click()
    page.wait_for_selector("#notice:has-text('queued')")
    run_id = page.locator("#notice").inner_text().split()[1]
    cell(page, run_id, "after").and_(page.locator('[data-state="success"]')).wait_for()
    assert page.evaluate("window.__stay") == 1  # the same page: no reload
    doc = d.api("GET", f"/api/v1/runs/{run_id}", params={"dag_id": "ui_params"}).json()
    assert doc["conf"] == {"n": 7, "mode": "slow"}
    assert doc["run_type"] == "manual"
    page.get_by_role("button", name="Trigger").click()
    page.locator("#trigger-conf").fill('{"n": "many"}')
    page.locator("#trigger-form button[type=submit]").click()
    error = page.locator("#trigger-error")
    error.wait_for()
    assert "n" in error.inner_text()


def test_a_running_tasks_log_grows_and_its_graph_node_changes_live(
    site: tuple[DaemonProc, Path], open_page: Callable[..., Page]
) -> None:
    d, root = site
    run_id = trigger(d, "ui_log")
    task_reaches(d, run_id, "running")
    graph = open_page(f"{d.url}/dags/ui_log/graph?run_id={quote(run_id)}")
    node = graph.locator(f'g.node[data-task-id="talk"][data-run-id="{run_id}"]')
    assert node.get_attribute("data-state") == "running"
    page = open_page(f"{d.url}/dags/ui_log/runs/{run_id}/tasks/talk")
    page.wait_for_selector("#log:has-text('line one')")
    page.evaluate("window.__stay = 1")
    graph.evaluate("window.__stay = 1")
    (root / "flag").touch()
    page.wait_for_selector("#log:has-text('line two')")
    page.wait_for_selector("#ti-meta[data-state='success']")
    assert page.evaluate("window.__stay") == 1
    graph.locator('g.node[data-task-id="talk"][data-state="success"]').wait_for()
    assert "talk: success" in (node.locator("a").get_attribute("aria-label") or "")
    assert graph.evaluate("window.__stay") == 1
    text = page.locator("#log").inner_text()
    assert text.index("line one") < text.index("line two")


def test_clear_a_failed_task_from_the_grid_and_watch_it_run_again(
    site: tuple[DaemonProc, Path], open_page: Callable[..., Page]
) -> None:
    d, root = site
    run_id = trigger(d, "ui_flaky")
    assert d.wait_for(lambda: run_state(d, "ui_flaky", run_id) == "failed", 20)
    page = open_page(f"{d.url}/dags/ui_flaky")
    failed = cell(page, run_id, "work")
    failed.and_(page.locator('[data-state="failed"]')).wait_for()
    assert failed.inner_text() == "✗"  # a symbol, not colour alone
    assert "failed" in (failed.get_attribute("aria-label") or "")
    failed.click()
    (root / "fixed").touch()
    page.locator("#panel").get_by_role("button", name="Clear with downstream").click()
    cell(page, run_id, "work").and_(page.locator('[data-state="success"]')).wait_for()
    cell(page, run_id, "done").and_(page.locator('[data-state="success"]')).wait_for()
    assert d.wait_for(lambda: run_state(d, "ui_flaky", run_id) == "success", 20)


def test_pause_and_a_broken_file_on_the_dag_list(
    site: tuple[DaemonProc, Path], open_page: Callable[..., Page]
) -> None:
    """The paused toggle pauses the DAG; a broken DAG file dropped into the folder shows
    its import error on the open list, with a link to its traceback."""
    d, root = site
    page = open_page(f"{d.url}/")
    toggle = page.get_by_role("switch", name="Paused: ui_params")
    assert toggle.get_attribute("aria-checked") == "false"
    toggle.click()
    page.wait_for_selector('[aria-label="Paused: ui_params"][aria-checked="true"]')
    assert d.api("GET", "/api/v1/dags/ui_params").json()["is_paused"] is True
    toggle.click()
    page.wait_for_selector('[aria-label="Paused: ui_params"][aria-checked="false"]')
    broken = root / "dags" / "ui_broken.py"
    broken.write_text(
        "from orchestrator import DAG\nwith DAG('ui_broken'):\n    raise ValueError('oops')\n"
    )
    try:
        page.wait_for_selector("#import-banner")
        page.get_by_role("link", name="See the errors").click()
        page.wait_for_selector("pre:has-text('ValueError')")
        assert "ui_broken.py" in page.content()
    finally:
        broken.unlink()


def test_a_deferred_sensors_wait_is_shown(
    site: tuple[DaemonProc, Path], open_page: Callable[..., Page]
) -> None:
    d, _ = site
    run_id = trigger(d, "ui_sensor")
    task_reaches(d, run_id, "deferred")
    page = open_page(f"{d.url}/dags/ui_sensor/runs/{run_id}/tasks/wait")
    assert page.locator("#ti-meta").get_attribute("data-state") == "deferred"
    wait = page.locator("dl.wait")
    assert "Next poke" in wait.inner_text()
    assert "Pokes so far" in wait.inner_text()
    d.api("PATCH", f"/api/v1/runs/{run_id}", json={"state": "failed"})


def test_the_events_and_datasets_pages_follow_new_ones(
    site: tuple[DaemonProc, Path], open_page: Callable[..., Page]
) -> None:
    d, _ = site
    events = open_page(f"{d.url}/events")
    datasets = open_page(f"{d.url}/datasets")
    for page in (events, datasets):
        page.evaluate("window.__stay = 1")
    entry = {"Source": "ui.live", "DetailType": "Checked", "Detail": "{}"}
    assert d.api("POST", "/api/v1/events", json={"Entries": [entry]}).status_code == 200
    events.wait_for_selector("#event-table:has-text('ui.live')")
    started = "#dataset-events a[href^='/dags/orders_report/runs/']"  # runs events started
    before = datasets.locator(started).count()
    update = d.api("POST", "/api/v1/datasets/events", json={"uri": "s3://warehouse/orders"})
    assert update.status_code == 201, update.text
    assert update.json()["consumers"] == ["orders_report"]
    datasets.wait_for_function(f"document.querySelectorAll({started!r}).length > {before}")
    for page in (events, datasets):
        assert page.evaluate("window.__stay") == 1


def test_the_grid_works_with_the_keyboard_alone(
    site: tuple[DaemonProc, Path], open_page: Callable[..., Page]
) -> None:
    d, _ = site
    run_id = trigger(d, "ui_params")
    assert d.wait_for(lambda: run_state(d, "ui_params", run_id) == "success", 20)
    page = open_page(f"{d.url}/dags/ui_params")
    page.wait_for_selector('#grid[data-loaded="true"]')
    grid = page.locator("#grid")
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "grid":
            break
    assert page.evaluate("document.activeElement.id") == "grid"
    page.keyboard.press("End")
    page.keyboard.press("ArrowDown")
    active = grid.get_attribute("aria-activedescendant")
    assert active is not None
    assert page.locator(f"#{active}").get_attribute("data-task-id") == "after"
    page.keyboard.press("Enter")
    page.locator("#panel h2:has-text('after')").wait_for()
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")
    page.locator("#panel h2:has-text('Run')").wait_for()


def test_every_view_has_no_console_error_and_no_serious_axe_violation(
    site: tuple[DaemonProc, Path], open_page: Callable[..., Page]
) -> None:
    """In the light and the dark theme."""
    from axe_playwright_python.sync_playwright import Axe

    d, _ = site
    run_id = trigger(d, "ui_params")
    assert d.wait_for(lambda: run_state(d, "ui_params", run_id) == "success", 20)
    d.api(
        "POST",
        "/api/v1/events",
        json={"Entries": [{"Source": "ui.test", "DetailType": "t", "Detail": "{}"}]},
    )
    views = [
        "/",
        "/dags/ui_params",
        "/dags/ui_params/graph",
        "/dags/ui_params/code",
        f"/dags/ui_params/runs/{run_id}",
        f"/dags/ui_params/runs/{run_id}/tasks/show",
        "/datasets",
        "/events",
        "/alerts",
        "/health",
        "/import-errors",
        "/login",
    ]
    axe = Axe()
    found = []
    for scheme in ("light", "dark"):
        for view in views:
            page = open_page(f"{d.url}{view}", scheme=scheme)
            if view == "/dags/ui_params":
                page.wait_for_selector('#grid[data-loaded="true"]')
            results = axe.run(page)
            for violation in results.response["violations"]:
                if violation["impact"] in ("serious", "critical"):
                    targets = [n["target"] for n in violation["nodes"]][:3]
                    found.append(f"{scheme} {view}: {violation['id']} {targets}")
            page.close()
    assert found == []


def test_with_a_token_the_ui_asks_for_it_once(
    chromium: Any, tmp_path: Path, open_page: Callable[..., Page]
) -> None:
    (tmp_path / "dags").mkdir(exist_ok=True)
    shutil.copy(EXAMPLES / "my_first_dag.py", tmp_path / "dags")
    d = start_daemon(tmp_path, ORCHESTRATOR_API_TOKEN="ui-token-123")
    try:
        assert httpx.get(f"{d.url}/", follow_redirects=False).status_code == 303
        page = open_page(f"{d.url}/dags/my_first_dag", refusals=True)
        assert "/login" in page.url
        page.get_by_label("API token").fill("wrong")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_selector("text=That token is not this daemon's")
        page.get_by_label("API token").fill("ui-token-123")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_selector('#grid[data-loaded="true"]')
        assert page.url.endswith("/dags/my_first_dag")
        cookie = page.context.cookies()[0]
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert page.evaluate("document.cookie") == ""  # out of the page's scripts' reach
        page.goto(f"{d.url}/")
        page.wait_for_selector("text=my_first_dag")
        started = time.monotonic()
        while page.evaluate("document.body.dataset.live") != "open":
            assert time.monotonic() - started < 10, "the live stream did not open"
            page.wait_for_timeout(50)
    finally:
        for context in chromium.contexts:  # before the daemon goes, so no stream is cut
            context.close()
        d.stop()
