"""Logs: structlog lines bound to the task, JSON or console, secrets masked; per-try files."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from orchestrator import DAG
from orchestrator._logging import TaskLog, configure_logging, register_secret, task_log_path
from orchestrator._settings import Settings
from orchestrator.operators import PythonOperator
from orchestrator.runtime._drive import run_dag_once


def test_json_lines_carry_bound_fields_and_mask_secrets() -> None:
    """JSON output has one object per line with the bound context; secrets become ***."""
    stream = io.StringIO()
    configure_logging("json", "info", stream=stream)
    try:
        register_secret("very-secret-value")
        structlog.get_logger("t").bind(dag_id="d", run_id="r", task_id="t", try_number=2).info(
            "hello", detail="contains very-secret-value", password="plain"
        )
    finally:
        configure_logging("console", "info")
    line = json.loads(stream.getvalue().strip())
    assert (line["dag_id"], line["run_id"], line["task_id"], line["try_number"]) == (
        "d",
        "r",
        "t",
        2,
    )
    assert line["event"] == "hello"
    assert line["detail"] == "contains ***"
    assert line["password"] == "***"


def test_console_format_is_one_readable_line() -> None:
    """Console output is a single human-readable line with the fields."""
    stream = io.StringIO()
    configure_logging("console", "info", stream=stream)
    structlog.get_logger("t").warning("careful", dag_id="d")
    configure_logging("console", "info")
    text = stream.getvalue()
    assert "careful" in text
    assert "dag_id=d" in text
    assert text.count("\n") == 1


async def test_failed_try_is_logged_bound_to_the_task(settings: Settings) -> None:
    """The scheduler's line about a failed try names the DAG, run, task and try."""

    def boom() -> None:
        raise RuntimeError("nope")

    with DAG("logged") as dag:
        PythonOperator(task_id="t", python_callable=boom)
    with capture_logs() as logs:
        live = await run_dag_once(settings, dag)
    (entry,) = [e for e in logs if e["event"] == "task try failed"]
    assert entry["dag_id"] == "logged"
    assert entry["run_id"] == live.record.run_id
    assert (entry["task_id"], entry["try_number"], entry["error"]) == ("t", 1, "RuntimeError: nope")


def test_task_log_creates_no_file_for_a_silent_try(tmp_path: Path) -> None:
    """A try that writes nothing leaves no file behind."""
    log = TaskLog(tmp_path / "a" / "attempt=1.log")
    log.close()
    assert not (tmp_path / "a").exists()


def test_task_log_flushes_large_output_before_close(tmp_path: Path) -> None:
    """Output past the buffer size reaches the file while the try still runs."""
    path = tmp_path / "attempt=1.log"
    log = TaskLog(path)
    log.write("x" * (TaskLog.FLUSH_BYTES + 1))
    assert path.stat().st_size == TaskLog.FLUSH_BYTES + 1
    log.line("tail")
    log.close()
    assert path.read_text().endswith("tail\n")


@pytest.mark.slow
def test_a_line_then_silence_reaches_the_file_within_a_second_or_two(tmp_path: Path) -> None:
    """A try that prints a line and then waits still has the line in its log file (the
    flusher thread writes what waited a second), so its log can be followed."""
    path = tmp_path / "attempt=1.log"
    log = TaskLog(path)
    log.line("line one")
    assert not path.exists()
    deadline = time.monotonic() + 5
    while not (path.exists() and path.read_text() == "line one\n"):
        assert time.monotonic() < deadline, "the line did not reach the file"
        time.sleep(0.02)
    log.close()


@pytest.mark.parametrize(
    ("run_id", "plain"),
    [
        ("manual__2026-05-04T10:30:00+00:00", "run_id=manual__2026-05-04T10_30_00+00_00"),
        ("a\x00b", None),
        ("../../etc", None),
        ("r" * 300, None),
        ("a\ud800b", None),
    ],
)
def test_a_task_log_path_never_holds_an_id_that_is_not_a_plain_name(
    tmp_path: Path, run_id: str, plain: str | None
) -> None:
    """Ids from before validation, or from anywhere: a digest replaces what could escape the
    logs folder, overrun a file name or hold a NUL; the path stays under the folder."""
    path = task_log_path(tmp_path, "d", run_id, "t", 1)
    part = path.parent.parent.name
    if plain is None:
        assert part.startswith("run_id=sha256-")
        assert len(part) == 78
    else:
        assert part == plain
    assert path.resolve().is_relative_to(tmp_path.resolve())
    path.parent.mkdir(parents=True)
    path.write_text("ok")


def test_a_secret_written_in_pieces_or_url_encoded_is_masked(tmp_path: Path) -> None:
    register_secret("pa ss/Word-42")
    log = TaskLog(tmp_path / "attempt=1.log")
    log.write("first pa ss/")
    log.write("Word-42 end\n")
    log.line("uri x://u:pa%20ss%2FWord-42@h and pa+ss%2FWord-42")
    log.write("unfinished pa ss/Word-42")
    log.close()
    assert (tmp_path / "attempt=1.log").read_text() == (
        "first *** end\nuri x://u:***@h and ***\nunfinished ***"
    )


def test_a_task_log_is_capped_keeping_its_start_and_its_end(tmp_path: Path) -> None:
    """200 lines of 64 KiB into a log capped at 4 MiB: the file holds the start, a line
    saying how much was dropped, and the last MiB."""
    path = tmp_path / "attempt=1.log"
    log = TaskLog(path, max_bytes=4 * 1024 * 1024)
    for i in range(200):
        log.line(f"{i:05d}" + "x" * (64 * 1024 - 6))
    log.close()
    data = path.read_bytes()
    assert len(data) < 4 * 1024 * 1024 + 200
    assert data.startswith(b"00000x")
    assert b"bytes of output dropped: the log is capped at 4194304 bytes" in data
    assert data.rstrip(b"x\n").endswith(b"00199")
    assert data.count(b"\n") < 70
