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
from tests.integration.fakes import Behaviour, FakeUpstream, fixture_bytes, named_events, split_events
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


async def test_client_gone_when_the_stream_head_is_written_is_a_499_not_an_internal_error(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture,
) -> None:
    """The client closes while Apex waits for the upstream's first event, and the handler
    reaches the head write before its cancellation (the EOF and the first event land in one
    loop turn; here forced by running without handler cancellation): a 499 in the access
    line, no 'internal error' traceback, and the gateway serves on."""
    from aiohttp import web

    from apex.config.load import load_config_bytes
    from apex.server.app import build_app
    from apex.server.conn import ApexRunner
    from apex.server.gateway import Gateway

    cfg = policy_config(upstream)
    cfg["logging"] = {"level": "info"}
    gateway = Gateway(load_config_bytes(json.dumps(cfg).encode(), {}))
    runner = ApexRunner(build_app(gateway), gateway, handler_cancellation=False, access_log=None, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    caplog.set_level(logging.INFO)
    try:
        upstream.push(Behaviour(content_type="text/event-stream", events=OPENAI_EVENTS, stall=0.3))
        body = json.dumps({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "x"}]}).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer team-search\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()  # gone before the upstream's first event (0.3 s)
        rec = (await wait_for_access(caplog, 1))[0]
        assert rec["status"] == 499, rec
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
        upstream.push(Behaviour(content_type="text/event-stream", events=OPENAI_EVENTS))
        async with aiohttp.ClientSession() as s, s.post(
            f"http://127.0.0.1:{port}/v1/chat/completions", headers={"Authorization": "Bearer team-search"},
            json={"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "x"}]},
        ) as resp:
            assert resp.status == 200 and b"[DONE]" in await resp.read()
    finally:
        await runner.cleanup()


def _text_chunk(delta: dict[str, object]) -> bytes:
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


@pytest.mark.parametrize("policy", [{}, {"rate_limit": {"rpm": 1000}}], ids=["no-limit", "rate-limited"])
async def test_a_stream_left_without_usage_is_estimated_alike_for_every_team(
    upstream: FakeUpstream, start_apex: StartApex, caplog: pytest.LogCaptureFixture, policy: dict[str, Any],
) -> None:
    """A stream the client leaves, with no usage reported yet, is charged what it carried
    (about one token per content event) whether its team is rate limited or not (a limited
    team's was charged the prompt only: completion 0)."""
    cfg = policy_config(upstream, **policy)
    cfg["logging"] = {"level": "info"}
    inst = await start_apex(cfg)
    caplog.set_level(logging.INFO, logger="apex.access")
    events = [_text_chunk({"role": "assistant", "content": ""}), *(_text_chunk({"content": f" w{i}"}) for i in range(20))]
    upstream.push(held_open(events))
    async with aiohttp.ClientSession() as s:
        resp = await s.post(inst.url + "/v1/chat/completions", headers={"Authorization": "Bearer team-search"},
                            json={"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "x"}]})
        await read_until(resp, b" w19")
        resp.close()
    rec = (await wait_for_access(caplog, 1))[0]
    assert rec["status"] == 499, rec
    assert rec["tokens"]["estimated"] is True and 15 <= rec["tokens"]["completion"] <= 25, rec


# message_start says 1 output token (a placeholder), then 30 deltas and nothing more.
CLAUDE_START_AND_30_DELTAS = named_events([
    {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 17, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f" w{i}"}} for i in range(30)),
])


async def _claude_stream(inst: Any, s: aiohttp.ClientSession) -> aiohttp.ClientResponse:
    return await s.post(inst.url + "/v1/messages", headers={"Authorization": "Bearer vk-claude",
                                                            "anthropic-version": "2023-06-01"},
                        json={"model": "claude-x", "stream": True, "max_tokens": 100,
                              "messages": [{"role": "user", "content": "x"}]})


async def _logged_apex(upstream: FakeUpstream, start_apex: StartApex, caplog: pytest.LogCaptureFixture) -> Any:
    cfg = policy_config(upstream)
    cfg["logging"] = {"level": "info"}
    caplog.set_level(logging.INFO, logger="apex.access")
    return await start_apex(cfg)


async def test_a_claude_stream_left_midway_is_charged_what_it_carried(
    upstream: FakeUpstream, start_apex: StartApex, caplog: pytest.LogCaptureFixture,
) -> None:
    """An Anthropic stream left after 30 deltas: its message_start says 1 output token (a
    placeholder) and it was charged exactly that, marked reported; it is charged about one
    token per event it carried, marked estimated."""
    inst = await _logged_apex(upstream, start_apex, caplog)
    upstream.push(held_open(CLAUDE_START_AND_30_DELTAS))
    async with aiohttp.ClientSession() as s:
        resp = await _claude_stream(inst, s)
        await read_until(resp, b" w29")
        resp.close()
    rec = (await wait_for_access(caplog, 1))[0]
    assert rec["status"] == 499 and rec["tokens"]["prompt"] == 17, rec
    assert rec["tokens"]["estimated"] is True and 25 <= rec["tokens"]["completion"] <= 35, rec


async def test_a_claude_stream_cut_midway_is_charged_what_it_carried(
    upstream: FakeUpstream, start_apex: StartApex, caplog: pytest.LogCaptureFixture,
) -> None:
    """The upstream cuts an Anthropic stream after 30 deltas: charged about one token per event
    it carried, as when the client leaves (Apex's own error event marked the stream delivered,
    and the message_start placeholder of 1 output token was charged)."""
    inst = await _logged_apex(upstream, start_apex, caplog)
    events = CLAUDE_START_AND_30_DELTAS
    upstream.push(Behaviour(content_type="text/event-stream", events=[*events, b"event: ping\n\n"], cut_after=len(events)))
    async with aiohttp.ClientSession() as s:
        resp = await _claude_stream(inst, s)
        body = await resp.read()
    assert b"event: error" in body
    rec = (await wait_for_access(caplog, 1))[0]
    assert rec["tokens"]["estimated"] is True and 25 <= rec["tokens"]["completion"] <= 35, rec


@pytest.mark.parametrize("cut_by", ["client", "upstream"])
async def test_a_chat_stream_cut_after_two_deltas_is_charged_two_tokens(
    upstream: FakeUpstream, start_apex: StartApex, caplog: pytest.LogCaptureFixture, cut_by: str,
) -> None:
    """A chat stream without usage, cut after its role event and two content deltas (the
    client leaves, or the upstream breaks): 2 completion tokens in the access line and in
    apex_tokens_total. The estimate subtracted the finish and [DONE] events it never had: 0."""
    from tests.integration.test_metrics import parse, scrape

    inst = await _logged_apex(upstream, start_apex, caplog)
    events = [_text_chunk({"role": "assistant", "content": ""}), _text_chunk({"content": " one"}),
              _text_chunk({"content": " two"})]
    upstream.push(held_open(events) if cut_by == "client" else
                  Behaviour(content_type="text/event-stream", events=[*events, b"data: [DONE]\n\n"], cut_after=3))
    async with aiohttp.ClientSession() as s:
        resp = await s.post(inst.url + "/v1/chat/completions", headers={"Authorization": "Bearer team-search"},
                            json={"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "x"}]})
        if cut_by == "client":
            await read_until(resp, b" two")
            resp.close()
        else:
            assert b"error" in await resp.read()
    rec = (await wait_for_access(caplog, 1))[0]
    assert rec["status"] == (499 if cut_by == "client" else 200), rec
    assert rec["tokens"]["estimated"] is True and rec["tokens"]["completion"] == 2, rec
    completion = {dict(k)["team_id"]: v for k, v in parse((await scrape(inst))[1])["apex_tokens_total"].items()
                  if dict(k)["type"] == "completion"}
    assert completion == {"search": 2}
