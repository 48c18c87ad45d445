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


async def test_a_hang_up_as_the_upstream_breaks_is_a_499_not_an_internal_error(start_apex: StartApex) -> None:
    """Clients that leave at about the moment their upstream stream breaks (bounded: 160
    streams, 40 at a time, against an upstream in its own thread that closes each stream half
    way): each is a hang-up or an error event, never an internal error (the upstream's
    ServerDisconnected escaped when the client's side was already closing)."""
    import asyncio
    import threading

    from aiohttp import web

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(60):
            if i == 30 and request.transport is not None:
                request.transport.close()  # cut half way
                return resp
            await resp.write(OPENAI_EVENTS[1])
            await asyncio.sleep(0.0005)
        return resp

    ready = threading.Event()
    box: dict[str, Any] = {}

    def serve() -> None:
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", stream)
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        box["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        box["stop"] = asyncio.Event()
        box["loop"] = loop
        ready.set()
        loop.run_until_complete(box["stop"].wait())
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        inst = await start_apex({"global": {"auth": {"keys": ["k"]}, "retries": {"max_attempts": 1}},
                                 "logging": {"level": "error"},
                                 "channels": [{"name": "oa", "provider_type": "openai",
                                               "base_url": f"http://127.0.0.1:{box['port']}/v1", "api_key": "sk"}],
                                 "routers": [{"name": "r", "channels": [{"name": "oa"}]}]})
        sem = asyncio.Semaphore(40)

        async def one(s: aiohttp.ClientSession, i: int) -> None:
            async with sem:
                try:
                    async with s.post(inst.openai_url + "/chat/completions", headers={"Authorization": "Bearer k"},
                                      json={"model": "gpt-4o", "stream": True,
                                            "messages": [{"role": "user", "content": "x"}]}) as r:
                        got = 0
                        async for chunk in r.content.iter_any():
                            got += len(chunk)
                            if got >= len(OPENAI_EVENTS[1]) * (27 + i % 5):  # about where the cut is
                                r.close()
                                return
                except aiohttp.ClientError:
                    pass

        async with aiohttp.ClientSession() as s:
            await asyncio.wait_for(asyncio.gather(*(one(s, i) for i in range(160))), 60)
        await asyncio.sleep(0.2)
        errors = {tuple(sorted(m.labels.items())): m.value for fam in inst.gateway.metrics.registry.collect()
                  for m in fam.samples if m.name == "apex_errors_total"}
        assert not [k for k in errors if ("error_type", "internal") in k], errors
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(10)
