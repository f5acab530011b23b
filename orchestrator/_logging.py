"""Logging: structlog for the orchestrator's own lines, one file per task try.

Rules:
1. The orchestrator's lines go through structlog (console or JSON), bound to
   dag_id / run_id / task_id / try_number where they concern a task.
2. While a try runs, its ``print`` output, its ``sys.stderr`` and its ``logging``
   records go to that try's file. The routing key is a context variable, so tasks
   running at once in threads or on the loop never mix their output.
3. Every registered secret is replaced by ``***`` before a line is written anywhere,
   in the forms it is written in (as it is, URL-encoded), and whole lines at a time,
   so a secret written in two pieces is masked too.
4. A try's log file holds at most ``max_bytes``: past that, its start is kept, then a
   line saying how much was dropped, then the last ``TAIL_BYTES`` of its output.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import hashlib
import io
import logging
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote, quote_plus

import structlog

__all__ = [
    "MaskedLines",
    "TaskLog",
    "configure_logging",
    "current_task_log",
    "excerpt_of",
    "install_task_log_capture",
    "mask",
    "read_excerpt",
    "register_secret",
    "task_log_context",
    "task_log_path",
]

_secrets: set[str] = set()
_MIN_SECRET = 4  # shorter strings would mask ordinary words


_longest_first: list[str] = []  # a secret that contains another is masked whole


def register_secret(value: str | None) -> None:
    """Mask ``value`` in every log line from now on, as it is and URL-encoded."""
    global _longest_first
    if value and len(value) >= _MIN_SECRET:
        forms = {value, quote(value, safe=""), quote_plus(value)}
        if not forms <= _secrets:
            _secrets.update(forms)
            _longest_first = sorted(_secrets, key=len, reverse=True)


def mask(text: str) -> str:
    for secret in _longest_first:
        if secret in text:
            text = text.replace(secret, "***")
    return text


class MaskedLines(io.TextIOBase):
    """A text stream that masks secrets a whole line at a time before passing it on
    (for a process whose output another reads, such as a task's child process)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        head, newline, self._pending = self._pending.rpartition("\n")
        if newline:
            self._out.write(mask(head + newline))
            self._out.flush()
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._out.write(mask(self._pending))
            self._pending = ""
        self._out.flush()

    def fileno(self) -> int:
        return self._out.fileno()


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


def task_log_path(
    logs_dir: Path, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1
) -> Path:
    """Where a try's log goes (Airflow's layout; a mapped instance's under ``map_index=i``)."""
    folder = logs_dir / _path_part("dag_id", dag_id) / _path_part("run_id", run_id)
    folder = folder / _path_part("task_id", task_id)
    if map_index >= 0:
        folder = folder / f"map_index={int(map_index)}"
    return folder / f"attempt={int(try_number)}.log"


class TaskLog:
    """The log of one try, safe to write from any thread.

    Text is buffered in memory and written out when 64 KiB have gathered, when a
    write comes a second or more after the last flush, by the process's log flusher
    thread when text has waited a second (so a running try's log can be followed, even
    one that went quiet), and at close. Closing from a worker thread keeps the file I/O
    off the event loop.
    """

    FLUSH_BYTES = 64 * 1024
    FLUSH_SECONDS = 1.0
    TAIL_BYTES = 1024 * 1024
    EXCERPT_BYTES = 4096
    EXCERPT_LINES = 20
    DEFAULT_MAX_BYTES = 100 * 1024 * 1024

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max(max_bytes, 2 * self.TAIL_BYTES)
        self._pending = ""  # the last line, not ended yet: masked once it is whole
        self._parts: list[bytes] = []
        self._size = 0  # bytes in _parts
        self._kept = 0  # bytes of the log's start written or queued
        self._tail: collections.deque[bytes] = collections.deque()
        self._tail_size = 0
        self._dropped = 0
        self._recent: collections.deque[bytes] = collections.deque()  # the last 4 KiB
        self._recent_size = 0
        self._file: io.BufferedWriter | None = None
        self._flushed_at = time.monotonic()
        self._lock = threading.Lock()
        _watch(self)

    def flush_stale(self) -> None:
        """Write out what has waited a second or more (the flusher thread's part)."""
        with self._lock:
            if self._parts and time.monotonic() - self._flushed_at >= self.FLUSH_SECONDS:
                self._flush()

    def write(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            head, newline, self._pending = (self._pending + text).rpartition("\n")
            whole = head + newline
            if len(self._pending) >= self.FLUSH_BYTES:  # a very long line: take it as it is
                whole, self._pending = whole + self._pending, ""
            if whole:
                self._add(mask(whole).encode("utf-8", "replace"))
            if (
                self._size >= self.FLUSH_BYTES
                or time.monotonic() - self._flushed_at >= self.FLUSH_SECONDS
            ):
                self._flush()

    def line(self, message: str) -> None:
        self.write(message.rstrip("\n") + "\n")

    def _add(self, data: bytes) -> None:
        """Queue ``data`` for the file, or past the cap keep it as the tail (rule 4)."""
        self._recent.append(data)
        self._recent_size += len(data)
        while self._recent_size - len(self._recent[0]) >= self.EXCERPT_BYTES:
            self._recent_size -= len(self._recent.popleft())
        room = self.max_bytes - self.TAIL_BYTES - self._kept
        if room > 0:
            head, data = data[:room], data[room:]
            self._parts.append(head)
            self._size += len(head)
            self._kept += len(head)
        if not data:
            return
        if len(data) > self.TAIL_BYTES:
            self._dropped += len(data) - self.TAIL_BYTES
            data = data[-self.TAIL_BYTES :]
        self._tail.append(data)
        self._tail_size += len(data)
        excess = self._tail_size - self.TAIL_BYTES
        while excess > 0:
            first = self._tail.popleft()
            if len(first) > excess:
                self._tail.appendleft(first[excess:])
            cut = min(excess, len(first))
            self._tail_size -= cut
            self._dropped += cut
            excess -= cut

    def _flush(self) -> None:
        self._flushed_at = time.monotonic()
        if not self._parts:
            return
        out = self._file_handle()
        out.write(b"".join(self._parts))
        out.flush()
        self._parts.clear()
        self._size = 0

    def _file_handle(self) -> io.BufferedWriter:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._file = open(fd, "ab")  # noqa: SIM115 - closed in close()
        return self._file

    def excerpt(self) -> str | None:
        """The log's last lines (at most 20 lines of its last 4 KiB), as alerts show them."""
        with self._lock:
            data = b"".join(self._recent)
        return excerpt_of(data, cut=len(data) > self.EXCERPT_BYTES)

    @property
    def untouched(self) -> bool:
        """Nothing was written and no file is open: closing does no I/O."""
        return not (self._pending or self._parts or self._tail or self._file is not None)

    def close(self) -> None:
        with self._lock:
            if self._pending:
                self._add(mask(self._pending).encode("utf-8", "replace"))
                self._pending = ""
            if self._tail:
                tail = b"".join(self._tail)
                if self._dropped:
                    self._parts.append(
                        f"\n[... {self._dropped} bytes of output dropped: the log is capped "
                        f"at {self.max_bytes} bytes (task_log_max_bytes) ...]\n".encode()
                    )
                self._parts.append(tail)
                self._tail.clear()
                self._tail_size = self._dropped = 0
                self._kept = self.max_bytes  # anything written after close goes to the tail
            self._flush()
            if self._file is not None:
                self._file.close()
                self._file = None
        _open_logs.discard(self)


_open_logs: weakref.WeakSet[TaskLog] = weakref.WeakSet()
_flusher_started = threading.Lock()
_flusher: list[threading.Thread] = []


def _watch(log: TaskLog) -> None:
    """Have the flusher thread (started with the process's first log) look after ``log``."""
    _open_logs.add(log)
    if not _flusher:
        with _flusher_started:
            if not _flusher:
                thread = threading.Thread(target=_flush_stale_logs, name="log-flusher", daemon=True)
                _flusher.append(thread)
                thread.start()


def _flush_stale_logs() -> None:
    while True:
        time.sleep(TaskLog.FLUSH_SECONDS / 2)
        for log in list(_open_logs):
            with contextlib.suppress(Exception):  # a full disk must not end the flusher
                log.flush_stale()


def excerpt_of(data: bytes, *, cut: bool) -> str | None:
    """The last lines of a log's end ``data`` (``cut``: its first line may be partial)."""
    lines = data[-TaskLog.EXCERPT_BYTES :].decode("utf-8", "replace").splitlines()
    if cut and lines:
        lines = lines[1:]
    return "\n".join(lines[-TaskLog.EXCERPT_LINES :]) or None


def read_excerpt(path: Path) -> str | None:
    """The last lines of a try's log file (None when there is none)."""
    try:
        with path.open("rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - TaskLog.EXCERPT_BYTES - 1))
            data = file.read()
    except OSError:
        return None
    return excerpt_of(data, cut=size > TaskLog.EXCERPT_BYTES)


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
    chatty = logging.getLogger("httpx")  # a line per request at INFO: each HttpSensor poke's
    if chatty.level == logging.NOTSET:  # log would get one, written to its file each time
        chatty.setLevel(logging.WARNING)


@contextmanager
def task_log_context(log: TaskLog) -> Iterator[None]:
    token = _current.set(log)
    try:
        yield
    finally:
        _current.reset(token)
