"""Variables: ``ORCHESTRATOR_VAR_<KEY>`` environment variables, then the store."""

from __future__ import annotations

import json
import os
from typing import Any

from orchestrator._logging import register_secret
from orchestrator._settings import Settings, load_settings
from orchestrator.errors import NotFound
from orchestrator.resources._secrets import cipher_for, is_sensitive
from orchestrator.resources._services import call_store, current_services
from orchestrator.store import Store

__all__ = ["Variable", "is_sensitive"]

_NOTSET: Any = object()


def _settings() -> Settings:
    services = current_services()
    return services.settings if services is not None else load_settings()


async def read_variable(store: Store, settings: Settings, key: str) -> str | None:
    env = os.environ.get(f"ORCHESTRATOR_VAR_{key.upper()}")
    encrypted = False
    if env is not None:
        value = env
    else:
        row = await store.get_variable(key)
        if row is None:
            return None
        encrypted = bool(row[1])
        value = cipher_for(settings).decrypt(row[0]) if encrypted else row[0]
    if encrypted or is_sensitive(key):  # set with --secret, or a key that looks secret
        register_secret(value)
    return value


async def write_variable(
    store: Store, settings: Settings, key: str, value: str, *, secret: bool = False
) -> None:
    encrypt = secret or is_sensitive(key)
    stored = cipher_for(settings).encrypt(value) if encrypt else value
    await store.set_variable(key, stored, encrypted=encrypt)


def _decode(key: str, raw: str | None, default: Any, deserialize_json: bool) -> Any:
    if raw is None:
        if default is _NOTSET:
            raise NotFound(f"variable {key!r} does not exist")
        return default
    if deserialize_json:
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"variable {key!r} is not valid JSON: {exc}") from exc
    return raw


class Variable:
    """Airflow's Variable API: ``Variable.get(key)``, ``Variable.set(key, value)``."""

    @staticmethod
    def get(key: str, default_var: Any = _NOTSET, deserialize_json: bool = False) -> Any:
        env = os.environ.get(f"ORCHESTRATOR_VAR_{key.upper()}")
        if env is not None:
            raw: str | None = env
        else:
            settings = _settings()
            raw = call_store(lambda store: read_variable(store, settings, key))
        return _decode(key, raw, default_var, deserialize_json)

    @staticmethod
    async def aget(key: str, default_var: Any = _NOTSET, deserialize_json: bool = False) -> Any:
        services = current_services()
        if services is None:
            return Variable.get(key, default_var, deserialize_json)
        raw = await read_variable(services.store, services.settings, key)
        return _decode(key, raw, default_var, deserialize_json)

    @staticmethod
    def set(key: str, value: Any, serialize_json: bool = False) -> None:
        text = json.dumps(value) if serialize_json else str(value)
        settings = _settings()
        call_store(lambda store: write_variable(store, settings, key, text))

    @staticmethod
    async def aset(key: str, value: Any, serialize_json: bool = False) -> None:
        services = current_services()
        if services is None:
            Variable.set(key, value, serialize_json)
            return
        text = json.dumps(value) if serialize_json else str(value)
        await write_variable(services.store, services.settings, key, text)
