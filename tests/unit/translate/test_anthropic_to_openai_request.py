"""Anthropic Messages request -> OpenAI Chat request (docs/protocols.md 8.2)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apex.errors import InvalidRequest
from apex.translate.directions.anthropic_to_openai import AnthropicToOpenAI
from apex.translate.capabilities import CapabilityTable
from tests.golden.transcript import make_ctx

T = AnthropicToOpenAI()


def translate(req: dict[str, Any], **ctx: Any) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(T.request(json.dumps(req).encode(), make_ctx(**ctx)))
    return out


def test_system_tool_results_first_and_images_moved() -> None:
    """System leads; tool_result blocks become tool messages before the turn's other content."""
    out = translate({"model": "m", "max_tokens": 100, "system": [{"type": "text", "text": "S"}], "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "calling"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}]},
        {"role": "user", "content": [
            {"type": "text", "text": "also"},
            {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True, "content": [
                {"type": "text", "text": "boom"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}}]}]}]})
    msgs = out["messages"]
    assert msgs[0] == {"role": "system", "content": "S"}
    assert msgs[2] == {"role": "assistant", "content": "calling", "reasoning_content": "hmm", "tool_calls": [
        {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}
    assert msgs[3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: boom"}
    assert msgs[4]["role"] == "user"
    assert msgs[4]["content"][0] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}
    assert msgs[4]["content"][1] == {"type": "text", "text": "also"}
    assert out["max_tokens"] == 100


def test_tools_choice_stream_and_thinking() -> None:
    """Tools nest, tool_choice maps, streams ask for usage, thinking becomes reasoning_effort."""
    out = translate({"model": "m", "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": "x"}],
                     "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
                     "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
                     "thinking": {"type": "enabled", "budget_tokens": 5000}, "top_k": 5,
                     "stop_sequences": ["X"], "metadata": {"user_id": "u"}},
                    caps=CapabilityTable("openai").lookup("o4-mini"))
    assert out["tools"] == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "description": "d"}}]
    assert out["tool_choice"] == "required" and out["parallel_tool_calls"] is False
    assert out["stream_options"] == {"include_usage": True}
    assert out["reasoning_effort"] == "medium" and "top_k" not in out
    assert "stop" not in out and out["user"] == "u"  # o4-mini refuses stop sequences


@pytest.mark.parametrize("thinking", [None, {"type": "enabled", "budget_tokens": 5000}])
def test_sampling_dropped_for_a_reasoning_model_with_or_without_thinking(thinking: dict[str, Any] | None) -> None:
    """gpt-5 refuses temperature/top_p whether or not reasoning was asked for; gpt-4.1 keeps them."""
    req: dict[str, Any] = {"model": "m", "max_tokens": 100, "temperature": 0.2, "top_p": 0.5,
                           "messages": [{"role": "user", "content": "x"}]}
    if thinking is not None:
        req["thinking"] = thinking
    out = translate(req, caps=CapabilityTable("openai").lookup("gpt-5-mini"))
    assert "temperature" not in out and "top_p" not in out and out["max_completion_tokens"] == 100
    kept = translate(req, caps=CapabilityTable("openai").lookup("gpt-4.1"))
    assert kept["temperature"] == 0.2 and kept["top_p"] == 0.5 and kept["max_tokens"] == 100


def test_max_tokens_field_from_context() -> None:
    """ctx.extras max_tokens_field selects max_completion_tokens."""
    ctx = make_ctx()
    ctx.extras["max_tokens_field"] = "max_completion_tokens"
    out = json.loads(T.request(json.dumps({"model": "m", "max_tokens": 7, "messages": [
        {"role": "user", "content": "x"}]}).encode(), ctx))
    assert out["max_completion_tokens"] == 7 and "max_tokens" not in out


def test_estimate_filled_when_absent() -> None:
    """The request fills ctx.estimated_input_tokens when the pipeline left it 0."""
    ctx = make_ctx(estimated_input_tokens=0)
    T.request(json.dumps({"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "word " * 400}]}).encode(), ctx)
    assert 400 <= ctx.estimated_input_tokens <= 800


def test_server_tools_rejected() -> None:
    """Anthropic server tools cannot go to a Chat upstream."""
    with pytest.raises(InvalidRequest, match="web_search"):
        translate({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
                   "tools": [{"type": "web_search_20250305", "name": "web_search"}]})


def test_stream_options_only_where_the_upstream_takes_them() -> None:
    """Groq and Azure api-versions before 2024-09-01 answer 400 to stream_options: a translated
    stream asks for usage only where the channel takes it."""
    req = {"model": "m", "max_tokens": 10, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    assert translate(req)["stream_options"] == {"include_usage": True}
    assert "stream_options" not in translate(req, upstream_takes_stream_usage=False)


def test_stop_sequences_are_capped_and_dropped_for_reasoning_models() -> None:
    """stop_sequences went whole as stop: OpenAI takes at most four, and its reasoning models
    (gpt-5, o-series) answer 400 "'stop' is not supported with this model"."""
    req = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "x"}],
           "stop_sequences": ["a", "b", "c", "d", "e"]}
    assert translate(req, caps=CapabilityTable("openai").lookup("gpt-4.1"))["stop"] == ["a", "b", "c", "d"]
    assert "stop" not in translate(req, caps=CapabilityTable("openai").lookup("gpt-5-mini"))
    assert "stop" not in translate(req, caps=CapabilityTable("openai").lookup("o4-mini"))


def test_tool_ids_longer_than_openai_takes_are_shortened_alike() -> None:
    """A 50-character tool_use id (valid for Anthropic) goes to OpenAI Chat as at most 40
    characters (a longer one is a 400), the same in the call and in its result."""
    long_id = "toolu_" + "a1b2c3d4e5" * 4 + "zzzz"
    out = translate({"model": "m", "max_tokens": 10, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": long_id, "name": "ls", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": long_id, "content": "ok"}]},
    ]})
    call_id = out["messages"][1]["tool_calls"][0]["id"]
    assert len(long_id) == 50 and len(call_id) == 40 and call_id.startswith("toolu_a1b2")
    assert out["messages"][2]["tool_call_id"] == call_id
    short = translate({"model": "m", "max_tokens": 10, "messages": [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "ls", "input": {}}]}]})
    assert short["messages"][0]["tool_calls"][0]["id"] == "toolu_01"


_IMAGE: dict[str, Any] = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}}
_TURN: dict[str, Any] = {"role": "user", "content": [_IMAGE, {"type": "text", "text": "hi"}]}


@pytest.mark.parametrize(("change", "path"), [
    ({"system": ["be brief"]}, "system[0]"),
    ({"system": [{"type": "text", "text": 7}]}, "system[0].text"),
    ({"tools": 7}, "tools"),
    ({"tools": {"name": "f", "input_schema": {"type": "object"}}}, "tools"),
    ({"tool_choice": 7}, "tool_choice"),
    ({"tool_choice": {"type": "sometimes"}}, "tool_choice"),
    ({"tool_choice": {"type": []}}, "tool_choice"),
    ({"messages": [{"role": "user", "content": [{**_IMAGE, "source": {**_IMAGE["source"], "data": {"a": 1}}}]}]},
     "messages[0].content[0].source.data"),
    ({"messages": [{"role": "user", "content": [{**_IMAGE, "source": {"type": "base64", "data": "AA"}}]}]},
     "messages[0].content[0].source.media_type"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": 7}}]}]},
     "messages[0].content[0].source.url"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 7}]}]}, "messages[0].content[0].text"),
    ({"messages": [_TURN, {"role": "assistant", "content": [{"type": "text", "text": 7}]}]},
     "messages[1].content[0].text"),
    ({"messages": [_TURN, {"role": "assistant", "content": ["hello"]}]}, "messages[1].content[0]"),
    ({"messages": [_TURN, {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [7]}]}]},
     "messages[2].content[0].content[0]"),
    ({"messages": [_TURN, {"role": "system", "content": [{"type": "text"}]}]}, "messages[1].content[0].text"),
])
def test_a_wrong_typed_field_is_refused_by_its_path(change: dict[str, Any], path: str) -> None:
    """Each of these was dropped (or formatted into a Python repr) and the rest sent upstream as a
    valid request; Anthropic's API answers 400, so the client hears which field is wrong."""
    req = {"model": "m", "max_tokens": 10, "system": "be brief", "messages": [_TURN],
           "tools": [{"name": "f", "input_schema": {"type": "object"}}], **change}
    with pytest.raises(InvalidRequest) as info:
        translate(req)
    assert info.value.param == path and info.value.message.startswith(path)


def test_what_the_wrong_types_neighbour_still_translates() -> None:
    """Valid values of the fields checked above go on as before: null tools and tool_choice are absent."""
    out = translate({"model": "m", "max_tokens": 10, "tools": None, "tool_choice": None, "system": [],
                     "messages": [_TURN, {"role": "assistant", "content": [{"type": "text", "text": ""}]}]})
    assert "tools" not in out and "tool_choice" not in out
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                                     {"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": ""}]
