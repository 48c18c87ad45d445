"""A refusal finishes as a content filter whether the OpenAI answer was streamed or not."""

from __future__ import annotations

import json

import pytest

from apex.sse import SseParser
from apex.translate.neutral.parts import Finished
from apex.translate.neutral.reasons import Finish
from apex.translate.neutral.reply import reply_from_openai
from apex.translate.read.openai import OpenAIChatReader


def _stream_finish(deltas: list[dict[str, object]]) -> Finish:
    chunks = [{"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    chunks.append({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    raw = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    reader = OpenAIChatReader()
    finishes = [p.reason for ev in SseParser().feed(raw) for p in reader.feed(ev) if isinstance(p, Finished)]
    assert len(finishes) == 1
    return finishes[0]


@pytest.mark.parametrize(("deltas", "expected"), [
    ([{"role": "assistant", "refusal": "I can't help with "}, {"refusal": "that."}], Finish.CONTENT_FILTER),
    ([{"role": "assistant", "content": "Sure: "}, {"content": "done."}], Finish.STOP),
])
def test_a_streamed_refusal_finishes_as_the_non_stream_one(deltas: list[dict[str, object]], expected: Finish) -> None:
    """Refusal deltas without content end as CONTENT_FILTER (SAFETY / refusal for Gemini and
    Anthropic clients), as the same answer non-streamed does; the stream said STOP."""
    assert _stream_finish(deltas) is expected
    refusal = "".join(str(d.get("refusal", "")) for d in deltas) or None
    content = "".join(str(d.get("content", "")) for d in deltas) or None
    body = {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": refusal},
                         "finish_reason": "stop"}]}
    assert reply_from_openai(json.dumps(body).encode()).finish is expected



def test_a_tool_call_whose_first_delta_is_its_index_alone_is_one_call() -> None:
    """Some OpenAI-compatible servers send a call's index first and its id and name in the next
    delta (the openai SDK merges by index): translated clients got a nameless call_0 and then
    the real one."""
    from apex.translate.neutral.parts import ToolArgsDelta, ToolCallStarted

    deltas: list[dict[str, object]] = [
        {"role": "assistant"},
        {"tool_calls": [{"index": 0}]},
        {"tool_calls": [{"index": 0, "id": "call_A", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":"Paris"}'}}]},
    ]
    chunks = [{"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    raw = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    reader = OpenAIChatReader()
    parts = [p for ev in SseParser().feed(raw) for p in reader.feed(ev)]
    started = [p for p in parts if isinstance(p, ToolCallStarted)]
    assert [(p.call_id, p.name) for p in started] == [("call_A", "get_weather")]
    assert "".join(p.fragment for p in parts if isinstance(p, ToolArgsDelta)) == '{"city":"Paris"}'
