"""The one SMTP client: alert mail and ``EmailOperator`` both send through it (aiosmtplib).

Settings: ``smtp_host``, ``smtp_port``, ``smtp_starttls`` or ``smtp_ssl``, ``smtp_user``
and ``smtp_password`` (login when a user is set), ``smtp_from``, and ``smtp_ca_file``
for a server whose certificate a private CA signed.

Headers never carry a CR or LF from their values (no header injection): an address with
one is refused, naming it; a subject's line breaks become spaces.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from orchestrator._settings import Settings
from orchestrator.errors import ConfigError

__all__ = ["build_message", "one_line", "send_email"]


def one_line(text: str) -> str:
    """A header value on one line: CR and LF (and the other line breaks) become spaces."""
    return " ".join(str(text).splitlines()).strip()


def _addresses(values: Sequence[str], field: str) -> list[str]:
    out = []
    for value in values:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{field}: {value!r} is not an address")
        if any(c in value for c in "\r\n\x00"):
            raise ValueError(f"{field}: {value!r} holds a line break")
        out.append(value.strip())
    return out


def build_message(
    sender: str,
    to: Sequence[str],
    subject: str,
    *,
    text: str | None = None,
    html: str | None = None,
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    files: Sequence[str | Path] = (),
    headers: dict[str, str] | None = None,
) -> tuple[EmailMessage, list[str]]:
    """The message and its recipients (bcc among them, not in the headers)."""
    recipients = _addresses(to, "to") + _addresses(cc, "cc") + _addresses(bcc, "bcc")
    if not recipients:
        raise ValueError("to: no recipient")
    message = EmailMessage()
    message["From"] = _addresses([sender], "from")[0]
    message["To"] = ", ".join(_addresses(to, "to"))
    if cc:
        message["Cc"] = ", ".join(_addresses(cc, "cc"))
    message["Subject"] = one_line(subject)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="orchestrator")
    for name, value in (headers or {}).items():
        message[one_line(name)] = one_line(value)
    message.set_content(text if text is not None else "")
    if html is not None:
        message.add_alternative(html, subtype="html")
    for file in files:
        path = Path(file)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"files: cannot read {str(path)!r}: {exc.strerror}") from None
        kind, _ = mimetypes.guess_type(path.name)
        maintype, subtype = (kind or "application/octet-stream").split("/", 1)
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=path.name)
    return message, recipients


async def send_email(
    settings: Settings,
    to: Sequence[str],
    subject: str,
    *,
    text: str | None = None,
    html: str | None = None,
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    files: Sequence[str | Path] = (),
    headers: dict[str, str] | None = None,
) -> None:
    """Send one message with the configured server, TLS and credentials (waiting at most
    ``alert_timeout`` seconds for each answer)."""
    if not settings.smtp_host:
        raise ConfigError("SMTP not configured: set ORCHESTRATOR_SMTP_HOST (and _PORT, _FROM...)")
    message, recipients = build_message(
        settings.smtp_from,
        to,
        subject,
        text=text,
        html=html,
        cc=cc,
        bcc=bcc,
        files=files,
        headers=headers,
    )
    import aiosmtplib  # only in a process that sends mail

    await aiosmtplib.send(
        message,
        recipients=recipients,
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_user or None,
        password=settings.smtp_password or None,
        use_tls=settings.smtp_ssl,
        start_tls=settings.smtp_starttls and not settings.smtp_ssl,
        cert_bundle=settings.smtp_ca_file or None,
        timeout=settings.alert_timeout,
    )
