"""Dynamic task mapping: partial/expand/expand_kwargs, instances keyed by map_index."""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrator import DAG, TriggerRule, get_current_context, task
from orchestrator._logging import task_log_path
from orchestrator._settings import Settings
from orchestrator.core import (
    Clear,
    Expanded,
    Queued,
    RunDriver,
    RunRecord,
    RunState,
    Start,
    TaskState,
    TryEnded,
    TryOutcome,
    TryStarted,
)
from orchestrator.dagfiles._loader import load_folder
from orchestrator.errors import DagDefinitionError
from orchestrator.operators import BashOperator, EmptyOperator, PythonOperator
from orchestrator.runtime._drive import run_dag_once
from orchestrator.runtime._live import LiveRun
from orchestrator.store import MIGRATIONS, Statement, open_store
from tests.helpers import run_cli
from tests.test_api import Control, serving

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def states(live: LiveRun) -> dict[str, str]:
    return {key: str(ti.state) for key, ti in sorted(live.tis.items())}


def log_of(
    settings: Settings, live: LiveRun, task_id: str, map_index: int, try_number: int = 1
) -> str:
    path = task_log_path(
        settings.logs_dir, live.dag.dag_id, live.record.run_id, task_id, try_number, map_index
    )
    return path.read_text()


# -- whole runs ------------------------------------------------------------------------


async def test_taskflow_maps_over_a_literal_and_the_reduce_gets_the_list(
    settings: Settings,
) -> None:
    got: list[Any] = []

    with DAG("map_literal") as dag:

        @task
        def add_one(x: int) -> int:
            return x + 1

        @task
        def total(values: list[int]) -> None:
            got.append(values)

        total(add_one.expand(x=[1, 2, 3]))

    live = await run_dag_once(settings, dag)
    assert live.record.state == RunState.SUCCESS
    assert states(live) == {
        "add_one[0]": "success",
        "add_one[1]": "success",
        "add_one[2]": "success",
        "total": "success",
    }
    assert got == [[2, 3, 4]]
    async with open_store(settings.db_url) as store:
        tis = await store.task_instances("map_literal", live.record.run_id)
        assert sorted((t.task_id, t.map_index, str(t.state)) for t in tis) == [
            ("add_one", 0, "success"),
            ("add_one", 1, "success"),
            ("add_one", 2, "success"),
            ("total", -1, "success"),
        ]
        xcoms = await store.xcoms("map_literal", live.record.run_id)
        assert xcoms[("add_one[2]", "return_value")] == "4"
        tries = await store.tries("map_literal", live.record.run_id, "add_one", 1)
        assert [(t.try_number, t.map_index, str(t.state)) for t in tries] == [(1, 1, "success")]


async def test_partial_and_expand_of_a_classic_operator_with_logs_per_instance(
    settings: Settings,
) -> None:
    with DAG("map_bash") as dag:
        BashOperator.partial(task_id="echo", retries=0).expand(
            bash_command=["echo first {{ ti.map_index }}", "echo second {{ ti.map_index }}"]
        )
    live = await run_dag_once(settings, dag)
    assert live.record.state == RunState.SUCCESS
    assert log_of(settings, live, "echo", 0).strip() == "first 0"
    assert log_of(settings, live, "echo", 1).strip() == "second 1"
    assert live.tis["echo[1]"].operator == "BashOperator"


async def test_expand_maps_over_the_cartesian_product_and_dict_items(settings: Settings) -> None:
    seen: list[Any] = []
    lock = threading.Lock()

    with DAG("map_product") as dag:

        @task
        def pair(x: int, y: str) -> str:
            with lock:
                seen.append((get_current_context()["ti"].map_index, x, y))
            return f"{x}{y}"

        @task
        def item(kv: Any) -> list[Any]:
            return list(kv)

        @task
        def collect(a: list[str], b: list[Any]) -> None:
            seen.append(("collected", a, b))

        collect(pair.expand(x=[1, 2], y=["a", "b", "c"]), item.expand(kv={"k1": 1, "k2": 2}))

    live = await run_dag_once(settings, dag)
    assert live.record.state == RunState.SUCCESS
    assert sorted(s for s in seen if s[0] != "collected") == [
        (0, 1, "a"),
        (1, 1, "b"),
        (2, 1, "c"),
        (3, 2, "a"),
        (4, 2, "b"),
        (5, 2, "c"),
    ]
    assert ("collected", ["1a", "1b", "1c", "2a", "2b", "2c"], [["k1", 1], ["k2", 2]]) in seen


async def test_mapping_over_upstream_xcoms_kwargs_and_a_mapped_result(settings: Settings) -> None:
    out: list[Any] = []

    with DAG("map_xcom") as dag:

        @task
        def make() -> list[int]:
            return [10, 20]

        @task
        def kwargs_list() -> list[dict[str, Any]]:
            return [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}, {"a": 3, "b": "z"}]

        @task
        def double(n: int) -> int:
            return n * 2

        @task
        def plus_one(n: int) -> int:
            return n + 1

        @task
        def show(a: int, b: str) -> str:
            return f"{b}{a}"

        @task
        def gather(values: list[int], labels: list[str]) -> None:
            out.append((values, labels))

        gather(plus_one.expand(n=double.expand(n=make())), show.expand_kwargs(kwargs_list()))

    live = await run_dag_once(settings, dag)
    assert live.record.state == RunState.SUCCESS, live.errors
    assert out == [([21, 41], ["x1", "y2", "z3"])]


async def test_a_zero_length_expansion_skips_the_task_and_its_downstream(
    settings: Settings,
) -> None:
    with DAG("map_empty") as dag:

        @task
        def nothing() -> list[int]:
            return []

        @task
        def each(x: int) -> int:
            return x

        mapped = each.expand(x=nothing())
        mapped >> EmptyOperator(task_id="after")
        mapped >> EmptyOperator(task_id="always", trigger_rule=TriggerRule.ALL_DONE)

    live = await run_dag_once(settings, dag)
    assert live.record.state == RunState.SUCCESS
    assert states(live) == {
        "after": "skipped",
        "always": "success",
        "each": "skipped",
        "nothing": "success",
    }


async def test_what_cannot_be_mapped_over_fails_the_task_naming_why(settings: Settings) -> None:
    with DAG("map_bad", default_args={"retries": 2}) as dag:

        @task
        def scalar() -> int:
            return 7

        @task
        def each(x: int) -> int:
            return x

        each.expand(x=scalar())
        EmptyOperator.partial(task_id="too_many").expand_kwargs([{}] * 5)

    settings = replace(settings, max_map_length=4)
    live = await run_dag_once(settings, dag)
    assert live.record.state == RunState.FAILED
    assert live.tis["each"].state == TaskState.FAILED
    assert "must be a list or a dict to map over, got int" in live.errors["each"]
    assert live.tis["too_many"].state == TaskState.FAILED
    assert "to 5 instances: the limit is 4" in live.errors["too_many"]


async def test_each_instance_retries_on_its_own(settings: Settings) -> None:
    with DAG("map_retry") as dag:

        @task(retries=1, retry_delay=0)
        def flaky(x: int) -> int:
            ti = get_current_context()["ti"]
            if x == 2 and ti.try_number == 1:
                raise RuntimeError("first try of x=2 fails")
            return x

        flaky.expand(x=[1, 2, 3])

    live = await run_dag_once(settings, dag)
    assert live.record.state == RunState.SUCCESS
    assert [live.tis[f"flaky[{i}]"].try_number for i in range(3)] == [1, 2, 1]
    async with open_store(settings.db_url) as store:
        tries = await store.tries("map_retry", live.record.run_id, "flaky", 1)
    assert [(t.try_number, str(t.state)) for t in tries] == [(1, "failed"), (2, "success")]
    assert "first try of x=2 fails" in (tries[0].error or "")


async def test_max_active_tis_per_dag_bounds_the_instances_running_at_once(
    settings: Settings,
) -> None:
    running = 0
    peak = 0
    lock = threading.Lock()
    release = threading.Event()

    def work(x: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            if running == 2:
                release.set()
        release.wait(5)
        with lock:
            running -= 1
        return x

    with DAG("map_limited") as dag:
        PythonOperator.partial(
            task_id="limited", python_callable=work, max_active_tis_per_dag=2
        ).expand(op_args=[[i] for i in range(6)])
    live = await run_dag_once(settings, dag)
    assert live.record.state == RunState.SUCCESS
    assert peak == 2


async def test_map_index_template_labels_each_instance(settings: Settings) -> None:
    with DAG("map_labels") as dag:

        @task(map_index_template="{{ my_label }}")
        def label(name: str) -> None:
            get_current_context()["my_label"] = f"file {name}"

        label.expand(name=["a.csv", "b.csv"])
        BashOperator.partial(task_id="cmd", map_index_template="{{ task.bash_command }}").expand(
            bash_command=["true", "echo x"]
        )

    live = await run_dag_once(settings, dag)
    async with open_store(settings.db_url) as store:
        tis = {t.key: t for t in await store.task_instances("map_labels", live.record.run_id)}
    assert tis["label[0]"].rendered_map_index == "file a.csv"
    assert tis["label[1]"].rendered_map_index == "file b.csv"
    assert tis["cmd[1]"].rendered_map_index == "echo x"


async def test_a_mapped_task_runs_in_its_own_process(settings: Settings, tmp_path: Path) -> None:
    dag_file = tmp_path / "mapped_dags" / "mapped_process.py"
    dag_file.parent.mkdir()
    dag_file.write_text(
        "import os\n"
        "from orchestrator import DAG, task\n"
        "with DAG('mapped_process') as dag:\n"
        "    @task\n"
        "    def numbers():\n"
        "        return [3, 4]\n"
        "    @task(isolation='process')\n"
        "    def square(n, k):\n"
        "        return [n * n + k, os.getpid()]\n"
        "    square.partial(k=1).expand(n=numbers())\n"
    )
    bag = await load_folder(dag_file.parent)
    live = await run_dag_once(settings, bag.dags["mapped_process"])
    assert live.record.state == RunState.SUCCESS, live.errors
    values = [live.xcoms[(f"square[{i}]", "return_value")] for i in range(2)]
    assert [v.split(",")[0] for v in values] == ["[10", "[17"]


async def test_runs_show_logs_and_the_api_name_the_map_index(settings: Settings) -> None:
    with DAG("map_shown") as dag:
        BashOperator.partial(task_id="say").expand(bash_command=["echo zero", "echo one"])
    live = await run_dag_once(settings, dag)
    run_id = live.record.run_id
    db = settings.db_url

    shown = run_cli("runs", "show", run_id, "--dag", "map_shown", db=db)
    rows = [line.split() for line in shown.stdout.splitlines() if line.startswith("say ")]
    assert [row[:3] for row in rows] == [["say", "0", "success"], ["say", "1", "success"]]
    logs = run_cli("tasks", "logs", "map_shown", run_id, "say", "--map-index", "1", db=db)
    assert "one" in logs.stdout
    assert "zero" not in logs.stdout
    refused = run_cli("tasks", "logs", "map_shown", run_id, "say", db=db)
    assert refused.returncode != 0
    assert "task 'say' is mapped: give --map-index (0..1)" in refused.stderr

    async with serving(Control(), settings.db_url) as (api, _):
        detail = (await api.get(f"/api/v1/runs/{run_id}")).json()
        assert sorted((t["task_id"], t["map_index"]) for t in detail["tasks"]) == [
            ("say", 0),
            ("say", 1),
        ]
        path = f"/api/v1/runs/{run_id}/tasks/say/logs"
        got = (await api.get(path, params={"map_index": 0})).json()
        assert got["map_index"] == 0
        assert got["tries"][0]["log"] == "zero\n"
        missing = await api.get(path)
        assert missing.status_code == 400
        assert "map_index: task 'say' is mapped" in missing.json()["error"]
        assert (await api.get(path, params={"map_index": 5})).status_code == 404


# -- the driver, pure ------------------------------------------------------------------


def _mapped_dag() -> DAG:
    with DAG("pure_map") as dag:
        up = EmptyOperator(task_id="up")
        m = EmptyOperator.partial(task_id="m").expand_kwargs([{}, {}, {}])
        up >> m >> EmptyOperator(task_id="down")
    return dag


def _finish(driver: RunDriver, key: str) -> Any:
    driver.feed(Queued(key), T0)
    driver.feed(TryStarted(key), T0)
    return driver.feed(TryEnded(key, TryOutcome.SUCCESS), T0)


def test_the_driver_asks_for_the_length_then_makes_the_instances() -> None:
    dag = _mapped_dag()
    run = RunRecord("pure_map", "r", RunState.QUEUED, "manual", T0, T0)
    driver = RunDriver(dag, run)
    step = driver.feed(Start(), T0)
    assert step.ready == ["up"]
    assert step.expand == []
    assert driver.tis["m"].map_index == -1
    step = _finish(driver, "up")
    assert step.expand == ["m"]
    assert step.ready == []
    step = driver.feed(Expanded("m", 3), T0)
    assert step.ready == ["m[0]", "m[1]", "m[2]"]
    assert "m" not in driver.tis
    for key in ("m[0]", "m[1]"):
        assert _finish(driver, key).ready == []  # down waits for every instance
    assert _finish(driver, "m[2]").ready == ["down"]
    assert _finish(driver, "down").ended is RunState.SUCCESS

    # Cleared in part: only that instance runs again, with no new expansion.
    step = driver.feed(Clear(frozenset({"m[1]", "down"})), T0)
    assert step.expand == []
    assert step.ready == ["m[1]"]
    assert _finish(driver, "m[1]").ready == ["down"]
    _finish(driver, "down")
    # Cleared entirely: it expands again, and what the new length leaves out is removed.
    step = driver.feed(Clear(frozenset({"m", "down"})), T0)
    assert step.expand == ["m"]
    step = driver.feed(Expanded("m", 2), T0)
    assert step.ready == ["m[0]", "m[1]"]
    assert driver.tis["m[2]"].state == TaskState.REMOVED
    _finish(driver, "m[0]")
    assert _finish(driver, "m[1]").ready == ["down"]
    assert _finish(driver, "down").ended is RunState.SUCCESS


def test_a_restart_asks_again_and_keeps_the_instances_it_made() -> None:
    dag = _mapped_dag()
    run = RunRecord("pure_map", "r", RunState.QUEUED, "manual", T0, T0)
    first = RunDriver(dag, run)
    first.feed(Start(), T0)
    _finish(first, "up")
    # The process stopped before the expansion was answered: the next one asks again.
    again = RunDriver(dag, run, [ti for ti in first.tis.values()])
    assert again.feed(Start(), T0).expand == ["m"]
    again.feed(Expanded("m", 2), T0)
    _finish(again, "m[0]")
    # Restarted once more, the instances are found as stored and m[1] still runs.
    third = RunDriver(dag, run, [ti for ti in again.tis.values()])
    step = third.feed(Start(), T0)
    assert step.expand == []
    assert step.ready == ["m[1]"]
    assert set(third.tis) == {"up", "m[0]", "m[1]", "down"}


def test_an_expansion_error_fails_the_task_and_alerts() -> None:
    dag = _mapped_dag()
    run = RunRecord("pure_map", "r", RunState.QUEUED, "manual", T0, T0)
    driver = RunDriver(dag, run)
    driver.feed(Start(), T0)
    _finish(driver, "up")
    step = driver.feed(Expanded("m", 0, "cannot expand: boom"), T0)
    assert driver.tis["m"].state == TaskState.FAILED
    assert driver.tis["down"].state == TaskState.UPSTREAM_FAILED
    assert step.ended is RunState.FAILED
    assert [a.error for a in step.alerts if a.task_id == "m"] == ["cannot expand: boom"]


# -- definitions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: BashOperator.partial(task_id="t").expand(bash_command="echo"),
            "expand() argument 'bash_command' must be a list, a dict or a task's output",
        ),
        (
            lambda: BashOperator.partial(task_id="t", bash_command="x").expand(bash_command=["y"]),
            "'bash_command' is given to both partial() and expand()",
        ),
        (
            lambda: BashOperator.partial(task_id="t").expand(nope=[1]),
            "BashOperator has no argument 'nope' to map",
        ),
        (
            lambda: BashOperator.partial(task_id="t").expand(task_id=["a"]),
            "'task_id' cannot be mapped",
        ),
        (
            lambda: EmptyOperator.partial(task_id="t").expand_kwargs([1]),
            "expand_kwargs() items must be dicts",
        ),
        (lambda: EmptyOperator.partial(task_id="t").expand(), "needs at least one argument"),
    ],
)
def test_a_bad_mapping_fails_the_dag_naming_task_and_argument(build: Any, message: str) -> None:
    with DAG("bad_map"), pytest.raises(DagDefinitionError) as caught:
        build()
    assert message in str(caught.value)
    assert "'t'" in str(caught.value)


def test_a_taskflow_mapping_names_the_function_parameter() -> None:
    @task
    def f(x: int) -> int:
        return x

    with DAG("bad_taskflow_map"), pytest.raises(DagDefinitionError) as caught:
        f.expand(y=[1])
    assert "expand() argument 'y' is not a parameter of f()" in str(caught.value)


# -- the store -------------------------------------------------------------------------


async def test_a_store_of_the_previous_schema_keeps_its_rows_with_map_index_minus_one(
    db_url: str,
) -> None:
    """Migration 6 makes the instance tables anew, keyed by map_index: rows stay."""
    async with open_store(db_url, migrate=False) as store:
        assert await store.backend.migrate(MIGRATIONS[:5], "then") == [1, 2, 3, 4, 5]
        await store.write(
            [
                Statement(
                    "task_instance",
                    "INSERT INTO task_instance (dag_id, run_id, task_id, state, try_number) "
                    "VALUES ('d', 'r', 't', 'success', 1)",
                    (),
                ),
                Statement(
                    "task_try",
                    "INSERT INTO task_try (dag_id, run_id, task_id, try_number, state) "
                    "VALUES ('d', 'r', 't', 1, 'success')",
                    (),
                ),
                Statement(
                    "xcom",
                    "INSERT INTO xcom (dag_id, run_id, task_id, key, value, timestamp) "
                    "VALUES ('d', 'r', 't', 'return_value', '5', '2026-01-01')",
                    (),
                ),
            ]
        )
    async with open_store(db_url) as store:
        (ti,) = await store.task_instances("d", "r")
        assert (ti.task_id, ti.map_index, ti.state, ti.try_number) == ("t", -1, "success", 1)
        assert [t.try_number for t in await store.tries("d", "r", "t")] == [1]
        assert await store.xcoms("d", "r") == {("t", "return_value"): "5"}


async def test_a_cleared_mapped_task_expands_again_over_the_new_upstream_value(
    settings: Settings,
) -> None:
    """`tasks clear` of the upstream with --downstream, then the run driven again: the
    mapped task expands over what the upstream returns now; instances past the new
    length are removed, and the reduce gets the new list."""
    from orchestrator.core import TaskEvent, apply, with_downstream
    from tests.helpers import drive

    size = [3]
    got: list[Any] = []

    with DAG("map_again") as dag:

        @task
        def numbers() -> list[int]:
            return list(range(size[0]))

        @task
        def square(n: int) -> int:
            return n * n

        @task
        def collect(values: list[int]) -> None:
            got.append(values)

        collect(square.expand(n=numbers()))

    first = await run_dag_once(settings, dag)
    assert first.record.state == RunState.SUCCESS
    size[0] = 2
    async with open_store(settings.db_url) as store:
        run = await store.get_run("map_again", first.record.run_id)
        chosen = with_downstream(dag, {"numbers"})
        tis = [
            t for t in await store.task_instances("map_again", run.run_id) if t.task_id in chosen
        ]
        for ti in tis:
            ti.state = apply(ti.state, TaskEvent.CLEAR, ti.key)
        run.state = RunState.QUEUED
        await store.clear_task_instances(run, tis)
        again = await drive(settings, store, dag, run)
        assert again.record.state == RunState.SUCCESS, again.errors
        stored = {t.key: t for t in await store.task_instances("map_again", run.run_id)}
    assert got == [[0, 1, 4], [0, 1]]
    assert (stored["square[0]"].try_number, stored["square[0]"].state) == (2, "success")
    assert stored["square[2]"].state == "removed"


async def test_tasks_clear_map_index_runs_that_instance_again(settings: Settings) -> None:
    """`tasks clear DAG RUN t --map-index 1`: that instance alone is cleared; driven again,
    it runs as try 2 and the others keep their first try."""
    from tests.helpers import drive

    folder = Path(os.environ["ORCHESTRATOR_DAGS"])
    (folder / "map_clear_one.py").write_text(
        "from orchestrator import DAG\n"
        "from orchestrator.operators import BashOperator\n"
        "with DAG('map_clear_one'):\n"
        "    BashOperator.partial(task_id='t').expand(bash_command=['echo a', 'echo b'] * 2)\n"
    )
    dag = (await load_folder(folder)).dags["map_clear_one"]
    first = await run_dag_once(settings, dag)
    run_id = first.record.run_id
    done = run_cli(
        "tasks", "clear", "map_clear_one", run_id, "t", "--map-index", "1", db=settings.db_url
    )
    assert "cleared 1 task instance(s): t[1]" in done.stdout, done.stderr
    async with open_store(settings.db_url) as store:
        run = await store.get_run("map_clear_one", run_id)
        again = await drive(settings, store, dag, run)
    assert again.record.state == RunState.SUCCESS
    assert [again.tis[f"t[{i}]"].try_number for i in range(4)] == [1, 2, 1, 1]


async def test_a_mapped_sensors_instances_defer_and_hold_no_slot(
    settings: Settings, tmp_path: Path
) -> None:
    """With one slot, a sensor mapped over three files waits deferred while the task that
    writes the files runs: holding slots, they would starve it until they time out."""
    from sensors import FileSensor

    paths = [str(tmp_path / f"in_{i}.csv") for i in range(3)]

    def write_files() -> None:
        for path in paths:
            Path(path).write_text("x")

    with DAG("map_sensors") as dag:
        FileSensor.partial(task_id="wait", poke_interval=0.05, timeout=30).expand(filepath=paths)
        PythonOperator(task_id="write", python_callable=write_files)
    one_slot = replace(settings, parallelism=1)
    live = await run_dag_once(one_slot, dag)
    assert live.record.state == RunState.SUCCESS, live.errors
    assert states(live) == {
        "wait[0]": "success",
        "wait[1]": "success",
        "wait[2]": "success",
        "write": "success",
    }
    async with open_store(settings.db_url) as store:
        tries = await store.tries("map_sensors", live.record.run_id, "wait", 2)
    assert [(t.try_number, str(t.state)) for t in tries] == [(1, "success")]
