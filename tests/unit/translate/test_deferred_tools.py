"""Anthropic tool search (deferred tools, tool_reference) translated to Chat and Gemini.

The shapes are Claude Code 2.1.332's: tools with ``defer_loading: true`` and a ToolSearch
tool whose result is ``[{"type": "tool_reference", "tool_name": ...}]``, next to a text block.
"""

from __future__ import annotations

import json
from typing import Any

from apex.translate.directions.anthropic_to_gemini import anthropic_to_gemini_request
from apex.translate.directions.anthropic_to_openai import AnthropicToOpenAI
from apex.translate.neutral.deferred import without_tool_search
from apex.translate.neutral.signatures import SignatureStore
from tests.golden.transcript import make_ctx

SCHEMA = {"type": "object", "properties": {}}
TOOLS: list[dict[str, Any]] = [
    {"name": "Bash", "description": "run", "input_schema": SCHEMA},
    {"name": "ToolSearch", "description": "find deferred tools", "input_schema": SCHEMA},
    {"name": "WebFetch", "description": "fetch", "input_schema": SCHEMA, "defer_loading": True},
    {"name": "CronList", "description": "crons", "input_schema": SCHEMA, "defer_loading": True},
]
FIRST: list[dict[str, Any]] = [{"role": "user", "content": "fetch example.com"}]
SEARCHED: list[dict[str, Any]] = FIRST + [
    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "ToolSearch",
                                       "input": {"query": "select:WebFetch"}}]},
    {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "tool_reference", "tool_name": "WebFetch"}]},
        {"type": "text", "text": "Tool loaded.", "cache_control": {"type": "ephemeral"}}]},
]


def request(messages: list[dict[str, Any]], tools: list[dict[str, Any]] = TOOLS, **extra: Any) -> dict[str, Any]:
    return {"model": "claude-opus-5-5", "max_tokens": 1000, "messages": messages, "tools": tools, **extra}


def to_chat(req: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(AnthropicToOpenAI().request(json.dumps(req).encode(), make_ctx()))
    return out


def to_gemini(req: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(anthropic_to_gemini_request(json.dumps(req).encode(), SignatureStore()))
    return out


def chat_names(out: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in out.get("tools", [])]


def gemini_names(out: dict[str, Any]) -> list[str]:
    return [d["name"] for t in out.get("tools", []) for d in t["functionDeclarations"]]


def test_chat_declares_a_deferred_tool_only_once_loaded() -> None:
    assert chat_names(to_chat(request(FIRST))) == ["Bash", "ToolSearch"]
    out = to_chat(request(SEARCHED))
    assert chat_names(out) == ["Bash", "ToolSearch", "WebFetch"]
    assert "defer_loading" not in json.dumps(out["tools"])
    assert out["messages"][-2:] == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Tool loaded: WebFetch"},
        {"role": "user", "content": "Tool loaded."},
    ]


def test_gemini_declares_a_deferred_tool_only_once_loaded() -> None:
    assert gemini_names(to_gemini(request(FIRST))) == ["Bash", "ToolSearch"]
    out = to_gemini(request(SEARCHED))
    assert gemini_names(out) == ["Bash", "ToolSearch", "WebFetch"]
    result = out["contents"][-1]["parts"]
    assert result[0]["functionResponse"]["name"] == "ToolSearch"
    assert "Tool loaded: WebFetch" in json.dumps(result[0]["functionResponse"]["response"])
    assert result[1] == {"text": "Tool loaded."}


def test_no_tool_choice_when_every_tool_is_still_deferred() -> None:
    """Chat refuses a tool_choice without tools; Gemini gets no tool config for none."""
    deferred = [t for t in TOOLS if t.get("defer_loading")]
    chat = to_chat(request(FIRST, deferred, tool_choice={"type": "auto"}))
    assert "tools" not in chat and "tool_choice" not in chat
    gemini = to_gemini(request(FIRST, deferred, tool_choice={"type": "auto"}))
    assert "tools" not in gemini and "toolConfig" not in gemini


def test_a_reference_outside_a_tool_result_is_text_and_loads_nothing() -> None:
    messages = [{"role": "user", "content": [{"type": "tool_reference", "tool_name": "CronList"},
                                             {"type": "text", "text": "hi"}]}]
    chat = to_chat(request(messages))
    assert chat["messages"][-1] == {"role": "user", "content": "Tool loaded: CronList\nhi"}
    assert "CronList" not in chat_names(chat)
    gemini = to_gemini(request(messages))
    assert gemini["contents"][-1]["parts"][0] == {"text": "Tool loaded: CronList"}
    assert "CronList" not in gemini_names(gemini)


def test_messages_form_for_upstreams_without_tool_search() -> None:
    """Bedrock, Vertex and the dual-protocol providers get the same resolution in Messages form."""
    out = json.loads(without_tool_search(json.dumps(request(SEARCHED)).encode()))
    assert [t["name"] for t in out["tools"]] == ["Bash", "ToolSearch", "WebFetch"]
    assert "defer_loading" not in json.dumps(out["tools"])
    assert out["messages"][-1]["content"][0]["content"] == [{"type": "text", "text": "Tool loaded: WebFetch"}]
    assert out["model"] == "claude-opus-5-5" and out["max_tokens"] == 1000  # the rest as sent


def test_messages_form_drops_tool_choice_with_the_last_tool() -> None:
    deferred = [t for t in TOOLS if t.get("defer_loading")]
    out = json.loads(without_tool_search(json.dumps(request(FIRST, deferred, tool_choice={"type": "auto"})).encode()))
    assert "tools" not in out and "tool_choice" not in out


def test_messages_form_leaves_other_bodies_alone() -> None:
    """No marker, no decode: the client's very bytes go on; so do bodies that are not JSON."""
    plain = json.dumps(request(FIRST, [t for t in TOOLS if not t.get("defer_loading")])).encode()
    assert without_tool_search(plain) is plain
    broken = b'{"tools": [{"defer_loading": true'
    assert without_tool_search(broken) is broken


def test_the_loaded_text_names_the_tool_as_it_is_declared() -> None:
    """A deferred MCP tool past 64 characters is declared under its fitted name on Chat and
    Gemini: the tool result tells the model that name, the one it can call (it named the
    client's 105-character one, a function the model did not have)."""
    long_name = "mcp__claude_ai_internal_engineering_tools_server_v2__" + "x" * 40 + "alpha_search"
    tools = [*TOOLS[:2], {"name": long_name, "description": "search", "input_schema": SCHEMA, "defer_loading": True}]
    messages = json.loads(json.dumps(SEARCHED).replace('"WebFetch"', json.dumps(long_name)))
    chat = to_chat(request(messages, tools))
    declared = chat_names(chat)[-1]
    assert declared != long_name and len(declared) <= 64
    assert chat["messages"][-2] == {"role": "tool", "tool_call_id": "toolu_1", "content": f"Tool loaded: {declared}"}
    gemini = to_gemini(request(messages, tools))
    declared = gemini_names(gemini)[-1]
    assert declared != long_name and len(declared) <= 64
    response = json.dumps(gemini["contents"][-1]["parts"][0]["functionResponse"]["response"])
    assert f"Tool loaded: {declared}" in response and long_name not in response
