"""OpenAI Responses request -> Chat request, and composed with 8.1 for Anthropic (8.8)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apex.errors import InvalidRequest
from apex.translate.directions.responses_to_anthropic import ResponsesToAnthropic
from apex.translate.directions.responses_to_openai import ResponsesToOpenAI
from apex.translate.capabilities import CapabilityTable
from tests.golden.transcript import make_ctx

REQ: dict[str, Any] = {
    "model": "m", "instructions": "Be brief.", "max_output_tokens": 300, "stream": True,
    "input": [
        {"role": "developer", "content": "dev"},
        {"role": "user", "content": [{"type": "input_text", "text": "hi"},
                                      {"type": "input_image", "image_url": "https://x.test/i.png"}]},
        {"type": "function_call", "call_id": "call_a", "name": "f", "arguments": "{\"x\":1}"},
        {"type": "function_call", "call_id": "call_b", "name": "g", "arguments": ""},
        {"type": "function_call_output", "call_id": "call_a", "output": "A"},
        {"type": "function_call_output", "call_id": "call_b", "output": "B"},
        {"type": "reasoning", "id": "rs_1", "summary": []},
    ],
    "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}],
    "tool_choice": {"type": "function", "name": "f"},
    "text": {"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}, "strict": True}},
    "reasoning": {"effort": "low"},
}


def test_responses_to_chat() -> None:
    """Items, tools, tool_choice, text.format and reasoning map onto Chat fields."""
    ctx = make_ctx(caps=CapabilityTable("openai").lookup("o4-mini"))
    out = json.loads(ResponsesToOpenAI().request(json.dumps(REQ).encode(), ctx))
    msgs = out["messages"]
    assert msgs[0] == {"role": "system", "content": "Be brief."}
    assert msgs[1] == {"role": "system", "content": "dev"}
    assert msgs[2]["content"][1] == {"type": "image_url", "image_url": {"url": "https://x.test/i.png"}}
    assert msgs[3]["role"] == "assistant" and [c["id"] for c in msgs[3]["tool_calls"]] == ["call_a", "call_b"]
    assert msgs[3]["tool_calls"][1]["function"]["arguments"] == "{}"
    assert msgs[4:] == [{"role": "tool", "tool_call_id": "call_a", "content": "A"},
                        {"role": "tool", "tool_call_id": "call_b", "content": "B"}]
    assert out["tools"] == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": True}}]
    assert out["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert out["response_format"]["json_schema"]["name"] == "n"
    assert out["reasoning_effort"] == "low" and out["max_completion_tokens"] == 300  # o4-mini: a reasoning model
    assert out["stream_options"] == {"include_usage": True}


def test_responses_to_anthropic_composes() -> None:
    """The Anthropic request keeps call ids on tool_use and tool_result and folds instructions into system."""
    req = {**REQ, "tool_choice": "auto"}
    out = json.loads(ResponsesToAnthropic().request(json.dumps(req).encode(), make_ctx()))
    assert out["system"].startswith("Be brief.\n\ndev")
    uses = [b["id"] for m in out["messages"] for b in m["content"] if b["type"] == "tool_use"]
    results = [b["tool_use_id"] for m in out["messages"] for b in m["content"] if b["type"] == "tool_result"]
    assert uses == results == ["call_a", "call_b"]
    assert out["max_tokens"] == 300 and "thinking" not in out  # last assistant turn used tools (P6)


@pytest.mark.parametrize("req", [
    {"model": "m", "input": "x", "previous_response_id": "resp_1"},
    {"model": "m", "input": "x", "tools": [{"type": "file_search"}]},
    {"model": "m", "input": [{"type": "item_reference", "id": "x"}]},
])
def test_inexpressible_responses_input(req: dict[str, Any]) -> None:
    """Stateful or built-in Responses features are a clear InvalidRequest."""
    with pytest.raises(InvalidRequest):
        ResponsesToOpenAI().request(json.dumps(req).encode(), make_ctx())


def test_reasoning_text_goes_back_as_reasoning_content_on_the_turn_it_led_to() -> None:
    """Codex sends back the reasoning item Apex gave it: its text is the next assistant
    message's reasoning_content (DeepSeek-style reasoners answer 400 to a tool-call turn
    without it, P7); an encrypted-only item carries no text and goes nowhere."""
    req: dict[str, Any] = {"model": "m", "input": [
        {"role": "user", "content": "make a dir"},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "I should run mkdir."}]},
        {"type": "function_call", "call_id": "call_a", "name": "shell", "arguments": "{\"cmd\":\"mkdir x\"}"},
        {"type": "function_call_output", "call_id": "call_a", "output": "ok"},
        {"type": "reasoning", "id": "rs_2", "summary": [], "content": [{"type": "reasoning_text", "text": "Done."}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Made it."}]},
        {"type": "reasoning", "id": "rs_3", "summary": [], "encrypted_content": "gAAA..."},
        {"role": "user", "content": "thanks"},
    ]}
    out = json.loads(ResponsesToOpenAI().request(json.dumps(req).encode(), make_ctx()))
    msgs = out["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant", "user"]
    assert msgs[1]["reasoning_content"] == "I should run mkdir." and msgs[1]["tool_calls"][0]["id"] == "call_a"
    assert msgs[3] == {"role": "assistant", "content": "Made it.", "reasoning_content": "Done."}


def test_carried_thinking_is_left_out_when_thinking_is_off() -> None:
    """A reasoning item carrying Claude's signature is replayed only when the request thinks;
    without reasoning it is left out, and a turn it alone made is dropped (no empty turn)."""
    from apex.translate.neutral.signatures import carrying

    body = {"model": "m", "max_output_tokens": 100, "input": [
        {"role": "user", "content": "hi"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Thinking."}], "encrypted_content": carrying("sig")},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "again"}]}
    ctx = make_ctx(caps=CapabilityTable("anthropic").lookup("claude-sonnet-4-5"))
    out = json.loads(ResponsesToAnthropic().request(json.dumps(body).encode(), ctx))
    assert "thinking" not in out
    assert all(t["content"] for t in out["messages"])
    assert not any(b.get("type") == "thinking" for t in out["messages"] for b in t["content"] if isinstance(b, dict))


@pytest.mark.parametrize("effort", [{"reasoning": {"effort": "high"}}, {}], ids=["thinking", "no-thinking"])
def test_consecutive_signed_reasoning_items_replay_as_one_turn(effort: dict[str, Any]) -> None:
    """Two reasoning items carrying Claude's signatures (two thinking blocks, the first with no
    text: "omitted" thinking) before a call: the first was dropped as reasoning no answer
    followed. Both are replayed, each with its own signature, in the call's turn; with
    thinking off none is, and no empty turn is left."""
    from apex.translate.neutral.signatures import carrying

    body = {"model": "m", "max_output_tokens": 20000, **effort, "input": [
        {"role": "user", "content": "hi"},
        {"type": "reasoning", "summary": [], "encrypted_content": carrying("sig1")},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "T2"}], "encrypted_content": carrying("sig2")},
        _CALL,
        {"type": "function_call_output", "call_id": "c1", "output": "ok"}]}
    ctx = make_ctx(caps=CapabilityTable("anthropic").lookup("claude-sonnet-4-5"))
    out = json.loads(ResponsesToAnthropic().request(json.dumps(body).encode(), ctx))
    assert [t["role"] for t in out["messages"]] == ["user", "assistant", "user"]
    blocks = [(b["type"], b.get("signature")) for b in out["messages"][1]["content"]]
    if effort:
        assert out["thinking"]["type"] == "enabled"
        assert blocks == [("thinking", "sig1"), ("thinking", "sig2"), ("tool_use", None)]
        assert out["messages"][1]["content"][0]["thinking"] == ""
    else:
        assert "thinking" not in out and blocks == [("tool_use", None)]
_CALL: dict[str, Any] = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}


@pytest.mark.parametrize(("change", "path"), [
    ({"instructions": {"text": "be brief"}}, "instructions"),
    ({"instructions": ["be brief"]}, "instructions"),
    ({"tools": {"type": "function", "name": "f"}}, "tools"),
    ({"input": [{"role": "user", "content": "hi"}, {**_CALL, "name": 7}]}, "input[1].name"),
    ({"input": [{"role": "user", "content": "hi"}, {**_CALL, "arguments": {"x": 1}}]}, "input[1].arguments"),
    ({"input": [{"role": "user", "content": "hi"}, {**_CALL, "namespace": ["ns"]}]}, "input[1].namespace"),
    ({"input": [{"type": "custom_tool_call", "call_id": "c1", "name": "f", "input": 7}]}, "input[0].input"),
])
@pytest.mark.parametrize("translator", [ResponsesToOpenAI(), ResponsesToAnthropic()])
def test_a_wrong_typed_field_is_refused_by_its_path(change: dict[str, Any], path: str,
                                                    translator: ResponsesToOpenAI | ResponsesToAnthropic) -> None:
    """Each was dropped or read as "" (a call named ``tool_e3b0c442`` after the name fitter) and the
    rest went upstream; OpenAI's API answers 400, so the client hears which field is wrong."""
    req = {"model": "m", "instructions": "be brief", "input": "hi", **change}
    with pytest.raises(InvalidRequest) as info:
        translator.request(json.dumps(req).encode(), make_ctx())
    assert info.value.param == path and info.value.message.startswith(path)


def test_null_instructions_tools_and_arguments_still_translate() -> None:
    """The valid neighbours of the refused values go on as before."""
    req = {"model": "m", "instructions": None, "tools": None, "input": [
        {"role": "user", "content": "hi"}, {**_CALL, "arguments": ""}, {**_CALL, "call_id": "c2", "namespace": None}]}
    out = json.loads(ResponsesToOpenAI().request(json.dumps(req).encode(), make_ctx()))
    assert "tools" not in out and out["messages"][0] == {"role": "user", "content": "hi"}
    assert [c["function"] for c in out["messages"][1]["tool_calls"]] == [{"name": "f", "arguments": "{}"}] * 2
