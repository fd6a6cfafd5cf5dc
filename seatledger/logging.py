"""structlog set up for production (JSON lines) or a terminal (console renderer).

Context (request id, cloud id, event id) is bound with ``structlog.contextvars``; the
processors below merge it into every line. Records of libraries that log through the standard
library (uvicorn, eventsourcing, asyncio) are rendered by the same processors: in JSON, each is
one line, its traceback a structured field of that line.

Never log e-mail addresses, tokens or passwords: :func:`redact` masks the keys that may carry
them in case one slips into an event dict.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

SENSITIVE_KEYS = frozenset(
    {"email", "billing_email", "to", "recipient", "password", "token", "authorization", "secret"}
)


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in SENSITIVE_KEYS.intersection(event_dict):
        event_dict[key] = "[redacted]"
    return event_dict


class LineBuffer:
    """Lines for one stream, written in bulk: a write system call and a flush per batch
    instead of per line (a server logs one line per request).

    A line waits at most ``interval_s`` (a background thread flushes what is pending), an
    error-level line is written at once together with everything before it, a full buffer
    (``max_bytes``) is written at once, and whatever is pending is written at exit. Only a
    killed process (SIGKILL) can lose the last ``interval_s`` of lines.
    """

    def __init__(self, stream: TextIO, *, interval_s: float = 0.1, max_bytes: int = 1 << 16):
        self.stream = stream
        self.interval_s = interval_s
        self.max_bytes = max_bytes
        self._lines: list[str] = []
        self._size = 0
        self._lock = threading.Lock()
        self._pending = threading.Condition(self._lock)
        self._closed = False
        self._thread: threading.Thread | None = None

    def write(self, line: str, *, urgent: bool = False) -> None:
        with self._lock:
            self._lines.append(line)
            self._size += len(line)
            if urgent or self._size >= self.max_bytes or self._closed:
                self._flush_locked()
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="log-flusher", daemon=True)
                self._thread.start()
            if len(self._lines) == 1:
                self._pending.notify()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def close(self) -> None:
        """Write what is pending and stop the background thread (lines after this are
        written at once)."""
        with self._lock:
            self._closed = True
            self._flush_locked()
            self._pending.notify()

    def _flush_locked(self) -> None:
        if not self._lines:
            return
        text = "\n".join(self._lines) + "\n"
        self._lines.clear()
        self._size = 0
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed stream: nowhere left to log to
            pass

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._lines and not self._closed:
                    self._pending.wait()
                if self._closed:
                    return
            time.sleep(self.interval_s)  # let the lines of this interval gather
            self.flush()


class BufferedLogger:
    """A structlog logger writing rendered lines through a :class:`LineBuffer`; error and
    critical lines are written at once."""

    def __init__(self, buffer: LineBuffer) -> None:
        self._buffer = buffer

    def msg(self, message: str) -> None:
        self._buffer.write(message)

    def error(self, message: str) -> None:
        self._buffer.write(message, urgent=True)

    log = debug = info = warn = warning = msg
    fatal = failure = err = critical = exception = error


class BufferedLoggerFactory:
    def __init__(self, buffer: LineBuffer) -> None:
        self.buffer = buffer
        self._logger = BufferedLogger(buffer)

    def __call__(self, *args: Any) -> BufferedLogger:
        return self._logger


_buffer: LineBuffer | None = None
_at_exit_registered = False


def _close_buffer() -> None:
    global _buffer
    if _buffer is not None:
        _buffer.close()
        _buffer = None


def flush_logs() -> None:
    """Write the lines still buffered (see ``configure_logging(buffered=True)``)."""
    if _buffer is not None:
        _buffer.flush()


def configure_logging(level: str = "INFO", fmt: str = "json", *, buffered: bool = False) -> None:
    """Configure structlog and the standard library's root logger (idempotent).

    ``buffered=True`` (servers) writes structlog's lines in batches through a
    :class:`LineBuffer` (at most 100 ms late, error lines at once, the rest at exit) instead of
    one write and flush per line."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    renderer: Any
    # Tracebacks never show local variables: they hold request bodies, addresses and tokens.
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(
            exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False)
        )
    else:
        shared.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
        renderer = structlog.processors.JSONRenderer()
    global _buffer, _at_exit_registered
    _close_buffer()
    # sys.stderr is looked up whenever a logger is made, not kept from now: whoever replaces
    # it later (a test runner's capture, a daemonizing wrapper) is written to, not a stale file.
    factory: Any = _stderr_logger
    if buffered:
        if not _at_exit_registered:
            atexit.register(_close_buffer)
            _at_exit_registered = True
        _buffer = LineBuffer(sys.stderr)
        factory = BufferedLoggerFactory(_buffer)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    # Libraries that log through the standard library (uvicorn, eventsourcing) are rendered
    # like our own lines: one JSON line each, a traceback included as a field.
    handler = StructlogHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(max(numeric, logging.WARNING))
    # uvicorn's loggers log through the root logger (never handlers of their own).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        library_logger = logging.getLogger(name)
        library_logger.handlers.clear()
        library_logger.propagate = True


class StructlogHandler(logging.Handler):
    """A standard-library handler writing records as the process's structlog lines (through
    the line buffer when there is one; records of level ERROR and above at once)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        buffer = _buffer
        if buffer is not None:
            buffer.write(line, urgent=record.levelno >= logging.ERROR)
            return
        try:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # a closed stream: nowhere left to log to
            pass


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
