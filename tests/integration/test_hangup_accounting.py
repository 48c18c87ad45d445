"""Clients that hang up keep their usage accounted (issue 13, item 13).

The openai SDK's stream helper, langchain, llm and Codex close the connection right after
the final event, while the upstream may not have closed its side yet: that is a success
(200) with the stream's usage, not a 499 with ``tokens: null``. A client that leaves in
the middle is a 499 charged what the upstream reported so far (or the prompt estimate),
never refunded the whole TPM estimate.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import pytest

from tests.conftest import StartApex
from tests.integration.fakes import Behaviour, FakeUpstream, fixture_bytes, split_events
from tests.integration.test_teams import policy_config

OPENAI_EVENTS = split_events(fixture_bytes("openai_chat_stream_text.sse"))  # usage 78 + 9 = 87
ANTHROPIC_EVENTS = split_events(fixture_bytes("anthropic_messages_stream_text.sse"))  # message_start: 17 input


def held_open(events: list[bytes], upto: int | None = None) -> Behaviour:
    """Send ``events[:upto]`` and then keep the upstream connection open (no EOF)."""
    sent = events[:upto] if upto is not None else events
    return Behaviour(content_type="text/event-stream", events=[*sent, b": never sent\n\n"], stall_after=len(sent))


def access_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if r.name == "apex.access"]  # type: ignore[attr-defined]


async def read_until(resp: aiohttp.ClientResponse, marker: bytes) -> bytes:
    got = b""
    while marker not in got:
        chunk = await asyncio.wait_for(resp.content.readany(), 5)
        assert chunk, got
        got += chunk
    return got


async def wait_for_access(caplog: pytest.LogCaptureFixture, n: int) -> list[dict[str, Any]]:
    for _ in range(200):
        recs = access_records(caplog)
        if len(recs) >= n:
            return recs
        await asyncio.sleep(0.02)
    raise AssertionError("no access line")


@pytest.mark.parametrize(("path", "model", "events", "marker", "tokens"), [
    ("/v1/chat/completions", "gpt-4o", OPENAI_EVENTS, b"[DONE]", (78, 9)),
    ("/v1/messages", "claude-x", ANTHROPIC_EVENTS, b"message_stop", (17, None)),
], ids=["openai-done", "anthropic-message-stop"])
async def test_hangup_after_final_event_is_a_success_with_usage(
    upstream: FakeUpstream, start_apex: StartApex, caplog: pytest.LogCaptureFixture,
    path: str, model: str, events: list[bytes], marker: bytes, tokens: tuple[int, int | None],
) -> None:
    cfg = policy_config(upstream, rate_limit={"tpm": 100_000})
    cfg["logging"] = {"level": "info"}
    inst = await start_apex(cfg)
    upstream.push(held_open(events))
    key = "team-search" if model.startswith("gpt") else "vk-claude"
    caplog.set_level(logging.INFO, logger="apex.access")
    async with aiohttp.ClientSession() as s:
        resp = await s.post(inst.url + path, headers={"Authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"},
                            json={"model": model, "stream": True, "max_tokens": 100,
                                  "stream_options": {"include_usage": True},
                                  "messages": [{"role": "user", "content": "x"}]})
        await read_until(resp, marker)
        resp.close()  # hang up, as the SDK helpers do, while the upstream is still open
    rec = (await wait_for_access(caplog, 1))[0]
    assert rec["status"] == 200, rec
    assert rec["tokens"] is not None and rec["tokens"]["prompt"] == tokens[0], rec
    if tokens[1] is not None:
        assert rec["tokens"]["completion"] == tokens[1]


async def test_hangup_mid_stream_is_charged_usage_so_far(
    upstream: FakeUpstream, start_apex: StartApex, caplog: pytest.LogCaptureFixture,
) -> None:
    """An Anthropic stream left after message_start (17 input tokens) is a 499 charged 17
    tokens, not refunded its 1,000-token estimate."""
    cfg = policy_config(upstream, rate_limit={"tpm": 5_000})
    cfg["logging"] = {"level": "info"}
    cfg["routers"][1]["vkey"] = None
    cfg["teams"][0]["policy"]["allowed_routers"] = ["claude"]
    inst = await start_apex(cfg)
    caplog.set_level(logging.INFO, logger="apex.access")
    headers = {"Authorization": "Bearer team-search", "anthropic-version": "2023-06-01"}
    body = {"model": "claude-x", "max_tokens": 1000, "messages": [{"role": "user", "content": "x"}]}
    async with aiohttp.ClientSession() as s:
        upstream.push(held_open(ANTHROPIC_EVENTS, upto=3))
        resp = await s.post(inst.url + "/v1/messages", headers=headers, json={**body, "stream": True})
        await read_until(resp, b"content_block_delta")
        resp.close()
        rec = (await wait_for_access(caplog, 1))[0]
        assert rec["status"] == 499 and rec["tokens"]["prompt"] == 17, rec
        # The next request sees the bucket charged 17 (not refunded to full, not the 1,000+ estimate).
        async with s.post(inst.url + "/v1/messages", headers=headers, json=body) as r2:
            assert r2.status == 200
            remaining = int(r2.headers["x-ratelimit-remaining-tokens"])
    from apex.tokens import estimate_tokens

    estimate2 = estimate_tokens(json.dumps(body).encode()) + 1000
    assert 5_000 - 17 - estimate2 - 5 <= remaining <= 5_000 - 17 - estimate2 + 5, remaining
