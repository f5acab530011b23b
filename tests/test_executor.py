"""The local executor under cancellation: nothing outlives a cancelled try."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import anyio

from orchestrator import DAG
from orchestrator._settings import Settings
from orchestrator.operators import BashOperator
from orchestrator.resources._services import Services
from orchestrator.runtime._context import DagRunInfo
from orchestrator.runtime._executor import LocalExecutor, TryRequest
from orchestrator.store import open_store
from tests.helpers import gone


async def test_cancelling_a_bash_try_kills_its_process_group(
    settings: Settings, tmp_path: Path
) -> None:
    """Cancelling a running Bash try kills the command and its children, however early.

    Repeated, because the cancel must also be safe in the instant between the process
    starting and the operator holding it (seen under load: the child survived).
    """
    now = datetime.now(UTC)
    run = DagRunInfo("cancel", "r", "manual", now, now, now)
    async with open_store(settings.db_url) as store:
        executor = LocalExecutor(Services(settings, store), thread_slots=2)
        for attempt in range(15):
            pidfile = tmp_path / f"pid{attempt}"
            with DAG(f"cancel{attempt}") as dag:
                task = BashOperator(
                    task_id="b", bash_command=f"sleep 60 & echo $! > {pidfile}; wait"
                )
            request = TryRequest(dag, task, run, 1, 1, {}, tmp_path / "log")
            async with anyio.create_task_group() as tg:
                tg.start_soon(executor.run, request)
                with anyio.fail_after(10):
                    # The pid comes from a file the shell writes: there is no event to await.
                    while not pidfile.exists() or not pidfile.read_text().strip():  # noqa: ASYNC110
                        await anyio.sleep(0.001)
                tg.cancel_scope.cancel()
            assert gone(int(pidfile.read_text())), f"attempt {attempt}: the child survived"
