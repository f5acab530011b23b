"""Real receivers on loopback for alert tests: an SMTP server (aiosmtpd) and an HTTP
webhook receiver, each in its own thread, recording what arrives."""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Recorder:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.items: list[Any] = []

    def add(self, item: Any) -> None:
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def wait_for(self, count: int, within: float = 10.0) -> list[Any]:
        """Block until ``count`` items arrived (for anyio.to_thread.run_sync)."""
        return self.wait_until(lambda items: len(items) >= count, within)

    def wait_until(self, check: Any, within: float = 20.0) -> list[Any]:
        """Block until ``check(items)`` holds; the items."""
        with self._cond:
            if not self._cond.wait_for(lambda: check(self.items), within):
                raise AssertionError(f"not within {within} s; arrived: {self.items}")
            return list(self.items)


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage

    def body(self, subtype: str = "plain") -> str:
        part = self.message.get_body((subtype,))
        assert part is not None, f"no {subtype} part"
        return str(part.get_content())


class SmtpSink(_Recorder):
    """An SMTP server (aiosmtpd) that keeps every message; ``refuse`` answers 451."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse = False
        self.logins: list[tuple[str, str]] = []
        self.controller: Controller | None = None
        self.port = 0

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.refuse:
            return "451 try again later"
        message = message_from_bytes(envelope.content, policy=policy.default)  # type: ignore[arg-type]
        self.add(Mail(envelope.mail_from, list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        return "250 OK"

    def _auth(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            self.logins.append((user, password))
            return AuthResult(success=(user, password) == ("alerts", "pw"))
        return AuthResult(success=False)

    def start(
        self,
        *,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        auth: bool = False,
    ) -> SmtpSink:
        self.port = free_port()
        kwargs: dict[str, Any] = {}
        if starttls is not None:
            kwargs["tls_context"] = starttls
            kwargs["require_starttls"] = True
        if implicit_tls is not None:
            kwargs["ssl_context"] = implicit_tls
        if auth:
            kwargs["authenticator"] = self._auth
            # aiosmtpd sees only STARTTLS as TLS; an implicit-TLS socket is TLS anyway
            kwargs["auth_require_tls"] = starttls is not None
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver(_Recorder):
    """An HTTP server taking POSTs; each answer is the next of ``script`` ((status,
    delay in seconds)), then ``default``. Every request is recorded, answered or not."""

    script: deque[tuple[int, float]] = field(default_factory=deque)
    default: tuple[int, float] = (200, 0.0)

    def __post_init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    status, delay = (
                        receiver.script.popleft() if receiver.script else receiver.default
                    )
                receiver.add(Hit(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if delay:
                    time.sleep(delay)
                payload = b"ok" if status < 400 else b"receiver error"
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the sender gave up waiting

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, written into ``folder``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
