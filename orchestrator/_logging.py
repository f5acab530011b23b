"""Logging: structlog for the orchestrator's own lines, one file per task try.

Rules:
1. The orchestrator's lines go through structlog (console or JSON), bound to
   dag_id / run_id / task_id / try_number where they concern a task.
2. While a try runs, its ``print`` output, its ``sys.stderr`` and its ``logging``
   records go to that try's file. The routing key is a context variable, so tasks
   running at once in threads or on the loop never mix their output.
3. Every registered secret is replaced by ``***`` before a line is written anywhere.
"""

from __future__ import annotations

import contextvars
import hashlib
import io
import logging
import re
import sys
import threading
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import structlog

__all__ = [
    "TaskLog",
    "configure_logging",
    "current_task_log",
    "install_task_log_capture",
    "mask",
    "register_secret",
    "task_log_context",
    "task_log_path",
]

_secrets: set[str] = set()
_MIN_SECRET = 4  # shorter strings would mask ordinary words


def register_secret(value: str | None) -> None:
    """Mask ``value`` in every log line from now on."""
    if value and len(value) >= _MIN_SECRET:
        _secrets.add(value)


def mask(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


_SENSITIVE_KEYS = ("password", "secret", "token", "fernet", "api_key", "private_key")


def _mask_processor(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if any(word in key.lower() for word in _SENSITIVE_KEYS) and value:
            event[key] = "***"
        elif isinstance(value, str):
            event[key] = mask(value)
    return event


def configure_logging(
    fmt: str = "console", level: str = "info", stream: TextIO | None = None
) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _mask_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or _original_stderr()),
        cache_logger_on_first_use=False,
    )


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.~+\-]{0,199}")


def _path_part(name: str, value: str) -> str:
    """``name=value`` for a file name: the value as it is when it is a plain name (``:``
    turned into ``_``), else a digest of it, so no id can escape, overlong or hold a NUL."""
    plain = value.replace(":", "_")
    if not _SAFE_NAME.fullmatch(plain):
        plain = "sha256-" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{name}={plain}"


def task_log_path(logs_dir: Path, dag_id: str, run_id: str, task_id: str, try_number: int) -> Path:
    return (
        logs_dir
        / _path_part("dag_id", dag_id)
        / _path_part("run_id", run_id)
        / _path_part("task_id", task_id)
        / f"attempt={int(try_number)}.log"
    )


class TaskLog:
    """The log of one try, safe to write from any thread.

    Text is buffered in memory and written out when 64 KiB have gathered, when a
    write comes a second or more after the last flush (so a long task's log can be
    followed), and at close. Closing from a worker thread keeps the file I/O off
    the event loop.
    """

    FLUSH_BYTES = 64 * 1024
    FLUSH_SECONDS = 1.0

    def __init__(self, path: Path) -> None:
        self.path = path
        self._parts: list[str] = []
        self._size = 0
        self._file: io.TextIOWrapper | None = None
        self._flushed_at = time.monotonic()
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            self._parts.append(mask(text))
            self._size += len(text)
            if (
                self._size >= self.FLUSH_BYTES
                or time.monotonic() - self._flushed_at >= self.FLUSH_SECONDS
            ):
                self._flush()

    def line(self, message: str) -> None:
        self.write(message.rstrip("\n") + "\n")

    def _flush(self) -> None:
        self._flushed_at = time.monotonic()
        if not self._parts:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._file.write("".join(self._parts))
        self._file.flush()
        self._parts.clear()
        self._size = 0

    def close(self) -> None:
        with self._lock:
            self._flush()
            if self._file is not None:
                self._file.close()
                self._file = None


_current: contextvars.ContextVar[TaskLog | None] = contextvars.ContextVar(
    "orchestrator_task_log", default=None
)


class _Router(io.TextIOBase):
    """Stands in for sys.stdout / sys.stderr: the current try's log, else the real stream."""

    def __init__(self, fallback: TextIO) -> None:
        self._fallback = fallback

    def write(self, text: str) -> int:
        log = _current.get()
        if log is None:
            return self._fallback.write(text)
        log.write(text)
        return len(text)

    def flush(self) -> None:
        if _current.get() is None:
            self._fallback.flush()

    def isatty(self) -> bool:
        return _current.get() is None and self._fallback.isatty()

    def fileno(self) -> int:
        return self._fallback.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._fallback, "encoding", "utf-8")


class _TaskLogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        log = _current.get()
        if log is not None:
            try:
                log.line(self.format(record))
            except Exception:  # pragma: no cover - logging must never raise into the task
                self.handleError(record)


_handler_installed = False
_stderr_original: TextIO = sys.stderr


def _original_stderr() -> TextIO:
    return _stderr_original


def current_task_log() -> TaskLog | None:
    """The log of the try running in this context, if any."""
    return _current.get()


def install_task_log_capture() -> None:
    """Route stdout, stderr and logging through the current try's log.

    Idempotent; it wraps the streams again if something (a test runner) replaced them.
    """
    global _handler_installed, _stderr_original
    if not isinstance(sys.stdout, _Router):
        sys.stdout = _Router(sys.stdout)
    if not isinstance(sys.stderr, _Router):
        _stderr_original = sys.stderr
        sys.stderr = _Router(sys.stderr)
    if _handler_installed:
        return
    _handler_installed = True
    handler = _TaskLogHandler()
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)


@contextmanager
def task_log_context(log: TaskLog) -> Iterator[None]:
    token = _current.set(log)
    try:
        yield
    finally:
        _current.reset(token)
