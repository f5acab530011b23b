"""Driving whole DAG runs in-process, on both store backends."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator import DAG, Connection, FailTask, TriggerRule, Variable, task
from orchestrator._settings import Settings
from orchestrator.core._state import RunState, TaskState
from orchestrator.dagfiles._loader import load_folder
from orchestrator.operators import (
    BashOperator,
    BranchPythonOperator,
    EmailOperator,
    EmptyOperator,
    PythonOperator,
    ShortCircuitOperator,
    TriggerDagRunOperator,
)
from orchestrator.runtime._drive import run_dag_once
from orchestrator.runtime._live import LiveRun
from orchestrator.store import open_store
from tests.helpers import drive, gone


def states(live: LiveRun) -> dict[str, str]:
    return {tid: str(ti.state) for tid, ti in live.tis.items()}


async def go(settings: Settings, dag: DAG, **kwargs: Any) -> LiveRun:
    return await run_dag_once(settings, dag, **kwargs)


def log_text(live: LiveRun, settings: Settings, task_id: str, try_number: int = 1) -> str:
    from orchestrator._logging import task_log_path

    path = task_log_path(
        settings.logs_dir, live.dag.dag_id, live.record.run_id, task_id, try_number
    )
    return path.read_text()


async def test_etl_example_succeeds(settings: Settings) -> None:
    """The ETL example of SPEC section 1 runs to success with XComs flowing."""
    bag = await load_folder(Path(__file__).parent.parent / "examples" / "dags")
    live = await go(settings, bag.dags["dag_etl_example"])
    assert live.record.state == RunState.SUCCESS
    assert set(states(live).values()) == {"success"}
    assert "loaded 5 rows into the warehouse" in log_text(live, settings, "load_warehouse")


async def test_every_state_change_is_in_the_store(settings: Settings) -> None:
    """After the run, the store holds the run, each instance and each try."""
    with DAG("persisted") as dag:
        EmptyOperator(task_id="a") >> EmptyOperator(task_id="b")
    live = await go(settings, dag, conf={"x": 1})
    async with open_store(settings.db_url) as store:
        run = await store.get_run("persisted", live.record.run_id)
        assert (run.state, run.conf, run.run_type) == (RunState.SUCCESS, {"x": 1}, "manual")
        tis = await store.task_instances("persisted", live.record.run_id)
        assert {(t.task_id, t.state, t.try_number) for t in tis} == {
            ("a", TaskState.SUCCESS, 1),
            ("b", TaskState.SUCCESS, 1),
        }
        assert (await store.tries("persisted", live.record.run_id, "b"))[
            0
        ].state == TaskState.SUCCESS


async def test_failure_propagates_upstream_failed(settings: Settings) -> None:
    """A failed task flags its all_success downstream upstream_failed and fails the run."""

    def boom() -> None:
        raise ValueError("bad data")

    with DAG("fails") as dag:
        a = PythonOperator(task_id="a", python_callable=boom)
        a >> EmptyOperator(task_id="b") >> EmptyOperator(task_id="c")
    live = await go(settings, dag)
    assert states(live) == {"a": "failed", "b": "upstream_failed", "c": "upstream_failed"}
    assert live.record.state == RunState.FAILED
    assert "ValueError: bad data" in log_text(live, settings, "a")


async def test_trigger_rules_in_a_run(settings: Settings) -> None:
    """one_failed handlers run, all_done cleanup runs, and a handled failure can succeed."""

    def boom() -> None:
        raise RuntimeError("x")

    with DAG("rules") as dag:
        work = PythonOperator(task_id="work", python_callable=boom)
        alert = EmptyOperator(task_id="alert", trigger_rule=TriggerRule.ONE_FAILED)
        ok_path = EmptyOperator(task_id="ok_path")
        cleanup = EmptyOperator(task_id="cleanup", trigger_rule=TriggerRule.ALL_DONE)
        work >> [alert, ok_path]
        [alert, ok_path] >> cleanup
    live = await go(settings, dag)
    assert states(live) == {
        "work": "failed",
        "alert": "success",
        "ok_path": "upstream_failed",
        "cleanup": "success",
    }
    assert live.record.state == RunState.SUCCESS


async def test_retries_count_tries_and_keep_each(settings: Settings) -> None:
    """A task failing twice then succeeding ends success on try 3, every try recorded."""
    calls: list[int] = []

    def flaky(try_number: int) -> str:
        calls.append(try_number)
        if try_number < 3:
            raise ConnectionError(f"try {try_number} failed")
        return "ok"

    with DAG("flaky") as dag:
        PythonOperator(task_id="f", python_callable=flaky, retries=2, retry_delay=0)
    live = await go(settings, dag)
    assert calls == [1, 2, 3]
    assert (live.tis["f"].state, live.tis["f"].try_number) == (TaskState.SUCCESS, 3)
    async with open_store(settings.db_url) as store:
        tries = await store.tries("flaky", live.record.run_id, "f")
    assert [(t.try_number, str(t.state)) for t in tries] == [
        (1, "failed"),
        (2, "failed"),
        (3, "success"),
    ]
    assert "try 1 failed" in (tries[0].error or "")


async def test_retries_run_out(settings: Settings) -> None:
    """With retries exhausted the task fails after retries + 1 tries."""

    def boom() -> None:
        raise RuntimeError("always")

    with DAG("out") as dag:
        PythonOperator(task_id="f", python_callable=boom, retries=1, retry_delay=0)
    live = await go(settings, dag)
    assert (live.tis["f"].state, live.tis["f"].try_number) == (TaskState.FAILED, 2)


async def test_fail_task_skips_retries(settings: Settings) -> None:
    """FailTask fails at once, whatever retries are left."""

    def stop() -> None:
        raise FailTask("bad input, retrying won't help")

    with DAG("failfast") as dag:
        PythonOperator(task_id="f", python_callable=stop, retries=5, retry_delay=0)
    live = await go(settings, dag)
    assert (live.tis["f"].state, live.tis["f"].try_number) == (TaskState.FAILED, 1)


async def test_branch_follows_one_path(settings: Settings) -> None:
    """BranchPythonOperator skips the paths it does not follow; a none_failed join runs."""
    with DAG("branch") as dag:
        pick = BranchPythonOperator(task_id="pick", python_callable=lambda: "left")
        left, right = EmptyOperator(task_id="left"), EmptyOperator(task_id="right")
        after_right = EmptyOperator(task_id="after_right")
        join = EmptyOperator(task_id="join", trigger_rule="none_failed_min_one_success")
        pick >> [left, right]
        right >> after_right
        [left, after_right] >> join
    live = await go(settings, dag)
    assert states(live) == {
        "pick": "success",
        "left": "success",
        "right": "skipped",
        "after_right": "skipped",
        "join": "success",
    }


async def test_task_branch_decorator(settings: Settings) -> None:
    """@task.branch chooses with an async callable too."""
    with DAG("tbranch") as dag:

        @task.branch
        async def choose() -> list[str]:
            return ["b"]

        a, b = EmptyOperator(task_id="a"), EmptyOperator(task_id="b")
        choose() >> [a, b]
    live = await go(settings, dag)
    assert (states(live)["a"], states(live)["b"]) == ("skipped", "success")


async def test_branch_to_an_unknown_task_fails(settings: Settings) -> None:
    """A branch returning an unknown task id fails, naming it."""
    with DAG("badbranch") as dag:
        BranchPythonOperator(task_id="pick", python_callable=lambda: "nowhere") >> EmptyOperator(
            task_id="a"
        )
    live = await go(settings, dag)
    assert live.tis["pick"].state == TaskState.FAILED
    assert "nowhere" in live.errors["pick"]


async def test_short_circuit_skips_everything_downstream(settings: Settings) -> None:
    """A falsy ShortCircuitOperator skips all downstream tasks, even all_done ones."""
    with DAG("short") as dag:
        gate = ShortCircuitOperator(task_id="gate", python_callable=lambda: False)
        a = EmptyOperator(task_id="a")
        b = EmptyOperator(task_id="b", trigger_rule="all_done")
        gate >> a >> b
    live = await go(settings, dag)
    assert states(live) == {"gate": "success", "a": "skipped", "b": "skipped"}
    assert live.record.state == RunState.SUCCESS


async def test_short_circuit_respecting_trigger_rules(settings: Settings) -> None:
    """With ignore_downstream_trigger_rules=False only direct downstream tasks are skipped."""
    with DAG("short2") as dag:
        gate = ShortCircuitOperator(
            task_id="gate", python_callable=lambda: 0, ignore_downstream_trigger_rules=False
        )
        a = EmptyOperator(task_id="a")
        b = EmptyOperator(task_id="b", trigger_rule="all_done")
        gate >> a >> b
    live = await go(settings, dag)
    assert states(live) == {"gate": "success", "a": "skipped", "b": "success"}


async def test_async_task_times_out_on_time(settings: Settings) -> None:
    """An async callable past execution_timeout is cancelled and fails on time."""

    async def slow() -> None:
        await anyio.sleep(30)

    with DAG("atimeout") as dag:
        PythonOperator(task_id="s", python_callable=slow, execution_timeout=timedelta(seconds=0.2))
    started = time.monotonic()
    live = await go(settings, dag)
    assert time.monotonic() - started < 5
    assert live.tis["s"].state == TaskState.FAILED
    assert "timed out" in live.errors["s"]


async def test_sync_task_times_out_on_time_and_is_interrupted(settings: Settings) -> None:
    """A sync callable past its timeout fails on time and its Python loop is stopped."""
    stopped = threading.Event()

    def spin() -> None:
        try:
            while True:
                sum(range(1000))
        finally:
            stopped.set()

    with DAG("stimeout") as dag:
        PythonOperator(task_id="s", python_callable=spin, execution_timeout=timedelta(seconds=0.2))
    started = time.monotonic()
    live = await go(settings, dag)
    assert time.monotonic() - started < 5
    assert live.tis["s"].state == TaskState.FAILED
    assert await anyio.to_thread.run_sync(stopped.wait, 5)


async def test_bash_timeout_kills_the_process_group(settings: Settings, tmp_path: Path) -> None:
    """On timeout, the Bash command's children are killed too."""
    pidfile = tmp_path / "child.pid"
    with DAG("btimeout") as dag:
        BashOperator(
            task_id="b",
            bash_command=f"sleep 60 & echo $! > {pidfile}; wait",
            execution_timeout=timedelta(seconds=0.5),
        )
    live = await go(settings, dag)
    assert live.tis["b"].state == TaskState.FAILED
    assert gone(int(pidfile.read_text()))


async def test_bash_operator_features(settings: Settings, tmp_path: Path) -> None:
    """env, append_env, cwd, templating, output in the log and the last line as XCom."""
    os.environ["ORCH_TEST_OUTER"] = "outer"
    try:
        with DAG("bash", params={"who": "world"}) as dag:
            BashOperator(
                task_id="only_env",
                bash_command='echo "[$ONLY] [${ORCH_TEST_OUTER:-unset}]"',
                env={"ONLY": "x"},
            )
            BashOperator(
                task_id="appended",
                bash_command='echo "[$ADDED] [$ORCH_TEST_OUTER] $(pwd)"',
                env={"ADDED": "y"},
                append_env=True,
                cwd=str(tmp_path),
            )
            BashOperator(task_id="tpl", bash_command="echo hello {{ params.who }} {{ ds_nodash }}")
        live = await go(settings, dag)
    finally:
        del os.environ["ORCH_TEST_OUTER"]
    assert "[x] [unset]" in log_text(live, settings, "only_env")
    assert f"[y] [outer] {tmp_path}" in log_text(live, settings, "appended")
    value = json.loads(live.xcoms[("tpl", "return_value")])
    assert value.startswith("hello world 2")


async def test_bash_exit_99_skips(settings: Settings) -> None:
    """Exit code 99 finishes the Bash task as skipped; other codes fail it."""
    with DAG("bskip") as dag:
        BashOperator(task_id="skip", bash_command="exit 99")
        BashOperator(task_id="fail", bash_command="exit 3")
    live = await go(settings, dag)
    assert (states(live)["skip"], states(live)["fail"]) == ("skipped", "failed")
    assert "exit code 3" in live.errors["fail"]


async def test_bash_script_file_is_rendered(
    settings: Settings, dag_file: Callable[[str, str], Path]
) -> None:
    """A bash_command ending in .sh is read next to the DAG file and rendered."""
    dag_file("script.sh", "echo script for {{ params.n }}\n")
    dag_file(
        "with_script.py",
        """
        from orchestrator import DAG
        from orchestrator.operators import BashOperator
        with DAG("with_script", params={"n": 7}):
            BashOperator(task_id="s", bash_command="script.sh")
        """,
    )
    dag = (await load_folder(Path(settings.dags))).dags["with_script"]
    live = await go(settings, dag)
    assert "script for 7" in log_text(live, settings, "s")


async def test_templating_context(settings: Settings) -> None:
    """Templated fields see ds, params, dag_run.conf, var.value, var.json and xcom_pull."""
    async with open_store(settings.db_url) as store:
        await store.set_variable("greeting", "hi")
        await store.set_variable("cfg", json.dumps({"n": 5}))
    with DAG("tpl", params={"p": "P"}) as dag:
        first = PythonOperator(task_id="first", python_callable=lambda: {"rows": 3})
        show = PythonOperator(
            task_id="show",
            python_callable=lambda text: text,
            op_args=[
                "{{ ds }}|{{ params.p }}|{{ dag_run.conf['c'] }}|{{ var.value.greeting }}|"
                "{{ var.json.cfg.n }}|{{ ti.xcom_pull(task_ids='first')['rows'] }}|{{ run_id }}"
            ],
        )
        first >> show
    live = await go(settings, dag, conf={"c": "C"})
    ds = live.info.logical_date.strftime("%Y-%m-%d")
    expected = f"{ds}|P|C|hi|5|3|{live.record.run_id}"
    assert json.loads(live.xcoms[("show", "return_value")]) == expected


async def test_undefined_template_name_fails_naming_the_field(settings: Settings) -> None:
    """An undefined template variable fails the task naming the task and field."""
    with DAG("undef") as dag:
        BashOperator(task_id="b", bash_command="echo {{ nope }}")
    live = await go(settings, dag)
    assert live.tis["b"].state == TaskState.FAILED
    assert "task 'b'" in live.errors["b"]
    assert "'bash_command'" in live.errors["b"]
    assert "'nope' is undefined" in live.errors["b"]


async def test_context_keys(settings: Settings) -> None:
    """A callable taking **context gets every SPEC context key."""
    seen: dict[str, Any] = {}

    def grab(**context: Any) -> None:
        seen.update(context)

    with DAG("ctx", params={"a": 1}) as dag:
        PythonOperator(task_id="t", python_callable=grab)
    await go(settings, dag, conf={"b": 2})
    for key in (
        "ti",
        "task",
        "dag",
        "dag_run",
        "run_id",
        "logical_date",
        "ds",
        "ds_nodash",
        "ts",
        "data_interval_start",
        "data_interval_end",
        "params",
        "conf",
        "var",
        "triggering_dataset_events",
        "event",
        "try_number",
    ):
        assert key in seen, key
    assert seen["params"] == {"a": 1, "b": 2}
    assert seen["conf"] == {"b": 2}
    assert seen["try_number"] == 1
    assert seen["dag_run"].conf == {"b": 2}


async def test_taskflow_xcom_and_multiple_outputs(settings: Settings) -> None:
    """@task results flow as arguments; dict returns also push one XCom per key."""
    with DAG("flow") as dag:

        @task
        def extract() -> dict[str, int]:
            return {"rows": 3, "cols": 2}

        @task
        async def total(rows: int, data: dict[str, int]) -> int:
            return rows * data["cols"]

        data = extract()
        total(data["rows"], data)
    live = await go(settings, dag)
    assert json.loads(live.xcoms[("total", "return_value")]) == 6
    assert json.loads(live.xcoms[("extract", "rows")]) == 3


async def test_xcom_push_and_pull(settings: Settings) -> None:
    """ti.xcom_push and ti.xcom_pull by task and key, single and list."""

    def push(ti: Any) -> None:
        ti.xcom_push("k", [1, 2])

    def pull(ti: Any) -> Any:
        return [ti.xcom_pull(task_ids="push", key="k"), ti.xcom_pull(task_ids=["push"], key="k")]

    with DAG("xc") as dag:
        PythonOperator(task_id="push", python_callable=push) >> PythonOperator(
            task_id="pull", python_callable=pull
        )
    live = await go(settings, dag)
    assert json.loads(live.xcoms[("pull", "return_value")]) == [[1, 2], [[1, 2]]]


async def test_non_json_xcom_fails_clearly(settings: Settings) -> None:
    """A return value that is not JSON fails the task saying so."""
    with DAG("nonjson") as dag:
        PythonOperator(task_id="t", python_callable=lambda: {1, 2})
    live = await go(settings, dag)
    assert live.tis["t"].state == TaskState.FAILED
    assert "task 't': XCom value of type set is not JSON-serialisable" in live.errors["t"]


async def test_oversized_xcom_fails_clearly(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An XCom over the size limit fails the task with its size and the limit."""
    limited = replace(settings, xcom_max_bytes=100)
    with DAG("big") as dag:
        PythonOperator(task_id="t", python_callable=lambda: "x" * 200)
    live = await go(limited, dag)
    assert live.tis["t"].state == TaskState.FAILED
    assert "202 bytes, over the limit of 100 bytes" in live.errors["t"]


async def test_variables_env_wins_and_store_is_read(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Variable.get reads the store, ORCHESTRATOR_VAR_<KEY> overrides it, aget works in async."""
    monkeypatch.setenv("ORCHESTRATOR_VAR_FROM_ENV", "env-value")
    async with open_store(settings.db_url) as store:
        await store.set_variable("from_env", "store-value")
        await store.set_variable("plain", "store-plain")

    def sync_read() -> list[Any]:
        Variable.set("written", {"a": 1}, serialize_json=True)
        return [
            Variable.get("from_env"),
            Variable.get("plain"),
            Variable.get("missing", default_var="dflt"),
            Variable.get("written", deserialize_json=True),
        ]

    async def async_read() -> Any:
        return await Variable.aget("plain")

    with DAG("vars") as dag:
        PythonOperator(task_id="s", python_callable=sync_read)
        PythonOperator(task_id="a", python_callable=async_read)
    live = await go(settings, dag)
    assert json.loads(live.xcoms[("s", "return_value")]) == [
        "env-value",
        "store-plain",
        "dflt",
        {"a": 1},
    ]
    assert json.loads(live.xcoms[("a", "return_value")]) == "store-plain"


async def test_connection_from_env_uri(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """ORCHESTRATOR_CONN_<ID> URIs parse into connections; the password never reaches the log."""
    monkeypatch.setenv(
        "ORCHESTRATOR_CONN_AWS_TEST",
        "aws://AKIAKEY:s3cr3tsecret@?region_name=us-east-1&endpoint_url=http%3A%2F%2F127.0.0.1%3A5000",
    )

    def use() -> dict[str, Any]:
        conn = Connection.get("aws_test")
        print(f"using password {conn.password}")
        return {"login": conn.login, "extra": conn.extra}

    with DAG("conn") as dag:
        PythonOperator(task_id="c", python_callable=use)
    live = await go(settings, dag)
    assert json.loads(live.xcoms[("c", "return_value")]) == {
        "login": "AKIAKEY",
        "extra": {"region_name": "us-east-1", "endpoint_url": "http://127.0.0.1:5000"},
    }
    text = log_text(live, settings, "c")
    assert "s3cr3tsecret" not in text
    assert "using password ***" in text


async def test_task_logs_capture_print_stderr_and_logging(settings: Settings) -> None:
    """Each try's print, stderr and logging output lands in its own file, unmixed."""

    def noisy(name: str) -> None:
        for i in range(20):
            print(f"{name} out {i}")
            print(f"{name} err {i}", file=sys.stderr)
            logging.getLogger("user").warning("%s log %d", name, i)
            time.sleep(0.001)

    with DAG("logs") as dag:
        for name in ("one", "two"):
            PythonOperator(task_id=name, python_callable=noisy, op_args=[name])
    live = await go(settings, dag)
    for name, other in (("one", "two"), ("two", "one")):
        text = log_text(live, settings, name)
        assert f"{name} out 19" in text
        assert f"{name} err 19" in text
        assert f"WARNING user: {name} log 19" in text
        assert other not in text


async def test_independent_sync_tasks_run_at_once(settings: Settings) -> None:
    """Independent sync tasks overlap: three of them meet at a barrier."""
    barrier = threading.Barrier(3, timeout=5)
    with DAG("par") as dag:
        for i in range(3):
            PythonOperator(task_id=f"t{i}", python_callable=barrier.wait)
    live = await go(settings, dag)
    assert set(states(live).values()) == {"success"}


async def test_independent_async_tasks_run_at_once(settings: Settings) -> None:
    """Independent async tasks overlap on the loop."""
    arrived: list[int] = []
    everyone = anyio.Event()

    async def meet(i: int) -> None:
        arrived.append(i)
        if len(arrived) == 3:
            everyone.set()
        with anyio.fail_after(5):
            await everyone.wait()

    with DAG("apar") as dag:
        for i in range(3):
            PythonOperator(task_id=f"t{i}", python_callable=meet, op_args=[i])
    live = await go(settings, dag)
    assert set(states(live).values()) == {"success"}


def _concurrency_probe() -> tuple[Callable[[], None], list[int]]:
    lock = threading.Lock()
    current = [0]
    peak = [0]

    def work() -> None:
        with lock:
            current[0] += 1
            peak[0] = max(peak[0], current[0])
        time.sleep(0.05)
        with lock:
            current[0] -= 1

    return work, peak


async def test_parallelism_bounds_running_tasks(settings: Settings) -> None:
    """No more than ORCHESTRATOR_PARALLELISM tries run at once."""
    work, peak = _concurrency_probe()
    with DAG("bounded") as dag:
        for i in range(6):
            PythonOperator(task_id=f"t{i}", python_callable=work)
    await go(replace(settings, parallelism=2), dag)
    assert peak[0] == 2


async def test_max_active_tasks_bounds_a_dag(settings: Settings) -> None:
    """max_active_tasks=1 makes a DAG's tasks run one at a time."""
    work, peak = _concurrency_probe()
    with DAG("serial", max_active_tasks=1) as dag:
        for i in range(4):
            PythonOperator(task_id=f"t{i}", python_callable=work)
    await go(settings, dag)
    assert peak[0] == 1


async def test_pool_slots_bound_their_tasks(settings: Settings) -> None:
    """Tasks in a pool of 2 slots run two at a time; unknown pools fail the task clearly."""
    async with open_store(settings.db_url) as store:
        await store.set_pool("two", 2)
    work, peak = _concurrency_probe()
    with DAG("pooled") as dag:
        for i in range(5):
            PythonOperator(task_id=f"t{i}", python_callable=work, pool="two")
        EmptyOperator(task_id="lost", pool="nope")
    live = await go(settings, dag)
    assert peak[0] == 2
    assert live.tis["lost"].state == TaskState.FAILED
    assert "pool 'nope' does not exist" in live.errors["lost"]


async def test_priority_weight_orders_waiting_tasks(settings: Settings) -> None:
    """With one slot, waiting tasks start highest priority_weight first."""
    order: list[str] = []
    with DAG("prio") as dag:
        for name, weight in (("low", 1), ("high", 10), ("mid", 5)):
            PythonOperator(
                task_id=name, python_callable=order.append, op_args=[name], priority_weight=weight
            )
    await go(replace(settings, parallelism=1), dag)
    assert order == ["high", "mid", "low"]


async def test_callbacks_get_the_context(settings: Settings) -> None:
    """Task and DAG callbacks are called with the context; a failing callback changes nothing."""
    seen: list[tuple[str, Any]] = []

    def boom() -> None:
        raise RuntimeError("x")

    def broken_callback(context: dict[str, Any]) -> None:
        raise RuntimeError("callback bug")

    with DAG(
        "cb",
        on_failure_callback=lambda c: seen.append(("dag_failure", c["reason"])),
    ) as dag:
        PythonOperator(
            task_id="bad",
            python_callable=boom,
            retries=1,
            retry_delay=0,
            on_retry_callback=lambda c: seen.append(("retry", c["ti"].try_number)),
            on_failure_callback=lambda c: seen.append(("failure", c["exception"])),
        )
        PythonOperator(
            task_id="good",
            python_callable=lambda: 1,
            on_success_callback=broken_callback,
        )
    live = await go(settings, dag)
    assert live.tis["good"].state == TaskState.SUCCESS
    assert ("retry", 1) in seen
    assert ("failure", "RuntimeError: x") in seen
    assert seen[-1] == ("dag_failure", "task_failure")


async def test_run_callback_waits_for_task_callbacks(settings: Settings) -> None:
    """The DAG's callback comes once, after every task callback of the run has returned."""
    seen: list[str] = []
    failed = anyio.Event()

    async def slow_success(context: dict[str, Any]) -> None:
        await failed.wait()
        await anyio.sleep(0.1)  # still running while the other task's end is written
        seen.append("good done")

    async def on_failure(context: dict[str, Any]) -> None:
        seen.append("bad failed")
        failed.set()

    def boom() -> None:
        raise RuntimeError("x")

    with DAG("cb2", on_failure_callback=lambda c: seen.append("dag failed")) as dag:
        PythonOperator(task_id="bad", python_callable=boom, on_failure_callback=on_failure)
        PythonOperator(task_id="good", python_callable=lambda: 1, on_success_callback=slow_success)
    live = await go(settings, dag)
    assert live.record.state == RunState.FAILED
    assert seen == ["bad failed", "good done", "dag failed"]


async def test_cleared_task_runs_again(settings: Settings) -> None:
    """A cleared task instance runs again, as try 2, when its run is driven again."""
    from orchestrator.core._state import TaskEvent, apply

    with DAG("again") as dag:
        EmptyOperator(task_id="a") >> EmptyOperator(task_id="b")
    live = await go(settings, dag)
    async with open_store(settings.db_url) as store:
        run = await store.get_run("again", live.record.run_id)
        tis = [t for t in await store.task_instances("again", run.run_id) if t.task_id == "b"]
        for ti in tis:
            ti.state = apply(ti.state, TaskEvent.CLEAR, "b")
        run.state = RunState.QUEUED
        await store.clear_task_instances(run, tis)
        again = await drive(settings, store, dag, run)
        assert (again.tis["a"].try_number, again.tis["b"].try_number) == (1, 2)
        assert again.record.state == RunState.SUCCESS


async def test_depends_on_past_blocks_after_a_failed_run(settings: Settings) -> None:
    """A depends_on_past task does not run when its previous instance failed; the run says why."""
    fail = [True]

    def maybe() -> None:
        if fail[0]:
            raise RuntimeError("first run fails")

    with DAG("past") as dag:
        PythonOperator(task_id="t", python_callable=maybe, depends_on_past=True)
    first = await go(settings, dag)
    assert first.record.state == RunState.FAILED
    fail[0] = False
    second = await go(settings, dag)
    assert second.record.state == RunState.FAILED
    assert second.tis["t"].state == TaskState.NONE
    assert "depends_on_past" in second.errors["<run>"]


async def test_trigger_dag_run_records_the_run(settings: Settings) -> None:
    """TriggerDagRunOperator stores a queued manual run of the target with its conf."""
    with DAG("parent") as dag:
        TriggerDagRunOperator(
            task_id="trigger", trigger_dag_id="child", trigger_run_id="from_parent", conf={"x": 1}
        )
    live = await go(settings, dag)
    assert live.tis["trigger"].state == TaskState.SUCCESS
    async with open_store(settings.db_url) as store:
        run = await store.get_run("child", "from_parent")
    assert (run.state, run.run_type, run.conf) == (RunState.QUEUED, "manual", {"x": 1})


async def test_email_operator_without_smtp_fails_clearly(settings: Settings) -> None:
    """EmailOperator with no SMTP host fails saying SMTP is not configured."""
    with DAG("mail") as dag:
        EmailOperator(task_id="m", to="a@example.com", subject="s", html_content="b")
    live = await go(settings, dag)
    assert live.tis["m"].state == TaskState.FAILED
    assert "SMTP not configured" in live.errors["m"]


ISOLATED = """
import ctypes, os, time
from dataclasses import replace
from datetime import timedelta
from orchestrator import DAG
from orchestrator.operators import PythonOperator

def ok(ti):
    ti.xcom_push("extra", 1)
    return {"pid": os.getpid()}

def hard_exit():
    os._exit(3)

def segfault():
    ctypes.string_at(0)

def hang():
    time.sleep(60)

with DAG("isolated"):
    PythonOperator(task_id="ok", python_callable=ok, isolation="process")
    PythonOperator(task_id="exit", python_callable=hard_exit, isolation="process")
    PythonOperator(task_id="segv", python_callable=segfault, isolation="process")
    PythonOperator(task_id="hang", python_callable=hang, isolation="process",
                   execution_timeout=timedelta(seconds=1))
"""


@pytest.mark.slow
async def test_process_isolation(settings: Settings, dag_file: Callable[[str, str], Path]) -> None:
    """isolation='process': results come back; exit, segfault and timeout fail only that try."""
    dag_file("isolated.py", ISOLATED)
    dag = (await load_folder(Path(settings.dags))).dags["isolated"]
    started = time.monotonic()
    live = await go(settings, dag)
    assert time.monotonic() - started < 20
    assert json.loads(live.xcoms[("ok", "return_value")])["pid"] != os.getpid()
    assert json.loads(live.xcoms[("ok", "extra")]) == 1
    assert states(live) == {"ok": "success", "exit": "failed", "segv": "failed", "hang": "failed"}
    assert "exit code 3" in live.errors["exit"]
    assert "SIGSEGV" in live.errors["segv"]
    assert "timed out" in live.errors["hang"]
