"""The access log over real HTTP: one JSON line per request with the documented fields, no secrets."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import openai
import pytest

from apex.config.model import LoggingConfig
from apex.server.logs import (
    ReopeningFileHandler,
    configure_logging,
    flush_logs,
    reopen_log_files,
)
from tests.conftest import StartApex, ant, basic_config, oai
from tests.integration.access import access_lines
from tests.integration.fakes import FakeUpstream, error

MSG: Any = [{"role": "user", "content": "secret prompt text 4200"}]
ACCESS_KEYS = {
    "ts", "level", "logger", "msg", "request_id", "dialect", "team_id", "router", "rule", "model", "upstream_model",
    "channel", "channels_tried", "attempts", "attempt_errors", "stream", "status", "error_type", "latency_ms",
    "upstream_ms", "overhead_ms", "ttft_ms", "tokens", "cost_usd",
}
SECRETS = ("vk-default", "sk-upstream-oa", "sk-ant-upstream", "global-key", "tk-team-1", "wrong-key-123",
           "secret prompt text", "4242")  # "4242": the answer text in the fixture response


async def test_access_lines_carry_fields_and_no_secrets(
    upstream: FakeUpstream, start_apex: StartApex, log_file: Path
) -> None:
    """Each request writes one JSON access line with ids, routing, outcome, times and tokens; no key or content."""
    cfg = basic_config(upstream)
    cfg["channels"].append({"name": "oa2", "provider_type": "openai", "base_url": upstream.openai_url,
                            "api_key": "sk-upstream-oa2"})
    cfg["routers"][0]["rules"].append({"match": {"model": "gpt-*"}, "channels": [{"name": "oa"}], "fallback": ["oa2"]})
    cfg["teams"] = [{"id": "t1", "api_key": "tk-team-1"}]
    inst = await start_apex(cfg)
    upstream.push(error(500))
    raw = await oai(inst, "tk-team-1").chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG)
    _ = [c async for c in await oai(inst).chat.completions.create(model="gpt-4o", messages=MSG, stream=True)]
    await ant(inst, "global-key").messages.create(model="claude-apex-test", max_tokens=16, messages=MSG)
    with pytest.raises(openai.AuthenticationError):
        await oai(inst, "wrong-key-123").chat.completions.create(model="gpt-4o", messages=MSG)

    flush_logs()
    # Apex's own lines: the SDK's httpx logs its request URLs to the same file, and a free port
    # such as 42423 holds "4242" (this test failed on that once).
    text = "\n".join(line for line in log_file.read_text().splitlines()  # noqa: ASYNC240 -- a small local file
                     if json.loads(line)["logger"].startswith("apex"))
    assert '"logger":"apex.access"' in text
    for secret in SECRETS:
        assert secret not in text, secret
    lines = access_lines(log_file)
    assert len(lines) == 4
    for line in lines:
        assert set(line) == ACCESS_KEYS
        assert line["level"] == "info" and line["latency_ms"] >= line["overhead_ms"] >= 0
    fb, stream, anth, denied = lines
    assert fb["request_id"] == raw.headers["x-request-id"]
    assert abs(fb["overhead_ms"] - float(raw.headers["x-apex-overhead-ms"])) < 5.0
    assert (fb["team_id"], fb["router"], fb["rule"], fb["model"], fb["upstream_model"]) == ("t1", "default", "rules[1]", "gpt-4o", "gpt-4o")
    assert (fb["channel"], fb["channels_tried"], fb["attempts"], fb["attempt_errors"], fb["status"]) == ("oa2", ["oa", "oa2"], 2, ["api_error"], 200)
    assert fb["tokens"] == {"prompt": 16, "completion": 12, "cached": 0, "reasoning": 0, "cache_write": 0, "estimated": False}
    assert fb["ttft_ms"] is None and fb["error_type"] is None and fb["stream"] is False
    assert stream["stream"] is True and stream["ttft_ms"] > 0 and stream["tokens"]["prompt"] == 78
    assert stream["team_id"] is None and stream["channels_tried"] == ["oa"]
    assert (anth["dialect"], anth["channel"], anth["team_id"], anth["model"]) == ("anthropic_messages", "an", None, "claude-apex-test")
    assert anth["tokens"] == {"prompt": 17, "completion": 15, "cached": 0, "reasoning": 0, "cache_write": 0, "estimated": False}
    assert (denied["status"], denied["error_type"], denied["router"], denied["model"], denied["tokens"]) == (401, "authentication", None, None, None)


async def test_rotated_file_is_followed_and_sigusr1_reopens(
    upstream: FakeUpstream, start_apex: StartApex, log_file: Path
) -> None:
    """After logrotate moves the file, lines go to a new file at the path; reopen_log_files() reopens too."""
    [handler] = [h for h in logging.getLogger().handlers if isinstance(h, ReopeningFileHandler)]
    handler.rotation_check_s = 0.0  # Apex checks once a second; check on every line here
    inst = await start_apex(basic_config(upstream))
    client = oai(inst)
    await client.chat.completions.create(model="gpt-4o", messages=MSG)
    log_file.rename(log_file.with_suffix(".1"))  # noqa: ASYNC240 -- logrotate's move, done inline on purpose
    await client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert len(access_lines(log_file)) == 1
    assert len(access_lines(log_file.with_suffix(".1"))) == 1
    handler.rotation_check_s = 3600.0  # now only the explicit reopen can notice the move
    handler._next_check = 0.0
    await client.chat.completions.create(model="gpt-4o", messages=MSG)  # checks once, arms the long interval
    log_file.rename(log_file.with_suffix(".2"))  # noqa: ASYNC240 -- logrotate's move, done inline on purpose
    await client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert len(access_lines(log_file.with_suffix(".2"))) == 3   # not noticed yet: still the moved file
    reopen_log_files()      # what the SIGUSR1 handler calls
    await client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert len(access_lines(log_file)) == 1


@pytest.mark.parametrize("level, access_log", [("warning", True), ("info", False)])
async def test_no_access_line_when_off(
    upstream: FakeUpstream, start_apex: StartApex, tmp_path: Path, log_file: Path, level: str, access_log: bool
) -> None:
    """At level warning, or with access_log false, no access line is written."""
    configure_logging(LoggingConfig(level=level, format="json", file=str(log_file), access_log=access_log))  # type: ignore[arg-type]
    inst = await start_apex(basic_config(upstream))
    await oai(inst).chat.completions.create(model="gpt-4o", messages=MSG)
    assert access_lines(log_file) == []


@pytest.mark.parametrize("head", [
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",  # parser: 400
    b"POST /v1/messages HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 9000 + b"\r\nContent-Length: 2\r\n\r\n{}",  # 400
    b"POST /v1/messages HTTP/1.1\r\nHost: a\r\n",  # a head that never ends: 408 from the sweep
], ids=["duplicate-content-length", "9k-header", "slow-head"])
async def test_answers_to_refused_heads_carry_the_request_id_of_their_access_line(
    upstream: FakeUpstream, start_apex: StartApex, log_file: Path, head: bytes,
) -> None:
    """The parser's 400 and the slow head's 408 were logged under a generated id that no
    x-request-id header carried (spec 3: every response carries one)."""
    cfg = basic_config(upstream)
    cfg["global"]["client_timeouts"] = {"header_read_ms": 200}
    inst = await start_apex(cfg)
    reader, writer = await asyncio.open_connection("127.0.0.1", inst.port)
    writer.write(head)
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    status, *fields = answer.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    assert status.split(" ")[1] in ("400", "408"), answer
    headers = {name.lower(): value.strip() for name, _, value in (field.partition(":") for field in fields)}
    lines: list[dict[str, Any]] = []
    for _ in range(500):  # the access line is written on the loop turn after the answer
        if lines := access_lines(log_file):
            break
        await asyncio.sleep(0.01)
    [line] = lines
    assert headers.get("x-request-id") == line["request_id"] and line["request_id"].startswith("req_"), answer
