"""Logging setup: ``json`` (one object per line) or ``pretty``, to stdout or a file; the access line.

Secrets never reach a log line: the request path logs principals and team ids, never keys,
and the access line (``access_fields``) is built from the Exchange, which holds no secrets
or message content. A log file is reopened when logrotate moves it away (checked on each
write) and on SIGUSR1 (``reopen_log_files``), so both ``create`` and ``copytruncate``
rotations work. This module configures handlers and formats; it decides nothing else.
"""

from __future__ import annotations

import asyncio
import io
import logging
import logging.handlers
import sys
import time
from typing import Final, TextIO

import msgspec

from apex.config.model import LoggingConfig
from apex.server.exchange import Exchange
from apex.types import Usage

__all__ = [
    "ACCESS_LOGGER",
    "JsonFormatter",
    "PrettyFormatter",
    "ReopeningFileHandler",
    "access_fields",
    "BatchedStreamHandler",
    "configure_logging",
    "flush_logs",
    "reopen_log_files",
    "start_flush_timer",
    "stop_flush_timer",
    "write_access_line",
]

ACCESS_LOGGER: Final = "apex.access"
_ENC: Final = msgspec.json.Encoder()
_LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_ROTATION_CHECK_S: Final = 1.0
_file_handlers: list[ReopeningFileHandler] = []
_ts_second = -1
_ts_prefix = ""


def _timestamp(record: logging.LogRecord) -> str:
    return _stamp(record.created, record.msecs)


def _stamp(created: float, msecs: float | None = None) -> str:
    """``created`` (Unix seconds) as ``2026-12-06T21:40:00.123Z``; milliseconds as LogRecord
    computes them unless given."""
    # strftime once per second, not per line: the access line is on every request's path.
    global _ts_second, _ts_prefix
    second = int(created)
    if second != _ts_second:
        _ts_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _ts_second = second
    if msecs is None:
        msecs = (created - second) * 1000
    return f"{_ts_prefix}.{int(msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the record's ``fields`` if any."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return _ENC.encode(out).decode()


class PrettyFormatter(logging.Formatter):
    """Human-readable: ``ts level logger: msg key=value ...`` (values JSON-encoded when not plain)."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            parts = [line]
            for key, value in fields.items():
                if value is None:
                    continue
                text = value if isinstance(value, str) and value and " " not in value else _ENC.encode(value).decode()
                parts.append(f"{key}={text}")
            line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


_FLUSH_INTERVAL_S: Final = 0.25


class _FlushTimer:
    """A one-shot timer that pushes out access lines a quiet period left in the buffer.

    Armed only when a line stays buffered, so an idle gateway never wakes for it (each
    wake-up costs ~0.2 ms of CPU on a VM: a 4/s ticker was a third of an idle gateway's
    CPU). Access lines are written from the event loop's thread only, where it is armed."""

    __slots__ = ("_handle", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, delay: float) -> None:
        if self._handle is None:
            self._handle = self._loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._handle = None
        flush_logs()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


_flush_timer: _FlushTimer | None = None


def start_flush_timer(loop: asyncio.AbstractEventLoop) -> None:
    """From now on, access lines left buffered are flushed by a timer on ``loop``."""
    global _flush_timer
    stop_flush_timer()
    _flush_timer = _FlushTimer(loop)


def stop_flush_timer() -> None:
    global _flush_timer
    if _flush_timer is not None:
        _flush_timer.cancel()
        _flush_timer = None


class _BatchedFlush(logging.StreamHandler):  # type: ignore[type-arg]  # mixin over StreamHandler[Any]
    """Flush access lines at most every 0.25 s; every other line (and any warning) at once.

    The stdlib flushes after every record: with the access line on (the default), that was a
    write(2) per request and, measured with bench/'s harness on a file, doubled Apex's CPU per
    request. Lines are written into the stream's buffer as they come; what a quiet period
    leaves behind goes out by the flush timer (``start_flush_timer``) and at shutdown.
    """

    _next_flush = 0.0
    _urgent = False

    def emit(self, record: logging.LogRecord) -> None:
        # Only the per-request access line is batched; rare operational lines go out at once.
        self._urgent = record.name != ACCESS_LOGGER or record.levelno >= logging.WARNING
        super().emit(record)

    def access_written(self) -> None:
        """An access line was written to the stream directly (see write_access_line)."""
        self._urgent = False
        self.flush()

    def flush(self) -> None:
        now = time.monotonic()
        if self._urgent or now >= self._next_flush:
            self._next_flush = now + _FLUSH_INTERVAL_S
            self._urgent = False
            super().flush()
        elif _flush_timer is not None:
            _flush_timer.arm(self._next_flush - now)

    def flush_now(self) -> None:
        super().flush()


class BatchedStreamHandler(_BatchedFlush):
    """stdout with our own 64 KiB buffer: PYTHONUNBUFFERED would otherwise write per line."""

    def __init__(self) -> None:
        stream: TextIO
        try:
            stream = open(sys.stdout.fileno(), "w", buffering=1 << 16, encoding="utf-8", closefd=False)  # noqa: SIM115
        except (AttributeError, OSError, ValueError):  # stdout replaced (test capture): use it as is
            stream = sys.stdout
        super().__init__(stream)


def flush_logs() -> None:
    """Push out buffered log lines (periodically, and before exit)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _BatchedFlush):
            handler.flush_now()


class ReopeningFileHandler(_BatchedFlush, logging.handlers.WatchedFileHandler):
    """A file handler that follows logrotate: reopens when the file is moved, or on ``reopen()``.

    The move is noticed by a stat of the path at most once a second (WatchedFileHandler
    stats on every line, a syscall per request); lines written in that second land in the
    rotated file, which logrotate's ``delaycompress`` leaves readable.
    """

    rotation_check_s: float = _ROTATION_CHECK_S
    _next_check = 0.0

    def _open(self) -> io.TextIOWrapper:
        # A 64 KiB buffer: with flushes batched, a write(2) per ~100 lines instead of per ~13.
        stream = open(self.baseFilename, self.mode, buffering=1 << 16, encoding=self.encoding, errors=self.errors)  # noqa: SIM115
        assert isinstance(stream, io.TextIOWrapper)
        return stream

    def reopenIfNeeded(self) -> None:  # noqa: N802  # the stdlib's name
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.rotation_check_s
            super().reopenIfNeeded()

    def reopen(self) -> None:
        """Close and reopen the file at its path (SIGUSR1 after a rotation)."""
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.flush()
                self.stream.close()
            self.stream = self._open()
            self._statstream()
        finally:
            self.release()


def reopen_log_files() -> None:
    """Reopen every log file Apex writes to; what SIGUSR1 does."""
    for handler in _file_handlers:
        handler.reopen()


def configure_logging(cfg: LoggingConfig) -> logging.Handler:
    """Install the root handler for ``cfg``; returns it (so a reload can swap it)."""
    handler: logging.Handler
    if cfg.file:
        handler = ReopeningFileHandler(cfg.file, encoding="utf-8")
    else:
        handler = BatchedStreamHandler()
    handler.setFormatter(JsonFormatter() if cfg.format == "json" else PrettyFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if isinstance(old, _BatchedFlush):
            old.flush_now()
        if isinstance(old, ReopeningFileHandler):
            old.close()
    _file_handlers[:] = [handler] if isinstance(handler, ReopeningFileHandler) else []
    root.addHandler(handler)
    root.setLevel(_LEVELS[cfg.level])
    global _direct
    _direct = handler if cfg.format == "json" else None
    # No formatter prints thread or process names: skip looking them up for every record.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # watchdog logs every inotify event at debug: with the log file in a watched directory
    # (beside the config), each line written would be an event logged again, forever.
    logging.getLogger("watchdog").setLevel(max(_LEVELS[cfg.level], logging.INFO))
    # The cloud SDKs Apex signs and authenticates with log credentials at debug: botocore its
    # canonical request (session token included), google-auth and urllib3 token exchanges.
    # Their debug lines never reach Apex's log, whatever its level.
    for sdk in _CREDENTIAL_LOGGERS:
        logging.getLogger(sdk).setLevel(max(_LEVELS[cfg.level], logging.INFO))
    # isEnabledFor() is False on a disabled logger, so the gateway skips building the line.
    logging.getLogger(ACCESS_LOGGER).disabled = not cfg.access_log
    return handler


_CREDENTIAL_LOGGERS: Final = ("botocore", "boto3", "google.auth", "google_auth_httplib2", "urllib3", "requests_oauthlib")


def write_access_line(logger: logging.Logger, fields: dict[str, object]) -> None:
    """Emit one access record carrying ``fields``; the caller checked ``isEnabledFor(INFO)``.

    In the default setup (the access logger's lines go only to Apex's own JSON handler) the
    line is formatted and written here directly, the same bytes ``JsonFormatter`` would
    produce: a LogRecord, the logger walk and the formatter were ~5 µs of every request. With
    any other handler or filter attached (a test's capture, the ``pretty`` format) the line
    goes through logging as usual.
    """
    handler = _direct_handler(logger)
    if handler is not None:
        now = time.time()
        body = _ENC.encode(fields)
        if len(body) > 2:
            line = f'{{"ts":"{_stamp(now)}",{_ACCESS_HEAD}{body[1:].decode()}\n'
            try:
                handler.acquire()
                try:
                    if isinstance(handler, ReopeningFileHandler):
                        handler.reopenIfNeeded()
                    stream = handler.stream
                    if stream is not None:
                        stream.write(line)
                        handler.access_written()
                        return
                finally:
                    handler.release()
            except Exception:  # noqa: BLE001  # let logging report it the way it reports its own failures
                pass
    # Builds the record directly: ``logger.info`` would walk the stack for the caller's file
    # and line, which no Apex formatter prints, on every request.
    record = logger.makeRecord(logger.name, logging.INFO, "", 0, "request", (), None)
    record.fields = fields
    logger.handle(record)


_ACCESS_HEAD: Final = f'"level":"info","logger":"{ACCESS_LOGGER}","msg":"request",'
_direct: _BatchedFlush | None = None  # the handler configure_logging installed, when it formats JSON


def _direct_handler(logger: logging.Logger) -> _BatchedFlush | None:
    """The handler to write the access line to directly, None when anything else may see it."""
    handler = _direct
    if handler is None or logger.handlers or logger.filters or not logger.propagate:
        return None
    root = logger.root
    handlers = root.handlers
    if len(handlers) != 1 or handlers[0] is not handler or root.filters or handler.filters:
        return None
    parent = logger.parent  # "apex" between "apex.access" and the root
    while parent is not None and parent is not root:
        if parent.handlers or parent.filters or not parent.propagate:
            return None
        parent = parent.parent
    return handler


def access_fields(
    ex: Exchange, latency_ms: float, overhead_ms: float, usage: Usage | None, cost_usd: float | None = None
) -> dict[str, object]:
    """The access line's fields for one finished request: ids, routing, outcome, times, tokens.

    Only names, numbers and stable kinds: never keys, headers or message content.
    """
    tokens: dict[str, object] | None = None
    if usage is not None:
        tokens = {
            "prompt": usage.prompt_tokens,
            "completion": usage.completion_tokens,
            "cached": usage.cached_tokens,
            "reasoning": usage.reasoning_tokens,
            "cache_write": usage.cache_write_tokens,
            "estimated": usage.estimated,
        }
    return {
        "request_id": ex.request_id,
        "dialect": ex.dialect.value,
        "team_id": ex.team,
        "router": ex.router,
        "rule": ex.rule,
        "model": ex.model,
        "upstream_model": ex.upstream_model,
        "channel": ex.channel,
        "channels_tried": ex.tried,
        "attempts": ex.attempts,
        "attempt_errors": ex.attempt_errors,
        "stream": ex.stream,
        "status": ex.status,
        "error_type": ex.error_type(),
        "latency_ms": round(latency_ms, 3),
        "upstream_ms": round(ex.upstream_ms, 3),
        "overhead_ms": round(overhead_ms, 3),
        "ttft_ms": round(ex.ttft_ms, 3) if ex.ttft_ms is not None else None,
        "tokens": tokens,
        "cost_usd": round(cost_usd, 8) if cost_usd is not None else None,
    }
