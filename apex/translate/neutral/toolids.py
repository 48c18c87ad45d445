"""Tool-call ids and arguments made acceptable to the other side (docs/protocols.md P4, P11).

``anthropic_tool_id`` maps any id to Anthropic's ``^[a-zA-Z0-9_-]+$``, at most 64 chars;
``openai_tool_id`` to OpenAI Chat's at most 40 chars (a longer one is a 400,
``string_above_max_length``).
It is deterministic and stateless, so the same function applied to an assistant
``tool_use.id`` and to the matching ``tool_result.tool_use_id`` gives the same answer in
every request of a conversation. Valid ids are returned unchanged; any other id gets its
invalid characters replaced and an 8-hex-digit hash of the ORIGINAL id appended, so two
different ids never collide in practice. The map is one-way (no reverse map is kept).

``arguments_object`` / ``arguments_text`` normalize model-written tool arguments: empty or
whitespace becomes ``{}``; text that is not a JSON object is wrapped as ``{"_raw": text}``
(never sent as a string). What this module must not do: keep state.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

import msgspec

__all__ = ["anthropic_tool_id", "end_user_id", "openai_tool_id", "arguments_object", "arguments_text", "encode_arguments", "is_complete_json"]

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
