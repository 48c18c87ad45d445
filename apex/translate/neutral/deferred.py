"""Anthropic's deferred tools (tool search) for upstreams that have no such thing.

A client using Anthropic's tool search (Claude Code 2.1.3xx with the ``advanced-tool-use``
beta) sends some tools with ``defer_loading: true``. The model does not see those until a
``tool_reference`` block in a tool result names one (what the client's own ToolSearch tool
answers, ``{"type": "tool_reference", "tool_name": "WebFetch"}``); the client refuses a
call of a deferred tool that was never loaded. Chat and Gemini have no deferred tools, so
a translating request does it itself: a deferred tool is declared only once a
``tool_reference`` earlier in the history names it, and each ``tool_reference`` becomes a
line of text in its tool result, where the model reads that the tool is now available.
The clouds' Claude (Bedrock InvokeModel, Vertex) and the Anthropic endpoints of DeepSeek,
Moonshot and MiniMax take Messages requests but not Anthropic's first-party tool search
(Bedrock and Vertex name its beta differently, and only for some models): the client's
body goes to them through ``without_tool_search``, the same resolution in Messages form.
What this module must not do: know any upstream's request shape.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

import msgspec

from apex.translate.neutral.toolids import NameRule, fit_tool_name

__all__ = ["TOOL_REFERENCE", "is_declared", "loaded_tools", "reference_text", "without_tool_search"]

TOOL_REFERENCE: Final = "tool_reference"
_TOP: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ENC: Final = msgspec.json.Encoder()


def reference_text(tool_name: object, rule: NameRule | None = None) -> str:
    """The text a ``tool_reference`` block becomes in a translated tool result. ``rule``: the
    upstream's tool names, where the declared tools are fitted to it (``toolids``): the
    model must read the name it has the tool under, not the client's (a 105-character MCP
    name is declared shortened on OpenAI and Gemini, and only that one can be called)."""
    if not isinstance(tool_name, str):
        return "Tool loaded: "
    return f"Tool loaded: {tool_name if rule is None else fit_tool_name(tool_name, rule)}"


def loaded_tools(messages: object) -> set[str]:
    """Names of deferred tools a ``tool_reference`` in some tool result of a Messages request's
    ``messages`` (decoded JSON, unchecked) has loaded."""
    loaded: set[str] = set()
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else ():
            inner = block.get("content") if isinstance(block, dict) and block.get("type") == "tool_result" else None
            for ref in inner if isinstance(inner, list) else ():
                if isinstance(ref, dict) and ref.get("type") == TOOL_REFERENCE and isinstance(ref.get("tool_name"), str):
                    loaded.add(ref["tool_name"])
    return loaded


def is_declared(defer_loading: object, name: object, loaded: Collection[str]) -> bool:
    """Whether a client tool goes to the upstream: not deferred, or loaded by a reference."""
    return defer_loading is not True or (isinstance(name, str) and name in loaded)


def without_tool_search(body: bytes) -> bytes:
    """A Messages request body with its deferred tools resolved: only loaded ones declared
    (without ``defer_loading``), each ``tool_reference`` block a text block. Other bodies,
    and ones that are not JSON objects (the upstream answers those), are returned as they are;
    the markers are looked for first, so most requests cost two substring searches."""
    if body.find(b'"defer_loading"') < 0 and body.find(b'"tool_reference"') < 0:
        return body
    try:
        top = _TOP.decode(body)
        messages = msgspec.json.decode(top["messages"]) if "messages" in top else None
        tools = msgspec.json.decode(top["tools"]) if "tools" in top else None
    except msgspec.DecodeError:
        return body
    loaded = loaded_tools(messages)
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            _references_as_text(content)
            for block in content if isinstance(content, list) else ():
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    _references_as_text(block.get("content"))
        top["messages"] = msgspec.Raw(_ENC.encode(messages))
    if isinstance(tools, list):
        kept = [{k: v for k, v in t.items() if k != "defer_loading"} if isinstance(t, dict) else t for t in tools
                if not isinstance(t, dict) or is_declared(t.get("defer_loading"), t.get("name"), loaded)]
        if kept:
            top["tools"] = msgspec.Raw(_ENC.encode(kept))
        else:  # every tool still deferred: none to declare, nor to choose from
            del top["tools"]
            top.pop("tool_choice", None)
    return _ENC.encode(top)


def _references_as_text(blocks: object) -> None:
    if not isinstance(blocks, list):
        return
    for i, block in enumerate(blocks):
        if isinstance(block, dict) and block.get("type") == TOOL_REFERENCE:
            blocks[i] = {"type": "text", "text": reference_text(block.get("tool_name"))}
