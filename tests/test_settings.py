"""Settings: file, then environment, then flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator._settings import load_settings
from orchestrator.errors import ConfigError


def test_defaults() -> None:
    """With nothing set: ./.orchestrator, SQLite in it, ./dags, 32 parallel tasks."""
    s = load_settings(env={})
    assert s.home == Path(".orchestrator")
    assert s.db_url == f"sqlite:///{Path('.orchestrator/orchestrator.db').resolve()}"
    assert (s.dags, s.parallelism, s.api_port, s.log_format) == ("dags", 32, 8080, "console")


def test_env_wins_over_file_and_flags_win_over_env(tmp_path: Path) -> None:
    """orchestrator.toml < ORCHESTRATOR_* < command-line flags."""
    config = tmp_path / "conf.toml"
    config.write_text('dags = "from_file"\nparallelism = 4\nlog_format = "json"\n')
    env = {"ORCHESTRATOR_CONFIG": str(config), "ORCHESTRATOR_PARALLELISM": "8"}
    s = load_settings(env=env, overrides={"dags": "from_flag"})
    assert (s.dags, s.parallelism, s.log_format) == ("from_flag", 8, "json")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ORCHESTRATOR_PARALLELISM": "lots"}, "ORCHESTRATOR_PARALLELISM: expected int"),
        ({"ORCHESTRATOR_PARALLELISM": "0"}, "parallelism must be >= 1"),
        ({"ORCHESTRATOR_LOG_FORMAT": "xml"}, "log_format must be console or json"),
        ({"ORCHESTRATOR_SMTP_SSL": "maybe"}, "ORCHESTRATOR_SMTP_SSL: expected bool"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], message: str) -> None:
    """A malformed setting is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env)


def test_unknown_key_in_file(tmp_path: Path) -> None:
    """An unknown key in the config file is named, with the file."""
    config = tmp_path / "c.toml"
    config.write_text("paralelism = 3\n")
    with pytest.raises(ConfigError, match=r"c.toml: unknown setting 'paralelism'"):
        load_settings(env={"ORCHESTRATOR_CONFIG": str(config)})


def test_malformed_file(tmp_path: Path) -> None:
    """A config file that is not TOML is named."""
    config = tmp_path / "c.toml"
    config.write_text("this = = broken\n")
    with pytest.raises(ConfigError, match=r"c\.toml"):
        load_settings(env={"ORCHESTRATOR_CONFIG": str(config)})
