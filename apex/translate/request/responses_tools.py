"""Responses tool shapes that Chat has no form for, flattened on the way in and restored on the way out.

Codex sends ``namespace`` tools (a name plus nested function/custom tools), freeform
``custom`` tools (plain-text input, optionally with a grammar) and the ``web_search``
built-in, sometimes inside an ``additional_tools`` input item. Chat knows only function
tools, so each nested tool becomes one function named ``<namespace>__<name>`` and each
custom tool a function taking one string ``input``; the ``ToolNames`` kept in
``ctx.extras[TOOL_NAMES_KEY]`` maps the flat name back so the client receives a
``function_call`` with its own ``name`` and ``namespace``, or a ``custom_tool_call`` with
its ``input``. ``web_search`` becomes the upstream's own web search where one exists
(Anthropic's server tool) or is dropped with an ``x-apex-dropped-tools`` response header:
a 400 would end the agent's session. What this module must not do: any I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgspec

from apex.errors import InvalidRequest
from apex.translate.base import TranslateContext

__all__ = [
    "DROPPED_TOOLS_HEADER",
    "NAMESPACE_SEPARATOR",
    "SERVER_TOOLS_KEY",
    "TOOL_NAMES_KEY",
    "ClientTool",
    "chat_tools",
    "client_call",
    "flat_name",
]

TOOL_NAMES_KEY: Final = "responses_tool_names"   # ctx.extras: dict[flat name, ClientTool]
SERVER_TOOLS_KEY: Final = "server_tools"         # ctx.extras: upstream-native tools to add (Anthropic)
DROPPED_TOOLS_HEADER: Final = "x-apex-dropped-tools"
NAMESPACE_SEPARATOR: Final = "__"
ANTHROPIC_WEB_SEARCH: Final = {"type": "web_search_20250305", "name": "web_search"}
_WEB_SEARCH_TYPES: Final = frozenset({"web_search", "web_search_preview", "web_search_2025_08_26",
                                      "web_search_preview_2025_03_11"})
_CUSTOM_INPUT_SCHEMA: Final = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The tool's raw input text (not JSON)."}},
    "required": ["input"],
    "additionalProperties": False,
}
_DECODER: Final = msgspec.json.Decoder()
_ENCODER: Final = msgspec.json.Encoder()

Json = dict[str, object]


@dataclass(frozen=True, slots=True)
class ClientTool:
    """How the client named a tool Apex renamed or reshaped."""

    name: str
    namespace: str | None
    custom: bool  # a freeform tool: the call carries ``input`` text, not JSON arguments


def flat_name(namespace: str | None, name: str) -> str:
    """The Chat function name of a (namespace, name) pair."""
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name


def chat_tools(tools: list[object], ctx: TranslateContext, *, web_search: bool) -> list[Json]:
    """Responses tools -> Chat function tools; records renamed tools in ``ctx.extras``.

    ``web_search``: the upstream has its own web search tool (Anthropic), so a client's
    web_search is kept for it in ``ctx.extras[SERVER_TOOLS_KEY]``; otherwise it is dropped
    and the response says so in a header. Other built-in tools -> InvalidRequest."""
    names: dict[str, ClientTool] = {}
    out: list[Json] = []
    for tool in tools:
        _add_tool(tool, None, out, names, ctx, web_search)
    if names:
        ctx.extras[TOOL_NAMES_KEY] = names
    return out


def _add_tool(tool: object, namespace: str | None, out: list[Json], names: dict[str, ClientTool],
              ctx: TranslateContext, web_search: bool) -> None:
    if not isinstance(tool, dict):
        raise InvalidRequest("tools must be objects", param="tools")
    kind = tool.get("type")
    if not isinstance(kind, str):
        raise InvalidRequest("a tool's type must be a string", param="tools")
    if kind == "namespace" and namespace is None:
        ns = tool.get("name")
        inner = tool.get("tools")
        if not isinstance(ns, str) or not ns or not isinstance(inner, list):
            raise InvalidRequest("a namespace tool needs a name and a tools array", param="tools")
        for nested in inner:
            _add_tool(nested, ns, out, names, ctx, web_search)
        return
    if kind in _WEB_SEARCH_TYPES and namespace is None:
        if web_search:
            ctx.extras[SERVER_TOOLS_KEY] = [ANTHROPIC_WEB_SEARCH]
        else:
            ctx.notice(DROPPED_TOOLS_HEADER, str(kind))
        return
    if kind not in ("function", "custom"):
        raise InvalidRequest(f"built-in tool {kind!r} is not supported for this upstream", param="tools")
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("a tool needs a name", param="tools")
    flat = flat_name(namespace, name)
    description = tool.get("description") if isinstance(tool.get("description"), str) else ""
    if kind == "custom":
        fn: Json = {"name": flat, "parameters": _CUSTOM_INPUT_SCHEMA}
        fmt = tool.get("format")
        if isinstance(fmt, dict) and isinstance(fmt.get("definition"), str):
            description = f"{description}\n\nThe input must follow this {fmt.get('syntax', '')} grammar:\n{fmt['definition']}"
        names[flat] = ClientTool(name, namespace, True)
    else:
        fn = {"name": flat, "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}
        if tool.get("strict") is not None:
            fn["strict"] = tool["strict"]
        if namespace is not None:
            names[flat] = ClientTool(name, namespace, False)
    if description:
        fn["description"] = description
    out.append({"type": "function", "function": fn})


def input_call(item: Json, where: str) -> Json:
    """A ``function_call`` / ``custom_tool_call`` input item (at ``where``, ``input[3]``) -> a Chat
    tool call. A name, namespace, input or arguments that is not a string is the client's error
    (OpenAI answers 400): read as "" or absent, it went upstream as another call."""
    name = item.get("name")
    namespace = item.get("namespace")
    if not isinstance(name, str):
        raise InvalidRequest(f"{where}.name must be a string", param=f"{where}.name")
    if namespace is not None and not isinstance(namespace, str):
        raise InvalidRequest(f"{where}.namespace must be a string", param=f"{where}.namespace")
    flat = flat_name(namespace, name)
    field = "input" if item.get("type") == "custom_tool_call" else "arguments"
    raw = item.get(field)
    if raw is not None and not isinstance(raw, str):
        raise InvalidRequest(f"{where}.{field} must be a string", param=f"{where}.{field}")
    if field == "input":
        arguments = _ENCODER.encode({"input": raw or ""}).decode()
    else:
        arguments = raw or "{}"
    return {"id": item.get("call_id"), "type": "function", "function": {"name": flat, "arguments": arguments}}


def client_call(ctx: TranslateContext, name: str, arguments: str) -> Json:
    """The client-facing fields of a tool call the upstream made under the flat ``name``:
    ``{"type": "function_call", "name", "arguments"[, "namespace"]}`` or
    ``{"type": "custom_tool_call", "name", "input"[, "namespace"]}``."""
    name = ctx.client_tool_name(name)  # first undo a fit for the upstream (toolids)
    names = ctx.extras.get(TOOL_NAMES_KEY)
    tool = names.get(name) if isinstance(names, dict) else None
    if not isinstance(tool, ClientTool):
        return {"type": "function_call", "name": name, "arguments": arguments}
    out: Json
    if tool.custom:
        out = {"type": "custom_tool_call", "name": tool.name, "input": _custom_input(arguments)}
    else:
        out = {"type": "function_call", "name": tool.name, "arguments": arguments}
    if tool.namespace is not None:
        out["namespace"] = tool.namespace
    return out


def _custom_input(arguments: str) -> str:
    try:
        value = _DECODER.decode(arguments) if arguments.strip() else {}
    except msgspec.DecodeError:
        return arguments  # the model wrote the raw input itself
    if isinstance(value, dict) and isinstance(value.get("input"), str):
        return str(value["input"])
    return arguments if not isinstance(value, str) else value
