"""EmptyOperator, EmailOperator and TriggerDagRunOperator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import anyio

from orchestrator.authoring._baseoperator import BaseOperator
from orchestrator.authoring._dagcontext import KEY_PATTERN
from orchestrator.core._state import RunState
from orchestrator.errors import ConfigError, Conflict, DagDefinitionError, OrchestratorError
from orchestrator.resources._services import current_services
from orchestrator.resources._smtp import send_email

__all__ = ["EmailOperator", "EmptyOperator", "TriggerDagRunOperator"]


class EmptyOperator(BaseOperator):
    """Does nothing; useful to group or join branches."""

    async def execute(self, context: dict[str, Any]) -> None:
        return None


class EmailOperator(BaseOperator):
    """Sends an email through the configured SMTP server (the alerts' client): ``to``,
    ``cc`` and ``bcc`` addresses, a ``subject``, an HTML body, and ``files`` attached."""

    template_fields: ClassVar[Sequence[str]] = ("to", "cc", "bcc", "subject", "html_content")

    def __init__(
        self,
        *,
        to: str | Sequence[str],
        subject: str,
        html_content: str,
        cc: str | Sequence[str] | None = None,
        bcc: str | Sequence[str] | None = None,
        files: Sequence[str] | None = None,
        mime_charset: str = "utf-8",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.to = _addresses(to)
        self.cc = _addresses(cc)
        self.bcc = _addresses(bcc)
        if not self.to:
            raise DagDefinitionError(f"{self._where}: 'to' needs at least one address")
        self.subject = subject
        self.html_content = html_content
        self.files = list(files or [])
        self.mime_charset = mime_charset

    async def execute(self, context: dict[str, Any]) -> None:
        services = current_services()
        if services is None:
            raise ConfigError("SMTP not configured: no settings available")
        try:
            await send_email(
                services.settings,
                _addresses(self.to),
                self.subject,
                text="This message is HTML; use a client that shows it.",
                html=self.html_content,
                cc=_addresses(self.cc),
                bcc=_addresses(self.bcc),
                files=self.files,
            )
        except ValueError as exc:
            raise OrchestratorError(f"{self._where}: {exc}") from None


def _addresses(value: str | Sequence[str] | None) -> list[str]:
    """Addresses as a list; a string may hold several, separated by commas or semicolons."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [
        a.strip() for item in items for a in str(item).replace(";", ",").split(",") if a.strip()
    ]


class TriggerDagRunOperator(BaseOperator):
    """Requests a run of another DAG; the daemon runs it.

    With ``wait_for_completion`` the task waits, polling every ``poke_interval``
    seconds, until that run reaches one of ``allowed_states`` (success) or
    ``failed_states`` (the task fails).
    """

    template_fields: ClassVar[Sequence[str]] = (
        "trigger_dag_id",
        "trigger_run_id",
        "conf",
        "logical_date",
    )

    def __init__(
        self,
        *,
        trigger_dag_id: str,
        trigger_run_id: str | None = None,
        conf: Mapping[str, Any] | None = None,
        logical_date: datetime | str | None = None,
        wait_for_completion: bool = False,
        poke_interval: float = 60,
        allowed_states: Sequence[str] = ("success",),
        failed_states: Sequence[str] = ("failed",),
        reset_dag_run: bool = False,
        skip_when_already_exists: bool = False,
        deferrable: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(trigger_dag_id, str) or not trigger_dag_id:
            raise DagDefinitionError(f"{self._where}: trigger_dag_id must be a DAG id")
        if conf is not None and not isinstance(conf, Mapping):
            raise DagDefinitionError(f"{self._where}: conf must be a mapping")
        self.trigger_dag_id = trigger_dag_id
        self.trigger_run_id = trigger_run_id
        self.conf = dict(conf or {})
        self.logical_date = logical_date
        self.wait_for_completion = bool(wait_for_completion)
        self.poke_interval = float(poke_interval)
        self.allowed_states = [RunState(s) for s in allowed_states]
        self.failed_states = [RunState(s) for s in failed_states]
        # Accepted as Airflow's; a run of that id already there is a conflict either way,
        # and waiting never holds more than this task's slot.
        self.reset_dag_run = bool(reset_dag_run)
        self.skip_when_already_exists = bool(skip_when_already_exists)
        self.deferrable = bool(deferrable)

    async def execute(self, context: dict[str, Any]) -> str:
        services = current_services()
        if services is None or services.runs is None:
            raise OrchestratorError(f"{self._where}: no run intake to ask for the run")
        if not KEY_PATTERN.match(self.trigger_dag_id):
            raise DagDefinitionError(f"{self._where}: bad trigger_dag_id {self.trigger_dag_id!r}")
        logical = self.logical_date
        if isinstance(logical, str):  # rendered from a template such as "{{ logical_date }}"
            logical = datetime.fromisoformat(logical.strip().replace(" ", "T", 1))
        try:
            run = await services.runs.request_run(
                self.trigger_dag_id,
                conf=self.conf,
                run_id=self.trigger_run_id,
                logical_date=logical,
            )
        except Conflict as exc:
            raise OrchestratorError(f"{self._where}: {exc}") from None
        run_id = run.run_id
        print(f"requested run {run_id!r} of DAG {self.trigger_dag_id!r}")
        context["ti"].xcom_push("trigger_run_id", run_id)
        if self.wait_for_completion:
            while True:
                state = await services.runs.run_state(self.trigger_dag_id, run_id)
                if state in self.failed_states:
                    raise OrchestratorError(f"triggered run {run_id!r} ended {state}")
                if state in self.allowed_states:
                    break
                await anyio.sleep(self.poke_interval)
        return run_id


class ExternalTaskMarker(BaseOperator):
    """Airflow's marker of a task another DAG's ``ExternalTaskSensor`` waits for: it does
    nothing when it runs (clearing it does not reach into the other DAG)."""

    template_fields: ClassVar[Sequence[str]] = ("external_dag_id", "external_task_id")

    def __init__(
        self,
        *,
        external_dag_id: str,
        external_task_id: str,
        logical_date: str | datetime | None = "{{ logical_date.isoformat() }}",
        recursion_depth: int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.external_dag_id = external_dag_id
        self.external_task_id = external_task_id
        self.logical_date = logical_date
        self.recursion_depth = recursion_depth

    def execute(self, context: dict[str, Any]) -> None:
        return None
