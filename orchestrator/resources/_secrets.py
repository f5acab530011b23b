"""Encryption at rest for connection passwords, extras and secret variables (Fernet).

The key comes from ``ORCHESTRATOR_FERNET_KEY``; without it, one is generated once
into ``<home>/fernet.key`` with mode 0600 and reused from then on.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from orchestrator._logging import register_secret
from orchestrator._settings import Settings, make_private_dir
from orchestrator.errors import ConfigError

__all__ = ["Cipher", "cipher_for", "is_sensitive"]

_SENSITIVE = ("password", "secret", "token", "api_key", "apikey", "private_key", "credential")


def is_sensitive(key: str) -> bool:
    """Keys that look like secrets are encrypted at rest and masked in logs."""
    lowered = key.lower()
    return any(word in lowered for word in _SENSITIVE)


class Cipher:
    def __init__(self, key: bytes | str) -> None:
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                "ORCHESTRATOR_FERNET_KEY is not a valid Fernet key (32 url-safe base64 bytes)"
            ) from exc

    def encrypt(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode() if text else ""

    def decrypt(self, token: str) -> str:
        if not token:
            return ""
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ConfigError(
                "cannot decrypt a stored secret: the Fernet key differs from the one it was "
                "written with"
            ) from exc


def _key_file(home: Path) -> bytes:
    path = home / "fernet.key"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    make_private_dir(home)
    key = Fernet.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


def cipher_for(settings: Settings) -> Cipher:
    key = settings.fernet_key or _key_file(settings.home)
    register_secret(key if isinstance(key, str) else key.decode(errors="replace"))
    return Cipher(key)
