"""A try as the scheduler asks for it and as it ended; described for a process of its
own, and what that process reports back.

The same description serves a try run with ``isolation="process"`` by the local
executor and a try sent to a worker (stored with the try's row, ``store._work``): the
child interpreter (``_child.py``) reads it, runs the task and writes an outcome.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import Process

from orchestrator.authoring._mapping import MappedOperator
from orchestrator.errors import FailTask, SkipTask
from orchestrator.runtime._context import DagRunInfo, RuntimeTaskInstance, pull_xcom

if TYPE_CHECKING:
    from orchestrator.authoring._baseoperator import BaseOperator
    from orchestrator.authoring._dag import DAG

__all__ = [
    "TryKey",
    "TryRequest",
    "TryResult",
    "child_spec",
    "kill_child",
    "open_child",
    "outcome_value",
]

TryKey = tuple[str, str, str, int, int]  # dag_id, run_id, task_id, map_index, try_number


@dataclass(slots=True)
class TryRequest:
    dag: DAG
    task: BaseOperator
    run: DagRunInfo
    try_number: int
    max_tries: int
    xcoms: Mapping[tuple[str, str], str]
    log_path: Path
    map_index: int = -1  # of a mapped task's instance: ``task`` is the mapped task

    def unmapped(self) -> BaseOperator:
        """The operator the try runs: a mapped task's instance's own (``MappedOperator.unmap``)."""
        if self.map_index < 0 or not isinstance(self.task, MappedOperator):
            return self.task
        pull = functools.partial(pull_xcom, self.dag, self.xcoms)
        return self.task.unmap(self.map_index, pull)


@dataclass(slots=True)
class TryResult:
    state: str  # "success", "failed" or "skipped"
    error: str | None = None
    retryable: bool = True
    pushed: dict[str, str] = field(default_factory=dict)
    skip_task_ids: set[str] = field(default_factory=set)
    context: dict[str, Any] = field(default_factory=dict)
    outlet_extras: dict[str, dict[str, Any]] = field(default_factory=dict)  # uri -> extra
    log_excerpt: str | None = None  # a failed try's last log lines, for its alerts
    map_label: str | None = None  # a mapped instance's map_index_template, rendered
    rendered: str | None = None  # the templated fields as rendered (JSON), when rendered
    hostname: str | None = None  # the host that ran the try, when not this one (a worker)


def child_spec(request: TryRequest, xcom_limit: int) -> dict[str, Any]:
    """What the child interpreter needs to run the try (``result_path`` is added by the
    one that starts it)."""
    run = request.run
    timeout = request.task.execution_timeout
    return {
        "file": request.dag.fileloc,
        "dag_id": request.dag.dag_id,
        "task_id": request.task.task_id,
        "map_index": request.map_index,
        "run": {
            "run_id": run.run_id,
            "run_type": run.run_type,
            "logical_date": run.logical_date.isoformat(),
            "data_interval_start": run.data_interval_start.isoformat(),
            "data_interval_end": run.data_interval_end.isoformat(),
            "conf": run.conf,
            "triggering_events": [e.to_json() for e in run.triggering_events],
        },
        "try_number": request.try_number,
        "max_tries": request.max_tries,
        "xcoms": [[t, k, v] for (t, k), v in request.xcoms.items()],
        "xcom_limit": xcom_limit,
        "timeout": timeout.total_seconds() if timeout is not None else None,
    }


def outcome_value(ti: RuntimeTaskInstance, outcome: dict[str, Any]) -> Any:
    """The try's return value from the child's outcome, its XComs and outlet extras
    folded into ``ti``; its end as the exception the try raised."""
    ti.pushed.update(outcome.get("pushed", {}))
    ti.skip_task_ids |= set(outcome.get("skip_task_ids", []))
    for uri, extra in outcome.get("outlet_extras", {}).items():
        if uri in ti.outlet_events:
            ti.outlet_events[uri].extra = extra
    kind = outcome["kind"]
    if kind == "skipped":
        raise SkipTask(outcome.get("error") or "skipped")
    if kind == "fail_fast":
        raise FailTask(outcome["error"])
    if kind != "success":
        raise RuntimeError(outcome.get("error") or kind)
    return outcome.get("value")


async def open_child(spec: dict[str, Any], env: dict[str, str]) -> Process:
    """The child interpreter (``_child.py``) in a session of its own, given ``spec``; its
    stdout and stderr are one pipe. Started shielded: a cancel never leaves it unowned."""
    with anyio.CancelScope(shield=True):
        process = await anyio.open_process(
            [sys.executable, "-m", "orchestrator.runtime._child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        assert process.stdin is not None
        await process.stdin.send(json.dumps(spec).encode())
        await process.stdin.aclose()
    except BaseException:
        await kill_child(process)
        raise
    return process


async def kill_child(process: Process) -> None:
    """SIGKILL the child's process group and reap it, whatever cancels the caller."""
    with anyio.CancelScope(shield=True):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
