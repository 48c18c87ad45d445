"""Tool-call ids, tool names and arguments made acceptable to the other side (docs/protocols.md P4, P11).

``anthropic_tool_id`` maps any id to Anthropic's ``^[a-zA-Z0-9_-]+$``, at most 64 chars;
``openai_tool_id`` to OpenAI Chat's at most 40 chars (a longer one is a 400,
``string_above_max_length``).
It is deterministic and stateless, so the same function applied to an assistant
``tool_use.id`` and to the matching ``tool_result.tool_use_id`` gives the same answer in
every request of a conversation. Valid ids are returned unchanged; any other id gets its
invalid characters replaced and an 8-hex-digit hash of the ORIGINAL id appended, so two
different ids never collide in practice. The map is one-way (no reverse map is kept).

Tool names get the same treatment per upstream dialect (``fit_tool_name`` with the
``NameRule`` of the target, the rules written once below): names a client's dialect allows
but the upstream's refuses (a Claude Code MCP tool of 100 characters on OpenAI, a Gemini
``a.b:c`` on Anthropic, ``1tool`` on Gemini) would make every turn a 400. The
``fit_*_tool_names`` functions apply the fit everywhere a translated request names a tool;
the answer must call the tool by the client's name again, so the declared names that changed
are left in ``ctx.tool_names`` (upstream name -> client's name) for the writers.

``arguments_object`` / ``arguments_text`` normalize model-written tool arguments: empty or
whitespace becomes ``{}``; text that is not a JSON object is wrapped as ``{"_raw": text}``
(never sent as a string). What this module must not do: keep state.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final

import msgspec

from apex.translate.base import TranslateContext

__all__ = ["ANTHROPIC_NAMES", "CONVERSE_NAMES", "GEMINI_NAMES", "OPENAI_NAMES", "NameRule", "anthropic_tool_id", "end_user_id",
           "fit_chat_tool_names", "fit_messages_tool_names", "fit_tool_name", "openai_tool_id",
           "arguments_object", "arguments_text", "encode_arguments", "is_complete_json"]

_VALID: Final = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_INVALID_CHARS: Final = re.compile(r"[^a-zA-Z0-9_-]")
_MAX_LEN: Final = 64
_HASH_LEN: Final = 8
_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder()


def anthropic_tool_id(tool_id: str) -> str:
    """``tool_id`` if Anthropic accepts it, else a deterministic valid replacement."""
    if _VALID.fullmatch(tool_id):
        return tool_id
    digest = hashlib.sha256(tool_id.encode()).hexdigest()[:_HASH_LEN]
    stem = _INVALID_CHARS.sub("_", tool_id)[: _MAX_LEN - _HASH_LEN - 1]
    return f"{stem}_{digest}" if stem else f"toolu_{digest}"


_OPENAI_MAX_LEN: Final = 40


def openai_tool_id(tool_id: str) -> str:
    """``tool_id`` if OpenAI Chat accepts its length, else a deterministic 40-char replacement:
    its start and a hash of the whole id (ids of other gateways run long; Anthropic allows 64)."""
    if len(tool_id) <= _OPENAI_MAX_LEN:
        return tool_id
    digest = hashlib.sha256(tool_id.encode()).hexdigest()[:_HASH_LEN]
    return f"{tool_id[: _OPENAI_MAX_LEN - _HASH_LEN - 1]}_{digest}"


@dataclass(frozen=True, slots=True)
class NameRule:
    """The tool (function) names one upstream dialect accepts."""

    valid: re.Pattern[str]
    invalid_chars: re.Pattern[str]
    max_len: int
    letter_first: bool  # the first character must be a letter or an underscore


# OpenAI Chat and Responses: "a-z, A-Z, 0-9, or contain underscores and dashes, with a maximum
# length of 64" (API reference, FunctionDefinition.name); a longer name is a 400
# string_above_max_length, another character a 400 invalid_value, in tools and in the
# history's tool_calls alike.
OPENAI_NAMES: Final = NameRule(re.compile(r"[a-zA-Z0-9_-]{1,64}"), re.compile(r"[^a-zA-Z0-9_-]"), 64, False)
# Anthropic: "tools.0.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'" (the
# API's 400; 64 before mid-2025).
ANTHROPIC_NAMES: Final = NameRule(re.compile(r"[a-zA-Z0-9_-]{1,128}"), re.compile(r"[^a-zA-Z0-9_-]"), 128, False)
# Gemini: "Must start with a letter or an underscore. Must be a-z, A-Z, 0-9, or contain
# underscores, dots, colons and dashes, with a maximum length of 64" (FunctionDeclaration.name).
GEMINI_NAMES: Final = NameRule(re.compile(r"[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}"), re.compile(r"[^a-zA-Z0-9_.:-]"), 64, True)
# Bedrock Converse (models that are not Claude): "Length Constraints: Minimum length of 1.
# Maximum length of 64. Pattern: [a-zA-Z0-9_-]+" (API reference, ToolSpecification.name,
# SpecificToolChoice and ToolUseBlock alike): OpenAI's rule, written apart because the
# Messages body Converse is built from was fitted only to Anthropic's 128.
CONVERSE_NAMES: Final = NameRule(re.compile(r"[a-zA-Z0-9_-]{1,64}"), re.compile(r"[^a-zA-Z0-9_-]"), 64, False)


def fit_tool_name(name: str, rule: NameRule) -> str:
    """``name`` if the upstream accepts it, else a deterministic valid replacement: invalid
    characters replaced, a leading ``_`` where a letter must come first, and 8 hex digits of a
    hash of the ORIGINAL (so distinct names stay distinct) after it, or, for a name too long,
    between its start and its end: ``mcp__<server>__<tool>`` keeps the tool's own name, which
    the model reads to choose it (cutting the end left names that differ only in the hash)."""
    if rule.valid.fullmatch(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:_HASH_LEN]
    stem = rule.invalid_chars.sub("_", name)
    if rule.letter_first and stem and not (stem[0].isalpha() or stem[0] == "_"):
        stem = "_" + stem
    if not stem:
        return f"tool_{digest}"
    if len(stem) <= rule.max_len - _HASH_LEN - 1:
        return f"{stem}_{digest}"
    room = rule.max_len - _HASH_LEN - 2  # head _ digest _ tail
    head = room // 3
    return f"{stem[:head]}_{digest}_{stem[len(stem) - (room - head):]}"


def _fit_declared(holders: list[object], rule: NameRule, ctx: TranslateContext) -> set[str]:
    """Fit the ``name`` of each dict in ``holders`` (the declared tools) in place and tell
    ``ctx`` the renamed ones; returns the names now declared, all valid, so that the history's
    names (mostly the same ones) cost a set lookup instead of a regex match each."""
    renamed: dict[str, str] = {}
    declared: set[str] = set()
    for holder in holders:
        if not isinstance(holder, dict):
            continue
        name = holder.get("name")
        if not isinstance(name, str):
            continue
        if not rule.valid.fullmatch(name):
            holder["name"] = fitted = fit_tool_name(name, rule)
            renamed[fitted], name = name, fitted
        declared.add(name)
    ctx.learn_tool_names(renamed)
    return declared


def _fit_name(holder: object, rule: NameRule, declared: set[str]) -> None:
    """Fit ``holder["name"]`` in place (a name in tool_choice or in the history)."""
    if isinstance(holder, dict):
        name = holder.get("name")
        if isinstance(name, str) and name not in declared and not rule.valid.fullmatch(name):
            holder["name"] = fit_tool_name(name, rule)


def fit_chat_tool_names(req: dict[str, object], ctx: TranslateContext) -> None:
    """Every tool name of a translated Chat request made valid for OpenAI: declared tools,
    ``tool_choice`` and the history's ``tool_calls``; the renamed declared ones go to ctx."""
    tools = req.get("tools")
    declared = _fit_declared([t.get("function") for t in tools if isinstance(t, dict)]
                                  if isinstance(tools, list) else [], OPENAI_NAMES, ctx)
    choice = req.get("tool_choice")
    if isinstance(choice, dict):
        _fit_name(choice.get("function"), OPENAI_NAMES, declared)
    messages = req.get("messages")
    for message in messages if isinstance(messages, list) else ():
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        for call in calls if isinstance(calls, list) else ():
            _fit_name(call.get("function") if isinstance(call, dict) else None, OPENAI_NAMES, declared)


def fit_messages_tool_names(req: dict[str, object], ctx: TranslateContext) -> None:
    """Every tool name of a translated Messages request made valid for Anthropic: declared
    tools, ``tool_choice`` and the history's ``tool_use`` blocks; the renamed declared ones go
    to ctx."""
    tools = req.get("tools")
    declared = _fit_declared(tools if isinstance(tools, list) else [], ANTHROPIC_NAMES, ctx)
    _fit_name(req.get("tool_choice"), ANTHROPIC_NAMES, declared)
    messages = req.get("messages")
    for message in messages if isinstance(messages, list) else ():
        blocks = message.get("content") if isinstance(message, dict) else None
        for block in blocks if isinstance(blocks, list) else ():
            if isinstance(block, dict) and block.get("type") == "tool_use":
                _fit_name(block, ANTHROPIC_NAMES, declared)


_USER_MAX_LEN: Final = 64


def end_user_id(value: str) -> str:
    """An end-user id as OpenAI's ``user`` / ``safety_identifier`` take it (at most 64
    characters): a longer one (Claude Code's metadata.user_id is a 150-character JSON string)
    becomes a stable digest of it, still one id per user. OpenAI refused the request."""
    if len(value) <= _USER_MAX_LEN:
        return value
    return "sha256-" + hashlib.sha256(value.encode()).hexdigest()[: _USER_MAX_LEN - 7]


def arguments_object(arguments: str) -> dict[str, object]:
    """Tool arguments text -> a JSON object (``""`` -> ``{}``, non-objects wrapped)."""
    if not arguments.strip():
        return {}
    try:
        value = _DECODER.decode(arguments)
    except msgspec.DecodeError:
        return {"_raw": arguments}
    if isinstance(value, dict):
        return value
    return {"_raw": arguments}


def arguments_text(arguments: str | None) -> str:
    """Tool arguments as OpenAI clients must get them: ``""``/None -> ``"{}"``, else as is."""
    if arguments is None or not arguments.strip():
        return "{}"
    return arguments


def encode_arguments(value: object) -> str:
    """A JSON value as the compact argument string OpenAI clients expect."""
    return _ENCODER.encode(value).decode()


def is_complete_json(text: str) -> bool:
    """True when ``text`` already parses as JSON (a tool call's arguments are finished)."""
    try:
        _DECODER.decode(text)
    except msgspec.DecodeError:
        return False
    return True
