"""The notifier interface behind every alert, and the built-in email and webhook notifiers.

A notifier is called with a context: a task's (``ti``, ``dag_run``, ``exception``...)
when it is a task's or a DAG's callback, and always with ``alert``, the facts of the
alert (event, dag_id, run_id, task_id, try_number, state, error, log_excerpt, log_url,
id). Subclass :class:`BaseNotifier` and write ``notify`` (sync or async), as with
Airflow's ``BaseNotifier``; an instance is a callback: ``on_failure_callback=MyNotifier(...)``.
Its ``template_fields`` are rendered with the context (Jinja) on a copy before ``notify``.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import inspect
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import anyio.to_thread

from orchestrator._settings import Settings
from orchestrator.errors import ConfigError
from orchestrator.resources._services import current_services, worker_thread
from orchestrator.resources._smtp import send_email

if TYPE_CHECKING:
    import aiohttp
    import jinja2

__all__ = [
    "BaseNotifier",
    "EmailNotifier",
    "WebhookDeliveryError",
    "WebhookNotifier",
    "alert_text",
    "sign",
]


@functools.cache
def _env(html: bool = False) -> jinja2.Environment:
    """The sandboxed Jinja environment (made on first use: importing this module stays
    cheap for every process that imports ``orchestrator``)."""
    import jinja2.sandbox

    if html:
        return jinja2.sandbox.SandboxedEnvironment(autoescape=True)
    return jinja2.sandbox.SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)


_TITLES = {
    "task_failure": "Task failed",
    "task_retry": "Task up for retry",
    "task_success": "Task succeeded",
    "run_failure": "Run failed",
    "run_success": "Run succeeded",
    "deadline_missed": "Deadline missed",
}

DEFAULT_SUBJECT = (
    "[orchestrator] {{ title }}: {{ alert.dag_id }}"
    "{% if alert.task_id %}.{{ alert.task_id }}{% endif %}"
    "{% if alert.try_number %} (try {{ alert.try_number }}){% endif %}"
)
DEFAULT_TEXT = """{{ title }}

DAG:   {{ alert.dag_id }}
Run:   {{ alert.run_id }}
{% if alert.task_id %}Task:  {{ alert.task_id }}
Try:   {{ alert.try_number }}
{% endif %}State: {{ alert.state }}
{% if alert.error %}
Error:
{{ alert.error }}
{% endif %}{% if alert.log_excerpt %}
Last lines of the log:
{{ alert.log_excerpt }}
{% endif %}{% if alert.log_url %}
Log: {{ alert.log_url }}
{% endif %}"""
DEFAULT_HTML = """<h3>{{ title }}</h3>
<table>
<tr><th align="left">DAG</th><td>{{ alert.dag_id }}</td></tr>
<tr><th align="left">Run</th><td>{{ alert.run_id }}</td></tr>
{% if alert.task_id %}<tr><th align="left">Task</th><td>{{ alert.task_id }}</td></tr>
<tr><th align="left">Try</th><td>{{ alert.try_number }}</td></tr>
{% endif %}<tr><th align="left">State</th><td>{{ alert.state }}</td></tr>
</table>
{% if alert.error %}<p>Error:</p><pre>{{ alert.error }}</pre>{% endif %}
{% if alert.log_excerpt %}<p>Last lines of the log:</p><pre>{{ alert.log_excerpt }}</pre>{% endif %}
{% if alert.log_url %}<p><a href="{{ alert.log_url }}">The log</a></p>{% endif %}
"""


def _template(path: str, setting: str, default: str, env: jinja2.Environment) -> jinja2.Template:
    """The template a setting names (a Jinja file), else the default."""
    import jinja2

    if not path:
        return env.from_string(default)
    try:
        return env.from_string(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"setting {setting}: cannot read {path}: {exc.strerror}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"setting {setting}: {path}, line {exc.lineno}: {exc.message}") from None


def alert_text(alert: dict[str, Any]) -> str:
    """One line for chat (Slack's ``text``)."""
    title = _TITLES.get(alert.get("event", ""), str(alert.get("event")))
    where = alert.get("dag_id", "")
    if alert.get("task_id"):
        where += f".{alert['task_id']} (try {alert.get('try_number')})"
    text = f"{title}: {where}, run {alert.get('run_id')}"
    if alert.get("error"):
        text += f": {str(alert['error']).splitlines()[-1] if alert['error'] else ''}"
    return text


def sign(secret: str, body: bytes) -> str:
    """The ``X-Orchestrator-Signature`` header of ``body``: ``sha256=<hex HMAC>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class BaseNotifier:
    """A notifier: ``notify(context)`` does the work; ``template_fields`` are rendered first."""

    template_fields: ClassVar[Sequence[str]] = ()

    def notify(self, context: dict[str, Any]) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define notify(context)")

    def render(self, context: dict[str, Any]) -> BaseNotifier:
        """A copy whose template fields are rendered with ``context``."""
        rendered = copy.copy(self)
        for name in self.template_fields:
            value = getattr(self, name, None)
            setattr(rendered, name, _render(value, context))
        return rendered

    async def deliver(self, context: dict[str, Any]) -> None:
        """Render, then notify: async ``notify`` on the loop, a sync one in a worker thread."""
        rendered = self.render(context)
        if inspect.iscoroutinefunction(rendered.notify):
            await rendered.notify(context)
        else:
            result = await anyio.to_thread.run_sync(worker_thread(rendered.notify), context)
            if inspect.isawaitable(result):
                await result

    def __call__(self, context: dict[str, Any]) -> Any:
        """As a plain callback (Airflow's shape): render, then notify."""
        return self.render(context).notify(context)


def _render(value: Any, context: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return _env().from_string(value).render(context)
    if isinstance(value, list):
        return [_render(v, context) for v in value]
    if isinstance(value, dict):
        return {k: _render(v, context) for k, v in value.items()}
    return value


class EmailNotifier(BaseNotifier):
    """Mail through the configured SMTP server. Subject and bodies are Jinja templates
    rendered with the context; left out, they carry the alert's facts."""

    template_fields: ClassVar[Sequence[str]] = ("to", "cc", "bcc", "subject", "html_content")

    def __init__(
        self,
        to: str | Sequence[str],
        *,
        subject: str | None = None,
        html_content: str | None = None,
        text_content: str | None = None,
        cc: str | Sequence[str] = (),
        bcc: str | Sequence[str] = (),
        files: Sequence[str | Path] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        self.to = [to] if isinstance(to, str) else list(to)
        self.cc = [cc] if isinstance(cc, str) else list(cc)
        self.bcc = [bcc] if isinstance(bcc, str) else list(bcc)
        self.subject = subject
        self.html_content = html_content
        self.text_content = text_content
        self.files = list(files)
        self.headers = dict(headers or {})

    async def notify(self, context: dict[str, Any]) -> None:
        services = current_services()
        if services is None:
            raise ConfigError("SMTP not configured: no settings available")
        await self.send(services.settings, context)

    async def send(self, settings: Settings, context: dict[str, Any]) -> None:
        """Render and send the message with ``settings``' SMTP server."""
        alert = context.get("alert") or {}
        values = {"alert": alert, "title": _TITLES.get(alert.get("event", ""), "Alert")}
        values = {**context, **values}
        subject = self.subject or _template(
            settings.email_subject_template, "email_subject_template", DEFAULT_SUBJECT, _env()
        ).render(values)
        text: str | None
        html: str | None
        if self.html_content is None and self.text_content is None:
            text = _template(
                settings.email_text_template, "email_text_template", DEFAULT_TEXT, _env()
            ).render(values)
            html = _template(
                settings.email_html_template, "email_html_template", DEFAULT_HTML, _env(html=True)
            ).render(values)
        else:
            text, html = self.text_content, self.html_content
            if text is None and html is not None:
                text = "This message is HTML; use a client that shows it."
        headers = dict(self.headers)
        if alert.get("id"):
            headers.setdefault("X-Orchestrator-Alert", str(alert["id"]))
        await send_email(
            settings,
            self.to,
            subject,
            text=text,
            html=html,
            cc=self.cc,
            bcc=self.bcc,
            files=self.files,
            headers=headers,
        )


class WebhookDeliveryError(Exception):
    """The receiver did not take the alert (a status outside 2xx, or no answer)."""


class WebhookNotifier(BaseNotifier):
    """POST the alert's facts as JSON (with a Slack-compatible ``text``), signed with
    ``secret`` (``None``: ``ORCHESTRATOR_WEBHOOK_SECRET``; ``""``: unsigned)."""

    template_fields: ClassVar[Sequence[str]] = ("url",)

    def __init__(self, url: str, *, secret: str | None = None) -> None:
        self.url = url
        self.secret = secret

    def __repr__(self) -> str:
        return f"WebhookNotifier({self.url!r})"

    def document(self, context: dict[str, Any]) -> dict[str, Any]:
        alert = dict(context.get("alert") or {})
        return {**alert, "text": alert_text(alert)}

    async def notify(self, context: dict[str, Any]) -> None:
        services = current_services()
        if services is None:
            raise ConfigError("webhook: no settings available")
        await self.send(services.settings, services.clients.http(), context)

    async def send(
        self, settings: Settings, session: aiohttp.ClientSession, context: dict[str, Any]
    ) -> None:
        """POST the document with ``session``; WebhookDeliveryError unless a 2xx answers."""
        import aiohttp  # only in a process that sends webhooks

        document = self.document(context)
        body = json.dumps(document, separators=(",", ":"), default=str).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "orchestrator-alerts"}
        if document.get("id"):
            headers["Idempotency-Key"] = str(document["id"])
            headers["X-Orchestrator-Event"] = str(document.get("event", ""))
        secret = settings.webhook_secret if self.secret is None else self.secret
        if secret:
            headers["X-Orchestrator-Signature"] = sign(secret, body)
        try:
            async with session.post(
                self.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=settings.alert_timeout),
                allow_redirects=False,
            ) as response:
                if not 200 <= response.status < 300:
                    detail = (await response.text(errors="replace"))[:200]
                    raise WebhookDeliveryError(
                        f"{self.url} answered {response.status}"
                        + (f": {detail.strip()}" if detail.strip() else "")
                    )
                await response.read()
        except TimeoutError:
            raise WebhookDeliveryError(
                f"{self.url} did not answer within {settings.alert_timeout:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise WebhookDeliveryError(f"{self.url}: {type(exc).__name__}: {exc}") from None
