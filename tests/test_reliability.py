"""The daemon probed as an attacker or a careless user would: each probe that once
crashed it, ran a task twice, leaked a secret or answered 500 stays here as a test."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from orchestrator import DAG
from orchestrator._processes import marked, sweep, without_daemon_secrets
from orchestrator._settings import Settings
from orchestrator.core import TaskState
from orchestrator.dagfiles import _trial as trial
from orchestrator.dagfiles._files import MAX_ERROR_CHARS, _module_name, load_dag_file
from orchestrator.dagfiles._folder import DagFolder, FolderChange
from orchestrator.dagfiles._trial import ParseWorker
from orchestrator.errors import DagImportError
from orchestrator.operators import BashOperator
from orchestrator.runtime._drive import run_dag_once
from tests.daemon_proc import DaemonProc
from tests.helpers import gone

pytestmark = pytest.mark.timeout(120)

DagFile = Callable[[str, str], Path]

ECHO = """
from datetime import datetime
from orchestrator import DAG
from orchestrator.operators import BashOperator
with DAG("echo", schedule=None, start_date=datetime(2026, 1, 1)):
    BashOperator(task_id="say", bash_command="echo run {{ run_id }}")
"""


def ended(d: DaemonProc, run_id: str) -> str | None:
    state = d.run_state("echo", run_id)
    return state if state in ("success", "failed") else None


# -- hostile requests ----------------------------------------------------------------------


def test_hostile_trigger_requests_are_refused_and_the_daemon_runs_on(
    daemon: Callable[..., DaemonProc], dag_file: DagFile
) -> None:
    """Run ids that once crashed the daemon from the log path (a NUL, 300 characters) or
    reached a shell through ``{{ run_id }}``, a NaN conf that once made every later runs
    list a 500, dates at the calendar's ends: all 4xx, none stored, the daemon serving."""
    dag_file("echo.py", ECHO)
    d = daemon()
    bodies = [
        b'{"run_id": "a\\u0000b"}',
        b'{"run_id": "' + b"r" * 300 + b'"}',
        b'{"run_id": "x; touch /tmp/INJECTED #"}',
        b'{"run_id": "a\\ud800b"}',
        b'{"conf": {"x": NaN}}',
        b'{"conf": {"x": ' + b"9" * 4_301 + b"}}",
        b'{"conf": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        b'{"logical_date": "9999-12-31T23:59:59-14:00"}',
        b'{"logical_date": "0001-01-01"}',
    ]
    json = {"Content-Type": "application/json"}
    for body in bodies:
        response = d.api("POST", "/api/v1/dags/echo/runs", content=body, headers=json)
        assert response.status_code == 400, (body[:60], response.text)
        assert "error" in response.json()
    assert d.api("GET", "/api/v1/dags/echo/runs", params={"limit": "9" * 20}).status_code == 400
    assert d.runs("echo") == []
    made = d.api("POST", "/api/v1/dags/echo/runs", json={"run_id": "fine"})
    assert made.status_code == 201
    assert d.wait_for(lambda: ended(d, "fine"), 30) == "success"
    logs = d.api("GET", "/api/v1/runs/fine/tasks/say/logs").json()
    assert "run fine" in logs["tries"][0]["log"]
    assert d.api("GET", "/api/v1/dags/echo/runs").status_code == 200


def test_what_a_web_page_can_send_triggers_nothing(
    daemon: Callable[..., DaemonProc], dag_file: DagFile
) -> None:
    """No token (the default on loopback): a text/plain POST (no CORS preflight needed), a
    form post, a cross-origin JSON post and a rebound DNS name are refused; a 20 MB conf
    is 413. None of them makes a run."""
    dag_file("echo.py", ECHO)
    d = daemon()
    path = "/api/v1/dags/echo/runs"
    refused = [
        d.api("POST", path, content=b"{}", headers={"Content-Type": "text/plain"}),
        d.api("POST", path, data={"conf": "{}"}),
        d.api(
            "POST",
            path,
            json={},
            headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        ),
        d.api("POST", path, json={}, headers={"Host": "evil.example"}),
        d.api("GET", "/api/v1/dags", headers={"Host": "rebound.evil.example:8080"}),
        d.api("POST", path, json={"conf": {"x": "x" * 20_000_000}}),
    ]
    assert [r.status_code for r in refused] == [415, 415, 403, 400, 400, 413]
    assert d.runs("echo") == []
    assert d.api("POST", path, json={}).status_code == 201


async def test_twenty_concurrent_triggers_of_one_run_id_make_one_run_and_one_try(
    daemon: Callable[..., DaemonProc], dag_file: DagFile
) -> None:
    """One 201, nineteen 409s; the task runs once and the run succeeds."""
    dag_file("echo.py", ECHO)
    d = daemon()
    statuses: list[int] = []
    async with httpx.AsyncClient(base_url=d.url, timeout=30) as client:

        async def post() -> None:
            response = await client.post("/api/v1/dags/echo/runs", json={"run_id": "same"})
            statuses.append(response.status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(post)
    assert sorted(statuses) == [201] + [409] * 19
    assert d.wait_for(lambda: ended(d, "same"), 30) == "success"
    logs = d.api("GET", "/api/v1/runs/same/tasks/say/logs").json()
    assert [t["try_number"] for t in logs["tries"]] == [1]
    assert logs["tries"][0]["log"].count("run same") == 1
    assert [r["run_id"] for r in d.runs("echo")] == ["same"]


# -- hostile DAG files ---------------------------------------------------------------------

GOOD = """
from orchestrator import DAG
from orchestrator.operators import EmptyOperator
with DAG("good"):
    EmptyOperator(task_id="a")
"""

HUGE_ERROR = 'raise ValueError("x" * 20_000_000)\n'

FORKS = """
import os
import signal
if os.fork() != 0:
    os._exit(0)
from orchestrator import DAG
with DAG("forked"):
    pass
"""

BLOB = """
from orchestrator import DAG
from orchestrator.operators import EmptyOperator
BLOB = bytearray({size})
BLOB[::4096] = b"x" * len(BLOB[::4096])
with DAG("blob"):
    EmptyOperator(task_id="a")
"""


async def load(folder_path: Path) -> DagFolder:
    folder = DagFolder(folder_path, ParseWorker(30))
    try:
        await folder.rescan()
    finally:
        await folder.worker.close()
    return folder


async def test_an_import_error_of_any_size_is_bounded_and_costs_only_its_file(
    dag_file: DagFile,
) -> None:
    """A 20 MB exception message once overran the parse child's reply and ended the daemon."""
    bad = dag_file("huge.py", HUGE_ERROR)
    dag_file("good.py", GOOD)
    folder = await load(bad.parent)
    assert list(folder.dags) == ["good"]
    error = folder.errors[str(bad.resolve())]
    assert error.message.startswith("ValueError: xxx")
    assert "characters cut" in error.message
    assert len(error.message) < 5_000
    assert len(error.traceback) < 40_000


def test_an_import_error_of_any_size_is_bounded_in_process_too(dag_file: DagFile) -> None:
    with pytest.raises(DagImportError) as caught:
        load_dag_file(dag_file("huge.py", HUGE_ERROR))
    assert len(caught.value.message) <= MAX_ERROR_CHARS + 100


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("sys.stdout.write('x' * 3_000_000)", "the file's import result is too large"),
        ("print('not json')", "the trial import gave no readable result"),
        ("print('[1]')", "the trial import gave no readable result"),
        ("sys.exit(3)", "importing the file ended the process (exit code 3)"),
    ],
)
async def test_a_reply_the_daemon_cannot_read_is_the_files_import_error(
    dag_file: DagFile, reply: str, error: str
) -> None:
    """Whatever a parse child answers, that file fails and a fresh child takes the next."""
    path = dag_file("good.py", GOOD)
    ready = "print('{\"ready\": true}', flush=True)"
    child = f"import sys, time; {ready}; sys.stdin.readline(); {reply}; "
    child += "sys.stdout.flush(); time.sleep(9)"
    worker = ParseWorker(30, command=(sys.executable, "-c", child))
    try:
        first = await worker.probe(path)
        worker.command = ParseWorker(30).command
        second = await worker.probe(path)
    finally:
        await worker.close()
    assert (first.ok, first.error) == (False, error)
    assert (second.ok, second.dag_ids) == (True, ("good",))


async def test_a_child_slow_to_start_does_not_count_against_the_files_timeout(
    dag_file: DagFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The timeout counts from the file's request; a child that never starts is an error."""
    path = dag_file("good.py", GOOD)
    slow = "import runpy, time; time.sleep(1.5); runpy.run_module(" + (
        "'orchestrator.dagfiles._trial_child', run_name='__main__')"
    )
    worker = ParseWorker(1, command=(sys.executable, "-c", slow))
    try:
        probe = await worker.probe(path)
    finally:
        await worker.close()
    assert (probe.ok, probe.dag_ids) == (True, ("good",))
    monkeypatch.setattr(trial, "STARTUP_SECONDS", 0.5)
    worker = ParseWorker(30, command=(sys.executable, "-c", "import time; time.sleep(9)"))
    try:
        probe = await worker.probe(path)
        assert worker.pids == []
    finally:
        await worker.close()
    assert (probe.ok, probe.error) == (False, "the parse child did not start within 0.5s")


async def test_a_file_that_forks_at_import_is_an_import_error_and_leaves_no_copy(
    dag_file: DagFile,
) -> None:
    """The trial child's copy ends at once; the file never reaches the real import."""
    marker = dag_file("good.py", GOOD).parent / "copies"
    bad = dag_file(
        "forks.py",
        FORKS.replace("os._exit(0)", f"os._exit(0)\nopen({str(marker)!r}, 'a').write('x')"),
    )
    folder = await load(bad.parent)
    assert list(folder.dags) == ["good"]
    assert "importing the file ended the process" in folder.errors[str(bad.resolve())].message
    assert not marker.exists()


def test_a_fork_during_an_import_in_process_ends_the_copy(dag_file: DagFile) -> None:
    """Past the trial (a file behaving otherwise the second time), the copy a file forks
    still ends before it runs on as a second daemon."""
    path = dag_file(
        "forks.py",
        "import os, sys\npid = os.fork()\nif pid == 0:\n    os._exit(0)\n"
        "_, status = os.waitpid(pid, 0)\nSTATUS = os.waitstatus_to_exitcode(status)\n",
    )
    load_dag_file(path)
    module = sys.modules[_module_name(path)]
    assert module.STATUS == 70


async def test_the_parse_child_is_recycled_and_a_deleted_file_frees_its_memory(
    dag_file: DagFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file holding 300 MB at module level: the parse child that imported it is replaced,
    and once the file is deleted the importing process gives the memory back."""
    monkeypatch.setattr(trial, "RECYCLE_RSS", 200 * 1024 * 1024)
    path = dag_file("blob.py", BLOB.format(size=300 * 1024 * 1024))
    folder = DagFolder(path.parent, ParseWorker(30))
    try:
        before = trial._rss(os.getpid())
        await folder.rescan()
        assert folder.worker.pids == []  # killed after the probe that grew it
        assert list(folder.dags) == ["blob"]
        loaded = trial._rss(os.getpid())
        path.unlink()
        change = await folder.rescan()
        assert change.removed == ["blob"]
        del change
        gc.collect()
        after = trial._rss(os.getpid())
    finally:
        await folder.worker.close()
    assert loaded - before > 250 * 1024 * 1024
    assert after - before < 100 * 1024 * 1024, (before, loaded, after)


def test_a_daemon_with_hostile_dag_files_starts_serves_and_restarts(
    daemon: Callable[..., DaemonProc], dag_file: DagFile
) -> None:
    """A forking file and a file raising 20 MB once ended every start of the daemon; now they
    are import errors, the good DAG runs, and a restart comes up again."""
    dag_file("forks.py", FORKS)
    dag_file("huge.py", HUGE_ERROR)
    dag_file("echo.py", ECHO)
    d = daemon()
    errors = d.api("GET", "/api/v1/import-errors").json()
    assert sorted(Path(e["file"]).name for e in errors) == ["forks.py", "huge.py"]
    assert d.api("POST", "/api/v1/dags/echo/runs", json={"run_id": "r1"}).status_code == 201
    assert d.wait_for(lambda: ended(d, "r1"), 30) == "success"
    d.signal(signal.SIGTERM)
    assert d.wait() == 0
    again = daemon()
    assert [r["run_id"] for r in again.runs("echo")] == ["r1"]


BLOCKED = """
import os, time
while not os.path.exists({release!r}):
    time.sleep(0.02)
from orchestrator import DAG
with DAG("{dag_id}"):
    pass
"""


@contextlib.contextmanager
def spawned(home: Path, db_url: str) -> Iterator[DaemonProc]:
    """A daemon started without waiting for it to be ready, on a port known before it
    listens (its daemon.json is written only once the DAG files are in)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    d = DaemonProc(home, {"ORCHESTRATOR_DB": db_url, "ORCHESTRATOR_API_PORT": str(port)})
    d.url = f"http://127.0.0.1:{port}"
    d.spawn()
    try:
        yield d
    finally:
        d.stop()


def answer(d: DaemonProc, path: str) -> Any:
    """The JSON a GET of ``path`` answers, None while the API does not listen yet."""
    try:
        return d.api("GET", path).json()
    except httpx.TransportError:
        return None


def test_a_slow_dag_file_holds_up_neither_the_api_nor_the_other_files(
    home: Path, db_url: str, dag_file: DagFile, tmp_path: Path
) -> None:
    """The API answers while a file is still importing (health says loading) and knows the
    DAGs of the files already in; the daemon is ready once the slow file is in."""
    release = tmp_path / "release"
    dag_file("a_slow.py", BLOCKED.format(release=str(release), dag_id="slow"))
    dag_file("b_good.py", GOOD)
    with spawned(home, db_url) as d:

        def dags() -> list[str]:
            return [x["dag_id"] for x in answer(d, "/api/v1/dags") or []]

        d.wait_for(lambda: dags() == ["good"], 20, "the good DAG while the slow file imports")
        assert d.api("GET", "/api/v1/health").json()["loading"] is True
        assert not (home / "daemon.json").exists()
        release.touch()
        d.wait_for((home / "daemon.json").exists, 20, "readiness")
        assert dags() == ["good", "slow"]
        assert d.api("GET", "/api/v1/health").json()["loading"] is False


async def test_a_file_added_while_another_imports_is_loaded_at_once(
    dag_file: DagFile, tmp_path: Path
) -> None:
    """Changes are not queued behind a slow import: a new file loads while a file added
    before it is still importing, and an edit to the slow file imports it again after."""
    release = tmp_path / "release"
    folder_path = dag_file("good.py", GOOD).parent
    folder = DagFolder(folder_path, ParseWorker(30, size=2))
    seen: list[list[str]] = []
    got = anyio.Event()

    async def on_change(change: FolderChange) -> None:
        seen.append([d.dag_id for d in change.upserted])
        got.set()

    try:
        async with anyio.create_task_group() as tg:
            await tg.start(folder.watch, on_change)
            slow = dag_file("slow.py", BLOCKED.format(release=str(release), dag_id="slow"))
            with anyio.fail_after(10):  # the slow file is importing before the next comes
                while str(slow.resolve()) not in folder._busy:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            dag_file("other.py", GOOD.replace('"good"', '"other"'))
            with anyio.fail_after(10):
                while ["other"] not in seen:
                    await got.wait()
                    got = anyio.Event()
            assert "slow" not in folder.dags
            slow.write_text(BLOCKED.format(release=str(release), dag_id="slow2"))
            release.touch()
            with anyio.fail_after(20):
                while "slow2" not in folder.dags:
                    await got.wait()
                    got = anyio.Event()
            folder.stop()
            tg.cancel_scope.cancel()
    finally:
        await folder.worker.close()
    assert seen[0] == ["good"]
    assert "slow" not in folder.dags


# -- secrets -------------------------------------------------------------------------------

VAR_SECRET = "Var-Secret-7f3a"
CONN_SECRET = "p@ss Conn/Secret"  # URL-encoding changes it: p%40ss%20Conn%2FSecret
TOKEN = "Api-Token-55e1"

LEAKY = """
from orchestrator import DAG, Connection, Variable
from orchestrator.operators import BashOperator, PythonOperator

def split_and_raise():
    value = Variable.get("region")
    print(value[:6], end="", flush=True)
    print(value[6:])
    raise ValueError(f"auth failed for {value}")

def in_a_process():
    conn = Connection.get("src")
    print("password", conn.password)
    print("uri", conn.get_uri())

with DAG("leaky"):
    PythonOperator(task_id="split", python_callable=split_and_raise, retries=0)
    PythonOperator(task_id="child", python_callable=in_a_process, isolation="process")
    BashOperator(
        task_id="bash",
        bash_command='echo "env: $ORCHESTRATOR_CONN_SRC $ORCHESTRATOR_API_TOKEN"; '
        'echo "asked: $PW"',
        env={"PW": "{{ var.value.region }}"},
        append_env=True,
    )
"""


def test_secrets_reach_no_log_no_stored_error_no_response_and_no_task_environment(
    home: Path, db_url: str, dag_file: DagFile
) -> None:
    """A variable set with --secret under a plain key, a connection password (also as
    get_uri() writes it), the API token: none appears in any file of the home (task logs,
    the database and its WAL), the daemon's log, or any API response."""
    from urllib.parse import quote, quote_plus

    dag_file("leaky.py", LEAKY)
    uri = f"postgres://user:{quote(CONN_SECRET, safe='')}@db.example:5432/x"
    env = {
        "ORCHESTRATOR_DB": db_url,
        "ORCHESTRATOR_API_TOKEN": TOKEN,
        "ORCHESTRATOR_CONN_SRC": uri,
    }
    setting = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "variables",
            "set",
            "region",
            VAR_SECRET,
            "--secret",
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert setting.returncode == 0, setting.stderr
    d = DaemonProc(home, env).start()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        made = d.api("POST", "/api/v1/dags/leaky/runs", json={"run_id": "r"}, headers=auth)
        assert made.status_code == 201

        def ended_run() -> str | None:
            response = d.api("GET", "/api/v1/runs/r", headers=auth)
            state = response.json()["state"]
            return state if state in ("success", "failed") else None

        assert d.wait_for(ended_run, 60) == "failed"
        responses = [
            d.api("GET", path, headers=auth).text
            for path in (
                "/api/v1/dags/leaky/runs",
                "/api/v1/runs/r",
                "/api/v1/runs/r/tasks/split/logs",
                "/api/v1/runs/r/tasks/child/logs",
                "/api/v1/runs/r/tasks/bash/logs",
                "/api/v1/import-errors",
                "/metrics",
            )
        ]
        logs = {t: json.loads(responses[i])["tries"][0] for i, t in ((2, "split"), (3, "child"))}
        bash_log = json.loads(responses[4])["tries"][0]["log"]
    finally:
        d.stop()
    # The tasks did see their secrets; what they wrote of them is masked.
    assert "auth failed for ***" in logs["split"]["error"]
    assert "***" in logs["split"]["log"]
    assert "password ***" in logs["child"]["log"]
    assert "uri postgres://user:***@db.example" in logs["child"]["log"]
    assert "asked: ***" in bash_log
    assert "env:  \n" in bash_log or bash_log.startswith("env:  ")  # nothing inherited
    forms = {
        s.encode()
        for secret in (VAR_SECRET, CONN_SECRET, TOKEN)
        for s in (secret, quote(secret, safe=""), quote_plus(secret))
    }
    places = {"daemon log": d.output().encode()}
    places.update({f"response {i}": text.encode() for i, text in enumerate(responses)})
    for path in home.rglob("*"):
        if path.is_file():
            places[str(path)] = path.read_bytes()
    for where, data in places.items():
        for form in forms:
            assert form not in data, f"{form!r} in {where}"


# -- hostile tasks -------------------------------------------------------------------------


async def test_a_bash_try_ends_with_its_shell_and_what_it_left_behind_is_killed(
    settings: Settings, tmp_path: Path
) -> None:
    """``setsid sleep 300 &`` once held the try running until the sleep ended (it holds
    stdout) and outlived it; now the try ends with bash, and the escaped process dies."""
    pidfile = tmp_path / "escaped.pid"
    with DAG("escape") as dag:
        BashOperator(task_id="b", bash_command=f"setsid sleep 300 & echo $! > {pidfile}; echo done")
    started = time.monotonic()
    live = await run_dag_once(settings, dag)
    assert live.tis["b"].state == TaskState.SUCCESS
    assert time.monotonic() - started < 10
    assert gone(int(pidfile.read_text()))


ESCAPING = """
import subprocess
from datetime import timedelta
from orchestrator import DAG
from orchestrator.operators import BashOperator, PythonOperator
COMMAND = {command!r}
def run():
    subprocess.call(["bash", "-c", COMMAND])
with DAG("escape_timeout", dagrun_timeout={dagrun_timeout}):
    if {isolation!r} == "thread":
        BashOperator(task_id="t", bash_command=COMMAND, execution_timeout=timedelta(seconds=1))
    elif {isolation!r} == "dagrun":
        BashOperator(task_id="t", bash_command=COMMAND)
    else:
        PythonOperator(
            task_id="t",
            python_callable=run,
            isolation="process",
            execution_timeout=timedelta(seconds=3),
        )
"""


@pytest.mark.parametrize("isolation", ["thread", "process", "dagrun"])
async def test_a_timed_out_try_kills_what_escaped_its_process_group(
    settings: Settings, tmp_path: Path, dag_file: DagFile, isolation: str
) -> None:
    """A double fork into a new session survives the process-group kill; the try's mark
    still finds it, for Bash and for a task in its own process, on execution_timeout and
    on dagrun_timeout."""
    pidfile = tmp_path / "escaped.pid"
    command = f"setsid sleep 300 > /dev/null 2>&1 < /dev/null & echo $! > {pidfile}; sleep 60"
    dagrun_timeout = "timedelta(seconds=1)" if isolation == "dagrun" else "None"
    path = dag_file(
        "escape.py",
        ESCAPING.format(command=command, isolation=isolation, dagrun_timeout=dagrun_timeout),
    )
    (dag,) = load_dag_file(path)
    live = await run_dag_once(settings, dag)
    assert live.tis["t"].state == TaskState.FAILED
    assert gone(int(pidfile.read_text()))


def test_a_shell_task_does_not_inherit_the_daemons_secrets() -> None:
    env = {
        "PATH": "/bin",
        "ORCHESTRATOR_API_TOKEN": "t",
        "ORCHESTRATOR_FERNET_KEY": "k",
        "ORCHESTRATOR_DB": "postgresql://u:p@h/d",
        "ORCHESTRATOR_CONN_SRC": "x://u:p@h",
        "ORCHESTRATOR_VAR_ANY": "v",
        "ORCHESTRATOR_HOME": "/h",
    }
    assert without_daemon_secrets(env) == {"PATH": "/bin", "ORCHESTRATOR_HOME": "/h"}


def test_a_sweep_kills_only_processes_carrying_the_mark(tmp_path: Path) -> None:
    env, mark = marked(dict(os.environ))
    mine = subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)
    other = subprocess.Popen(["sleep", "60"])
    try:
        # Popen returns once the exec began; the new environment shows a moment later.
        environ = Path(f"/proc/{mine.pid}/environ")
        deadline = time.monotonic() + 5
        while mark.encode() not in environ.read_bytes():
            assert time.monotonic() < deadline, "the marked process never showed its mark"
            time.sleep(0.01)
        assert sweep(mark) == 1
        assert mine.wait(5) == -signal.SIGKILL
        assert other.poll() is None
    finally:
        for proc in (mine, other):
            proc.kill()
            proc.wait()


def test_the_home_the_database_and_task_logs_are_private(
    daemon: Callable[..., DaemonProc], dag_file: DagFile, home: Path
) -> None:
    """Once 0755/0644: the home is 0700, every file in it 0600 (SQLite only)."""
    dag_file("echo.py", ECHO)
    d = daemon()
    d.api("POST", "/api/v1/dags/echo/runs", json={"run_id": "r"})
    assert d.wait_for(lambda: ended(d, "r"), 30) == "success"
    d.stop()
    assert home.stat().st_mode & 0o777 == 0o700
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name == "attempt=1.log" for p in files)
    loose = {str(p.relative_to(home)): oct(p.stat().st_mode & 0o777) for p in files}
    assert {k: v for k, v in loose.items() if v != "0o600"} == {}


LOUD = """
from orchestrator import DAG
from orchestrator.operators import BashOperator
with DAG("loud"):
    BashOperator(
        task_id="t",
        bash_command="head -c 60000000 /dev/zero | tr '\\\\0' x | fold -w 1000; echo the end",
    )
"""


def test_a_task_printing_60_mb_leaves_a_capped_log_served_in_a_window(
    daemon: Callable[..., DaemonProc], dag_file: DagFile, home: Path
) -> None:
    """Once a 200 MB file, one GET of 210 MB of JSON and a daemon at 458 MB: now the file
    stops at the cap, a GET sends its last MiB, and the daemon stays small."""
    dag_file("loud.py", LOUD)
    d = daemon(ORCHESTRATOR_TASK_LOG_MAX_BYTES=str(8 * 1024 * 1024))
    d.api("POST", "/api/v1/dags/loud/runs", json={"run_id": "r"})
    assert d.wait_for(lambda: d.run_state("loud", "r") == "success", 60)
    (log_file,) = home.rglob("attempt=1.log")
    assert log_file.stat().st_size < 8 * 1024 * 1024 + 200
    response = d.api("GET", "/api/v1/runs/r/tasks/t/logs")
    assert len(response.content) < 1.1 * 1024 * 1024
    tail = response.json()["tries"][0]
    assert tail["log"].endswith("the end\n")
    assert "bytes of output dropped" in log_file.read_text()
    assert d.proc is not None
    assert trial._rss(d.proc.pid) < 200 * 1024 * 1024


def test_sigterm_while_a_dag_file_still_imports_stops_the_daemon_at_once(
    home: Path, db_url: str, dag_file: DagFile, tmp_path: Path
) -> None:
    """The stop does not wait for the first load (up to the import timeout) to end."""
    dag_file("slow.py", BLOCKED.format(release=str(tmp_path / "never"), dag_id="slow"))
    with spawned(home, db_url) as d:
        d.wait_for(
            lambda: (answer(d, "/api/v1/health") or {}).get("loading"),
            20,
            "the API while the slow file imports",
        )
        d.signal(signal.SIGTERM)
        stopped = time.monotonic()
        assert d.wait(15) == 0
        assert time.monotonic() - stopped < 10
