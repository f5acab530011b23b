"""Plugins: a folder, a plugins.zip or an S3 prefix whose modules DAG files import,
reloaded with the DAGs, and installed packages' `orchestrator.plugins` entry points."""

from __future__ import annotations

import json
import os
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator._settings import load_settings
from orchestrator.dagfiles import _plugins
from orchestrator.dagfiles._folder import DagFolder
from orchestrator.dagfiles._trial import ParseWorker
from tests.helpers import run_cli, s3_client

OPERATOR = """
from orchestrator import BaseOperator

class GreetOperator(BaseOperator):
    template_fields = ("name",)
    template_ext = (".txt",)
    ui_color = "#abcdef"

    def __init__(self, *, name, **kwargs):
        super().__init__(**kwargs)
        self.name = name

    def execute(self, context):
        print(f"{GREETING}, {self.name}")
        return f"{GREETING}, {self.name}"
"""

DAG_FILE = """
from airflow import DAG
from greetings.operators import GreetOperator

with DAG("greet"):
    GreetOperator(task_id="hello", name="{{ dag.dag_id }}")
"""


def write_plugin(root: Path, greeting: str) -> None:
    package = root / "greetings"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "operators.py").write_text(f"GREETING = {greeting!r}\n" + OPERATOR)


def zipped(source: Path, archive: Path) -> Path:
    """``source``'s Python files in a zip, as a plugins.zip is made."""
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(source.rglob("*.py")):
            zf.write(path, path.relative_to(source).as_posix())
    return archive


@pytest.fixture(autouse=True)
def fresh_plugins_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no plugins in this process."""
    monkeypatch.delenv("ORCHESTRATOR_PLUGINS_PATH", raising=False)
    saved = dict(_plugins._state)
    before = set(sys.modules)
    yield
    os.environ.pop("ORCHESTRATOR_PLUGINS_PATH", None)
    _plugins._state.clear()
    _plugins._state.update(saved)
    for name in set(sys.modules) - before:
        if name.startswith("greetings"):
            del sys.modules[name]


def test_a_plugins_folder_serves_the_dag_files_of_dags_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dags, plugins = tmp_path / "my_dags", tmp_path / "plugins"
    dags.mkdir()
    (dags / "greet.py").write_text(DAG_FILE)
    write_plugin(plugins, "Hello")
    monkeypatch.setenv("ORCHESTRATOR_DAGS", str(dags))
    monkeypatch.setenv("ORCHESTRATOR_PLUGINS", str(plugins))
    done = run_cli("dags", "test", "greet")
    assert done.returncode == 0, done.stderr
    assert "hello" in done.stdout
    run_id = json.loads(run_cli("runs", "list", "--json").stdout)[0]["run_id"]
    assert "Hello, greet" in run_cli("tasks", "logs", "greet", run_id, "hello").stdout


def test_plugins_zip_like_mwaa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dags, source = tmp_path / "my_dags", tmp_path / "src"
    dags.mkdir()
    (dags / "greet.py").write_text(DAG_FILE)
    write_plugin(source, "Bonjour")
    archive = zipped(source, tmp_path / "plugins.zip")
    monkeypatch.setenv("ORCHESTRATOR_DAGS", str(dags))
    monkeypatch.setenv("ORCHESTRATOR_PLUGINS", str(archive))
    done = run_cli("dags", "test", "greet")
    assert done.returncode == 0, done.stderr
    run_id = json.loads(run_cli("runs", "list", "--json").stdout)[0]["run_id"]
    assert "Bonjour, greet" in run_cli("tasks", "logs", "greet", run_id, "hello").stdout


def test_a_changed_plugin_reloads_every_dag_file(tmp_path: Path) -> None:
    """The folder follows the plugins: a changed plugin module loads again, and the DAG
    files using it are imported again, in the daemon's process and its parse worker."""
    dags, plugins = tmp_path / "my_dags", tmp_path / "plugins"
    dags.mkdir()
    (dags / "greet.py").write_text(DAG_FILE)
    write_plugin(plugins, "Hello")
    _plugins.use_plugins(plugins)

    async def main() -> None:
        worker = ParseWorker(timeout=30.0)
        try:
            folder = DagFolder(dags, worker, plugins=plugins)
            await folder.rescan()
            first = folder.dags["greet"].task_dict["hello"]
            assert type(first).__module__ == "greetings.operators"
            assert (first.ui_color, first.ui_fgcolor) == ("#abcdef", "#000")
            assert sys.modules["greetings.operators"].GREETING == "Hello"
            assert (await folder.rescan()).upserted == []  # nothing changed: nothing loads
            write_plugin(plugins, "Hola, a longer greeting")
            change = await folder.rescan()
            assert [d.dag_id for d in change.upserted] == ["greet"]
            assert sys.modules["greetings.operators"].GREETING == "Hola, a longer greeting"
            assert folder.dags["greet"].task_dict["hello"] is not first
        finally:
            await worker.close()

    anyio.run(main)


def test_an_installed_packages_entry_point_is_loaded_before_dag_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A distribution on the path with an `orchestrator.plugins` entry point: its module
    is imported before the first DAG file (here it registers a macro the DAG uses); a
    broken one is reported naming it, and the DAG files still load."""
    site = tmp_path / "site"
    (site / "shout_plugin").mkdir(parents=True)
    (site / "shout_plugin" / "__init__.py").write_text(
        "from orchestrator.resources._macros import MACROS\nMACROS.shout = lambda s: s.upper()\n"
    )
    info = site / "shout_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shout-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[orchestrator.plugins]\nshout = shout_plugin\nbroken = no_such_module_here\n"
    )
    dags = tmp_path / "my_dags"
    dags.mkdir()
    (dags / "loud.py").write_text(
        "from orchestrator import DAG\n"
        "from orchestrator.operators import BashOperator\n"
        "with DAG('loud'):\n"
        "    BashOperator(task_id='say', bash_command='echo {{ macros.shout(\"hi\") }}')\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("ORCHESTRATOR_DAGS", str(dags))
    done = run_cli("dags", "test", "loud")
    assert done.returncode == 0, done.stderr
    assert "broken" in done.stderr
    assert "no_such_module_here" in done.stderr
    run_id = json.loads(run_cli("runs", "list", "--json").stdout)[0]["run_id"]
    assert "HI" in run_cli("tasks", "logs", "loud", run_id, "say").stdout


def test_the_plugins_setting_names_a_folder_a_zip_or_an_s3_mirror(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"ORCHESTRATOR_HOME": str(home)}
    assert load_settings({**env}).plugins_location == Path("plugins")
    zipped = load_settings({**env, "ORCHESTRATOR_PLUGINS": "/x/plugins.zip"})
    assert zipped.plugins_location == Path("/x/plugins.zip")
    prefix = load_settings({**env, "ORCHESTRATOR_PLUGINS": "s3://bucket/team/plugins/"})
    assert prefix.plugins_location == home / "plugins-s3"
    key = load_settings({**env, "ORCHESTRATOR_PLUGINS": "s3://bucket/team/plugins.zip"})
    assert key.plugins_location == home / "plugins-s3" / "plugins.zip"


def test_plugins_zip_in_s3_as_mwaa_keeps_it(
    aws_conn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ORCHESTRATOR_PLUGINS=s3://bucket/path/plugins.zip: the one key is mirrored into the
    home (not its neighbours) and serves the DAG files."""
    dags, source = tmp_path / "my_dags", tmp_path / "src"
    dags.mkdir()
    (dags / "greet.py").write_text(DAG_FILE)
    write_plugin(source, "Hallo")
    archive = zipped(source, tmp_path / "plugins.zip")

    async def upload() -> None:
        async with s3_client(aws_conn) as s3:
            await s3.create_bucket(Bucket="mwaa-env")
            await s3.put_object(Bucket="mwaa-env", Key="env/plugins.zip", Body=archive.read_bytes())
            await s3.put_object(Bucket="mwaa-env", Key="env/requirements.txt", Body=b"x\n")

    anyio.run(upload)
    monkeypatch.setenv("ORCHESTRATOR_DAGS", str(dags))
    monkeypatch.setenv("ORCHESTRATOR_PLUGINS", "s3://mwaa-env/env/plugins.zip")
    done = run_cli("dags", "test", "greet")
    assert done.returncode == 0, done.stderr
    mirror = Path(os.environ["ORCHESTRATOR_HOME"]) / "plugins-s3"
    assert sorted(p.name for p in mirror.iterdir()) == ["plugins.zip"]
    run_id = json.loads(run_cli("runs", "list", "--json").stdout)[0]["run_id"]
    assert "Hallo, greet" in run_cli("tasks", "logs", "greet", run_id, "hello").stdout


def test_the_folder_watch_follows_the_plugins(tmp_path: Path) -> None:
    """The daemon's watch: editing a plugin file reloads the DAG files, with no DAG file
    touched."""
    dags, plugins = tmp_path / "my_dags", tmp_path / "plugins"
    dags.mkdir()
    (dags / "greet.py").write_text(DAG_FILE)
    write_plugin(plugins, "Hello")
    _plugins.use_plugins(plugins)
    changes: list[list[str]] = []
    reloaded = anyio.Event()

    async def on_change(change: Any) -> None:
        changes.append([d.dag_id for d in change.upserted])
        if len(changes) == 2:
            reloaded.set()

    async def main() -> None:
        worker = ParseWorker(timeout=30.0)
        folder = DagFolder(dags, worker, plugins=plugins)
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(folder.watch, on_change)
                write_plugin(plugins, "Ciao, plugins changed")
                with anyio.fail_after(20):
                    await reloaded.wait()
                folder.stop()
                tg.cancel_scope.cancel()
        finally:
            await worker.close()
        assert changes == [["greet"], ["greet"]]
        assert sys.modules["greetings.operators"].GREETING == "Ciao, plugins changed"

    anyio.run(main)
