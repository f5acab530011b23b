"""The `orchestrator` command, run as a subprocess the way a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples" / "dags"

FAILING = """
from orchestrator import DAG
from orchestrator.operators import BashOperator
with DAG("failing", tags=["t"]):
    BashOperator(task_id="bad", bash_command="echo about to fail; exit 4")
"""


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """The bundled examples copied into the test's DAGs folder."""
    for path in EXAMPLES.glob("*.py"):
        shutil.copy(path, tmp_path / "dags" / path.name)
    return tmp_path / "dags"


def test_dags_test_runs_the_etl_example(examples: Path) -> None:
    """`dags test` prints live progress and a table, and exits 0 on success."""
    done = cli("dags", "test", "dag_etl_example")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "ingest_from_API" in out
    assert "running (try 1/3)" in out
    assert out.index("running (try 1/3)") < out.index("task_id")
    assert "load_warehouse        success  1" in out
    assert ": success in " in out


def test_progress_follows_each_task_through_its_states(examples: Path) -> None:
    """Each task's progress lines come in state-machine order, as committed."""
    out = cli("dags", "test", "my_first_dag").stdout
    for task_id in ("extract", "load", "report"):
        states = [
            line.split(task_id, 1)[1].split()[0]
            for line in out.splitlines()
            if line.startswith("[") and f"] {task_id} " in line
        ]
        assert states == ["scheduled", "queued", "running", "success"], (task_id, states)


def test_a_closed_stdout_does_not_stop_the_run(examples: Path) -> None:
    """`dags test | head -1`: the reader leaving does not fail or cut short the run."""
    with subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "dags", "test", "my_first_dag"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        proc.stdout.readline()
        proc.stdout.close()
        assert proc.wait(timeout=60) == 0
        assert proc.stderr is not None
        assert "Traceback" not in proc.stderr.read()
    runs = json.loads(cli("runs", "list", "--json").stdout)
    assert [r["state"] for r in runs] == ["success"]


def test_dags_test_exits_1_when_the_run_fails(dag_file: Callable[[str, str], Path]) -> None:
    """A failed run exits 1 and shows the failed task and its error."""
    dag_file("failing.py", FAILING)
    done = cli("dags", "test", "failing")
    assert done.returncode == 1
    assert "bad  failed (try 1/1)  RuntimeError: bash command failed: exit code 4" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dags", "test", "nope"], "DAG 'nope' not found"),
        (["dags", "test", "dag_etl_example", "--conf", "{bad"], "--conf: not valid JSON"),
        (["dags", "test", "dag_etl_example", "--conf", "[1]"], "--conf: must be a JSON object"),
        (["dags", "test", "dag_etl_example", "--date", "yesterday"], "--date: not an ISO 8601"),
        (["runs", "show", "no_such_run"], "no run with id 'no_such_run'"),
        (["variables", "get", "missing"], "variable 'missing' does not exist"),
        (["--db", "mysql://x/y", "runs", "list"], "unsupported database URL"),
    ],
)
def test_bad_input_exits_2_with_a_message(examples: Path, args: list[str], message: str) -> None:
    """Bad usage or input exits 2 and says what was wrong on stderr."""
    done = cli(*args)
    assert done.returncode == 2
    assert message in done.stderr


def test_unknown_command_exits_2() -> None:
    """argparse usage errors exit 2."""
    assert cli("dags", "frobnicate").returncode == 2


def test_dags_list_json_and_import_errors(
    examples: Path, dag_file: Callable[[str, str], Path]
) -> None:
    """`dags list --json` prints the good DAGs; broken files are reported on stderr."""
    dag_file("broken.py", "def broken(:\n")
    done = cli("dags", "list", "--json")
    assert done.returncode == 0
    items = json.loads(done.stdout)
    assert [i["dag_id"] for i in items] == [
        "big_orders",
        "custom_sensor",
        "dag_etl_example",
        "etl_failed",
        "my_first_dag",
        "orders_report",
    ]
    etl = items[2]
    assert set(etl) == {"dag_id", "file", "schedule", "is_paused", "tags"}
    assert etl["schedule"] == "@weekly"
    assert etl["tags"] == ["etl"]
    assert "broken.py" in done.stderr
    assert "syntax error at line 1" in done.stderr


def _run_id(dag_id: str) -> str:
    runs = json.loads(cli("runs", "list", "--dag", dag_id, "--json").stdout)
    return str(runs[0]["run_id"])


def test_runs_list_and_show_json_shapes(examples: Path) -> None:
    """runs list / runs show --json give exactly the SPEC shapes."""
    assert cli("dags", "test", "my_first_dag", "--conf", '{"a": 1}').returncode == 0
    runs = json.loads(cli("runs", "list", "--json").stdout)
    assert set(runs[0]) == {
        "dag_id",
        "run_id",
        "state",
        "run_type",
        "logical_date",
        "start_date",
        "end_date",
        "conf",
    }
    assert (runs[0]["state"], runs[0]["run_type"], runs[0]["conf"]) == (
        "success",
        "manual",
        {"a": 1},
    )
    assert runs[0]["logical_date"].endswith("+00:00")
    shown = json.loads(cli("runs", "show", runs[0]["run_id"], "--json").stdout)
    assert set(shown) == set(runs[0]) | {"tasks"}
    assert {t["task_id"] for t in shown["tasks"]} == {"extract", "load", "report"}
    assert set(shown["tasks"][0]) == {
        "task_id",
        "map_index",
        "rendered_map_index",
        "state",
        "try_number",
        "start_date",
        "end_date",
        "duration",
    }
    assert json.loads(cli("runs", "list", "--state", "failed", "--json").stdout) == []


def test_tasks_logs_shows_each_try(dag_file: Callable[[str, str], Path]) -> None:
    """`tasks logs` prints the output of every try, or of the one asked for."""
    dag_file(
        "failing.py", FAILING.replace('task_id="bad"', 'task_id="bad", retries=1, retry_delay=0')
    )
    cli("dags", "test", "failing")
    run_id = _run_id("failing")
    done = cli("tasks", "logs", "failing", run_id, "bad")
    assert done.stdout.count("about to fail") == 2
    assert "*** try 2: failed" in done.stdout
    only = cli("tasks", "logs", "failing", run_id, "bad", "--try", "2")
    assert "*** try 1" not in only.stdout


def test_tasks_test_runs_one_task_without_recording(examples: Path) -> None:
    """`tasks test` runs one task, prints its log and records no run."""
    done = cli("tasks", "test", "my_first_dag", "report")
    assert done.returncode == 0, done.stderr
    assert "run test__" in done.stdout
    assert json.loads(cli("runs", "list", "--json").stdout) == []


def test_tasks_clear_resets_instances(examples: Path) -> None:
    """`tasks clear` resets chosen instances (and --downstream ones) and requeues the run."""
    cli("dags", "test", "my_first_dag")
    run_id = _run_id("my_first_dag")
    done = cli("tasks", "clear", "my_first_dag", run_id, "load", "--downstream")
    assert "cleared 2 task instance(s): load, report" in done.stdout
    shown = json.loads(cli("runs", "show", run_id, "--json").stdout)
    assert shown["state"] == "queued"
    assert {t["task_id"]: t["state"] for t in shown["tasks"]} == {
        "extract": "success",
        "load": "none",
        "report": "none",
    }


def test_trigger_through_an_unanswering_daemon_fails_without_writing(
    home: Path,
    dag_file: Callable[[str, str], Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A daemon that takes the request but never answers: exit 2, no second run in the store."""
    from orchestrator._settings import load_settings
    from orchestrator.cli import _client
    from orchestrator.cli._main import main

    dag_file("one.py", FAILING.replace('"failing"', '"one"'))
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(8)  # connections are queued by the kernel and never answered
    settings = load_settings()
    home.mkdir(exist_ok=True)
    (home / "daemon.json").write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "api_url": f"http://127.0.0.1:{mute.getsockname()[1]}",
                "db": settings.db_url,
            }
        )
    )
    monkeypatch.setattr(_client, "_TIMEOUT", 0.5)
    try:
        assert main(["dags", "trigger", "one"]) == 2
    finally:
        mute.close()
    assert "did not answer" in capsys.readouterr().err
    assert main(["runs", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_variables_commands(home: Path) -> None:
    """variables set/get/list/delete; secrets are encrypted at rest and hidden in lists."""
    assert cli("variables", "set", "region", "eu-west-1").returncode == 0
    assert cli("variables", "set", "api_token", "tok-123456").returncode == 0
    assert cli("variables", "get", "region").stdout.strip() == "eu-west-1"
    assert cli("variables", "get", "api_token").stdout.strip() == "tok-123456"
    listed = json.loads(cli("variables", "list", "--json").stdout)
    assert listed == [{"key": "api_token", "value": "***"}, {"key": "region", "value": "eu-west-1"}]
    raw = sqlite3.connect(home / "orchestrator.db").execute(
        "SELECT val FROM variable WHERE key='api_token'"
    )
    assert "tok-123456" not in raw.fetchone()[0]
    assert cli("variables", "delete", "region").returncode == 0
    assert cli("variables", "get", "region").returncode == 2


def test_connections_are_encrypted_and_never_printed(home: Path) -> None:
    """A connection's password and extras are encrypted at rest and never listed."""
    uri = "http://user:hunter2pass@example.com:8080/base?token=extra-secret-9"
    assert cli("connections", "add", "api", "--conn-uri", uri).returncode == 0
    listed = cli("connections", "list", "--json")
    assert "hunter2pass" not in listed.stdout
    assert "extra-secret-9" not in listed.stdout
    conn: dict[str, Any] = json.loads(listed.stdout)[0]
    assert (conn["host"], conn["port"], conn["login"], conn["schema"]) == (
        "example.com",
        8080,
        "user",
        "base",
    )
    row = (
        sqlite3.connect(home / "orchestrator.db")
        .execute("SELECT password, extra FROM connection")
        .fetchone()
    )
    assert "hunter2pass" not in row[0]
    assert "extra-secret-9" not in row[1]
    key_file = home / "fernet.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert cli("connections", "delete", "api").returncode == 0


def test_pools_commands() -> None:
    """pools set/list/delete."""
    assert cli("pools", "set", "etl", "3").returncode == 0
    pools = json.loads(cli("pools", "list", "--json").stdout)
    assert {"name": "etl", "slots": 3} in pools
    assert cli("pools", "delete", "etl").returncode == 0
    assert cli("pools", "delete", "default_pool").returncode == 2


def test_db_migrate(home: Path) -> None:
    """`db migrate` on a fresh database applies the migrations, then has nothing to do."""
    first = cli("db", "migrate")
    assert "applied migrations: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]" in first.stdout
    assert "up to date" in cli("db", "migrate").stdout


def test_settings_from_toml_and_env(tmp_path: Path, examples: Path) -> None:
    """orchestrator.toml sets defaults; environment variables win over it."""
    (tmp_path / "orchestrator.toml").write_text('home = "from_toml"\nparallelism = 4\n')
    env = {"ORCHESTRATOR_HOME": ""}
    os.environ.pop("ORCHESTRATOR_HOME", None)
    assert cli("pools", "list", env=env).returncode == 0
    assert (tmp_path / "from_toml" / "orchestrator.db").exists()
    (tmp_path / "orchestrator.toml").write_text("parallelism = 'many'\n")
    bad = cli("pools", "list", env=env)
    assert bad.returncode == 2
    assert "parallelism" in bad.stderr
