"""BashOperator: a shell command in its own process group."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import anyio
from anyio.abc import Process

from orchestrator._logging import current_task_log
from orchestrator.authoring._baseoperator import BaseOperator
from orchestrator.errors import DagDefinitionError, SkipTask

__all__ = ["BashOperator"]

_KILL_GRACE_SECONDS = 5.0


class BashOperator(BaseOperator):
    """Runs ``bash_command`` with ``bash -c``; its output goes to the try's log.

    Exit code ``skip_on_exit_code`` (99) finishes the task as skipped; any other
    non-zero code fails it. On timeout or cancel the whole process group gets
    SIGTERM, then SIGKILL after a grace period. The last line of output is the XCom.
    """

    template_fields: ClassVar[Sequence[str]] = ("bash_command", "env", "cwd")
    template_ext: ClassVar[Sequence[str]] = (".sh", ".bash")

    def __init__(
        self,
        *,
        bash_command: str,
        env: Mapping[str, str] | None = None,
        append_env: bool = False,
        cwd: str | None = None,
        skip_on_exit_code: int | None = 99,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(bash_command, str) or not bash_command.strip():
            raise DagDefinitionError(f"{self._where}: bash_command must be a non-empty string")
        if env is not None and not isinstance(env, Mapping):
            raise DagDefinitionError(f"{self._where}: env must be a mapping of strings")
        self.bash_command = bash_command
        self.env = dict(env) if env is not None else None
        self.append_env = bool(append_env)
        self.cwd = cwd
        self.skip_on_exit_code = skip_on_exit_code

    def _environment(self, context: dict[str, Any]) -> dict[str, str]:
        if self.env is None:
            env = dict(os.environ)
        elif self.append_env:
            env = {**os.environ, **{k: str(v) for k, v in self.env.items()}}
        else:
            env = {k: str(v) for k, v in self.env.items()}
        ti = context["ti"]
        env.update(
            {
                "ORCHESTRATOR_CTX_DAG_ID": ti.dag_id,
                "ORCHESTRATOR_CTX_TASK_ID": ti.task_id,
                "ORCHESTRATOR_CTX_RUN_ID": ti.run_id,
                "ORCHESTRATOR_CTX_TRY_NUMBER": str(ti.try_number),
                "ORCHESTRATOR_CTX_LOGICAL_DATE": context["ts"],
            }
        )
        return env

    async def execute(self, context: dict[str, Any]) -> Any:
        if self.cwd is not None and not await anyio.Path(self.cwd).is_dir():
            raise FileNotFoundError(f"{self._where}: cwd {self.cwd!r} is not a directory")
        # Shielded: a cancel landing after the process started but before open_process
        # returned would otherwise leave it running, outside the kill-on-cancel block.
        with anyio.CancelScope(shield=True):
            process = await anyio.open_process(
                ["bash", "-c", self.bash_command],
                cwd=self.cwd,
                env=self._environment(context),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        last_line = ""
        log = current_task_log()
        emit = log.line if log is not None else print
        try:
            assert process.stdout is not None
            buffer = b""
            async for chunk in process.stdout:
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for raw in lines:
                    last_line = raw.decode(errors="replace")
                    emit(last_line)
            if buffer:
                last_line = buffer.decode(errors="replace")
                emit(last_line)
            code = await process.wait()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await _kill_group(process)
            raise
        if self.skip_on_exit_code is not None and code == self.skip_on_exit_code:
            raise SkipTask(f"bash command exited with {code}")
        if code != 0:
            raise RuntimeError(f"bash command failed: exit code {code}")
        return last_line


async def _kill_group(process: Process) -> None:
    """SIGTERM the process group, SIGKILL whatever is left of it after the grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        if sig == signal.SIGTERM:
            with anyio.move_on_after(_KILL_GRACE_SECONDS):
                await process.wait()
    await process.wait()
