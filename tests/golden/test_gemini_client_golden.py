"""Golden tests for Gemini clients: real captures translated INTO Gemini's format.

Two oracles. (1) The real Gemini captures, in reverse: a capture goes Gemini -> OpenAI (or
Anthropic) client with the existing directions, then that answer goes back to a Gemini
client with the new ones; text, thoughts, function calls, finish and usage must come out
as in the capture. (2) Every OpenAI and Anthropic capture translated for a Gemini client
must parse with the google-genai SDK's own types and carry the capture's content.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from google.genai import types

from apex.sse import SseParser
from apex.translate.directions.anthropic_to_gemini import AnthropicToGemini
from apex.translate.base import TranslateContext
from apex.translate.capabilities import ModelCaps
from apex.translate.request.gemini_conversation import decode_thought_signature
from apex.translate.directions.gemini_to_anthropic import GeminiToAnthropic
from apex.translate.directions.gemini_to_openai import GeminiToOpenAI
from apex.translate.directions.openai_to_gemini import OpenAIChatToGemini
from apex.translate.neutral.signatures import SignatureStore
from tests.golden.transcript import capture, make_ctx, run_stream

GEMINI_STREAMS = ["gemini_stream.sse", "gemini_stream_function_call.sse", "gemini_stream_function_call_split_finish.sse"]


def gemini_chunks(out: bytes) -> list[types.GenerateContentResponse]:
    """Gemini client SSE bytes -> chunks validated by the SDK's own type."""
    parser = SseParser()
    events = parser.feed(out) + parser.flush()
    assert events and all(e.event is None for e in events)
    return [types.GenerateContentResponse.model_validate(json.loads(e.data)) for e in events]


def content_of(chunks: list[types.GenerateContentResponse]) -> dict[str, Any]:
    """What a Gemini client makes of a stream (or one body): text, thoughts, calls, finish, usage."""
    text, thoughts, calls, finish = "", "", [], None
    for c in chunks:
        cand = c.candidates[0] if c.candidates else None
        if cand is None:
            continue
        for p in (cand.content.parts or []) if cand.content else []:
            if p.function_call is not None:
                calls.append((p.function_call.name, p.function_call.args))
            elif p.thought:
                thoughts += p.text or ""
            else:
                text += p.text or ""
        finish = cand.finish_reason or finish
    usage = chunks[-1].usage_metadata
    assert usage is not None
    return {"text": text, "thoughts": thoughts, "calls": calls, "finish": finish,
            "usage": (usage.prompt_token_count, usage.candidates_token_count or 0,
                      usage.thoughts_token_count or 0, usage.total_token_count)}


def capture_content(name: str) -> dict[str, Any]:
    """The same view of a real Gemini capture, read with the SDK types directly."""
    raw = capture(name)
    if name.endswith(".json"):
        return content_of([types.GenerateContentResponse.model_validate(json.loads(raw))])
    return content_of(gemini_chunks(raw))


def _ctx(stream: bool = True) -> TranslateContext:
    return make_ctx(stream=stream, include_usage=True)


# ---- (1) Gemini captures in reverse ----------------------------------------------------


@pytest.mark.parametrize("name", GEMINI_STREAMS)
def test_gemini_stream_round_trip_through_openai(name: str) -> None:
    """Gemini capture -> OpenAI Chat stream -> Gemini client stream: the capture's content comes back."""
    chat = run_stream(OpenAIChatToGemini(SignatureStore()), capture(name), _ctx())
    back = content_of(gemini_chunks(run_stream(GeminiToOpenAI(), chat, _ctx())))
    assert back == capture_content(name)


@pytest.mark.parametrize("name", GEMINI_STREAMS)
def test_gemini_stream_round_trip_through_anthropic(name: str) -> None:
    """Gemini capture -> Anthropic stream -> Gemini client stream: content and totals come back
    (Anthropic counts thoughts inside output tokens, so they return as candidates)."""
    events = run_stream(AnthropicToGemini(SignatureStore()), capture(name), _ctx())
    back = content_of(gemini_chunks(run_stream(GeminiToAnthropic(), events, _ctx())))
    expected = capture_content(name)
    prompt, candidates, thoughts, total = expected["usage"]
    expected["usage"] = (prompt, candidates + thoughts, 0, total)
    assert back == expected


def test_gemini_body_round_trip_through_openai_and_anthropic() -> None:
    """generateContent capture -> Chat / Messages body -> Gemini body: text, finish and usage kept."""
    raw = capture("gemini_generate_content.json")
    expected = capture_content("gemini_generate_content.json")
    chat = OpenAIChatToGemini(SignatureStore()).response(raw, _ctx(False))
    via_openai = GeminiToOpenAI().response(chat, _ctx(False))
    assert content_of([types.GenerateContentResponse.model_validate(json.loads(via_openai))]) == expected
    message = AnthropicToGemini(SignatureStore()).response(raw, _ctx(False))
    via_anthropic = json.loads(GeminiToAnthropic().response(message, _ctx(False)))
    assert via_anthropic["usageMetadata"] == {"promptTokenCount": 13, "candidatesTokenCount": 102, "totalTokenCount": 115}
    assert via_anthropic["candidates"][0]["content"]["parts"][0]["text"] == expected["text"]


# ---- (2) OpenAI and Anthropic captures for a Gemini client -------------------------------


def _openai_stream_text(name: str) -> tuple[str, str]:
    text, reasoning = "", ""
    for line in capture(name).decode().splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices", []):
                delta = choice.get("delta") or {}
                text += delta.get("content") or ""
                reasoning += delta.get("reasoning_content") or ""
    return text, reasoning


@pytest.mark.parametrize("name", ["openai_chat_stream_text.sse", "deepseek_chat_stream_reasoning.sse",
                                  "openai_chat_stream_tool_calls.sse"])
def test_openai_streams_for_gemini_client(name: str) -> None:
    """OpenAI-shaped streams become Gemini chunks: text, reasoning as thoughts, whole calls, usage."""
    got = content_of(gemini_chunks(run_stream(GeminiToOpenAI(), capture(name), _ctx())))
    text, reasoning = _openai_stream_text(name)
    assert (got["text"], got["thoughts"]) == (text, reasoning)
    assert got["finish"] == types.FinishReason.STOP
    usage = [json.loads(line[6:])["usage"] for line in capture(name).decode().splitlines()
             if line.startswith("data: {") and json.loads(line[6:]).get("usage")][-1]
    reasoning_tokens = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    assert got["usage"] == (usage["prompt_tokens"], usage["completion_tokens"] - reasoning_tokens, reasoning_tokens,
                            usage["prompt_tokens"] + usage["completion_tokens"])
    if "tool_calls" in name:
        assert got["calls"] == [("secret_retrieval_tool", {"password": "mellon"}),
                                ("secret_retrieval_tool", {"password": "radiance"})]


@pytest.mark.parametrize("name", ["anthropic_messages_stream_text.sse", "anthropic_messages_stream_tool_use.sse",
                                  "anthropic_messages_stream_thinking.sse"])
def test_anthropic_streams_for_gemini_client(name: str) -> None:
    """Anthropic streams become Gemini chunks; thinking is a thought with its signature carried along."""
    out = run_stream(GeminiToAnthropic(), capture(name), _ctx())
    chunks = gemini_chunks(out)
    got = content_of(chunks)
    text, thinking, signature = "", "", ""
    for line in capture(name).decode().splitlines():
        if line.startswith("data: {"):
            d = json.loads(line[6:]).get("delta") or {}
            text += d.get("text") or ""
            thinking += d.get("thinking") or ""
            signature += d.get("signature") or ""
    assert (got["text"], got["thoughts"]) == (text, thinking)
    assert got["finish"] == types.FinishReason.STOP
    if signature:
        sigs = [p.thought_signature for c in chunks if c.candidates and c.candidates[0].content
                for p in c.candidates[0].content.parts or [] if p.thought_signature]
        assert len(sigs) == 1
        assert decode_thought_signature(base64.b64encode(sigs[0]).decode()) == signature
    if "tool_use" in name:
        assert [n for n, _ in got["calls"]] == ["secret_retrieval_tool"] * 2


def test_thinking_signature_returns_to_anthropic() -> None:
    """The thought part a Gemini client got from an Anthropic stream goes back as a signed thinking block."""
    out = run_stream(GeminiToAnthropic(), capture("anthropic_messages_stream_thinking.sse"), _ctx())
    parts: list[dict[str, Any]] = []
    for chunk in gemini_chunks(out):
        dumped = chunk.model_dump(mode="json", by_alias=True, exclude_none=True)
        parts.extend(dumped["candidates"][0]["content"]["parts"])
    request = {"contents": [{"role": "user", "parts": [{"text": "think"}]}, {"role": "model", "parts": parts},
                            {"role": "user", "parts": [{"text": "again"}]}],
               "generationConfig": {"thinkingConfig": {"thinkingBudget": 2048}, "maxOutputTokens": 4096}}
    ctx = _ctx(False)
    ctx.caps = ModelCaps(reasons=True, knobs=frozenset({"budget"}))  # a Claude model that thinks with a budget
    sent = json.loads(GeminiToAnthropic().request(json.dumps(request).encode(), ctx))
    blocks = sent["messages"][1]["content"]
    signature = "".join(json.loads(line[6:])["delta"].get("signature") or ""
                        for line in capture("anthropic_messages_stream_thinking.sse").decode().splitlines()
                        if line.startswith("data: {") and '"signature_delta"' in line)
    thinking = "".join(json.loads(line[6:])["delta"].get("thinking") or ""
                       for line in capture("anthropic_messages_stream_thinking.sse").decode().splitlines()
                       if line.startswith("data: {") and '"thinking_delta"' in line)
    assert blocks[0]["type"] == "thinking" and signature and blocks[0]["signature"] == signature
    assert thinking and blocks[0]["thinking"] == thinking  # unmodified (P6), not "" beside the signature
    assert [b["type"] for b in blocks].count("thinking") == 1
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}


def test_a_signed_thinking_block_before_a_tool_call_returns_whole() -> None:
    """Non-stream: Claude's thinking + tool_use reach the Gemini client as thought parts and a
    functionCall; sent back with the function's answer, the thinking block Anthropic gets is
    the one it signed, text and all (Anthropic refuses an altered one on a tool turn)."""
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
               "content": [{"type": "thinking", "thinking": "Let me think.", "signature": "SIGabc=="},
                           {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
               "stop_reason": "tool_use", "usage": {"input_tokens": 10, "output_tokens": 20}}
    body = json.loads(GeminiToAnthropic().response(json.dumps(message).encode(), _ctx(False)))
    parts = body["candidates"][0]["content"]["parts"]
    call = next(p["functionCall"] for p in parts if "functionCall" in p)
    request = {"contents": [{"role": "user", "parts": [{"text": "weather?"}]}, {"role": "model", "parts": parts},
                            {"role": "user", "parts": [{"functionResponse": {"id": call.get("id"), "name": "get_weather",
                                                                             "response": {"temp": 20}}}]}],
               "generationConfig": {"thinkingConfig": {"thinkingBudget": 2048}, "maxOutputTokens": 4096}}
    ctx = _ctx(False)
    ctx.caps = ModelCaps(reasons=True, knobs=frozenset({"budget"}))
    sent = json.loads(GeminiToAnthropic().request(json.dumps(request).encode(), ctx))
    blocks = sent["messages"][1]["content"]
    assert blocks[0] == {"type": "thinking", "thinking": "Let me think.", "signature": "SIGabc=="}
    assert [b["type"] for b in blocks] == ["thinking", "tool_use"]


@pytest.mark.parametrize("name", ["openai_chat_nonstream.json", "openai_chat_nonstream_tool_calls.json",
                                  "anthropic_messages_nonstream.json", "anthropic_messages_nonstream_tool_use.json"])
def test_bodies_for_gemini_client(name: str) -> None:
    """Non-stream OpenAI and Anthropic answers become GenerateContentResponse bodies the SDK parses."""
    translator = GeminiToOpenAI() if name.startswith("openai") else GeminiToAnthropic()
    ctx = _ctx(False)
    body = types.GenerateContentResponse.model_validate(json.loads(translator.response(capture(name), ctx)))
    got = content_of([body])
    source = json.loads(capture(name))
    if "tool" in name:
        assert [n for n, _ in got["calls"]] == ["secret_retrieval_tool"] * 2
        assert body.function_calls and all(c.id for c in body.function_calls)
    elif name.startswith("openai"):
        assert got["text"] == source["choices"][0]["message"]["content"]
    else:
        assert got["text"] == source["content"][0]["text"]
    assert got["finish"] == types.FinishReason.STOP and body.model_version == "client-alias"
    assert ctx.usage is not None and got["usage"][3] == ctx.usage.total_tokens


def test_content_filter_and_refusal_become_safety() -> None:
    """An OpenAI content_filter finish and an Anthropic refusal reach a Gemini client as finishReason SAFETY."""
    chat = json.loads(capture("openai_chat_nonstream.json"))
    chat["choices"][0]["finish_reason"] = "content_filter"
    body = json.loads(GeminiToOpenAI().response(json.dumps(chat).encode(), _ctx(False)))
    assert body["candidates"][0]["finishReason"] == "SAFETY"
    message = json.loads(capture("anthropic_messages_nonstream.json"))
    message["stop_reason"] = "refusal"
    body = json.loads(GeminiToAnthropic().response(json.dumps(message).encode(), _ctx(False)))
    assert body["candidates"][0]["finishReason"] == "SAFETY"
    stream = capture("anthropic_messages_stream_text.sse").replace(b'"stop_reason":"end_turn"', b'"stop_reason":"refusal"')
    assert b"refusal" in stream
    chunks = gemini_chunks(run_stream(GeminiToAnthropic(), stream, _ctx()))
    assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == types.FinishReason.SAFETY


def _chat_stream(*deltas: dict[str, Any], finish: str) -> bytes:
    chunks = [{"index": 0, "delta": d, "finish_reason": None} for d in deltas] + [
        {"index": 0, "delta": {}, "finish_reason": finish}]
    return b"".join(b"data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 1,
                                            "model": "m", "choices": [c]}).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def _call(index: int, call_id: str, args: str) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, "id": call_id, "type": "function",
                            "function": {"name": "f", "arguments": args}}]}


def test_a_call_the_output_limit_cut_is_left_out() -> None:
    """At the output limit, a buffered call whose arguments are not whole JSON was sent as a
    functionCall with {"_raw": half its JSON}; it is left out (streamed and not). A call
    finished before the limit still goes out."""
    stream = _chat_stream(_call(0, "call_a", '{"x": 1}'), _call(1, "call_b", '{"x": '), finish="length")
    got = content_of(gemini_chunks(run_stream(GeminiToOpenAI(), stream, _ctx())))
    assert got["calls"] == [("f", {"x": 1})] and got["finish"] == types.FinishReason.MAX_TOKENS
    whole = _chat_stream(_call(0, "call_a", '{"x": 1}'), finish="tool_calls")
    assert content_of(gemini_chunks(run_stream(GeminiToOpenAI(), whole, _ctx())))["calls"] == [("f", {"x": 1})]
    body = json.loads(capture("openai_chat_nonstream_tool_calls.json"))
    body["choices"][0]["finish_reason"] = "length"
    body["choices"][0]["message"]["tool_calls"][-1]["function"]["arguments"] = '{"password": "rad'
    reply = types.GenerateContentResponse.model_validate(json.loads(GeminiToOpenAI().response(json.dumps(body).encode(), _ctx(False))))
    got = content_of([reply])
    assert [args for _, args in got["calls"]] == [{"password": "mellon"}]
    assert got["finish"] == types.FinishReason.MAX_TOKENS


@pytest.mark.parametrize("structured", [True, False])
def test_a_gemini_json_schema_goes_to_claude_as_output_config_format(structured: bool) -> None:
    """responseJsonSchema reaches a Claude with structured outputs as ``output_config.format``
    (enforced upstream), as response_format does from OpenAI clients; others get the instruction."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
              "additionalProperties": False}
    request = {"contents": [{"role": "user", "parts": [{"text": "where?"}]}],
               "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": schema}}
    ctx = _ctx(False)
    ctx.caps = ModelCaps(json_schema=structured)
    sent = json.loads(GeminiToAnthropic().request(json.dumps(request).encode(), ctx))
    if structured:
        assert sent["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
        assert "system" not in sent
    else:
        assert "output_config" not in sent
        assert sent["system"].startswith("Respond only with a single valid JSON value") and '"city"' in sent["system"]
