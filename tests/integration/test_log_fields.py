"""Log lines over real HTTP: ids and names are fields (not text in the message), named as the
metrics and the contract name them, and a debug log beside the config does not feed itself."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from apex.config.model import LoggingConfig
from apex.server.logs import configure_logging, flush_logs
from tests.conftest import StartApex, basic_config, oai
from tests.integration.fakes import Behaviour, FakeUpstream, error, fixture_bytes

MSG: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("apex.access").disabled)
    try:
        yield
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
        logging.getLogger("apex.access").disabled = saved[2]


def _lines(path: Path) -> list[dict[str, Any]]:
    flush_logs()
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_access_line_says_team_id(
    upstream: FakeUpstream, start_apex: StartApex, tmp_path: Path, restore_logging: None
) -> None:
    """The access line names the team ``team_id``, as the metrics label and the contract do."""
    path = tmp_path / "apex.log"
    configure_logging(LoggingConfig(level="info", format="json", file=str(path)))
    cfg = basic_config(upstream)
    cfg["teams"] = [{"id": "t1", "api_key": "tk-team-1"}]
    inst = await start_apex(cfg)
    await oai(inst, "tk-team-1").chat.completions.create(model="gpt-4o", messages=MSG)
    access = [line for line in _lines(path) if line["logger"] == "apex.access"]
    assert len(access) == 1
    assert access[0]["team_id"] == "t1" and "team" not in access[0]


async def test_attempt_and_fallback_lines_carry_the_request_id_as_a_field(
    upstream: FakeUpstream, start_apex: StartApex, tmp_path: Path, restore_logging: None
) -> None:
    """A failed attempt and a fallback are logged with ``request_id``, ``channel`` and friends as
    fields; the message text holds no request id (a log search by id finds every line)."""
    path = tmp_path / "apex.log"
    configure_logging(LoggingConfig(level="debug", format="json", file=str(path)))
    cfg = basic_config(upstream)
    cfg["channels"].append({"name": "oa2", "provider_type": "openai", "base_url": upstream.openai_url,
                            "api_key": "sk-upstream-oa2"})
    cfg["routers"][0]["channels"] = [{"name": "oa"}, {"name": "oa2"}]
    inst = await start_apex(cfg)
    upstream.push(error(500), Behaviour(body=fixture_bytes("openai_chat_nonstream.json")))
    raw = await oai(inst, "vk-default").chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG)
    rid = raw.headers["x-request-id"]
    mine = [line for line in _lines(path) if line.get("request_id") == rid]
    failed = [line for line in mine if line["msg"].startswith("upstream attempt failed")]
    assert len(failed) == 1 and failed[0]["channel"] == "oa" and failed[0]["attempt"] == 1
    assert failed[0]["level"] == "warning" and failed[0]["error_type"] == "api_error"
    assert any(line["msg"] == "falling back to another channel" and line["to_channel"] == "oa2" for line in mine)
    assert any(line["msg"] == "upstream attempt succeeded" and line["channel"] == "oa2" for line in mine)
    assert not [line for line in _lines(path) if line["logger"].startswith("apex") and rid in line["msg"]]


async def test_rejected_reload_logs_the_config_path_field(
    upstream: FakeUpstream, start_apex: StartApex, tmp_path: Path, restore_logging: None
) -> None:
    """A rejected reload names the offending key as a field (it used to be passed as an
    ``extra=`` attribute no formatter prints, and so was silently dropped)."""
    path = tmp_path / "apex.log"
    configure_logging(LoggingConfig(level="info", format="json", file=str(path)))
    config = tmp_path / "config.json"
    cfg = basic_config(upstream)
    config.write_text(json.dumps(cfg))
    inst = await start_apex(cfg, config_path=config)
    cfg["global"]["retries"]["max_attempts"] = 0
    assert inst.gateway.reload_bytes(json.dumps(cfg).encode(), "test") is False
    rejected = [line for line in _lines(path) if line["msg"].startswith("config reload rejected")]
    assert rejected and rejected[-1]["config_path"] == "global.retries.max_attempts"


async def test_debug_log_beside_the_config_does_not_feed_itself(
    upstream: FakeUpstream, start_apex: StartApex, tmp_path: Path, restore_logging: None
) -> None:
    """At debug with the log file in the config's directory, each log write is a file event
    the watcher sees; none of that may be logged again, or the log grows by itself forever."""
    path = tmp_path / "apex.log"
    configure_logging(LoggingConfig(level="debug", format="json", file=str(path)))
    config = tmp_path / "config.json"
    cfg = basic_config(upstream)
    config.write_text(json.dumps(cfg))
    inst = await start_apex(cfg, config_path=config)
    await oai(inst, "vk-default").chat.completions.create(model="gpt-4o", messages=MSG)
    await asyncio.sleep(0.6)  # the request's own lines are written and their events delivered
    flush_logs()
    size = path.stat().st_size
    await asyncio.sleep(1.0)
    flush_logs()
    assert path.stat().st_size == size, [line["msg"] for line in _lines(path)][-5:]


async def test_channel_state_lines_and_models_requests_say_who_as_fields(
    upstream: FakeUpstream, start_apex: StartApex, tmp_path: Path, restore_logging: None
) -> None:
    """A channel's state change names the channel as a field (it was only in the text), and a
    /v1/models request with a team key is the team's in the access line (it was null)."""
    path = tmp_path / "apex.log"
    configure_logging(LoggingConfig(level="info", format="json", file=str(path)))
    cfg = basic_config(upstream, teams=[{"id": "t1", "api_key": "tk-team-1"}])
    cfg["global"]["retries"]["max_attempts"] = 1
    cfg["global"]["health"] = {"failure_threshold": 1, "cooldown_ms": 60000}
    inst = await start_apex(cfg)
    upstream.push(error(500))
    with pytest.raises(openai.InternalServerError):
        await oai(inst).chat.completions.create(model="gpt-4o", messages=MSG)
    await oai(inst, "tk-team-1").models.list()
    await asyncio.sleep(0.05)
    lines = _lines(path)
    state = [line for line in lines if line["msg"].startswith("channel oa:")]
    assert state and state[0]["channel"] == "oa" and state[0]["state"] == "cooling" and state[0]["from_state"] == "up"
    models = [line for line in lines if line["logger"] == "apex.access" and line["status"] == 200]
    assert models and models[-1]["team_id"] == "t1", models
