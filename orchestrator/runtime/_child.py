"""The child interpreter of a task run with ``isolation="process"``.

Reads the try's description as JSON on stdin, imports the DAG file, runs the task
and writes the outcome to ``result_path``. Its stdout and stderr are the try's log.
If it dies without writing the result, the parent fails the try with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ctypes
import functools
import io
import json
import logging
import os
import signal
import sys
import traceback
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
import structlog

from orchestrator._logging import MaskedLines, mask
from orchestrator._processes import TRY_MARK, sweep
from orchestrator.authoring._mapping import MappedOperator
from orchestrator.dagfiles._files import load_dag_file
from orchestrator.errors import FailTask, SkipTask
from orchestrator.runtime._context import (
    DagRunInfo,
    RuntimeTaskInstance,
    build_context,
    pull_xcom,
    render_task,
)
from triggers._dataset import DatasetEvent

if TYPE_CHECKING:
    from orchestrator.authoring._dag import DAG


def _run(spec: dict[str, Any], dag: DAG | None = None) -> dict[str, Any]:
    if dag is None:
        try:
            dag = {d.dag_id: d for d in load_dag_file(Path(spec["file"]))}.get(spec["dag_id"])
        except Exception as exc:
            traceback.print_exc()
            return {"kind": "failed", "error": f"{type(exc).__name__}: {exc}"}
        if dag is None:
            return {"kind": "failed", "error": f"DAG {spec['dag_id']!r} is not in {spec['file']}"}
    task = dag.task_dict[spec["task_id"]]
    xcoms = {(t, k): v for t, k, v in spec["xcoms"]}
    map_index = spec.get("map_index", -1)
    if map_index >= 0 and isinstance(task, MappedOperator):
        task = task.unmap(map_index, functools.partial(pull_xcom, dag, xcoms))
    raw = spec["run"]
    run = DagRunInfo(
        dag_id=dag.dag_id,
        run_id=raw["run_id"],
        run_type=raw["run_type"],
        logical_date=datetime.fromisoformat(raw["logical_date"]),
        data_interval_start=datetime.fromisoformat(raw["data_interval_start"]),
        data_interval_end=datetime.fromisoformat(raw["data_interval_end"]),
        conf=raw["conf"],
        triggering_events=[
            DatasetEvent(**{**e, "timestamp": datetime.fromisoformat(e["timestamp"])})
            for e in raw.get("triggering_events", [])
        ],
    )
    ti = RuntimeTaskInstance(
        task=task,
        run=run,
        try_number=spec["try_number"],
        max_tries=spec["max_tries"],
        xcoms=xcoms,
        xcom_limit=spec["xcom_limit"],
    )
    context = build_context(dag, ti)
    outcome: dict[str, Any] = {"kind": "success"}
    try:
        rendered = render_task(task, context)
        rendered.pre_execute(context)
        if rendered.runs_on_loop():
            value = anyio.run(rendered.execute_async, context)
        else:
            value = rendered.execute(context)
        rendered.post_execute(context, value)
        json.dumps(value)  # the parent checks size; here only that it is JSON at all
        outcome["value"] = value
        outcome["outlet_extras"] = ti.outlet_events.checked_extras(spec["xcom_limit"])
    except SkipTask as exc:
        outcome = {"kind": "skipped", "error": str(exc)}
    except FailTask as exc:
        outcome = {"kind": "fail_fast", "error": str(exc) or "FailTask"}
    except Exception as exc:
        traceback.print_exc()
        outcome = {"kind": "failed", "error": f"{type(exc).__name__}: {exc}"}
    outcome["pushed"] = ti.pushed
    outcome["skip_task_ids"] = sorted(ti.skip_task_ids)
    return outcome


WORKER_PID = "ORCHESTRATOR_WORKER_PID"
_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """A worker's try ends with the worker: when it dies (even by SIGKILL), this process
    is sent SIGTERM, kills what the try started (its mark) and exits."""
    mark = os.environ.get(TRY_MARK, "").rsplit(",", 1)[-1]  # the worker's, the last

    def ended(signum: int, frame: object) -> None:
        if mark:
            sweep(mark, spare=os.getpid())
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, ended)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the request was made
        ended(signal.SIGTERM, None)


def main() -> None:
    _serve(json.loads(sys.stdin.read()))


def run_forked(spec: dict[str, Any], dag: DAG, env: dict[str, str], out: int) -> NoReturn:
    """The try, in a child a worker forked (its imports and the DAG file are already
    loaded): a session of its own, ``env`` added, stdout and stderr on ``out``; it
    never returns to the worker's code."""
    code = 1
    try:
        os.setsid()
        os.dup2(out, 1)
        os.dup2(out, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.environ.update(env)
        asyncio.events._set_running_loop(None)  # the worker's loop is not this process's
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
        # As in a new interpreter: the worker's logger config (and the lock of its output
        # stream, which another of its threads may have held at the fork) is not used.
        structlog.reset_defaults()
        contextvars.Context().run(_serve, spec, dag)  # not the worker task's context
        code = 0
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _log_to_stderr() -> None:
    """``logging`` of the try's code into its output, from INFO, as in the daemon."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _serve(spec: dict[str, Any], dag: DAG | None = None) -> None:
    parent = os.environ.get(WORKER_PID)
    if parent:
        _die_with(int(parent))
    # Secrets this process reads (a connection's password) are masked in what it prints.
    sys.stdout = MaskedLines(sys.stdout)
    sys.stderr = MaskedLines(sys.stderr)
    _log_to_stderr()
    outcome = _run(spec, dag)
    if outcome.get("error"):
        outcome["error"] = mask(outcome["error"])
    sys.stdout.flush()
    sys.stderr.flush()
    Path(spec["result_path"]).write_text(json.dumps(outcome))


if __name__ == "__main__":
    main()
