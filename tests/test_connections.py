"""Connections: URIs, encryption at rest, masking."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from orchestrator._logging import mask
from orchestrator._settings import Settings
from orchestrator.errors import ConfigError
from orchestrator.resources._connections import Connection, register_own_secrets
from orchestrator.resources._secrets import Cipher


def test_aws_uri_from_spec() -> None:
    """The aws:// example of SPEC parses into login, password and extras."""
    conn = Connection.from_uri(
        "aws_default",
        "aws://KEY:SECRET@?region_name=us-east-1&endpoint_url=http%3A%2F%2F127.0.0.1%3A5000",
    )
    assert (conn.conn_type, conn.login, conn.password, conn.host) == ("aws", "KEY", "SECRET", "")
    assert conn.extra == {"region_name": "us-east-1", "endpoint_url": "http://127.0.0.1:5000"}


def test_http_uri_from_spec() -> None:
    """The http:// example of SPEC parses into host, port, schema and credentials."""
    conn = Connection.from_uri("api", "http://user:p%40ss@example.com:8080/base")
    assert (conn.host, conn.port, conn.schema, conn.login, conn.password) == (
        "example.com",
        8080,
        "base",
        "user",
        "p@ss",
    )


def test_uri_round_trips() -> None:
    """get_uri gives back an equivalent connection."""
    conn = Connection.from_uri("c", "postgres://u:pw@db.local:5432/warehouse?sslmode=require")
    again = Connection.from_uri("c", conn.get_uri())
    assert (again.host, again.port, again.login, again.password, again.schema, again.extra) == (
        "db.local",
        5432,
        "u",
        "pw",
        "warehouse",
        {"sslmode": "require"},
    )


def test_bad_uri_names_the_connection() -> None:
    """A malformed URI is an error naming the connection."""
    with pytest.raises(ConfigError, match="connection 'c'"):
        Connection.from_uri("c", "http://host:notaport/")
    with pytest.raises(ConfigError, match="connection 'c': URI has no type"):
        Connection.from_uri("c", "just-a-host")


def test_record_is_encrypted_and_decrypts() -> None:
    """to_record encrypts password and extras; from_record restores them."""
    cipher = Cipher(Fernet.generate_key())
    conn = Connection("c", "http", host="h", password="pa55word", extra={"token": "abcd1234"})
    record = conn.to_record(cipher)
    assert "pa55word" not in record.password
    assert "abcd1234" not in record.extra
    back = Connection.from_record(record, cipher)
    assert (back.password, back.extra) == ("pa55word", {"token": "abcd1234"})


def test_wrong_key_is_a_clear_error() -> None:
    """Decrypting with another key says the key differs."""
    record = Connection("c", "http", password="secret99").to_record(Cipher(Fernet.generate_key()))
    with pytest.raises(ConfigError, match="Fernet key differs"):
        Connection.from_record(record, Cipher(Fernet.generate_key()))


def test_loaded_secrets_are_masked() -> None:
    """Once a connection is loaded, its password is masked in log text."""
    Connection.from_uri("m", "http://u:masked-pw-42@h/")
    assert mask("the password is masked-pw-42!") == "the password is ***!"


def test_the_processs_own_secrets_are_masked_from_the_start() -> None:
    """The database password as written (URL-encoded in the URL), the API token, and the
    passwords of connections given in the environment, before any task reads them."""
    settings = Settings(db="postgresql://u:Db%40Pass-91@h/d", api_token="Tok-From-Settings")
    register_own_secrets(settings, {"ORCHESTRATOR_CONN_SRC": "x://u:Conn-Pass-77@h"})
    assert mask("Db@Pass-91 Tok-From-Settings Conn-Pass-77") == "*** *** ***"
