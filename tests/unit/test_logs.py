"""apex.server.logs: JSON and pretty formatting, the access fields, logging configuration."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from apex.config.load import load_config_bytes
from apex.config.model import LoggingConfig
from apex.server.exchange import Exchange
from apex.server.gateway import Gateway
from apex.server.logs import (
    ACCESS_LOGGER,
    JsonFormatter,
    PrettyFormatter,
    ReopeningFileHandler,
    access_fields,
    configure_logging,
    flush_logs,
    write_access_line,
)
from apex.types import Dialect, Usage


def _record(msg: str = "request", fields: dict[str, object] | None = None) -> logging.LogRecord:
    rec = logging.LogRecord("apex.access", logging.INFO, __file__, 1, msg, None, None)
    if fields is not None:
        rec.fields = fields
    return rec


def _gateway() -> Gateway:
    return Gateway(load_config_bytes(b'{"channels":[{"name":"m","provider_type":"mock"}],'
                                     b'"routers":[{"name":"r","vkey":"vk-secret","channels":[{"name":"m"}]}]}'))


def _exchange() -> Exchange:
    ex = Exchange("req_9", None, Dialect.OPENAI_CHAT)
    ex.team, ex.router, ex.rule, ex.model, ex.channel, ex.tried, ex.attempts = "t", "r", "default", "gpt-4o", "m", ["m"], 1
    ex.status, ex.upstream_model, ex.usage = 200, "gpt-4o-2024", Usage(prompt_tokens=5, completion_tokens=2)
    ex.request_body = b'{"messages":[{"role":"user","content":"private words"}]}'
    return ex


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("apex.access").disabled)
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    for h in saved[0]:
        root.addHandler(h)
    root.setLevel(saved[1])
    logging.getLogger("apex.access").disabled = saved[2]


def test_json_formatter_merges_fields() -> None:
    """A JSON line holds ts, level, logger, msg and the record's fields as top-level keys."""
    line = json.loads(JsonFormatter().format(_record(fields={"status": 200, "tried": ["a"]})))
    assert line["level"] == "info" and line["logger"] == "apex.access" and line["msg"] == "request"
    assert line["status"] == 200 and line["tried"] == ["a"] and line["ts"].endswith("Z")


def test_pretty_formatter_lists_fields() -> None:
    """Pretty lines show key=value pairs, JSON-quote values with spaces and skip None."""
    text = PrettyFormatter().format(_record(fields={"status": 200, "channel": "m", "error_type": None, "msg": "a b"}))
    assert "apex.access: request status=200 channel=m msg=\"a b\"" in text and "error_type" not in text


def test_access_fields_hold_no_secret_or_content() -> None:
    """The access fields carry ids, routing and numbers, never the key or the message text."""
    fields = access_fields(_exchange(), 12.5, 0.75, Usage(prompt_tokens=5, completion_tokens=2))
    dumped = json.dumps(fields)
    assert "vk-secret" not in dumped and "private words" not in dumped
    assert fields["model"] == "gpt-4o" and fields["upstream_model"] == "gpt-4o-2024"
    assert fields["channels_tried"] == ["m"] and fields["overhead_ms"] == 0.75
    assert fields["tokens"] == {"prompt": 5, "completion": 2, "cached": 0, "reasoning": 0, "cache_write": 0, "estimated": False}


def test_configure_logging_file_and_level(tmp_path: Path, restore_root: None) -> None:
    """A file target gets a reopening handler at the configured level; access_log false disables that logger."""
    path = tmp_path / "a.log"
    handler = configure_logging(LoggingConfig(level="warning", format="pretty", file=str(path), access_log=False))
    assert isinstance(handler, ReopeningFileHandler) and isinstance(handler.formatter, PrettyFormatter)
    assert logging.getLogger().level == logging.WARNING
    assert not logging.getLogger("apex.access").isEnabledFor(logging.ERROR)
    logging.getLogger("apex.test").warning("hello %s", "there")
    assert "hello there" in path.read_text()


def test_finish_skips_the_line_when_disabled(restore_root: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """At level warning, finish() never builds the access fields (no formatting cost)."""
    configure_logging(LoggingConfig(level="warning"))
    gateway, ex = _gateway(), _exchange()
    built: list[Exchange] = []

    def spy(ex: Exchange, *_: object) -> dict[str, object]:
        built.append(ex)
        return {}

    monkeypatch.setattr("apex.server.gateway.access_fields", spy)
    gateway.finish(ex)
    assert built == []
    configure_logging(LoggingConfig(level="info", file=None))
    gateway.finish(ex)
    assert built == [ex]


def test_lines_are_batched_but_warnings_flush_at_once(tmp_path: Path) -> None:
    """Access lines wait in the buffer (no write per request); other lines push everything out; flush_logs does too."""
    from apex.config.model import LoggingConfig
    from apex.server.logs import configure_logging, flush_logs

    path = tmp_path / "apex.log"
    handler = configure_logging(LoggingConfig(level="info", format="json", file=str(path)))
    try:
        access = logging.getLogger("apex.access")
        access.info("first")  # the first record flushes (the interval starts now)
        access.info("second")
        assert "second" not in path.read_text()
        logging.getLogger("apex.gateway").info("config reloaded")
        assert "second" in path.read_text() and "config reloaded" in path.read_text()
        access.info("third")
        assert "third" not in path.read_text()
        flush_logs()
        assert "third" in path.read_text()
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def test_direct_access_line_is_what_the_formatter_writes(tmp_path: Path, restore_root: None) -> None:
    """The access line written directly (default JSON setup) and the one through logging (a
    filter attached forces that path) are the same JSON, field for field and in order."""
    path = tmp_path / "access.log"
    handler = configure_logging(LoggingConfig(file=str(path)))
    assert isinstance(handler, ReopeningFileHandler)
    access = logging.getLogger(ACCESS_LOGGER)
    fields = access_fields(_exchange(), 12.5, 0.25, Usage(prompt_tokens=5, completion_tokens=2), 0.0001)
    calls: list[logging.LogRecord] = []
    real_handle = access.handle
    def counting(record: logging.LogRecord) -> None:
        calls.append(record)
        real_handle(record)

    access.handle = counting  # type: ignore[method-assign]
    try:
        write_access_line(access, fields)
        assert not calls  # the direct path: no LogRecord at all
        seen: list[str] = []

        def keep(record: logging.LogRecord) -> bool:
            seen.append(record.name)
            return True

        access.addFilter(keep)
        write_access_line(access, fields)
        access.removeFilter(keep)
        assert seen == [ACCESS_LOGGER] and len(calls) == 1  # the logging path
    finally:
        del access.handle
    flush_logs()
    direct, logged = (json.loads(line) for line in path.read_text().splitlines())
    assert list(direct) == list(logged) and direct.pop("ts")[:16] == logged.pop("ts")[:16]
    assert direct == logged
    assert direct["msg"] == "request" and direct["logger"] == ACCESS_LOGGER and direct["level"] == "info"


def test_a_capturing_handler_still_sees_access_lines(restore_root: None) -> None:
    """Another handler on the root (a test's capture, a user's) turns the direct path off: it sees the line."""
    configure_logging(LoggingConfig())
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    logging.getLogger().addHandler(Keep())
    write_access_line(logging.getLogger(ACCESS_LOGGER), {"request_id": "req_x"})
    assert [getattr(r, "fields", None) for r in seen] == [{"request_id": "req_x"}]


async def test_a_buffered_access_line_is_flushed_by_a_timer_armed_only_then(tmp_path: Path) -> None:
    """No ticker: the flush timer is armed when an access line stays in the buffer, fires once
    the batching interval is over (the line reaches the file without any other traffic), and
    is not armed again while nothing is buffered."""
    import asyncio

    from apex.server import logs

    path = tmp_path / "apex.log"
    handler = configure_logging(LoggingConfig(level="info", format="json", file=str(path)))
    logs.start_flush_timer(asyncio.get_running_loop())
    try:
        timer = logs._flush_timer
        assert timer is not None

        def armed() -> bool:  # a call, so that the checks below are not narrowed away
            assert timer is not None
            return timer._handle is not None

        assert not armed()
        access = logging.getLogger(ACCESS_LOGGER)
        access.info("first")  # flushed at once: the interval starts now
        assert not armed() and "first" in path.read_text()
        access.info("second")
        assert armed() and "second" not in path.read_text()
        await asyncio.sleep(0.4)
        assert "second" in path.read_text()
        assert not armed()  # fired, and nothing re-armed it
        logging.getLogger("apex.gateway").warning("urgent")  # written at once: no timer
        assert not armed()
    finally:
        logs.stop_flush_timer()
        logging.getLogger().removeHandler(handler)
        handler.close()


@pytest.mark.parametrize(("header_s", "body_s", "send_s", "interval"), [
    (10.0, 60.0, 60.0, 1.0),    # the defaults: once a second
    (1.0, 1.0, 60.0, 0.1),      # a tenth of the shortest timeout
    (60.0, 2.0, 60.0, 0.2),
    (60.0, 60.0, 0.5, 0.05),    # send_ms counts too
    (0.2, 5.0, 60.0, 0.05),     # never more often than 20 times a second
])
def test_sweep_interval_is_a_tenth_of_the_shortest_timeout(header_s: float, body_s: float, send_s: float,
                                                           interval: float) -> None:
    from apex.server.conn import sweep_interval

    assert sweep_interval(header_s, body_s, send_s) == pytest.approx(interval)
