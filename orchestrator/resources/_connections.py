"""Connections: ``ORCHESTRATOR_CONN_<ID>`` URIs, then the store (secrets encrypted)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from orchestrator._logging import register_secret
from orchestrator._settings import Settings, load_settings
from orchestrator.errors import ConfigError, NotFound
from orchestrator.resources._secrets import Cipher, cipher_for, is_sensitive
from orchestrator.resources._services import call_store, current_services
from orchestrator.store import ConnectionRecord, Store

__all__ = ["Connection", "register_own_secrets"]


@dataclass(slots=True)
class Connection:
    conn_id: str
    conn_type: str
    host: str = ""
    login: str = ""
    password: str = field(default="", repr=False)
    schema: str = ""
    port: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    description: str = ""

    @property
    def extra_dejson(self) -> dict[str, Any]:
        return dict(self.extra)

    @classmethod
    def from_uri(cls, conn_id: str, uri: str) -> Connection:
        """Parse ``type://login:password@host:port/schema?extra=...`` (Airflow's format)."""
        try:
            parts = urlsplit(uri)
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"connection {conn_id!r}: malformed URI: {exc}") from None
        if not parts.scheme:
            raise ConfigError(f"connection {conn_id!r}: URI has no type (e.g. http://...)")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if "__extra__" in query:
            try:
                extra = json.loads(query.pop("__extra__"))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"connection {conn_id!r}: __extra__ is not JSON") from exc
        else:
            extra = query
        conn = cls(
            conn_id=conn_id,
            conn_type=parts.scheme.replace("-", "_"),
            host=unquote(parts.hostname or ""),
            login=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            schema=unquote(parts.path.lstrip("/")),
            port=port,
            extra=extra,
        )
        conn.register_secrets()
        return conn

    def get_uri(self) -> str:
        auth = ""
        if self.login or self.password:
            auth = quote(self.login, safe="")
            if self.password:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        host = self.host + (f":{self.port}" if self.port else "")
        path = f"/{quote(self.schema)}" if self.schema else ""
        query = f"?{urlencode({k: str(v) for k, v in self.extra.items()})}" if self.extra else ""
        return f"{self.conn_type.replace('_', '-')}://{auth}{host}{path}{query}"

    def register_secrets(self) -> None:
        register_secret(self.password)
        for key, value in self.extra.items():
            if isinstance(value, str) and any(w in key.lower() for w in ("secret", "token", "key")):
                register_secret(value)

    def to_record(self, cipher: Cipher) -> ConnectionRecord:
        return ConnectionRecord(
            conn_id=self.conn_id,
            conn_type=self.conn_type,
            host=self.host,
            login=self.login,
            password=cipher.encrypt(self.password),
            schema=self.schema,
            port=self.port,
            extra=cipher.encrypt(json.dumps(self.extra)) if self.extra else "",
            description=self.description,
        )

    @classmethod
    def from_record(cls, record: ConnectionRecord, cipher: Cipher) -> Connection:
        extra_text = cipher.decrypt(record.extra)
        conn = cls(
            conn_id=record.conn_id,
            conn_type=record.conn_type,
            host=record.host,
            login=record.login,
            password=cipher.decrypt(record.password),
            schema=record.schema,
            port=record.port,
            extra=json.loads(extra_text) if extra_text else {},
            description=record.description,
        )
        conn.register_secrets()
        return conn

    @staticmethod
    def get(conn_id: str) -> Connection:
        """The connection ``conn_id``; raises NotFound naming it."""
        uri = os.environ.get(f"ORCHESTRATOR_CONN_{conn_id.upper()}")
        if uri:
            return Connection.from_uri(conn_id, uri)
        services = current_services()
        settings = services.settings if services is not None else load_settings()
        return call_store(lambda store: read_connection(store, settings, conn_id))

    @staticmethod
    async def aget(conn_id: str) -> Connection:
        services = current_services()
        if services is None:
            return Connection.get(conn_id)
        return await read_connection(services.store, services.settings, conn_id)


async def read_connection(store: Store, settings: Settings, conn_id: str) -> Connection:
    uri = os.environ.get(f"ORCHESTRATOR_CONN_{conn_id.upper()}")
    if uri:
        return Connection.from_uri(conn_id, uri)
    record = await store.get_connection(conn_id)
    if record is None:
        raise NotFound(
            f"connection {conn_id!r} is not defined (add it with `orchestrator connections add` "
            f"or set ORCHESTRATOR_CONN_{conn_id.upper()})"
        )
    return Connection.from_record(record, cipher_for(settings))


def register_own_secrets(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """Mask the process's own secrets from the start: the API token, the Fernet key,
    mail and webhook secrets, the database password, and the connections and the
    variables given in the environment (``ORCHESTRATOR_CONN_*``, and
    ``ORCHESTRATOR_VAR_*`` whose name looks secret), so none can reach a log even
    before a task reads it."""
    environ = os.environ if environ is None else environ
    for value in (
        settings.api_token,
        settings.fernet_key,
        settings.smtp_password,
        settings.webhook_secret,
        unquote(urlsplit(settings.db_url).password or ""),
    ):
        register_secret(value)
    for name, value in environ.items():
        if name.startswith("ORCHESTRATOR_VAR_") and is_sensitive(name):
            register_secret(value)
        elif name.startswith("ORCHESTRATOR_CONN_"):
            with contextlib.suppress(ConfigError):  # reported when a task asks for it
                Connection.from_uri(name.removeprefix("ORCHESTRATOR_CONN_").lower(), value)
