"""Settings: ``orchestrator.toml`` (or ``$ORCHESTRATOR_CONFIG``), then environment
variables, then command-line flags; each wins over the one before.

In the TOML file, keys are the environment variable names without the
``ORCHESTRATOR_`` prefix, in lower case (``home``, ``db``, ``parallelism``...).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError

__all__ = ["Settings", "load_settings", "make_private_dir"]

_PREFIX = "ORCHESTRATOR_"


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path = Path(".orchestrator")
    db: str = ""
    dags: str = "dags"
    plugins: str = "plugins"
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_token: str = ""
    api_allowed_hosts: str = ""
    api_max_body: int = 1_048_576
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = "orchestrator@localhost"
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_ca_file: str = ""
    email_subject_template: str = ""
    email_text_template: str = ""
    email_html_template: str = ""
    webhook_secret: str = ""
    alert_max_attempts: int = 8
    alert_retry_delay: float = 2.0
    alert_max_retry_delay: float = 300.0
    alert_max_age: float = 86_400.0
    alert_timeout: float = 30.0
    alert_concurrency: int = 32
    alert_retention_days: float = 7.0
    sqs_queues: str = ""
    sqs_wait_seconds: int = 20
    event_retention_days: float = 7.0
    parallelism: int = 32
    fernet_key: str = ""
    log_format: str = "console"
    log_level: str = "info"
    xcom_max_bytes: int = 1_048_576
    max_map_length: int = 1024
    task_log_max_bytes: int = 104_857_600
    dag_import_timeout: float = 30.0
    dag_import_parallelism: int = 4
    shutdown_grace: float = 30.0
    reconcile_interval: float = 2.0
    ha_takeover: float = 15.0
    dags_sync_interval: float = 5.0
    executor: str = "local"
    celery_broker: str = ""
    celery_queue_prefix: str = ""
    worker_heartbeat: float = 2.0
    worker_lost_after: float = 30.0
    task_queued_timeout: float = 600.0
    celery_resend_after: float = 60.0
    dags_paused_at_creation: bool = False

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{(self.home / 'orchestrator.db').resolve()}"

    @property
    def dags_folder(self) -> Path:
        """The local folder DAGs load from: ``dags``, or for ``s3://...`` the home's mirror."""
        return self.home / "dags-s3" if self.dags.startswith("s3://") else Path(self.dags)

    @property
    def plugins_location(self) -> Path:
        """The local plugins: a folder or a zip; for ``s3://...``, its mirror in the home."""
        if not self.plugins.startswith("s3://"):
            return Path(self.plugins)
        mirror = self.home / "plugins-s3"
        if self.plugins.endswith(".zip"):
            return mirror / self.plugins.rsplit("/", 1)[-1]
        return mirror

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"


def make_private_dir(path: Path) -> None:
    """Create ``path`` readable by its owner only (0700), or make it so if it is ours: the
    home holds the database, the task logs and the Fernet key."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_uid == os.getuid():
        path.chmod(0o700)


def _convert(name: str, raw: Any, kind: type) -> Any:
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if kind is int:
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is Path:
            return Path(str(raw)).expanduser()
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name}: expected {kind.__name__}, got {raw!r}") from None


_KINDS = {"bool": bool, "int": int, "float": float, "Path": Path, "str": str}


def load_settings(
    env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    config_path = env.get(_PREFIX + "CONFIG")
    path = Path(config_path) if config_path else Path("orchestrator.toml")
    names = {f.name: _KINDS[str(f.type)] for f in fields(Settings)}
    if config_path or path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
        for key, raw in data.items():
            if key not in names:
                raise ConfigError(f"config file {path}: unknown setting {key!r}")
            values[key] = _convert(f"{path}: {key}", raw, names[key])
    for name, kind in names.items():
        raw_env = env.get(_PREFIX + name.upper())
        if raw_env is not None and raw_env != "":
            values[name] = _convert(_PREFIX + name.upper(), raw_env, kind)
    for name, raw_override in (overrides or {}).items():
        if raw_override is not None:
            values[name] = _convert(f"--{name.replace('_', '-')}", raw_override, names[name])
    settings = Settings(**values)
    if settings.parallelism < 1:
        raise ConfigError(f"setting parallelism must be >= 1, got {settings.parallelism}")
    if settings.dag_import_parallelism < 1:
        raise ConfigError(
            f"setting dag_import_parallelism must be >= 1, got {settings.dag_import_parallelism}"
        )
    for name in ("alert_max_attempts", "alert_concurrency", "max_map_length"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"setting {name} must be >= 1, got {getattr(settings, name)}")
    for name in ("alert_retry_delay", "alert_max_retry_delay", "alert_max_age", "alert_timeout"):
        if getattr(settings, name) <= 0:
            raise ConfigError(f"setting {name} must be > 0, got {getattr(settings, name)}")
    _check_executor(settings)
    if settings.log_format not in ("console", "json"):
        raise ConfigError(
            f"setting log_format must be console or json, got {settings.log_format!r}"
        )
    return settings


def _check_executor(settings: Settings) -> None:
    if settings.executor not in ("local", "celery"):
        raise ConfigError(f"setting executor must be local or celery, got {settings.executor!r}")
    if settings.executor == "celery" and not settings.celery_broker:
        raise ConfigError(
            "setting executor is celery but celery_broker is not set "
            "(ORCHESTRATOR_CELERY_BROKER=amqp://... or redis://...)"
        )
    for name in (
        "worker_heartbeat",
        "worker_lost_after",
        "task_queued_timeout",
        "celery_resend_after",
    ):
        if getattr(settings, name) <= 0:
            raise ConfigError(f"setting {name} must be > 0, got {getattr(settings, name)}")
    if settings.worker_lost_after < 2 * settings.worker_heartbeat:
        raise ConfigError(
            "setting worker_lost_after must be at least twice worker_heartbeat, got "
            f"{settings.worker_lost_after} and {settings.worker_heartbeat}"
        )
