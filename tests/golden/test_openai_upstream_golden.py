"""Golden: real OpenAI-compatible Chat captures translated for Anthropic and Responses clients."""

from __future__ import annotations

import json
from typing import Any

import pytest
from anthropic.types import Message
from openai.types.responses import Response

from apex.translate.directions.anthropic_to_openai import AnthropicToOpenAI
from apex.translate.directions.responses_to_openai import ResponsesToOpenAI
from tests.golden.transcript import (
    CLIENT_MODEL,
    accumulate_anthropic,
    capture,
    check_block_discipline,
    client_events,
    make_ctx,
    responses_events,
    run_stream,
    upstream_events,
)

ANTHROPIC = AnthropicToOpenAI()
RESPONSES = ResponsesToOpenAI()


def oracle(name: str) -> dict[str, Any]:
    """Text, reasoning, tool calls, finish and usage read straight from a Chat capture."""
    text, reasoning, finish, usage = "", "", None, None
    tools: dict[int, dict[str, Any]] = {}
    for _, data in upstream_events(name):
        if data == "[DONE]" or "error" in data:
            continue
        usage = data.get("usage") or usage
        for choice in data["choices"]:
            delta = choice["delta"]
            text += delta.get("content") or ""
            reasoning += delta.get("reasoning_content") or delta.get("reasoning") or ""
            for call in delta.get("tool_calls") or []:
                entry = tools.setdefault(call["index"], {"id": call.get("id"), "name": None, "args": ""})
                entry["name"] = entry["name"] or call["function"].get("name")
                entry["args"] += call["function"].get("arguments") or ""
            finish = finish or choice["finish_reason"]
    return {"text": text, "reasoning": reasoning, "tools": list(tools.values()), "finish": finish, "usage": usage}


@pytest.mark.parametrize("name", ["openai_chat_stream_text.sse", "openai_chat_stream_tool_calls.sse",
                                  "deepseek_chat_stream_reasoning.sse"])
def test_anthropic_stream_matches_capture(name: str) -> None:
    """Each capture becomes an Anthropic stream the SDK accumulates into the same content."""
    expected = oracle(name)
    out = run_stream(ANTHROPIC, capture(name))
    check_block_discipline(out)
    message = accumulate_anthropic(out)
    assert message.model == CLIENT_MODEL
    texts = "".join(b.text for b in message.content if b.type == "text")
    thinking = "".join(b.thinking for b in message.content if b.type == "thinking")
    tools = [b for b in message.content if b.type == "tool_use"]
    assert texts == expected["text"]
    assert thinking == expected["reasoning"]
    assert [(t.id, t.name, t.input) for t in tools] == [
        (e["id"], e["name"], json.loads(e["args"])) for e in expected["tools"]]
    assert message.stop_reason == ("tool_use" if expected["tools"] else "end_turn")
    usage = expected["usage"]
    assert message.usage.output_tokens == usage["completion_tokens"]
    assert message.usage.input_tokens == usage["prompt_tokens"] - usage["prompt_tokens_details"]["cached_tokens"]
    events = client_events(out)
    assert events[0][1]["message"]["usage"]["input_tokens"] == 99  # the estimate, not 0
    assert events[-1][0] == "message_stop"


def test_anthropic_stream_thinking_comes_first() -> None:
    """DeepSeek reasoning_content opens a thinking block at index 0, the answer a text block at 1."""
    events = client_events(run_stream(ANTHROPIC, capture("deepseek_chat_stream_reasoning.sse")))
    starts = [d["content_block"] for n, d in events if n == "content_block_start"]
    assert [b["type"] for b in starts] == ["thinking", "text"]
    assert starts[0]["signature"] == ""
    assert not any(d["delta"]["type"] == "signature_delta" for n, d in events if n == "content_block_delta")


def test_anthropic_stream_openrouter_error_chunk() -> None:
    """OpenRouter's in-band error chunk becomes `event: error`; repeated finish chunks add nothing."""
    out = run_stream(ANTHROPIC, capture("openrouter_chat_stream_error_chunk.sse"))
    check_block_discipline(out)
    events = client_events(out)
    names = [n for n, _ in events]
    assert names[-1] == "error" and "message_stop" not in names and "message_delta" not in names
    assert events[-1][1] == {"type": "error", "error": {"type": "invalid_request_error", "message": "Token limit reached"}}
    thinking = "".join(d["delta"].get("thinking", "") for n, d in events if n == "content_block_delta")
    assert thinking == "We need to respond to a greeting. The user"
    assert names.count("content_block_stop") == names.count("content_block_start") == 1


def test_anthropic_stream_groq_midstream_error() -> None:
    """Groq's `event: error` after 200 closes the open block and ends with an Anthropic error event."""
    out = run_stream(ANTHROPIC, capture("groq_chat_stream_midstream_error.sse"))
    check_block_discipline(out)
    events = client_events(out)
    assert [n for n, _ in events][-2:] == ["content_block_stop", "error"]
    error = events[-1][1]["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("Tool call validation failed")
    thinking = "".join(d["delta"].get("thinking", "") for n, d in events if n == "content_block_delta")
    assert thinking == oracle("groq_chat_stream_midstream_error.sse")["reasoning"]


def test_anthropic_stream_cut_is_an_error() -> None:
    """An upstream cut before any finish_reason ends with an error event, not message_stop."""
    body = capture("openai_chat_stream_tool_calls.sse")
    cut = body[: body.index(b'"finish_reason":"tool_calls"')]
    cut = cut[: cut.rindex(b"\n\n") + 2]
    events = client_events(run_stream(ANTHROPIC, cut))
    assert events[-1][0] == "error" and events[-1][1]["error"]["type"] == "api_error"


def test_anthropic_fail_overloaded() -> None:
    """fail() with kind overloaded gives Anthropic's overloaded_error."""
    stream = ANTHROPIC.stream(make_ctx())
    events = client_events(b"".join(stream.fail("busy", "overloaded")))
    assert events == [("error", {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})]


@pytest.mark.parametrize("name", ["openai_chat_nonstream.json", "openai_chat_nonstream_tool_calls.json"])
def test_anthropic_nonstream_matches_capture(name: str) -> None:
    """A chat.completion becomes a Messages body the Anthropic SDK accepts, field by field."""
    source = json.loads(capture(name))
    ctx = make_ctx(stream=False)
    message = Message.model_validate(json.loads(ANTHROPIC.response(capture(name), ctx)))
    src = source["choices"][0]["message"]
    assert "".join(b.text for b in message.content if b.type == "text") == (src["content"] or "")
    tools = [b for b in message.content if b.type == "tool_use"]
    assert [(t.id, t.name, t.input) for t in tools] == [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in src.get("tool_calls") or []]
    assert message.stop_reason == ("tool_use" if tools else "end_turn")
    assert message.usage.input_tokens == source["usage"]["prompt_tokens"]
    assert message.usage.output_tokens == source["usage"]["completion_tokens"]
    assert message.model == CLIENT_MODEL and message.id.startswith("msg_")
    assert ctx.usage is not None and ctx.usage.prompt_tokens == source["usage"]["prompt_tokens"]


@pytest.mark.parametrize("name", ["openai_chat_stream_text.sse", "openai_chat_stream_tool_calls.sse",
                                  "deepseek_chat_stream_reasoning.sse"])
def test_responses_stream_matches_capture(name: str) -> None:
    """Each Chat capture becomes a valid Responses event sequence with the same content."""
    expected = oracle(name)
    events = responses_events(run_stream(RESPONSES, capture(name)))
    response = Response.model_validate(events[-1]["response"])
    assert events[-1]["type"] == "response.completed"
    assert response.output_text == expected["text"]
    calls = [o for o in response.output if o.type == "function_call"]
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [
        (e["id"], e["name"], json.loads(e["args"])) for e in expected["tools"]]
    assert response.usage is not None and response.usage.input_tokens == expected["usage"]["prompt_tokens"]
    assert response.usage.output_tokens == expected["usage"]["completion_tokens"]


def test_responses_stream_groq_error_is_failed() -> None:
    """A Groq mid-stream error ends a Responses stream with response.failed."""
    events = responses_events(run_stream(RESPONSES, capture("groq_chat_stream_midstream_error.sse")))
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "invalid_prompt"


def test_responses_stream_length_is_incomplete() -> None:
    """A finish_reason of length ends with response.incomplete and reason max_output_tokens."""
    body = capture("openai_chat_stream_text.sse").replace(b'"finish_reason":"stop"', b'"finish_reason":"length"')
    events = responses_events(run_stream(RESPONSES, body))
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


@pytest.mark.parametrize("name", ["openai_chat_nonstream.json", "openai_chat_nonstream_tool_calls.json"])
def test_responses_nonstream_matches_capture(name: str) -> None:
    """A chat.completion becomes a Responses object the OpenAI SDK accepts."""
    source = json.loads(capture(name))
    response = Response.model_validate(json.loads(RESPONSES.response(capture(name), make_ctx(stream=False))))
    src = source["choices"][0]["message"]
    assert response.output_text == (src["content"] or "")
    calls = [o for o in response.output if o.type == "function_call"]
    assert [(c.call_id, c.arguments) for c in calls] == [
        (c["id"], c["function"]["arguments"]) for c in src.get("tool_calls") or []]
    assert response.usage is not None and response.usage.total_tokens == source["usage"]["total_tokens"]


def test_anthropic_stream_failing_mid_tool_call_leaves_the_tool_block_open() -> None:
    """The upstream fails while a tool call's arguments are still arriving: the tool_use block
    is not closed before the error event, as Anthropic itself leaves it (closed, Claude Code
    ran the call with half its input)."""
    def chunk(delta: dict[str, Any]) -> bytes:
        body = {"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [{"index": 0, "delta": delta}]}
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "Bash", "arguments": ""}}
    stream = (chunk({"role": "assistant", "content": "Running it."}) + chunk({"tool_calls": [call]})
              + chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"command\": \"mkdir -p sub && ec"}}]})
              + b'event: error\ndata: {"error": {"message": "upstream overloaded", "type": "server_error"}}\n\n')
    events = client_events(run_stream(ANTHROPIC, stream))
    names = [n for n, _ in events]
    tool_index = next(d["index"] for n, d in events if n == "content_block_start" and d["content_block"]["type"] == "tool_use")
    assert not any(n == "content_block_stop" and d["index"] == tool_index for n, d in events)
    assert names[-1] == "error" and "message_stop" not in names
    text_index = next(d["index"] for n, d in events if n == "content_block_start" and d["content_block"]["type"] == "text")
    assert any(n == "content_block_stop" and d["index"] == text_index for n, d in events)  # the text before it is whole
