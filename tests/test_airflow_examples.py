"""Airflow's own example DAGs, from its released wheels, run unchanged with `dags test`.

The wheels of ``apache-airflow-core`` and ``apache-airflow-providers-standard`` are
downloaded at test time into a cache (``$ORCHESTRATOR_TEST_CACHE``, default
``~/.cache/orchestrator-tests``), never into the project. Without a registry the tests skip
saying so, unless ``ORCHESTRATOR_TEST_REQUIRE_AIRFLOW_EXAMPLES=1`` (CI sets it).

Every example file is listed below: those that run (each of their DAGs succeeds under
`dags test`, or fails as the example means to), and for each of the others the reason.
A file the wheels add or drop fails the test until the list says what it does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

WHEELS = {
    "apache-airflow-core": "3.3.2",
    "apache-airflow-providers-standard": "1.21.0",
}
EXAMPLE_DIRS = ("airflow/example_dags/", "airflow/providers/standard/example_dags/")

# Within SPEC's scope: each DAG of these files succeeds under `dags test`.
RUNS = {
    "example_assets.py",
    "example_bash_decorator.py",
    "example_bash_operator.py",
    "example_branch_datetime_operator.py",
    "example_branch_day_of_week_operator.py",
    "example_branch_labels.py",
    "example_branch_python_dop_operator_3.py",
    "example_complex.py",
    "example_display_name.py",
    "example_dynamic_task_mapping_with_no_taskflow_operators.py",
    "example_external_task_child_deferrable.py",
    "example_latest_only.py",
    "example_latest_only_with_trigger.py",
    "example_measurement_correction_decorator.py",
    "example_measurement_correction_operator.py",
    "example_nested_branch_dag.py",
    "example_outlet_event_extra.py",
    "example_params_trigger_ui.py",
    "example_params_ui_tutorial.py",
    "example_passing_params_via_test_command.py",
    "example_sensor_decorator.py",
    "example_sensors.py",
    "example_setup_teardown.py",
    "example_setup_teardown_taskflow.py",
    "example_short_circuit_decorator.py",
    "example_short_circuit_operator.py",
    "example_simplest_dag.py",
    "example_skip_dag.py",
    "example_task_group.py",
    "example_task_group_decorator.py",
    "example_time_delta_sensor_async.py",
    "example_trigger_controller_dag.py",
    "example_trigger_target_dag.py",
    "example_xcom.py",
    "example_xcomargs.py",
    "tutorial.py",
    "tutorial_dag.py",
    "tutorial_taskflow_api.py",
    "tutorial_taskflow_templates.py",
}
# Within SPEC's scope, and its run fails, as the example means it to.
FAILS_BY_DESIGN = {"example_failed_dag.py": "its task raises, to show a failed run"}
# Within SPEC's scope, but `dags test` of the file alone cannot succeed, and why.
IN_SCOPE_NOT_RUNNING = {
    "example_dag_decorator.py": "it calls httpbingo.org: the tests have no internet",
    "example_external_task_marker_dag.py": (
        "its child DAG waits for the parent DAG's run of the same logical date, which "
        "`dags test` of one DAG does not make; ExternalTaskSensor's external_task_group_id "
        "is not provided"
    ),
    "example_external_task_parent_deferrable.py": (
        "it waits for the run of child_dag it triggers, which the daemon runs, not `dags test`"
    ),
    "example_dynamic_task_mapping.py": "it maps a task group (task_group.expand)",
}
# Outside SPEC's scope: the Airflow feature each needs.
OUT_OF_SCOPE = {
    "example_asset_alias.py": "asset aliases (AssetAlias)",
    "example_asset_alias_with_no_taskflow.py": "asset aliases (AssetAlias)",
    "example_asset_allow_teams.py": "multi-team asset access (AssetAccessControl)",
    "example_asset_decorator.py": "asset-centric DAGs (@asset)",
    "example_asset_partition.py": "partitioned assets",
    "example_asset_state_store.py": "the asset state store and named assets",
    "example_asset_with_watchers.py": "asset watchers on triggers (AssetWatcher)",
    "example_inlet_event_extra.py": "inlets and inlet_events",
    "example_custom_weight.py": "priority weight strategies from plugins",
    "example_workday_timetable.py": "custom timetables from plugins",
    "example_kubernetes_executor.py": "the Kubernetes executor",
    "example_local_kubernetes_executor.py": "the Kubernetes executor",
    "example_hitl_operator.py": "human-in-the-loop operators",
    "example_retry_policy.py": "retry policies (ExceptionRetryPolicy)",
    "example_task_state_store.py": "the task state store",
    "example_task_state_store_async.py": "the task state store",
    "example_task_state_store_mapped.py": "the task state store",
    "tutorial_objectstorage.py": "object storage paths (ObjectStoragePath)",
    "tutorial_taskflow_api_virtualenv.py": "virtualenv tasks",
    "example_python_operator.py": "virtualenv and external-Python operators",
    "example_python_decorator.py": "virtualenv and external-Python tasks",
    "example_branch_operator.py": "virtualenv and external-Python branch operators",
    "example_branch_operator_decorator.py": "virtualenv and external-Python branch tasks",
}
# What the examples' own docs say to give them.
CONF = {
    "example_passing_params_via_test_command": {"foo": "bar", "miff": "agg"},
    "example_params_ui_tutorial": {"required_field": "a value the tutorial asks for"},
}


def _cache() -> Path:
    root = os.environ.get("ORCHESTRATOR_TEST_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "orchestrator-tests"
    return base / "airflow-wheels"


def _wheels() -> list[Path]:
    cache = _cache()
    wanted = [f"{name}=={version}" for name, version in WHEELS.items()]
    found = [
        next(iter(cache.glob(f"{name.replace('-', '_')}-{version}-*.whl")), None)
        for name, version in WHEELS.items()
    ]
    if all(found):
        return [p for p in found if p is not None]
    cache.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache), *wanted],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    found = [
        next(iter(cache.glob(f"{name.replace('-', '_')}-{version}-*.whl")), None)
        for name, version in WHEELS.items()
    ]
    if done.returncode != 0 or not all(found):
        reason = f"cannot download {', '.join(wanted)}: {done.stderr.strip()[-300:]}"
        if os.environ.get("ORCHESTRATOR_TEST_REQUIRE_AIRFLOW_EXAMPLES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return [p for p in found if p is not None]


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example DAG folders of the wheels, side by side, as a DAGs folder."""
    folder = tmp_path_factory.mktemp("airflow_examples")
    for wheel in _wheels():
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                prefix = next((p for p in EXAMPLE_DIRS if name.startswith(p)), None)
                if prefix is None or name.endswith("/"):
                    continue
                rest = name[len(prefix) :]
                if rest == "__init__.py" or rest.startswith(("plugins/", "libs/")):
                    continue  # Airflow's package files, imported as airflow.example_dags.*
                sub = "standard" if "providers" in prefix else "core"
                target = folder / sub / rest
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(name) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
    return folder


def _cli(
    folder: Path, home: Path, *args: str, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ORCHESTRATOR_HOME": str(home),
        "ORCHESTRATOR_DAGS": str(folder),
    }
    env.pop("ORCHESTRATOR_DB", None)
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*.py") if p.parent.name != "sql"}


def test_every_example_file_is_accounted_for(examples: Path) -> None:
    listed = RUNS | FAILS_BY_DESIGN.keys() | IN_SCOPE_NOT_RUNNING.keys() | OUT_OF_SCOPE.keys()
    assert _files(examples) - {"__init__.py"} == listed
    in_scope = len(RUNS) + len(FAILS_BY_DESIGN) + len(IN_SCOPE_NOT_RUNNING)
    share = (len(RUNS) + len(FAILS_BY_DESIGN)) / in_scope
    print(f"\n{len(RUNS) + len(FAILS_BY_DESIGN)} of {in_scope} in-scope examples run ({share:.0%})")
    assert share >= 0.9


@pytest.mark.timeout(600)  # two examples' sensors poke once a minute
def test_the_examples_in_scope_run_unchanged(examples: Path, tmp_path: Path) -> None:
    """Each DAG of the files that run succeeds (or fails, by design) under `dags test`;
    the files out of scope fail to load naming what they need."""
    listing = _cli(examples, tmp_path / "list", "dags", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    dags = json.loads(listing.stdout)
    by_file: dict[str, list[str]] = {}
    for dag in dags:
        by_file.setdefault(Path(dag["file"]).name, []).append(dag["dag_id"])
    for name in RUNS | FAILS_BY_DESIGN.keys():
        assert by_file.get(name), f"{name} loaded no DAG: {listing.stderr[-2000:]}"
    for name in OUT_OF_SCOPE:
        if name not in by_file:
            assert name in listing.stderr, f"{name}: no import error shown"

    def run(dag_id: str) -> tuple[str, int, str]:
        conf = CONF.get(dag_id)
        args = ["dags", "test", dag_id, *(["--conf", json.dumps(conf)] if conf else [])]
        done = _cli(examples, tmp_path / dag_id, *args)
        return dag_id, done.returncode, (done.stdout + done.stderr)[-1500:]

    chosen = [
        (name, dag_id) for name in sorted(RUNS | FAILS_BY_DESIGN.keys()) for dag_id in by_file[name]
    ]
    with ThreadPoolExecutor(4) as pool:
        results = dict(zip(chosen, pool.map(lambda c: run(c[1]), chosen), strict=True))
    wrong = []
    for (name, dag_id), (_, code, output) in results.items():
        expected = 1 if name in FAILS_BY_DESIGN else 0
        if code != expected:
            wrong.append(f"{name}: {dag_id} exited {code}, expected {expected}\n{output}")
    assert not wrong, "\n\n".join(wrong)
