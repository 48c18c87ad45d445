"""Stream-fault matrix (issue 13, item 11 and "keep it proven").

An upstream stream breaks after its first events in every way a network can break it: cut
mid-line, mid-event (lines whole, blank line missing), between events, a TCP reset, a stall
past ``stream_idle_ms``. For pass-through and translated streams in each client protocol the
client must get complete, well-formed events and then a well-formed error event: never a
partial event, never bytes glued onto one. Checked on the raw bytes and with the official SDKs.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.conftest import StartApex, ant, oai
from tests.integration.fakes import Behaviour, FakeUpstream, fixture_bytes, split_events

OPENAI_EVENTS = split_events(fixture_bytes("openai_chat_stream_text.sse"))
ANTHROPIC_EVENTS = split_events(fixture_bytes("anthropic_messages_stream_text.sse"))


def config(up: FakeUpstream) -> dict[str, Any]:
    return {
        "global": {"auth": {"keys": ["k"]}, "retries": {"max_attempts": 1, "backoff_ms": 1},
                   "timeouts": {"stream_idle_ms": 300}},
        "logging": {"level": "error"},
        "channels": [
            {"name": "oa", "provider_type": "openai", "base_url": up.openai_url, "api_key": "ka"},
            {"name": "an", "provider_type": "anthropic", "base_url": up.url, "api_key": "kb"},
        ],
        "routers": [{"name": "r", "rules": [{"match": {"model": "claude-*"}, "channels": [{"name": "an"}]}],
                     "channels": [{"name": "oa"}]}],
    }


def faulty(events: list[bytes], fault: str) -> Behaviour:
    """The upstream's stream after two whole events, broken as ``fault`` says."""
    head = events[:2]
    third = events[2]
    b = Behaviour(content_type="text/event-stream")
    if fault == "mid_line":
        b.events = [*head, third[: len(third) // 2]]
        b.cut_after = 3
    elif fault == "mid_event":
        b.events = [*head, third.rstrip(b"\r\n") + b"\n"]
        b.cut_after = 3
    elif fault == "between":
        b.events = [*head, third]
        b.cut_after = 3
    elif fault == "reset":
        b.events = [*head, third[:10], third]
        b.rst_after = 3
    elif fault == "stall":
        b.events = [*head, third[:7], third]
        b.stall_after = 3
    else:
        raise AssertionError(fault)
    return b


def parse_strict(body: bytes) -> list[tuple[str | None, str]]:
    """Split an SSE body into (event, data) and fail on anything that is not a whole, valid event."""
    text = body.decode()
    assert text.endswith("\n\n"), f"stream does not end on an event boundary: {text[-80:]!r}"
    out: list[tuple[str | None, str]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block:
            continue
        name: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith(":"):
                continue
            field, sep, value = line.partition(": ")
            assert sep and field in ("event", "data"), f"malformed SSE line {line!r} in {block!r}"
            if field == "event":
                name = value
            else:
                data.append(value)
        if not data:
            continue
        joined = "\n".join(data)
        if joined != "[DONE]":
            json.loads(joined)  # every data line is whole JSON
        out.append((name, joined))
    return out


def is_error_event(name: str | None, data: str) -> bool:
    if name == "error":
        return True
    if data == "[DONE]":
        return False
    obj = json.loads(data)
    return isinstance(obj, dict) and ("error" in obj or obj.get("type") == "error")


CASES = [  # client path, model, upstream events
    ("/v1/chat/completions", "gpt-4o", OPENAI_EVENTS),  # pass-through OpenAI
    ("/v1/messages", "claude-x", ANTHROPIC_EVENTS),  # pass-through Anthropic
    ("/v1/messages", "gpt-4o", OPENAI_EVENTS),  # translated: Anthropic client, OpenAI upstream
    ("/v1/chat/completions", "claude-x", ANTHROPIC_EVENTS),  # translated: OpenAI client, Anthropic upstream
]


@pytest.mark.parametrize("fault", ["mid_line", "mid_event", "between", "reset", "stall"])
@pytest.mark.parametrize(("path", "model", "events"), CASES, ids=["oai-pass", "ant-pass", "ant-from-oai", "oai-from-ant"])
async def test_broken_stream_ends_with_error_event(upstream: FakeUpstream, start_apex: StartApex, fault: str,
                                                   path: str, model: str, events: list[bytes]) -> None:
    inst = await start_apex(config(upstream))
    upstream.push(faulty(events, fault))
    async with aiohttp.ClientSession() as s, s.post(
        inst.url + path, headers={"Authorization": "Bearer k", "anthropic-version": "2023-06-01"},
        json={"model": model, "stream": True, "max_tokens": 50, "messages": [{"role": "user", "content": "x"}]},
    ) as r:
        assert r.status == 200
        body = await r.read()
    parsed = parse_strict(body)
    assert len(parsed) >= 2, body
    assert is_error_event(*parsed[-1]), body
    assert not any(is_error_event(*ev) for ev in parsed[:-1]), body


@pytest.mark.parametrize("fault", ["mid_line", "mid_event", "reset"])
async def test_sdks_see_the_error(upstream: FakeUpstream, start_apex: StartApex, fault: str) -> None:
    """The official SDKs raise on the error event instead of ending quietly with half an answer."""
    inst = await start_apex(config(upstream))
    upstream.push(faulty(OPENAI_EVENTS, fault))
    with pytest.raises(openai.APIError):
        stream = await oai(inst, "k").chat.completions.create(
            model="gpt-4o", stream=True, messages=[{"role": "user", "content": "x"}])
        async for _ in stream:
            pass
    upstream.push(faulty(ANTHROPIC_EVENTS, fault))
    with pytest.raises(anthropic.APIStatusError):
        async with ant(inst, "k").messages.stream(model="claude-x", max_tokens=50,
                                                   messages=[{"role": "user", "content": "x"}]) as astream:
            async for _ in astream:
                pass


async def test_unbroken_streams_pass_whole(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """Control: the same streams unbroken, split at odd places, arrive byte for byte."""
    inst = await start_apex(config(upstream))
    raw = b"".join(OPENAI_EVENTS)
    pieces = [raw[i : i + 7] for i in range(0, len(raw), 7)]
    upstream.push(Behaviour(content_type="text/event-stream", events=pieces))
    async with aiohttp.ClientSession() as s, s.post(
        inst.openai_url + "/chat/completions", headers={"Authorization": "Bearer k"},
        json={"model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True},
              "messages": [{"role": "user", "content": "x"}]},
    ) as r:
        body = await r.read()
    assert body == raw
    parse_strict(body)


@pytest.mark.parametrize(("path", "model", "events"), [("/v1/chat/completions", "gpt-4o", OPENAI_EVENTS),
                                                       ("/v1/chat/completions", "claude-x", ANTHROPIC_EVENTS)])
async def test_bytes_trickling_into_one_event_do_not_hold_off_the_idle_timeout(
        upstream: FakeUpstream, start_apex: StartApex, path: str, model: str, events: list[bytes]) -> None:
    """stream_idle_ms is the time between events (spec 2): an upstream trickling one byte of an
    event every 0.1 s kept a 0.3 s idle limit from ever firing (for as long as it liked)."""
    inst = await start_apex(config(upstream))
    third = events[2]
    upstream.push(Behaviour(content_type="text/event-stream", gap=0.1,
                            events=[*events[:2], *(third[i:i + 1] for i in range(min(len(third) - 2, 40)))]))
    async with aiohttp.ClientSession() as s, s.post(
        inst.url + path, headers={"Authorization": "Bearer k"},
        json={"model": model, "stream": True, "max_tokens": 50, "messages": [{"role": "user", "content": "x"}]},
    ) as r:
        body = await r.read()
    parsed = parse_strict(body)
    assert is_error_event(*parsed[-1]) and "sent nothing for 0.3 s" in parsed[-1][1], body
