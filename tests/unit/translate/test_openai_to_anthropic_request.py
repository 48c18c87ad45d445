"""OpenAI Chat request -> Anthropic Messages request (docs/protocols.md 8.1)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apex.errors import InvalidRequest
from apex.translate.directions.openai_to_anthropic import DEFAULT_MAX_TOKENS, JSON_OBJECT_INSTRUCTION, OpenAIToAnthropic
from apex.translate.neutral.toolids import anthropic_tool_id
from apex.translate.capabilities import CapabilityTable
from tests.golden.transcript import make_ctx

T = OpenAIToAnthropic()


def translate(req: dict[str, Any], **ctx: Any) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(T.request(json.dumps(req).encode(), make_ctx(**ctx)))
    return out


def test_system_and_developer_fold_into_system() -> None:
    """System and developer messages join the top-level system, in order."""
    out = translate({"model": "m", "messages": [
        {"role": "system", "content": "A"}, {"role": "developer", "content": [{"type": "text", "text": "B"}]},
        {"role": "user", "content": "hi"}]})
    assert out["system"] == "A\n\nB"
    assert out["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert out["model"] == "upstream-model" and out["max_tokens"] == DEFAULT_MAX_TOKENS


def test_tool_round_trip_with_sanitized_ids_and_merged_results() -> None:
    """Tool calls become tool_use with safe ids; consecutive tool results plus the next user text form one user turn."""
    bad_id = "functions.Bash:0"
    out = translate({"model": "m", "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": bad_id, "type": "function", "function": {"name": "Bash", "arguments": ""}},
            {"id": "call_2", "type": "function", "function": {"name": "Read", "arguments": "{\"p\": 1}"}}]},
        {"role": "tool", "tool_call_id": bad_id, "content": "ok"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "two"}]},
        {"role": "user", "content": "next"}]})
    safe = anthropic_tool_id(bad_id)
    assert safe != bad_id and len(safe) <= 64
    assistant = out["messages"][1]
    assert assistant == {"role": "assistant", "content": [
        {"type": "tool_use", "id": safe, "name": "Bash", "input": {}},
        {"type": "tool_use", "id": "call_2", "name": "Read", "input": {"p": 1}}]}
    assert out["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": safe, "content": [{"type": "text", "text": "ok"}]},
        {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "two"}]},
        {"type": "text", "text": "next"}]}


def test_missing_tool_result_is_synthesized() -> None:
    """A tool call without a result gets an is_error tool_result in the next user turn (P13)."""
    out = translate({"model": "m", "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "user", "content": "never mind"}]})
    first = out["messages"][2]["content"][0]
    assert first["type"] == "tool_result" and first["tool_use_id"] == "c1" and first["is_error"] is True


def test_images_and_documents() -> None:
    """Data-URL images become base64 sources, https images URL sources, PDF files documents."""
    out = translate({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE"}}]}]})
    blocks = out["messages"][0]["content"]
    assert blocks[0]["source"] == {"type": "base64", "media_type": "image/png", "data": "AAAA"}
    assert blocks[1]["source"] == {"type": "url", "url": "https://x.test/a.jpg"}
    assert blocks[2] == {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}


def test_tools_choice_parallel_stop_and_sampling() -> None:
    """Tools, tool_choice, parallel_tool_calls, stop, temperature clamp and top_p handling."""
    out = translate({"model": "m", "messages": [{"role": "user", "content": "x"}],
                     "tools": [{"type": "function", "function": {"name": "f"}}],
                     "tool_choice": "required", "parallel_tool_calls": False, "stop": "END",
                     "temperature": 1.7, "top_p": 0.5, "max_completion_tokens": 50, "user": "u1", "seed": 3})
    assert out["tools"] == [{"name": "f", "input_schema": {"type": "object", "properties": {}}}]
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert out["stop_sequences"] == ["END"]
    assert out["temperature"] == 1.0 and "top_p" not in out
    assert out["max_tokens"] == 50 and out["metadata"] == {"user_id": "u1"} and "seed" not in out


def test_reasoning_effort_becomes_thinking_unless_tool_forced() -> None:
    """reasoning_effort maps to a thinking budget; a forced tool drops it."""
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "medium",
            "max_tokens": 10000, "temperature": 0.3}
    sonnet4 = CapabilityTable("anthropic").lookup("claude-sonnet-4-20250514")
    out = translate(base, caps=sonnet4)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 4096} and "temperature" not in out
    forced = translate({**base, "tools": [{"type": "function", "function": {"name": "f"}}],
                        "tool_choice": {"type": "function", "function": {"name": "f"}}}, caps=sonnet4)
    assert "thinking" not in forced and forced["tool_choice"] == {"type": "tool", "name": "f"}


def test_response_format_becomes_system_instruction() -> None:
    """json_object and json_schema response formats are expressed as system instructions."""
    out = translate({"model": "m", "messages": [{"role": "user", "content": "x"}],
                     "response_format": {"type": "json_object"}})
    assert out["system"] == JSON_OBJECT_INSTRUCTION
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    out = translate({"model": "m", "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "x"}],
                     "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}})
    assert out["system"].startswith("S\n\n") and json.dumps(schema, separators=(",", ":")) in out["system"]


def test_stream_options_sets_include_usage() -> None:
    """stream_options.include_usage is remembered in the context, and not sent upstream."""
    ctx = make_ctx()
    body = T.request(json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True,
                                 "stream_options": {"include_usage": True}}).encode(), ctx)
    assert ctx.include_usage is True
    assert json.loads(body)["stream"] is True and "stream_options" not in json.loads(body)


def test_empty_assistant_text_dropped() -> None:
    """Empty or whitespace assistant text never becomes an empty text block (P14)."""
    out = translate({"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "  "},
                                                 {"role": "user", "content": "y"}]})
    assert [m["role"] for m in out["messages"]] == ["user", "user"]


@pytest.mark.parametrize("req", [
    {"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2},
    {"model": "m", "messages": []},
    {"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
    {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search"}]},
])
def test_inexpressible_input_is_invalid_request(req: dict[str, Any]) -> None:
    """Input Anthropic cannot express is a 400 with a clear message."""
    with pytest.raises(InvalidRequest):
        translate(req)


def test_bad_json_is_invalid_request() -> None:
    """A body that is not JSON is an InvalidRequest."""
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        T.request(b"{nope", make_ctx())


def test_thinking_without_a_client_limit_stays_within_the_models_output_limit() -> None:
    """xhigh with no max_tokens was sized to its budget + room (36,864), over Opus 4.1's
    32,000: the model's limit caps it and the budget fits inside, leaving room to answer."""
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "xhigh"}
    out = translate(base, caps=CapabilityTable("anthropic").lookup("claude-opus-4-1-20250805"))
    assert out["max_tokens"] == 32_000
    assert out["thinking"]["type"] == "enabled" and out["thinking"]["budget_tokens"] <= 32_000 - 4_096
    roomy = translate(base, caps=CapabilityTable("anthropic").lookup("claude-sonnet-4-20250514"))
    assert roomy["max_tokens"] == roomy["thinking"]["budget_tokens"] + 4_096 <= 64_000
