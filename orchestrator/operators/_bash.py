"""BashOperator: a shell command in its own process group."""

from __future__ import annotations

import inspect
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import anyio

from orchestrator._logging import current_task_log, mask
from orchestrator._processes import end_group, marked, relay_output, sweep, without_daemon_secrets
from orchestrator.authoring._baseoperator import BaseOperator, XComArg
from orchestrator.errors import DagDefinitionError, SkipTask
from orchestrator.operators._python import PythonOperator

__all__ = ["BashDecoratedOperator", "BashOperator"]


class BashOperator(BaseOperator):
    """Runs ``bash_command`` with ``bash -c``; its output goes to the try's log.

    Exit code ``skip_on_exit_code`` (99) finishes the task as skipped; any other
    non-zero code fails it. On timeout or cancel the whole process group gets
    SIGTERM, then SIGKILL after a grace period. The try ends when ``bash`` exits,
    and whatever it started that still runs then is killed, in its process group
    or not (``_processes`` rule 2). The command sees the daemon's environment
    without the daemon's secrets (rule 1). The last line of output, masked, is the XCom.
    """

    template_fields: ClassVar[Sequence[str]] = ("bash_command", "env", "cwd")
    template_ext: ClassVar[Sequence[str]] = (".sh", ".bash")

    def __init__(
        self,
        *,
        bash_command: str | XComArg,
        env: Mapping[str, str] | None = None,
        append_env: bool = False,
        cwd: str | None = None,
        skip_on_exit_code: int | None = 99,
        output_processor: Callable[[str], Any] | None = None,
        multiple_outputs: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(bash_command, XComArg):
            bash_command.operator.set_downstream(self)
        elif not isinstance(bash_command, str) or not bash_command.strip():
            raise DagDefinitionError(f"{self._where}: bash_command must be a non-empty string")
        if output_processor is not None and not callable(output_processor):
            raise DagDefinitionError(f"{self._where}: output_processor must be callable")
        self.output_processor = output_processor
        self.multiple_outputs = bool(multiple_outputs)
        if env is not None and not isinstance(env, Mapping):
            raise DagDefinitionError(f"{self._where}: env must be a mapping of strings")
        self.bash_command = bash_command
        self.env = dict(env) if env is not None else None
        self.append_env = bool(append_env)
        self.cwd = cwd
        self.skip_on_exit_code = skip_on_exit_code

    def _environment(self, context: dict[str, Any]) -> dict[str, str]:
        if self.env is None:
            env = without_daemon_secrets(os.environ)
        elif self.append_env:
            env = {**without_daemon_secrets(os.environ), **{k: str(v) for k, v in self.env.items()}}
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
        env, mark = marked(self._environment(context))
        # Shielded: a cancel landing after the process started but before open_process
        # returned would otherwise leave it running, outside the kill-on-cancel block.
        with anyio.CancelScope(shield=True):
            process = await anyio.open_process(
                ["bash", "-c", str(self.bash_command)],  # rendered: a string by now
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        log = current_task_log()
        try:
            code, last_line = await relay_output(process, log.line if log is not None else print)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await end_group(process)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(sweep, mark)
        if self.skip_on_exit_code is not None and code == self.skip_on_exit_code:
            raise SkipTask(f"bash command exited with {code}")
        if code != 0:
            raise RuntimeError(f"bash command failed: exit code {code}")
        output: Any = mask(last_line)  # the output, masked as the log is
        if self.output_processor is not None:
            output = self.output_processor(output)
        if self.multiple_outputs and isinstance(output, Mapping):
            for key, value in output.items():
                context["ti"].xcom_push(str(key), value)
        return output


class BashDecoratedOperator(PythonOperator):
    """``@task.bash``: the function returns the command (rendered with Jinja and the
    context, as a templated ``bash_command`` is), which then runs as a BashOperator's."""

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        append_env: bool = False,
        cwd: str | None = None,
        skip_on_exit_code: int | None = 99,
        output_processor: Callable[[str], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.bash_outputs = bool(kwargs.pop("multiple_outputs", False))  # the command's
        super().__init__(**kwargs)
        self.output_processor = output_processor
        self.env = dict(env) if env is not None else None
        self.append_env = bool(append_env)
        self.cwd = cwd
        self.skip_on_exit_code = skip_on_exit_code

    def runs_on_loop(self) -> bool:
        return True  # the command's process is awaited on the loop

    async def execute_async(self, context: dict[str, Any]) -> Any:
        args, kwargs = self._arguments(context)
        command = self.python_callable(*args, **kwargs)
        if inspect.isawaitable(command):
            command = await command
        if not isinstance(command, str) or not command.strip():
            raise TypeError(
                f"{self._where}: a @task.bash function must return a non-empty command, "
                f"got {command!r}"
            )
        import jinja2.sandbox  # as templated fields are rendered

        env = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined)
        rendered = env.from_string(command).render(context)
        bash = BashOperator(
            task_id=self.task_id,
            bash_command=rendered,
            env=self.env,
            append_env=self.append_env,
            cwd=self.cwd,
            skip_on_exit_code=self.skip_on_exit_code,
            output_processor=self.output_processor,
            multiple_outputs=self.bash_outputs,
        )
        return await bash.execute(context)
