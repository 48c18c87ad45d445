"""Property: OpenAI Chat -> Anthropic -> OpenAI Chat request translation keeps text, tools and ids."""

from __future__ import annotations

import json
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from apex.translate.directions.anthropic_to_openai import anthropic_to_openai_request
from apex.translate.directions.openai_to_anthropic import openai_to_anthropic_request
from apex.translate.neutral.toolids import anthropic_tool_id, openai_tool_id
from tests.golden.transcript import make_ctx

words = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20).filter(str.strip)
tool_ids = st.text("abcXYZ019_-.:|", min_size=1, max_size=70)
args = st.dictionaries(st.text("abc", min_size=1, max_size=4), st.integers() | st.text(max_size=5), max_size=3)


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """user, then rounds of (assistant tool calls, tool results, user text)."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": draw(words)}]
    used: set[str] = set()
    for _ in range(draw(st.integers(0, 3))):
        ids = draw(st.lists(tool_ids.filter(lambda i: i not in used), min_size=1, max_size=3, unique=True))
        used.update(ids)
        calls = [{"id": i, "type": "function", "function": {"name": "fn_" + str(k), "arguments": json.dumps(draw(args))}}
                 for k, i in enumerate(ids)]
        messages.append({"role": "assistant", "content": draw(st.none() | words), "tool_calls": calls})
        messages += [{"role": "tool", "tool_call_id": i, "content": draw(words)} for i in ids]
        messages.append({"role": "user", "content": draw(words)})
    return messages


@settings(max_examples=60, deadline=None)
@given(conversations())
def test_chat_anthropic_chat_keeps_messages_tools_and_ids(messages: list[dict[str, Any]]) -> None:
    """Text, tool names, parsed arguments and (sanitized, consistent) ids survive the round trip."""
    ctx = make_ctx()
    anthropic = openai_to_anthropic_request({"model": "m", "messages": messages}, ctx)
    back = cast("list[dict[str, Any]]", anthropic_to_openai_request(json.loads(json.dumps(anthropic)), ctx)["messages"])

    def summary(msgs: list[dict[str, Any]], map_id: Any) -> list[Any]:
        out: list[Any] = []
        for m in msgs:
            if m["role"] == "assistant":
                out.append(("assistant", (m.get("content") or "").strip(), [
                    (map_id(c["id"]), c["function"]["name"], json.loads(c["function"]["arguments"]))
                    for c in m.get("tool_calls", [])]))
            elif m["role"] == "tool":
                out.append(("tool", map_id(m["tool_call_id"]), m["content"]))
            else:
                out.append((m["role"], m["content"]))
        return out

    # Ids come back valid for both: Anthropic's characters, then OpenAI's 40-character limit.
    assert summary(back, lambda i: i) == summary(messages, lambda i: openai_tool_id(anthropic_tool_id(i)))
