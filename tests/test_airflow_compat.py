"""DAG files written for Airflow load unchanged: ``airflow.*`` imports resolve to this
project's objects, only while Apache Airflow itself is not installed (SPEC §8)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from orchestrator._logging import task_log_path
from orchestrator._settings import Settings
from orchestrator.core import TaskState
from orchestrator.dagfiles._airflow import AIRFLOW_MODULES
from orchestrator.dagfiles._loader import load_folder
from orchestrator.runtime._drive import run_dag_once

DagFile = Callable[[str, str], Path]

AIRFLOW_DAG = """
from datetime import datetime, timedelta

from airflow import DAG
from airflow.datasets import Dataset
from airflow.decorators import task, task_group
from airflow.exceptions import AirflowSkipException
from airflow.operators.bash import BashOperator
from airflow.operators.python import PythonOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.utils.task_group import TaskGroup
from airflow.utils.edgemodifier import Label
from airflow.utils.trigger_rule import TriggerRule

default_args = {"owner": "data", "retries": 1, "retry_delay": timedelta(minutes=5)}

with DAG(
    "airflow_style",
    default_args=default_args,
    start_date=datetime(2024, 1, 1),
    schedule=None,
    catchup=False,
    tags=["example"],
) as dag:
    print_date = BashOperator(task_id="print_date", bash_command="date")

    @task
    def nothing_today():
        raise AirflowSkipException("nothing today")

    def read_variable():
        from airflow.models import Variable  # imported when the task runs, as many DAGs do

        return Variable.get("greeting", default_var="hello")

    after = PythonOperator(
        task_id="after",
        python_callable=read_variable,
        trigger_rule=TriggerRule.ALL_DONE,
        outlets=[Dataset("s3://bucket/out")],
    )
    with TaskGroup("checks") as checks:
        EmptyOperator(task_id="rows") >> EmptyOperator(task_id="schema")

    @task_group
    def publish():
        @task
        def upload():
            return "s3://bucket/out"

        return upload()

    done = EmptyOperator(task_id="end")
    print_date >> nothing_today() >> after >> checks >> Label("checked") >> publish() >> done
"""


async def test_an_airflow_dag_file_loads_and_runs_unchanged(
    settings: Settings, dag_file: DagFile
) -> None:
    path = dag_file("airflow_style.py", AIRFLOW_DAG)
    bag = await load_folder(path.parent)
    assert bag.import_errors == []
    assert bag.dags["airflow_style"].edge_info == {
        ("checks.schema", "publish.upload"): {"label": "checked"}
    }
    live = await run_dag_once(settings, bag.dags["airflow_style"])
    states = {t: str(ti.state) for t, ti in live.tis.items()}
    assert states == {
        "print_date": "success",
        "nothing_today": "skipped",
        "after": "success",
        "checks.rows": "success",
        "checks.schema": "success",
        "publish.upload": "success",
        "end": "success",
    }
    assert live.xcoms[("after", "return_value")] == '"hello"'
    assert live.tis["after"].state == TaskState.SUCCESS


TUTORIAL_LIKE = """
\"\"\"A DAG in the style of Airflow 2's tutorial.\"\"\"
import textwrap
from datetime import timedelta

import pendulum
from airflow.macros import ds_add
from airflow.models.dag import DAG
from airflow.operators.bash import BashOperator
from airflow.operators.python import PythonOperator
from airflow.utils.dates import days_ago

assert days_ago(1) < pendulum.now("UTC")

with DAG(
    "tutorial_like",
    default_args={
        "depends_on_past": False,
        "email": ["data@example.com"],
        "email_on_failure": False,
        "email_on_retry": False,
        "retries": 1,
        "retry_delay": timedelta(minutes=5),
    },
    description="A simple DAG",
    schedule_interval=timedelta(days=1),
    start_date=pendulum.datetime(2021, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example"],
) as dag:
    dag.doc_md = __doc__
    t1 = BashOperator(task_id="print_date", bash_command="date")
    t1.doc_md = textwrap.dedent("#### print_date\\nPrints the date.")
    t2 = BashOperator(
        task_id="templated",
        bash_command=textwrap.dedent(
            \"\"\"
            {% for i in range(2) %}
                echo "{{ ds }} then {{ macros.ds_add(ds, 7) }}"
            {% endfor %}
            \"\"\"
        ),
    )
    t3 = PythonOperator(
        task_id="key",
        python_callable=lambda task_instance_key_str, ds: (task_instance_key_str, ds_add(ds, -1)),
    )
    t1 >> [t2, t3]
"""


async def test_a_dag_in_the_style_of_airflows_tutorial_runs_unchanged(
    settings: Settings, dag_file: DagFile
) -> None:
    """pendulum start dates, schedule_interval, days_ago, macros in templates and
    task_instance_key_str, as Airflow 2's tutorial and course material write them."""
    from datetime import UTC, datetime

    path = dag_file("tutorial_like.py", TUTORIAL_LIKE)
    bag = await load_folder(path.parent)
    assert bag.import_errors == []
    dag = bag.dags["tutorial_like"]
    assert (dag.schedule.text, dag.doc_md) == (
        "1 day, 0:00:00",
        "A DAG in the style of Airflow 2's tutorial.",
    )
    day = datetime(2026, 3, 10, tzinfo=UTC)
    live = await run_dag_once(settings, dag, logical_date=day)
    assert {t: str(ti.state) for t, ti in live.tis.items()} == {
        "print_date": "success",
        "templated": "success",
        "key": "success",
    }
    log = task_log_path(settings.logs_dir, "tutorial_like", live.record.run_id, "templated", 1)
    assert log.read_text().count("2026-03-10 then 2026-03-17") == 2
    key, yesterday = json.loads(live.xcoms[("key", "return_value")])
    assert (key, yesterday) == ("tutorial_like__key__20260310", "2026-03-09")


async def test_a_name_or_module_not_provided_fails_the_import_naming_it(
    dag_file: DagFile,
) -> None:
    dag_file("venv.py", "from airflow.operators.python import PythonVirtualenvOperator\n")
    dag_file("contrib.py", "import airflow.contrib.hooks.ssh_hook\n")
    bag = await load_folder(dag_file("fine.py", "").parent)
    errors = {Path(e.file).name: e.message for e in bag.import_errors}
    assert set(errors) == {"venv.py", "contrib.py"}
    assert errors["venv.py"].startswith(
        "ImportError: cannot import name 'PythonVirtualenvOperator' from 'airflow.operators.python'"
    )
    assert errors["contrib.py"].startswith(
        "ModuleNotFoundError: No module named 'airflow.contrib': orchestrator does not "
        "provide this Airflow module"
    )
    assert all("README lists" in message for message in errors.values())


def test_every_listed_name_resolves() -> None:
    """Each name of the map is an object of this project (a typo would fail here)."""
    code = textwrap.dedent(
        """
        import importlib, json, sys
        from orchestrator.dagfiles._airflow import AIRFLOW_MODULES, install_airflow_compat
        assert install_airflow_compat()
        for module, names in AIRFLOW_MODULES.items():
            found = importlib.import_module(module)
            for name in names:
                value = getattr(found, name)
                assert not type(value).__module__.startswith("airflow"), (module, name)
        print(sum(len(n) for n in AIRFLOW_MODULES.values()))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == sum(len(n) for n in AIRFLOW_MODULES.values())


def test_nothing_answers_for_airflow_before_a_dag_file_loads() -> None:
    code = "import orchestrator\ntry:\n    import airflow\nexcept ImportError:\n    print('no')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "no", done.stderr


def test_a_real_airflow_installation_is_never_shadowed(tmp_path: Path) -> None:
    """With an ``airflow`` package importable, DAG files get that one."""
    real = tmp_path / "site" / "airflow"
    real.mkdir(parents=True)
    (real / "__init__.py").write_text("REAL = True\nclass DAG: pass\n")
    dag = tmp_path / "uses_real.py"
    dag.write_text("import airflow\nassert airflow.REAL\n")
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(real.parent)!r})
        from pathlib import Path
        from orchestrator.dagfiles._airflow import install_airflow_compat
        from orchestrator.dagfiles._files import load_dag_file
        assert load_dag_file(Path({str(dag)!r})) == []
        assert install_airflow_compat() is False
        import airflow.operators  # not ours: the real package has no such module
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "No module named 'airflow.operators'" in done.stderr
    assert "orchestrator does not provide" not in done.stderr
