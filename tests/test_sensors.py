"""Sensors: the wait's decisions (pure, on given times), the sensor base's arguments, and
deferred waits run for real: in ``dags test`` and in the daemon, killed mid-wait."""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator import DAG, task
from orchestrator._settings import Settings
from orchestrator.core import Resumption
from orchestrator.core._sensing import (
    EndWait,
    PokeResult,
    SensorPolicy,
    WaitState,
    after_poke,
    first_wait,
)
from orchestrator.errors import DagDefinitionError
from orchestrator.store import open_store
from sensors import BaseSensor, PokeReturnValue
from tests.daemon_proc import DaemonProc
from tests.helpers import run_cli

T0 = datetime(2026, 3, 1, tzinfo=UTC)
SECOND = timedelta(seconds=1)
DagFile = Callable[[str, str], Path]
Daemon = Callable[..., DaemonProc]


def policy(**kw: Any) -> SensorPolicy:
    base: dict[str, Any] = {"poke_interval": 60 * SECOND, "timeout": 3600 * SECOND}
    return SensorPolicy(**{**base, **kw})


# -- the wait, pure --------------------------------------------------------------------------


def test_the_first_wait_is_the_interval_spread_by_at_most_a_tenth() -> None:
    """Spread up to a tenth of the interval (at most 1 s), fixed by the seed."""
    waits = [first_wait(policy(), 1, T0, f"seed{i}").next_poke - T0 for i in range(200)]
    assert all(60 * SECOND <= w <= 61 * SECOND for w in waits)
    assert len(set(waits)) > 100  # spread, not in lockstep
    assert first_wait(policy(), 1, T0, "s") == first_wait(policy(), 1, T0, "s")
    short = policy(poke_interval=2 * SECOND)
    assert all(first_wait(short, 1, T0, f"s{i}").next_poke - T0 <= 2.2 * SECOND for i in range(50))


def test_a_time_sensor_is_poked_when_its_time_comes_not_an_interval_later() -> None:
    """A poke that knows when the condition will hold (``ready_at``) is next poked then:
    never later than the interval, never before now, never past the deadline."""
    wait = first_wait(policy(), 1, T0, "s")
    now = T0 + 60 * SECOND
    soon = after_poke(policy(), wait, PokeResult(False, ready_at=now + 5 * SECOND), now, "s")
    assert isinstance(soon, WaitState)
    assert soon.next_poke == now + 5 * SECOND
    late = after_poke(policy(), wait, PokeResult(False, ready_at=now + 600 * SECOND), now, "s")
    assert isinstance(late, WaitState)
    assert now + 60 * SECOND <= late.next_poke <= now + 61 * SECOND
    past = after_poke(policy(), wait, PokeResult(False, ready_at=now - SECOND), now, "s")
    assert isinstance(past, WaitState)
    assert past.next_poke == now


def test_a_poke_that_finds_the_condition_ends_the_wait_with_its_xcom() -> None:
    wait = first_wait(policy(), 1, T0, "s")
    done = after_poke(policy(), wait, PokeResult(True, '{"n": 1}'), T0 + 60 * SECOND, "s")
    assert done == EndWait(Resumption.SUCCESS, xcoms={"return_value": '{"n": 1}'})
    bare = after_poke(policy(), wait, PokeResult(True), T0 + 60 * SECOND, "s")
    assert bare == EndWait(Resumption.SUCCESS, xcoms={})


def test_a_poke_that_raises_fails_the_try_and_retries_apply() -> None:
    wait = first_wait(policy(), 1, T0, "s")
    ended = after_poke(policy(), wait, PokeResult(False, error="boom"), T0, "s")
    assert ended == EndWait(Resumption.FAILED, "boom", retryable=True)


def test_the_timeout_counts_from_the_first_poke_and_is_final() -> None:
    """The last poke comes at the deadline; false then: failed and not retried, or skipped
    with soft_fail."""
    p = policy(poke_interval=50 * SECOND, timeout=120 * SECOND)
    wait: WaitState | EndWait = first_wait(p, 1, T0, "s")
    times = []
    while isinstance(wait, WaitState):
        times.append(wait.next_poke)
        wait = after_poke(p, wait, PokeResult(False), wait.next_poke, "s")
    assert times[-1] == T0 + 120 * SECOND
    assert wait.outcome is Resumption.FAILED
    assert wait.retryable is False
    assert "timed out" in (wait.error or "")
    soft = after_poke(
        policy(timeout=10 * SECOND, soft_fail=True),
        WaitState(1, T0, 3, T0 + 10 * SECOND),
        PokeResult(False),
        T0 + 10 * SECOND,
        "s",
    )
    assert isinstance(soft, EndWait)
    assert (soft.outcome, soft.retryable) == (Resumption.SKIPPED, False)


def test_exponential_backoff_doubles_and_stops_at_max_wait() -> None:
    p = policy(poke_interval=10 * SECOND, exponential_backoff=True, max_wait=100 * SECOND)
    state = WaitState(1, T0, 1, T0)
    gaps = []
    for _ in range(6):
        nxt = after_poke(p, state, PokeResult(False), state.next_poke, "seed")
        assert isinstance(nxt, WaitState)
        gaps.append((nxt.next_poke - state.next_poke).total_seconds())
        state = nxt
    for n, gap in enumerate(gaps[:3], start=2):  # after poke n: [10*2**(n-1), 10*2**n)
        assert 10 * 2 ** (n - 1) <= gap < 10 * 2**n
    assert gaps[-1] == 100


def test_a_wait_survives_the_store_as_json() -> None:
    wait = WaitState(2, T0, 7, T0 + 5 * SECOND)
    assert WaitState.from_json(wait.to_json()) == wait


# -- the sensor base -----------------------------------------------------------------------


class Never(BaseSensor):
    async def poke(self, context: dict[str, Any]) -> bool:
        return False


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"poke_interval": 0}, "poke_interval must be positive"),
        ({"poke_interval": "soon"}, "poke_interval must be seconds"),
        ({"timeout": -1}, "timeout must not be negative"),
        ({"mode": "wait"}, "mode must be"),
        ({"isolation": "process"}, "a sensor waits on the event loop; isolation='process'"),
    ],
)
def test_bad_sensor_arguments_are_named(kwargs: dict[str, Any], says: str) -> None:
    with pytest.raises(DagDefinitionError, match=f"DAG 's', task 'w': {says}"), DAG("s"):
        Never(task_id="w", **kwargs)


def test_task_sensor_makes_a_sensor_of_a_function() -> None:
    with DAG("s"):

        @task.sensor(poke_interval=5, timeout=30, mode="poke", soft_fail=True)
        def ready() -> PokeReturnValue:
            return PokeReturnValue(True, 1)

        made = ready().operator
    assert isinstance(made, BaseSensor)
    assert (made.poke_interval, made.timeout, made.mode, made.soft_fail) == (
        5 * SECOND,
        30 * SECOND,
        "poke",
        True,
    )
    assert made.deferrable is False


# -- real waits ----------------------------------------------------------------------------

SENSING = """
import pathlib
from datetime import datetime
from orchestrator import DAG, task
from sensors import BaseSensor, PokeReturnValue

FLAG = pathlib.Path({flag!r})

class Counted(BaseSensor):
    template_fields = ("path",)

    def __init__(self, path, done_at, fail_at=0, hang_at=0, **kw):
        super().__init__(**kw)
        self.path, self.done_at, self.fail_at, self.hang_at = path, done_at, fail_at, hang_at

    async def poke(self, context):
        counter = pathlib.Path(self.path)
        n = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(n))
        print(f"poke {{n}} of try {{context['ti'].try_number}}")
        if n == self.fail_at:
            raise RuntimeError(f"poke {{n}} broke")
        if n == self.hang_at:
            import anyio
            await anyio.sleep(60)
        return PokeReturnValue(n >= self.done_at, {{"pokes": n}})

with DAG("sensing", start_date=datetime(2026, 1, 1)):
    {body}
"""


cli = run_cli


def sensing(dag_file: DagFile, tmp_path: Path, body: str) -> None:
    dag_file("sensing.py", SENSING.format(flag=str(tmp_path / "flag"), body=body))


def tried(done: subprocess.CompletedProcess[str], task_id: str) -> tuple[str, int]:
    """The (state, tries) of ``task_id`` in ``dags test``'s summary table."""
    for line in done.stdout.splitlines():
        cells = line.split()
        if cells and cells[0] == task_id and len(cells) >= 3 and cells[2].isdigit():
            return cells[1], int(cells[2])
    raise AssertionError(done.stdout + done.stderr)


def test_dags_test_waits_deferred_and_hands_the_xcom_on(dag_file: DagFile, tmp_path: Path) -> None:
    """A sensor done at its third poke: deferred between pokes, then success with its
    PokeReturnValue as XCom for the next task; @task.sensor works the same way."""
    sensing(
        dag_file,
        tmp_path,
        f"""
    @task.sensor(poke_interval=0.05, timeout=10)
    def first():
        return True

    @task
    def after(value):
        print("after got", value)
        assert value == {{"pokes": 3}}

    waited = Counted(task_id="third", path={str(tmp_path / "n")!r}, done_at=3,
                     poke_interval=0.05, timeout=10)
    first() >> waited
    after(waited.output)
    """,
    )
    done = cli("dags", "test", "sensing")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "third  deferred" in done.stdout
    assert tried(done, "third") == ("success", 1)
    assert tried(done, "after") == ("success", 1)


@pytest.mark.parametrize(
    ("options", "state", "tries"),
    [
        ("done_at=1000, timeout=0.2, retries=2", "failed", 1),  # a timeout is final
        ("done_at=1000, timeout=0.2, soft_fail=True", "skipped", 1),
        ("done_at=5, timeout=10, retries=1, fail_at=2", "success", 2),  # a raise fails the try
        ("done_at=5, timeout=10, fail_at=2", "failed", 1),
        ("done_at=5, timeout=10, retries=1, hang_at=2, poke_timeout=0.2", "success", 2),
        ("done_at=1000, timeout=0.3, mode='poke'", "failed", 1),
        ("done_at=3, timeout=10, mode='poke'", "success", 1),
    ],
)
def test_timeouts_soft_fail_and_failing_pokes(
    dag_file: DagFile, tmp_path: Path, options: str, state: str, tries: int
) -> None:
    """done_at: the poke (counted across tries) at which the condition holds."""
    sensing(
        dag_file,
        tmp_path,
        f"""
    Counted(task_id="wait", path={str(tmp_path / "n")!r}, poke_interval=0.05, retry_delay=0,
            {options})
    """,
    )
    done = cli("dags", "test", "sensing")
    assert tried(done, "wait") == (state, tries), done.stdout
    if "poke_timeout" in options:
        assert "poke_timeout" in done.stdout + done.stderr


FILE_WAIT = """
    from pathlib import Path as _P

    class FlagSensor(BaseSensor):
        async def poke(self, context):
            return FLAG.exists()

    for i in range({count}):
        FlagSensor(task_id=f"wait_{{i:02d}}", poke_interval=0.1, timeout=600{options})
"""


def api_states(d: DaemonProc, dag_id: str, run_id: str) -> dict[str, str]:
    doc = d.api("GET", f"/api/v1/runs/{run_id}", params={"dag_id": dag_id}).json()
    return {t["task_id"]: t["state"] for t in doc["tasks"]}


@pytest.mark.timeout(120)
def test_deferred_sensors_hold_no_slot(daemon: Daemon, dag_file: DagFile, tmp_path: Path) -> None:
    """20 sensors wait (deferred, shown by the API) with ORCHESTRATOR_PARALLELISM=2, and
    another DAG's task still runs at once; the flag appears and all 20 succeed."""
    sensing(dag_file, tmp_path, FILE_WAIT.format(count=20, options=""))
    dag_file(
        "other.py",
        """
        from orchestrator import DAG
        from orchestrator.operators import EmptyOperator
        with DAG("other"):
            EmptyOperator(task_id="now")
        """,
    )
    d = daemon(ORCHESTRATOR_PARALLELISM="2")
    run_id = d.api("POST", "/api/v1/dags/sensing/runs", json={}).json()["run_id"]
    d.wait_for(
        lambda: set(api_states(d, "sensing", run_id).values()) == {"deferred"}, 20, "20 deferred"
    )
    other = d.api("POST", "/api/v1/dags/other/runs", json={}).json()["run_id"]
    d.wait_for(lambda: d.run_state("other", other) == "success", 20, "the other DAG's run")
    assert set(api_states(d, "sensing", run_id).values()) == {"deferred"}
    (tmp_path / "flag").write_text("")
    d.wait_for(lambda: d.run_state("sensing", run_id) == "success", 30, "the sensors")


@pytest.mark.timeout(120)
def test_a_wait_survives_kill_9_where_it_was(
    daemon: Daemon, dag_file: DagFile, tmp_path: Path, db_url: str
) -> None:
    """Killed mid-wait: the restarted daemon resumes the same try from its stored wait (its
    first poke, hence its timeout, and with backoff its poke count, unchanged), and the
    sensor succeeds once the flag is set."""
    sensing(
        dag_file,
        tmp_path,
        FILE_WAIT.format(count=1, options=", exponential_backoff=True, max_wait=0.5"),
    )
    d = daemon()
    run_id = d.api("POST", "/api/v1/dags/sensing/runs", json={}).json()["run_id"]

    def stored_wait() -> dict[str, Any] | None:
        async def read() -> str | None:
            async with open_store(db_url) as store:
                return await store.sensor_wait("sensing", run_id, "wait_00")

        import anyio

        text = anyio.run(read)
        return json.loads(text) if text else None

    before = d.wait_for(lambda: (w := stored_wait()) and w["pokes"] >= 3 and w, 20, "pokes")
    d.kill9()
    again = daemon()
    after = again.wait_for(
        lambda: (w := stored_wait()) and w["pokes"] > before["pokes"] and w, 20, "pokes again"
    )
    assert (after["first_poke"], after["try_number"]) == (before["first_poke"], 1)
    (tmp_path / "flag").write_text("")
    again.wait_for(lambda: again.run_state("sensing", run_id) == "success", 30, "the sensor")
    doc = again.api("GET", f"/api/v1/runs/{run_id}", params={"dag_id": "sensing"}).json()
    assert [(t["task_id"], t["try_number"]) for t in doc["tasks"]] == [("wait_00", 1)]
    assert stored_wait() is None


# -- the built-in sensors --------------------------------------------------------------------

BUILTINS = """
import time, pathlib
from datetime import datetime, timedelta, timezone
from orchestrator import DAG, task
from sensors import DateTimeSensor, FileSensor, TimeDeltaSensor

OUT = pathlib.Path({out!r})

with DAG("builtins", start_date=datetime(2026, 1, 1)):
    @task
    def make_file():
        time.sleep(0.3)
        (OUT / "deep" / "er").mkdir(parents=True, exist_ok=True)
        (OUT / "deep" / "er" / "part-1.csv").write_text("x")

    make_file()
    FileSensor(task_id="by_glob", filepath=str(OUT / "**" / "*.csv"), recursive=True,
               poke_interval=0.05, timeout=20)
    DateTimeSensor(task_id="at_time", poke_interval=0.05, timeout=20,
                   target_time="{{{{ params.target }}}}")
    TimeDeltaSensor(task_id="after_interval", delta=timedelta(seconds=0.3),
                    poke_interval=0.05, timeout=20)
"""


def test_file_datetime_and_timedelta_sensors(dag_file: DagFile, tmp_path: Path) -> None:
    """A recursive glob matched once a parallel task writes the file; a templated target
    time; the data interval's end plus a delta. Each waits deferred, then succeeds."""
    out = tmp_path / "out"
    out.mkdir()
    dag_file("builtins.py", BUILTINS.format(out=str(out)))
    target = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    done = cli("dags", "test", "builtins", "--conf", json.dumps({"target": target}))
    assert done.returncode == 0, done.stdout + done.stderr
    for task_id in ("by_glob", "at_time", "after_interval"):
        assert tried(done, task_id) == ("success", 1)
    assert any(line.split()[1:3] == ["by_glob", "deferred"] for line in done.stdout.splitlines())


S3_WAIT = """
import anyio
from datetime import datetime
from orchestrator import DAG, task
from orchestrator.resources._aws import aws_client
from orchestrator.resources._services import current_services
from sensors import S3KeySensor

with DAG("s3wait", start_date=datetime(2026, 1, 1)):
    @task
    async def upload():
        await anyio.sleep(0.3)
        services = current_services()
        async with aws_client("s3", services.store, services.settings) as s3:
            await s3.put_object(Bucket="lake", Key="in/2026/part-7.csv", Body=b"12345")

    upload()
    S3KeySensor(task_id="exact", bucket_key="s3://lake/ready.flag", poke_interval=0.05,
                timeout=20)
    S3KeySensor(task_id="wild", bucket_name="lake", bucket_key="in/*/part-*.csv",
                wildcard_match=True, poke_interval=0.05, timeout=20,
                check_fn=lambda objects: all(o["Size"] == 5 for o in objects))
    S3KeySensor(task_id="regex", bucket_key=["s3://lake/ready.flag", r"s3://lake/in/\\d+/.*"],
                use_regex=True, poke_interval=0.05, timeout=20)
    S3KeySensor(task_id="missing", bucket_key="s3://lake/never", poke_interval=0.05,
                timeout=0.5, soft_fail=True)
"""


async def test_s3_key_sensor_against_moto(dag_file: DagFile, aws_conn: str, tmp_path: Path) -> None:
    """An exact key that exists, a wildcard and a regex matched once a parallel task
    uploads, check_fn over the matched objects' metadata, a missing key soft-failed."""
    from tests.helpers import s3_client

    async with s3_client(aws_conn) as s3:
        await s3.create_bucket(Bucket="lake")
        await s3.put_object(Bucket="lake", Key="ready.flag", Body=b"")
    dag_file("s3wait.py", S3_WAIT)
    import anyio

    done = await anyio.to_thread.run_sync(lambda: cli("dags", "test", "s3wait"))
    for task_id, state in (
        ("exact", "success"),
        ("wild", "success"),
        ("regex", "success"),
        ("missing", "skipped"),
    ):
        assert tried(done, task_id) == (state, 1), done.stdout + done.stderr


@pytest.fixture
def flaky_http(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A local HTTP server: /ready answers 503 twice, then 200 with JSON; /denied, 403.
    The http_default connection points at it. Yields the paths it was asked for."""
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            if self.path.startswith("/denied"):
                status, body = 403, b"{}"
            elif sum(p.startswith("/ready") for p in asked) <= 2:
                status, body = 503, b"{}"
            else:
                status, body = 200, b'{"status": "ready"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("ORCHESTRATOR_CONN_HTTP_DEFAULT", f"http://127.0.0.1:{server.server_port}")
    try:
        yield asked
    finally:
        server.shutdown()
        server.server_close()


def test_http_sensor_waits_through_503s_and_checks_the_answer(
    dag_file: DagFile, flaky_http: list[str]
) -> None:
    """503 twice (not yet), then 200 whose JSON the response_check reads; a 403 fails the
    sensor at once, without its retries."""
    dag_file(
        "http_wait.py",
        """
        from orchestrator import DAG
        from sensors import HttpSensor

        with DAG("http_wait"):
            HttpSensor(task_id="ready", endpoint="ready", request_params={"q": "1"},
                       response_check=lambda response: response.json()["status"] == "ready",
                       poke_interval=0.05, timeout=20)
            HttpSensor(task_id="denied", endpoint="/denied", poke_interval=0.05, timeout=20,
                       retries=3, retry_delay=0)
        """,
    )
    done = cli("dags", "test", "http_wait")
    assert tried(done, "ready") == ("success", 1), done.stdout + done.stderr
    assert tried(done, "denied") == ("failed", 1)
    assert [p for p in flaky_http if p.startswith("/ready")] == ["/ready?q=1"] * 3
    assert "answered 403" in done.stdout + done.stderr


@pytest.mark.timeout(120)
def test_external_task_sensor_waits_for_the_other_dags_task(
    daemon: Daemon, dag_file: DagFile
) -> None:
    """A run of 'down' waits for 'up'.t at the same logical date; 'up' runs later; a second
    'down' run whose 'up' run fails ends failed at once (failed_states). The poke interval
    is ten minutes: the sensors are poked when 'up' changes, not at their interval."""
    dag_file(
        "updown.py",
        """
        from orchestrator import DAG
        from orchestrator.operators import BashOperator
        from sensors import ExternalTaskSensor

        with DAG("up"):
            BashOperator(task_id="t", bash_command="exit {{ dag_run.conf.get('code', 0) }}")

        with DAG("down"):
            ExternalTaskSensor(task_id="wait_up", external_dag_id="up", external_task_id="t",
                               failed_states=["failed"], poke_interval=600, timeout=3600)
        """,
    )
    d = daemon()
    day1, day2 = "2026-02-01T00:00:00+00:00", "2026-02-02T00:00:00+00:00"

    def trigger(dag_id: str, when: str, conf: dict[str, Any] | None = None) -> str:
        body = {"logical_date": when, "conf": conf or {}}
        response = d.api("POST", f"/api/v1/dags/{dag_id}/runs", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["run_id"])

    waiting = trigger("down", day1)
    d.wait_for(lambda: api_states(d, "down", waiting) == {"wait_up": "deferred"}, 20, "deferred")
    trigger("up", day1)
    d.wait_for(lambda: d.run_state("down", waiting) == "success", 30, "the sensor")
    trigger("up", day2, {"code": 3})
    failing = trigger("down", day2)
    d.wait_for(lambda: d.run_state("down", failing) == "failed", 30, "the failed sensor")
    doc = d.api("GET", f"/api/v1/runs/{failing}", params={"dag_id": "down"}).json()
    assert [(t["task_id"], t["try_number"]) for t in doc["tasks"]] == [("wait_up", 1)]


def test_tasks_test_pokes_a_sensor_until_it_is_done(dag_file: DagFile, tmp_path: Path) -> None:
    """Alone, with no hub to defer to, a sensor pokes in its try (Airflow's tasks test)."""
    sensing(
        dag_file,
        tmp_path,
        f"""
    Counted(task_id="wait", path={str(tmp_path / "n")!r}, done_at=3, poke_interval=0.05,
            timeout=10)
    """,
    )
    done = cli("tasks", "test", "sensing", "wait")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "poke 3 of try 1" in done.stdout
    assert "task wait: success" in done.stdout


async def test_time_sensors_poke_when_their_time_comes(settings: Settings) -> None:
    """A minute's poke interval, a condition true in half a second: the sensors end then,
    not a minute later (each poke says when the time comes)."""
    from datetime import time as day_time

    from orchestrator import DAG
    from orchestrator.runtime._drive import run_dag_once
    from sensors import DateTimeSensor, TimeDeltaSensor, TimeSensor

    soon = datetime.now(UTC) + timedelta(seconds=0.5)
    with DAG("timely") as dag:
        TimeDeltaSensor(task_id="delta", delta=timedelta(seconds=0.5), poke_interval=60)
        DateTimeSensor(task_id="at", target_time=soon, poke_interval=60)
        if soon.date() == (soon + timedelta(seconds=1)).date():  # not across midnight
            TimeSensor(
                task_id="clock",
                target_time=day_time(
                    soon.hour, soon.minute, soon.second, soon.microsecond, tzinfo=UTC
                ),
                poke_interval=60,
            )
    live = await run_dag_once(settings, dag)
    assert live.record.state == "success", live.errors
    assert all(ti.duration is not None and ti.duration < 30 for ti in live.tis.values())
