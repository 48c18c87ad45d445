"""Anthropic's deferred tools (tool search) for upstreams that have no such thing.

A client using Anthropic's tool search (Claude Code 2.1.3xx with the ``advanced-tool-use``
beta) sends some tools with ``defer_loading: true``. The model does not see those until a
``tool_reference`` block in a tool result names one (what the client's own ToolSearch tool
answers, ``{"type": "tool_reference", "tool_name": "WebFetch"}``); the client refuses a
call of a deferred tool that was never loaded. Chat and Gemini have no deferred tools, so
a translating request does it itself: a deferred tool is declared only once a
``tool_reference`` earlier in the history names it, and each ``tool_reference`` becomes a
line of text in its tool result, where the model reads that the tool is now available.
What this module must not do: know any upstream's request shape.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

__all__ = ["TOOL_REFERENCE", "is_declared", "loaded_tools", "reference_text"]

TOOL_REFERENCE: Final = "tool_reference"


def reference_text(tool_name: object) -> str:
    """The text a ``tool_reference`` block becomes in a translated tool result."""
    return f"Tool loaded: {tool_name if isinstance(tool_name, str) else ''}"


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
