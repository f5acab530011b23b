"""Loading DAG files: every failure is reported per file and hides nothing else."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from orchestrator.dagfiles._loader import load_dags

GOOD = """
from orchestrator import DAG
from orchestrator.operators import EmptyOperator
with DAG("good"):
    EmptyOperator(task_id="a")
"""


def test_loads_every_dag_of_a_file_without_as(
    dag_file: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """Every DAG created while the file is imported is registered."""
    dag_file("two.py", GOOD + '\nwith DAG("second"):\n    EmptyOperator(task_id="b")\n')
    bag = load_dags(tmp_path / "dags")
    assert sorted(bag.dags) == ["good", "second"]
    assert bag.import_errors == []


def test_syntax_error_names_file_and_line(
    dag_file: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """A syntax error is reported with the file and the line; other files still load."""
    dag_file("good.py", GOOD)
    bad = dag_file("bad.py", "from orchestrator import DAG\nwith DAG('x')\n    pass\n")
    bag = load_dags(tmp_path / "dags")
    assert list(bag.dags) == ["good"]
    (err,) = bag.import_errors
    assert err.file == str(bad)
    assert "syntax error at line 2" in err.message
    assert "SyntaxError" in err.traceback


def test_import_error_keeps_the_traceback(
    dag_file: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """An exception at import is reported with its type, message and traceback."""
    dag_file("boom.py", "import no_such_module_here\n")
    (err,) = load_dags(tmp_path / "dags").import_errors
    assert "ModuleNotFoundError" in err.message
    assert "no_such_module_here" in err.traceback


def test_cycle_in_a_file_names_file_dag_and_tasks(
    dag_file: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """A cycle is an import error naming the file, the DAG and the tasks."""
    path = dag_file(
        "cyc.py",
        """
        from orchestrator import DAG
        from orchestrator.operators import EmptyOperator
        with DAG("cyc"):
            a = EmptyOperator(task_id="a")
            b = EmptyOperator(task_id="b")
            a >> b >> a
        """,
    )
    (err,) = load_dags(tmp_path / "dags").import_errors
    assert err.file == str(path)
    assert "DAG 'cyc': cycle between tasks a -> b -> a" in err.message


def test_bad_argument_in_a_file(dag_file: Callable[[str, str], Path], tmp_path: Path) -> None:
    """An unknown trigger rule in a file is reported with file, DAG and task."""
    dag_file(
        "rule.py",
        """
        from orchestrator import DAG
        from orchestrator.operators import EmptyOperator
        with DAG("r"):
            EmptyOperator(task_id="t", trigger_rule="sometimes")
        """,
    )
    (err,) = load_dags(tmp_path / "dags").import_errors
    assert "rule.py" in err.file
    assert "DAG 'r', task 't': unknown trigger_rule 'sometimes'" in err.message


def test_sys_exit_in_a_file_is_an_import_error(
    dag_file: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """A file calling sys.exit is reported, not obeyed."""
    dag_file("exit.py", "import sys\nsys.exit(3)\n")
    dag_file("good.py", GOOD)
    bag = load_dags(tmp_path / "dags")
    assert list(bag.dags) == ["good"]
    assert "sys.exit(3)" in bag.import_errors[0].message


def test_same_dag_id_in_two_files(dag_file: Callable[[str, str], Path], tmp_path: Path) -> None:
    """A DAG id defined twice keeps the first and reports the second file."""
    dag_file("a.py", GOOD)
    dup = dag_file("b.py", GOOD)
    bag = load_dags(tmp_path / "dags")
    assert list(bag.dags) == ["good"]
    assert bag.import_errors[0].file == str(dup)
    assert "already defined" in bag.import_errors[0].message


def test_hidden_and_private_files_are_skipped(
    dag_file: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """Files starting with '.' or '_' are not DAG files (helpers live there)."""
    dag_file("_helpers.py", "raise RuntimeError('not a dag file')\n")
    dag_file("good.py", GOOD)
    bag = load_dags(tmp_path / "dags")
    assert bag.import_errors == []


def test_missing_folder_is_reported(tmp_path: Path) -> None:
    """A DAGs folder that does not exist is an import error, not a crash."""
    bag = load_dags(tmp_path / "nope")
    assert "does not exist" in bag.import_errors[0].message


def test_file_that_hangs_is_stopped_and_reported(
    dag_file: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """A file whose import never ends is stopped at the timeout; the other files load."""
    dag_file("hang.py", "import time\nwhile True:\n    time.sleep(1)\n")
    dag_file("good.py", GOOD)
    # The timeout bounds each file's import in its child: generous enough that the good
    # file's child starts and imports in time on a loaded machine (the suite runs in
    # parallel), short enough to keep the test quick.
    bag = load_dags(tmp_path / "dags", timeout=3.0)
    assert list(bag.dags) == ["good"]
    (err,) = bag.import_errors
    assert err.file.endswith("hang.py")
    assert "timed out after 3s" in err.message


def test_file_that_kills_its_interpreter_is_reported(
    dag_file: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """``os._exit`` at import ends only the trial process; the file is an import error."""
    dag_file("a_exit.py", "import os\nos._exit(7)\n")
    dag_file("good.py", GOOD)
    bag = load_dags(tmp_path / "dags")
    assert list(bag.dags) == ["good"]
    assert "ended the process (exit code 7)" in bag.import_errors[0].message


def test_file_that_prints_at_import_loads(
    dag_file: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """Output printed while a file is imported does not disturb loading."""
    dag_file("chatty.py", 'print("{not json")\n' + GOOD)
    assert list(load_dags(tmp_path / "dags").dags) == ["good"]


def test_an_edit_within_the_same_second_is_seen(
    dag_file: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """Loading compiles the source each time: a same-size edit is not hidden by a cache."""
    path = dag_file("v.py", GOOD.replace('"good"', '"aaaa"'))
    assert list(load_dags(tmp_path / "dags").dags) == ["aaaa"]
    path.write_text(path.read_text().replace('"aaaa"', '"bbbb"'))
    assert list(load_dags(tmp_path / "dags").dags) == ["bbbb"]
