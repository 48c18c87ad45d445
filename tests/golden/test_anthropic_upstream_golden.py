"""Golden: real Anthropic Messages captures translated for OpenAI Chat and Responses clients."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from apex.translate.directions.openai_to_anthropic import OpenAIToAnthropic
from apex.translate.directions.responses_to_anthropic import ResponsesToAnthropic
from tests.golden.transcript import (
    CLIENT_MODEL,
    accumulate_openai,
    capture,
    feed_bytes,
    make_ctx,
    openai_data,
    responses_events,
    run_stream,
    upstream_events,
)

CHAT = OpenAIToAnthropic()
RESPONSES = ResponsesToAnthropic()


def oracle(name: str) -> dict[str, Any]:
    """Text, thinking, tool calls and final usage read straight from an Anthropic capture."""
    text, thinking, tools, usage = "", "", [], {}
    for _, data in upstream_events(name):
        if data["type"] == "content_block_start" and data["content_block"]["type"] == "tool_use":
            tools.append({"id": data["content_block"]["id"], "name": data["content_block"]["name"], "args": ""})
        elif data["type"] == "content_block_delta":
            d = data["delta"]
            text += d.get("text", "") if d["type"] == "text_delta" else ""
            thinking += d.get("thinking", "") if d["type"] == "thinking_delta" else ""
            if d["type"] == "input_json_delta":
                tools[-1]["args"] += d["partial_json"]
        elif data["type"] == "message_delta":
            usage = data["usage"]
    return {"text": text, "thinking": thinking, "tools": tools, "usage": usage}


STREAMS = ["anthropic_messages_stream_text.sse", "anthropic_messages_stream_tool_use.sse",
           "anthropic_messages_stream_thinking.sse"]


@pytest.mark.parametrize("name", STREAMS)
def test_chat_stream_matches_capture(name: str) -> None:
    """Text, reasoning, tool calls, finish and usage of each capture reach an OpenAI client intact."""
    expected = oracle(name)
    out = run_stream(CHAT, capture(name), make_ctx(include_usage=True))
    completion = accumulate_openai(out)
    message = completion.choices[0].message
    assert (message.content or "") == expected["text"]
    assert getattr(message, "reasoning_content", None) in (None, "") or expected["thinking"]
    calls = [c for c in message.tool_calls or [] if c.type == "function"]
    assert len(calls) == len(message.tool_calls or [])  # no custom tool calls
    assert [(c.id, c.function.name) for c in calls] == [(t["id"], t["name"]) for t in expected["tools"]]
    assert [json.loads(c.function.arguments) for c in calls] == [json.loads(t["args"]) for t in expected["tools"]]
    assert completion.choices[0].finish_reason == ("tool_calls" if expected["tools"] else "stop")
    assert completion.model == CLIENT_MODEL
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == expected["usage"]["input_tokens"]
    assert completion.usage.completion_tokens == expected["usage"]["output_tokens"]
    assert openai_data(out)[-1] == "[DONE]"


def test_chat_stream_reasoning_content_deltas() -> None:
    """Thinking deltas arrive as delta.reasoning_content, in order, before the answer text."""
    out = run_stream(CHAT, capture("anthropic_messages_stream_thinking.sse"))
    chunks = [d for d in openai_data(out) if d != "[DONE]" and d["choices"]]
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks)
    assert reasoning == oracle("anthropic_messages_stream_thinking.sse")["thinking"]
    first_text = next(i for i, c in enumerate(chunks) if c["choices"][0]["delta"].get("content"))
    last_reasoning = max(i for i, c in enumerate(chunks) if c["choices"][0]["delta"].get("reasoning_content"))
    assert last_reasoning < first_text


def test_chat_stream_usage_chunk_only_when_asked() -> None:
    """Without include_usage no choices:[] chunk is sent; with it exactly one, right before [DONE]."""
    without = openai_data(run_stream(CHAT, capture("anthropic_messages_stream_text.sse")))
    assert all(d == "[DONE]" or d["choices"] for d in without)
    with_usage = openai_data(run_stream(CHAT, capture("anthropic_messages_stream_text.sse"),
                                        make_ctx(include_usage=True)))
    usage_chunks = [d for d in with_usage if d != "[DONE]" and not d["choices"]]
    assert len(usage_chunks) == 1 and with_usage[-2] is usage_chunks[0]
    assert usage_chunks[0]["usage"]["total_tokens"] == 32


def test_chat_stream_sets_ctx_usage() -> None:
    """The stream translator records usage in ctx as soon as it is known."""
    ctx = make_ctx()
    run_stream(CHAT, capture("anthropic_messages_stream_tool_use.sse"), ctx)
    assert ctx.usage is not None and (ctx.usage.prompt_tokens, ctx.usage.completion_tokens) == (416, 109)


def test_chat_stream_finish_chunk_once() -> None:
    """Exactly one chunk carries a finish_reason."""
    data = openai_data(run_stream(CHAT, capture("anthropic_messages_stream_tool_use.sse")))
    finishes = [d for d in data if d != "[DONE]" and d["choices"] and d["choices"][0]["finish_reason"]]
    assert [f["choices"][0]["finish_reason"] for f in finishes] == ["tool_calls"]


def test_chat_stream_cut_before_message_stop_is_an_error() -> None:
    """An upstream that ends without message_stop yields an error chunk and no [DONE]."""
    body = capture("anthropic_messages_stream_text.sse")
    cut = body[: body.index(b"event: message_delta")]
    data = openai_data(run_stream(CHAT, cut))
    assert data[-1]["error"]["type"] == "api_error"
    assert "[DONE]" not in data


def test_chat_stream_upstream_error_event() -> None:
    """An Anthropic `event: error` after 200 becomes an OpenAI error chunk and the stream ends."""
    body = capture("anthropic_messages_stream_text.sse")
    cut = body[: body.index(b"event: content_block_stop")]
    err = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    stream = CHAT.stream(make_ctx())
    out = feed_bytes(stream, [cut + err + b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"])
    data = openai_data(out)
    assert data[-1] == {"error": {"message": "Overloaded", "type": "api_error", "param": None, "code": "overloaded_error"}}
    assert "[DONE]" not in data and stream.done


def test_chat_fail_emits_timeout_error() -> None:
    """fail() mid-stream gives an OpenAI error chunk with the mapped type."""
    stream = CHAT.stream(make_ctx())
    out = stream.fail("upstream idle timeout", "timeout")
    assert openai_data(b"".join(out)) == [{"error": {"message": "upstream idle timeout", "type": "timeout_error",
                                           "param": None, "code": None}}]
    assert stream.done and stream.finish() == []


@pytest.mark.parametrize("name", ["anthropic_messages_nonstream.json", "anthropic_messages_nonstream_tool_use.json"])
def test_chat_nonstream_matches_capture(name: str) -> None:
    """A Messages body becomes a chat.completion the OpenAI SDK accepts, field by field."""
    source = json.loads(capture(name))
    ctx = make_ctx(stream=False)
    completion = ChatCompletion.model_validate(json.loads(CHAT.response(capture(name), ctx)))
    message = completion.choices[0].message
    texts = "".join(b["text"] for b in source["content"] if b["type"] == "text")
    tools = [b for b in source["content"] if b["type"] == "tool_use"]
    assert message.content == texts
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or [] if c.type == "function"] == [
        (t["id"], t["name"], t["input"]) for t in tools]
    assert completion.choices[0].finish_reason == ("tool_calls" if tools else "stop")
    assert completion.model == CLIENT_MODEL
    assert completion.usage is not None and completion.usage.prompt_tokens == source["usage"]["input_tokens"]
    assert ctx.usage is not None and ctx.usage.completion_tokens == source["usage"]["output_tokens"]


@pytest.mark.parametrize("name", STREAMS)
def test_responses_stream_matches_capture(name: str) -> None:
    """Each capture becomes a valid Responses event sequence ending in response.completed."""
    expected = oracle(name)
    events = responses_events(run_stream(RESPONSES, capture(name)))
    assert events[0]["type"] == "response.created" and events[1]["type"] == "response.in_progress"
    final = events[-1]
    assert final["type"] == "response.completed"
    response = Response.model_validate(final["response"])
    assert response.output_text == expected["text"]
    text_deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text_deltas == expected["text"]
    calls = [o for o in response.output if o.type == "function_call"]
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [
        (t["id"], t["name"], json.loads(t["args"])) for t in expected["tools"]]
    assert all((c.id or "").startswith("fc_") for c in calls)
    assert response.id.startswith("resp_") and response.model == CLIENT_MODEL
    assert response.usage is not None and response.usage.output_tokens == expected["usage"]["output_tokens"]
    reasoning = "".join(e["delta"] for e in events if e["type"] == "response.reasoning_summary_text.delta")
    assert reasoning == expected["thinking"]
    assert not any(e == "[DONE]" for e in events)


def test_responses_stream_error_is_response_failed() -> None:
    """An upstream error event ends a Responses stream with response.failed."""
    body = capture("anthropic_messages_stream_text.sse")
    cut = body[: body.index(b"event: content_block_stop")]
    err = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    events = responses_events(run_stream(RESPONSES, cut + err))
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"] == {"code": "server_error", "message": "Overloaded"}
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [i["status"] for i in done] == ["incomplete"]  # the text was cut: not "completed"
    assert events[-1]["response"]["output"] == done


@pytest.mark.parametrize("name", ["anthropic_messages_nonstream.json", "anthropic_messages_nonstream_tool_use.json"])
def test_responses_nonstream_matches_capture(name: str) -> None:
    """A Messages body becomes a Responses object the OpenAI SDK accepts."""
    source = json.loads(capture(name))
    response = Response.model_validate(json.loads(RESPONSES.response(capture(name), make_ctx(stream=False))))
    assert response.output_text == "".join(b["text"] for b in source["content"] if b["type"] == "text")
    calls = [o for o in response.output if o.type == "function_call"]
    assert [(c.call_id, json.loads(c.arguments)) for c in calls] == [
        (b["id"], b["input"]) for b in source["content"] if b["type"] == "tool_use"]
    assert response.status == "completed"
    assert response.usage is not None and response.usage.input_tokens == source["usage"]["input_tokens"]


def test_responses_stream_cut_inside_a_tool_call_never_completes_the_call() -> None:
    """The upstream fails while a tool call's arguments are still arriving: the client never
    gets that call as done (Codex ran it, with half its arguments), and the failed response
    does not list it; it lists the text the client got whole before it."""
    body = capture("anthropic_messages_stream_tool_use.sse")
    lines = body.split(b"\n\n")
    first_args = next(i for i, ev in enumerate(lines) if b'"input_json_delta"' in ev and b'"partial_json":""' not in ev)
    cut = b"\n\n".join(lines[: first_args + 1]) + b"\n\n"
    err = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    events = responses_events(run_stream(RESPONSES, cut + err))
    failed = events[-1]
    assert failed["type"] == "response.failed"
    assert not any(e["type"] == "response.function_call_arguments.done" for e in events)
    assert not any(e["type"] == "response.output_item.done" and e["item"]["type"] == "function_call" for e in events)
    assert failed["response"]["output"] == [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [o["type"] for o in failed["response"]["output"]] == ["message"]
    Response.model_validate(failed["response"])


def test_responses_stream_gives_each_signed_thinking_block_its_item() -> None:
    """An "omitted" thinking block (no text, a signature only: Claude Opus 4.7's default) gave no
    reasoning item, so its signature was lost; a block after it was joined with the one before.
    Each block is an item with its own signature; one with no text has no summary part, as
    OpenAI's own reasoning items with no summary."""
    def ev(data: dict[str, Any]) -> bytes:
        return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()
    start: dict[str, Any] = {"type": "content_block_start", "content_block": {"type": "thinking", "thinking": "", "signature": ""}}
    events_in: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
                                              "content": [], "usage": {"input_tokens": 5, "output_tokens": 1}}},
        {**start, "index": 0},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "SIG_A"}},
        {"type": "content_block_stop", "index": 0},
        {**start, "index": 1},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "thinking_delta", "thinking": "Hmm."}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "signature_delta", "signature": "SIG_B"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 2},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"}]
    events = responses_events(run_stream(RESPONSES, b"".join(ev(e) for e in events_in)))
    response = Response.model_validate(events[-1]["response"])
    assert [(o.type, getattr(o, "encrypted_content", None)) for o in response.output] == [
        ("reasoning", "apex-thinking-signature:SIG_A"), ("reasoning", "apex-thinking-signature:SIG_B"), ("message", None)]
    first, second = (o for o in response.output if o.type == "reasoning")
    assert first.summary == [] and [s.text for s in second.summary] == ["Hmm."]
    summary_events = {(e["type"], e["item_id"]) for e in events if e["type"].startswith("response.reasoning_summary")}
    assert {item_id for _, item_id in summary_events} == {second.id}
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert done == events[-1]["response"]["output"]
