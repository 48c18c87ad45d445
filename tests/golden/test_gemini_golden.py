"""Golden tests: real Gemini captures translated for OpenAI Chat and Anthropic clients."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apex.sse import SseParser
from apex.translate.directions.anthropic_to_gemini import AnthropicToGemini
from apex.translate.base import TranslateContext
from apex.translate.read.gemini_errors import gemini_error
from apex.translate.directions.openai_embeddings_to_gemini import OpenAIEmbeddingsToGemini
from apex.translate.directions.openai_to_gemini import OpenAIChatToGemini
from apex.translate.write.embeddings import base64_to_floats
from apex.translate.neutral.signatures import SignatureStore
from tests.fixtures import REAL

FIXTURES = REAL


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _ctx(stream: bool = True, include_usage: bool = True) -> TranslateContext:
    return TranslateContext("my-alias", "gemini-2.5-flash", stream, "req-1",
                            include_usage=include_usage, estimated_input_tokens=42)


def _run(stream: Any, raw: bytes) -> list[bytes]:
    parser = SseParser()
    out: list[bytes] = []
    for ev in parser.feed(raw) + parser.flush():
        out += stream.feed(ev)
    out += stream.finish()
    return out


def _openai_payloads(events: list[bytes]) -> list[Any]:
    """Decode OpenAI client events; '[DONE]' stays a string."""
    out: list[Any] = []
    for ev in events:
        assert ev.startswith(b"data: ") and ev.endswith(b"\n\n")
        data = ev[6:-2]
        out.append("[DONE]" if data == b"[DONE]" else json.loads(data))
    return out


def _anthropic_events(events: list[bytes]) -> list[tuple[str, Any]]:
    out = []
    for ev in events:
        head, data = ev.rstrip(b"\n").split(b"\n", 1)
        name = head.removeprefix(b"event: ").decode()
        payload = json.loads(data.removeprefix(b"data: "))
        assert payload["type"] == name
        out.append((name, payload))
    return out


# ---- OpenAI Chat client -------------------------------------------------------------


def test_openai_nonstream_text_and_usage_with_thoughts() -> None:
    """generateContent becomes a chat.completion with text, stop and 8.6 usage (13/102/115)."""
    ctx = _ctx(stream=False)
    body = json.loads(OpenAIChatToGemini(SignatureStore()).response(_fixture("gemini_generate_content.json"), ctx))
    choice = body["choices"][0]
    assert body["object"] == "chat.completion" and body["model"] == "my-alias"
    assert choice["message"]["content"].endswith("4200 + 42 = **4242**.")
    assert choice["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == 13
    assert body["usage"]["completion_tokens"] == 77 + 25
    assert body["usage"]["total_tokens"] == 115
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 25
    assert ctx.usage is not None and ctx.usage.completion_tokens == 102


def test_openai_stream_text_crlf_last_usage_wins() -> None:
    """The CRLF text stream yields role, three text deltas, stop, the final usage and [DONE]."""
    ctx = _ctx()
    out = _openai_payloads(_run(OpenAIChatToGemini(SignatureStore()).stream(ctx), _fixture("gemini_stream.sse")))
    assert out[-1] == "[DONE]"
    assert out[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in out[:-2])
    assert text == "The capital of France is Paris.\n"
    assert out[-3]["choices"][0]["finish_reason"] == "stop"
    assert out[-2]["choices"] == [] and out[-2]["usage"]["prompt_tokens"] == 13
    assert out[-2]["usage"]["completion_tokens"] == 8
    assert all(c["model"] == "my-alias" for c in out[:-1])
    assert ctx.usage is not None and ctx.usage.prompt_tokens == 13


def test_openai_stream_without_include_usage_has_no_usage_chunk() -> None:
    """A client that did not ask for usage gets no chunk with empty choices (P8b)."""
    out = _openai_payloads(_run(OpenAIChatToGemini(SignatureStore()).stream(_ctx(include_usage=False)),
                                _fixture("gemini_stream.sse")))
    assert all(c == "[DONE]" or c["choices"] for c in out)


def test_openai_stream_parallel_function_calls() -> None:
    """Two functionCall parts become tool calls 0 and 1 with call_ ids, JSON args and finish tool_calls."""
    store = SignatureStore()
    out = _openai_payloads(_run(OpenAIChatToGemini(store).stream(_ctx()), _fixture("gemini_stream_function_call.sse")))
    calls = [tc for c in out if c != "[DONE]" and c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert [c["index"] for c in calls] == [0, 1]
    assert all(c["id"].startswith("call_") and c["type"] == "function" for c in calls)
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"password": "mellon"}, {"password": "radiance"}]
    assert calls[0]["id"] != calls[1]["id"]
    finishes = [c["choices"][0]["finish_reason"] for c in out if c != "[DONE]" and c["choices"]]
    assert finishes[-1] == "tool_calls" and finishes.count("tool_calls") == 1
    first, second = store.recall(calls[0]["id"]), store.recall(calls[1]["id"])
    assert first is not None and first.signature is not None and first.signature.startswith("CikB0e2Kbw5")
    assert second is not None and second.name == "secret_retrieval_tool" and second.signature is None
    assert out[-2]["usage"]["completion_tokens"] == 40 + 61


def test_openai_stream_function_call_with_finish_in_later_chunk() -> None:
    """Gemini 3's split finish (call first, STOP with an empty text part later) is tool_calls (P1)."""
    out = _openai_payloads(_run(OpenAIChatToGemini(SignatureStore()).stream(_ctx()),
                                _fixture("gemini_stream_function_call_split_finish.sse")))
    deltas = [c["choices"][0]["delta"] for c in out if c != "[DONE]" and c["choices"]]
    assert not any(d.get("content") for d in deltas)  # the {text:""} part is skipped
    calls = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert len(calls) == 1 and calls[0]["function"] == {"name": "get_country", "arguments": "{}"}
    assert out[-3]["choices"][0]["finish_reason"] == "tool_calls"
    assert out[-1] == "[DONE]"


def test_openai_stream_upstream_error_chunk_has_no_done() -> None:
    """An error chunk inside a 200 stream becomes an OpenAI error event and no [DONE]."""
    raw = _fixture("gemini_stream.sse").split(b"\r\n\r\n")[0] + b"\r\n\r\n" + b"data: " + json.dumps(
        {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}).encode() + b"\r\n\r\n"
    stream = OpenAIChatToGemini(SignatureStore()).stream(_ctx())
    out = _openai_payloads(_run(stream, raw))
    assert out[-1] == {"error": {"message": "The model is overloaded.", "type": "api_error", "param": None,
                                "code": "UNAVAILABLE"}}
    assert "[DONE]" not in out and stream.done


def test_openai_stream_cut_before_finish_is_an_error() -> None:
    """A body that ends before any finishReason is reported as an error, not a clean stop."""
    raw = _fixture("gemini_stream.sse").split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    out = _openai_payloads(_run(OpenAIChatToGemini(SignatureStore()).stream(_ctx()), raw))
    assert "error" in out[-1] and "[DONE]" not in out


def test_openai_stream_fail_emits_error_event() -> None:
    """fail() produces one timeout error event and later input is ignored."""
    stream = OpenAIChatToGemini(SignatureStore()).stream(_ctx())
    out = _openai_payloads(stream.fail("idle timeout", "timeout"))
    assert out == [{"error": {"message": "idle timeout", "type": "timeout_error", "param": None, "code": None}}]
    assert stream.done and stream.finish() == []


# ---- Anthropic client ---------------------------------------------------------------


def test_anthropic_nonstream_text_and_usage() -> None:
    """generateContent becomes a Messages body with one text block, end_turn and usage."""
    ctx = _ctx(stream=False)
    body = json.loads(AnthropicToGemini(SignatureStore()).response(_fixture("gemini_generate_content.json"), ctx))
    assert body["type"] == "message" and body["model"] == "my-alias" and body["id"].startswith("msg_")
    assert [b["type"] for b in body["content"]] == ["text"]
    assert body["stop_reason"] == "end_turn"
    assert body["usage"]["input_tokens"] == 13 and body["usage"]["output_tokens"] == 102


def test_anthropic_stream_text_event_order() -> None:
    """Text stream: message_start (estimate), one text block, message_delta with usage, message_stop."""
    events = _anthropic_events(_run(AnthropicToGemini(SignatureStore()).stream(_ctx()), _fixture("gemini_stream.sse")))
    names = [n for n, _ in events]
    assert names == ["message_start", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert events[0][1]["message"]["usage"]["input_tokens"] == 42
    assert "".join(p["delta"]["text"] for n, p in events if n == "content_block_delta") == "The capital of France is Paris.\n"
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["input_tokens"] == 13 and delta["usage"]["output_tokens"] == 8


def test_anthropic_stream_parallel_tool_use_blocks() -> None:
    """Each function call is a whole tool_use block with its JSON args as one input_json_delta (P2)."""
    events = _anthropic_events(_run(AnthropicToGemini(SignatureStore()).stream(_ctx()),
                                    _fixture("gemini_stream_function_call.sse")))
    starts = [p for n, p in events if n == "content_block_start"]
    assert [s["index"] for s in starts] == [0, 1]
    assert all(s["content_block"]["type"] == "tool_use" and s["content_block"]["id"].startswith("toolu_") for s in starts)
    args = [json.loads(p["delta"]["partial_json"]) for n, p in events if n == "content_block_delta"]
    assert args == [{"password": "mellon"}, {"password": "radiance"}]
    assert [p["index"] for n, p in events if n == "content_block_stop"] == [0, 1]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert events[-1][0] == "message_stop"


def test_anthropic_stream_split_finish_is_tool_use() -> None:
    """Gemini 3's late STOP after a function call maps to tool_use, with no empty text block."""
    events = _anthropic_events(_run(AnthropicToGemini(SignatureStore()).stream(_ctx()),
                                    _fixture("gemini_stream_function_call_split_finish.sse")))
    types = [p["content_block"]["type"] for n, p in events if n == "content_block_start"]
    assert types == ["tool_use"]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert events[-2][1]["usage"]["output_tokens"] == 10 + 202


def test_anthropic_stream_error_chunk_closes_block_without_message_stop() -> None:
    """An error chunk mid-text closes the open block and ends with event: error, no message_stop."""
    raw = _fixture("gemini_stream.sse").split(b"\r\n\r\n")[0] + b"\r\n\r\ndata: " + json.dumps(
        {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}).encode() + b"\r\n\r\n"
    events = _anthropic_events(_run(AnthropicToGemini(SignatureStore()).stream(_ctx()), raw))
    names = [n for n, _ in events]
    assert names[-2:] == ["content_block_stop", "error"] and "message_stop" not in names
    assert events[-1][1]["error"] == {"type": "rate_limit_error", "message": "Quota exceeded"}


def test_anthropic_thoughts_become_thinking_blocks() -> None:
    """thought:true parts become a thinking block before the text block, in stream and non-stream."""
    chunk = {"candidates": [{"content": {"role": "model", "parts": [
        {"text": "let me think", "thought": True}, {"text": "Answer"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1, "thoughtsTokenCount": 5}}
    raw = b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n"
    events = _anthropic_events(_run(AnthropicToGemini(SignatureStore()).stream(_ctx()), raw))
    assert [p["content_block"]["type"] for n, p in events if n == "content_block_start"] == ["thinking", "text"]
    body = json.loads(AnthropicToGemini(SignatureStore()).response(json.dumps(chunk).encode(), _ctx(False)))
    assert body["content"][0] == {"type": "thinking", "thinking": "let me think", "signature": ""}
    oa = json.loads(OpenAIChatToGemini(SignatureStore()).response(json.dumps(chunk).encode(), _ctx(False)))
    assert oa["choices"][0]["message"]["reasoning_content"] == "let me think"
    assert oa["choices"][0]["message"]["content"] == "Answer"


# ---- embeddings and errors ----------------------------------------------------------


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_batch_embed_contents_to_openai_list(encoding: str) -> None:
    """batchEmbedContents becomes an OpenAI list in the requested encoding with estimated usage."""
    values = json.loads(_fixture("gemini_batch_embed_contents.json"))["embeddings"][0]["values"]
    t, ctx = OpenAIEmbeddingsToGemini(), TranslateContext("my-alias", "gemini-embedding-001", False, "req-1")
    req = json.loads(t.request(json.dumps({"model": "my-alias", "input": "Some text goes here",
                                           "dimensions": 768, "encoding_format": encoding}).encode(), ctx))
    assert req == {"requests": [{"model": "models/gemini-embedding-001", "content": {"parts": [
        {"text": "Some text goes here"}]}, "outputDimensionality": 768}]}
    body = json.loads(t.response(_fixture("gemini_batch_embed_contents.json"), ctx))
    item = body["data"][0]
    assert body["object"] == "list" and body["model"] == "my-alias" and item["index"] == 0
    vector = item["embedding"] if encoding == "float" else base64_to_floats(item["embedding"])
    assert len(vector) == len(values) == 768
    assert vector == pytest.approx(values, rel=1e-6, abs=1e-9)
    assert body["usage"]["prompt_tokens"] > 0 and ctx.usage is not None and ctx.usage.estimated


def test_gemini_404_error_body() -> None:
    """The real 404 body classifies as not_found with Gemini's message."""
    err = gemini_error(404, _fixture("gemini_error_404_not_found.json"))
    assert err.status == 404 and err.kind == "not_found" and err.rpc_status == "NOT_FOUND"
    assert err.message.startswith("models/this-model-does-not-exist-12345 is not found")
