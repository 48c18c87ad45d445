"""Tool-call edge cases in OpenAI -> Anthropic streams: interleaving, reused indices, P4, P20."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from apex.translate.directions.anthropic_to_openai import AnthropicToOpenAI
from apex.translate.directions.openai_to_anthropic import OpenAIToAnthropic
from apex.translate.neutral.toolids import anthropic_tool_id
from tests.golden.transcript import accumulate_anthropic, check_block_discipline, client_events, make_ctx, run_stream


def sse(chunks: list[dict[str, Any]], done: bool = True) -> bytes:
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")


def delta(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c1", "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}


def call(index: int | None, cid: str | None = None, name: str | None = None, args: str | None = None) -> dict[str, Any]:
    fn: dict[str, Any] = {}
    if name is not None:
        fn["name"] = name
    if args is not None:
        fn["arguments"] = args
    out: dict[str, Any] = {"function": fn}
    if index is not None:
        out["index"] = index
    if cid is not None:
        out["id"], out["type"] = cid, "function"
    return out


def tools_of(out: bytes) -> list[tuple[str, str, Any]]:
    check_block_discipline(out)
    return [(b.id, b.name, b.input) for b in accumulate_anthropic(out).content if b.type == "tool_use"]


def test_interleaved_calls_are_reassembled() -> None:
    """Fragments of two calls that alternate still produce two whole, valid tool_use blocks."""
    body = sse([delta({"role": "assistant"}),
                delta({"tool_calls": [call(0, "a", "f", "")]}),
                delta({"tool_calls": [call(1, "b", "g", "")]}),
                delta({"tool_calls": [call(0, args='{"x"')]}),
                delta({"tool_calls": [call(1, args='{"y": 2}')]}),
                delta({"tool_calls": [call(0, args=": 1}")]}),
                delta({}, "tool_calls")])
    assert tools_of(run_stream(AnthropicToOpenAI(), body)) == [("a", "f", {"x": 1}), ("b", "g", {"y": 2})]


def test_reused_index_with_new_id_is_a_new_call() -> None:
    """Ollama-style index 0 for every call still yields separate calls (P3)."""
    body = sse([delta({"tool_calls": [call(0, "a", "f", '{"q": 1}')]}),
                delta({"tool_calls": [call(0, "b", "f", '{"q": 2}')]}),
                delta({}, "stop")])
    out = run_stream(AnthropicToOpenAI(), body)
    assert tools_of(out) == [("a", "f", {"q": 1}), ("b", "f", {"q": 2})]
    assert accumulate_anthropic(out).stop_reason == "tool_use"


def test_empty_arguments_become_empty_object() -> None:
    """A call with no argument text gets input {} (P4) and an invalid id is sanitized (P11)."""
    out = run_stream(AnthropicToOpenAI(), sse([delta({"tool_calls": [call(None, "functions.Bash:0", "Bash", "")]}),
                                               delta({}, "tool_calls")]))
    assert tools_of(out) == [(anthropic_tool_id("functions.Bash:0"), "Bash", {})]


def test_repeated_finish_chunks_do_not_repeat_calls() -> None:
    """A second finish chunk neither re-emits tool calls nor adds a second message_delta (P20)."""
    out = run_stream(AnthropicToOpenAI(), sse([delta({"tool_calls": [call(0, "a", "f", "{}")]}),
                                               delta({}, "tool_calls"),
                                               delta({"tool_calls": [call(0, "a", "f", "{}")]}, "tool_calls")]))
    names = [n for n, _ in client_events(out)]
    assert names.count("content_block_start") == 1 and names.count("message_delta") == 1


def test_anthropic_empty_tool_input_gives_braces_to_openai() -> None:
    """An Anthropic tool with only an empty partial_json reaches OpenAI clients as arguments "{}"."""
    body = (b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":3,"output_tokens":1}}}\n\n'
            b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"now","input":{}}}\n\n'
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}\n\n'
            b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
            b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":5}}\n\n'
            b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    chunks = [d for _, d in client_events(run_stream(OpenAIToAnthropic(), body)) if d != "[DONE]"]
    args = "".join(tc["function"].get("arguments", "") for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls", []))
    assert args == "{}"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.dictionaries(st.text("abc", min_size=1, max_size=3), st.integers(), max_size=3),
                          st.integers(min_value=1, max_value=4)), min_size=1, max_size=4))
def test_any_fragmentation_of_sequential_calls_reassembles(calls: list[tuple[dict[str, int], int]]) -> None:
    """However each call's JSON is fragmented, the Anthropic client gets every call's input back."""
    chunks: list[dict[str, Any]] = [delta({"role": "assistant", "content": None})]
    for i, (args, pieces) in enumerate(calls):
        text = json.dumps(args)
        step = max(1, len(text) // pieces)
        chunks.append(delta({"tool_calls": [call(i, f"call_{i}", "f", "")]}))
        chunks += [delta({"tool_calls": [call(i, args=text[k:k + step])]}) for k in range(0, len(text), step)]
    chunks.append(delta({}, "tool_calls"))
    out = run_stream(AnthropicToOpenAI(), sse(chunks), make_ctx())
    assert tools_of(out) == [(f"call_{i}", "f", args) for i, (args, _) in enumerate(calls)]
