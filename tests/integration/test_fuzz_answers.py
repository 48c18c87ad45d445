"""Type-confused fields in real upstream answers, read by every translating direction: never a 500.

The fake upstream answers with a real capture (``tests/fixtures/real``: bodies and SSE
streams of OpenAI Chat, Anthropic Messages and Gemini) in which one field, per distinct
field shape (list indices folded; per event type for streams), holds a value of the wrong
type. A client of each other protocol asks for it, so Apex must read the answer to
translate it. The answer may be a 502 (the upstream's answer is unusable) or a stream that
ends with an error event, but never a 500, an "internal error" or a dropped connection.
Deterministic and bounded: a few thousand requests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import StartApex, basic_config
from tests.fixtures import REAL
from tests.integration.fakes import Behaviour, FakeUpstream, split_events
from tests.integration.mutate import field_paths, with_value

WRONG: list[Any] = [None, 7, "x", [], {}, {"type": []}]
# upstream model (its channel's protocol) -> captures of that protocol, and the clients that make Apex translate them
BODIES: dict[str, list[str]] = {
    "gpt-4o": ["openai_chat_nonstream.json", "openai_chat_nonstream_tool_calls.json"],
    "claude-x": ["anthropic_messages_nonstream.json", "anthropic_messages_nonstream_tool_use.json"],
    "gemini-x": ["gemini_generate_content.json"],
}
STREAMS: dict[str, list[str]] = {
    "gpt-4o": ["openai_chat_stream_text.sse", "openai_chat_stream_tool_calls.sse", "deepseek_chat_stream_reasoning.sse"],
    "claude-x": ["anthropic_messages_stream_text.sse", "anthropic_messages_stream_thinking.sse",
                 "anthropic_messages_stream_tool_use.sse"],
    "gemini-x": ["gemini_stream.sse", "gemini_stream_function_call.sse"],
}
CLIENTS: dict[str, tuple[str, ...]] = {"gpt-4o": ("messages", "gemini"), "claude-x": ("chat", "responses", "gemini"),
                                       "gemini-x": ("chat", "messages", "responses")}


def client_request(client: str, model: str, stream: bool) -> tuple[str, dict[str, Any]]:
    hi: list[dict[str, Any]] = [{"role": "user", "content": "hi"}]
    if client == "chat":
        return "/v1/chat/completions", {"model": model, "messages": hi, "stream": stream}
    if client == "messages":
        return "/v1/messages", {"model": model, "max_tokens": 50, "messages": hi, "stream": stream}
    if client == "responses":
        return "/v1/responses", {"model": model, "input": "hi", "stream": stream}
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"/v1beta/models/{model}:{action}", {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


def answers(model: str) -> Iterator[tuple[bool, Behaviour, str]]:
    """(stream?, the broken answer, what was broken) for each field shape of ``model``'s captures."""
    seen: set[tuple[object, ...]] = set()
    for name in BODIES[model]:
        doc = json.loads((REAL / name).read_bytes())
        for at in field_paths(doc, seen):
            for value in WRONG:
                yield False, Behaviour(body=json.dumps(with_value(doc, at, value)).encode()), f"{name} {at} = {value!r}"
    for name in STREAMS[model]:
        events = split_events((REAL / name).read_bytes())
        for i, event in enumerate(events):
            lines = event.split(b"\n")
            data = next((k for k, line in enumerate(lines) if line.startswith(b"data:")), None)
            if data is None:
                continue
            try:
                doc = json.loads(lines[data][5:])
            except ValueError:
                continue  # [DONE]
            kind = doc.get("type", "") if isinstance(doc, dict) else ""
            for at in field_paths(doc, seen, ("stream", kind)):
                for value in WRONG:
                    broken = list(lines)
                    broken[data] = b"data: " + json.dumps(with_value(doc, at, value)).encode()
                    out = list(events)
                    out[i] = b"\n".join(broken)
                    yield True, Behaviour(content_type="text/event-stream", events=out), f"{name} event {i} {at} = {value!r}"


@pytest.mark.parametrize("model", list(BODIES))
async def test_wrong_types_in_answers_never_give_a_500(upstream: FakeUpstream, start_apex: StartApex, model: str) -> None:
    cfg = basic_config(upstream)
    cfg["channels"].append({"name": "gm", "provider_type": "gemini", "base_url": upstream.url, "api_key": "g-key"})
    cfg["routers"][0]["rules"].append({"match": {"model": "gemini-*"}, "channels": [{"name": "gm"}]})
    cfg["global"]["retries"] = {"max_attempts": 1}
    cfg["logging"] = {"level": "error"}
    apex = await start_apex(cfg)
    headers = {"Authorization": "Bearer vk-default", "anthropic-version": "2023-06-01"}
    failures: list[str] = []
    sent = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for stream, answer, what in answers(model):
            upstream.persistent = answer
            for client in CLIENTS[model]:
                path, body = client_request(client, model, stream)
                try:
                    async with session.post(apex.url + path, json=body, headers=headers) as r:
                        text = await r.read()
                        status = r.status
                except aiohttp.ClientError as exc:
                    failures.append(f"{client}: {what}: {exc!r}")
                    continue
                sent += 1
                if status >= 500 and status not in (502, 503, 504) or b"internal error" in text:
                    failures.append(f"{client}: {what}: {status} {text[:200]!r}")
    assert sent > 100
    assert not failures, f"{len(failures)} of {sent} answers failed:\n" + "\n".join(failures[:20])
