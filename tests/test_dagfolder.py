"""The live DAGs folder: which files are imported again, and who owns a DAG id."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio

from orchestrator.dagfiles._folder import DagFolder, FolderChange
from orchestrator.dagfiles._trial import ParseWorker

DAG_SOURCE = """
from orchestrator import DAG
from orchestrator.operators import EmptyOperator
with DAG("{dag_id}"):
    EmptyOperator(task_id="{task_id}")
"""


async def test_relative_folder_sees_events_given_as_absolute_paths(
    dag_file: Callable[[str, str], Path],
) -> None:
    """A folder named relative to the cwd accepts the watcher's absolute paths."""
    path = dag_file("a.py", DAG_SOURCE.format(dag_id="a", task_id="one"))
    folder = DagFolder(Path("dags"), ParseWorker(30))
    try:
        await folder.rescan()
        path.write_text(DAG_SOURCE.format(dag_id="a", task_id="two"))
        change = await folder.refresh({path.resolve()})
    finally:
        await folder.worker.close()
    assert [d.task_ids for d in change.upserted] == [["two"]]
    assert folder.errors == {}


async def test_a_dag_id_belongs_to_the_first_file_until_it_lets_go(
    dag_file: Callable[[str, str], Path],
) -> None:
    """A second file defining the same DAG id is an import error until the first drops it."""
    first = dag_file("a.py", DAG_SOURCE.format(dag_id="same", task_id="one"))
    second = dag_file("b.py", DAG_SOURCE.format(dag_id="same", task_id="two"))
    folder = DagFolder(Path("dags"), ParseWorker(30))
    try:
        await folder.rescan()
        assert folder.dags["same"].task_ids == ["one"]
        assert "already defined in" in folder.errors[str(second.resolve())].message
        first.unlink()
        await folder.refresh({first.resolve(), second.resolve()})
    finally:
        await folder.worker.close()
    assert folder.dags["same"].task_ids == ["two"]
    assert folder.errors == {}


async def test_cancelling_the_watch_ends_it_at_once(
    dag_file: Callable[[str, str], Path],
) -> None:
    """A cancelled watch (the daemon failing) stops its watcher thread, not after its timeout."""
    dag_file("a.py", DAG_SOURCE.format(dag_id="a", task_id="one"))
    folder = DagFolder(Path("dags"), ParseWorker(30))
    changes: list[FolderChange] = []

    async def record(change: FolderChange) -> None:
        changes.append(change)

    try:
        with anyio.fail_after(10):  # the watcher thread's own timeout is 60 s
            async with anyio.create_task_group() as tg:
                await tg.start(folder.watch, record)
                tg.cancel_scope.cancel()
    finally:
        await folder.worker.close()
    assert [d.dag_id for c in changes for d in c.upserted] == ["a"]
