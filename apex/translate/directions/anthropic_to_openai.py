"""Anthropic Messages client -> OpenAI-compatible Chat upstream: request (8.2), response, stream.

Request decisions (docs/protocols.md 8.2, P7, P8, P15, P16):
- ``system`` -> one leading ``system`` message (never ``developer``: third parties reject it).
- a user turn's ``tool_result`` blocks -> one ``tool`` message each, BEFORE the turn's
  other content; ``is_error`` prefixes the text with ``"Error: "``; images inside a tool
  result move to a user message right after the tool messages.
- user text-only content becomes a plain string (joined with newlines), otherwise parts;
  images -> ``image_url`` (data URL or URL), PDF documents -> ``file`` parts, plain-text
  documents -> text.
- assistant ``thinking`` text -> ``reasoning_content`` on that assistant message (DeepSeek
  and Kimi require it back on tool-call turns); redacted thinking and server-tool blocks
  are dropped; ``tool_use`` -> ``tool_calls`` with the input JSON-encoded.
- server tools (a ``type`` other than ``custom`` and no ``input_schema``) -> InvalidRequest,
  as are ``thread``, ``mcp_servers`` and ``container`` (state Anthropic's API keeps:
  ``neutral/serverstate.py``).
- a mid-conversation ``role: "system"`` turn -> a ``system`` message at the same place.
- deferred tools (``defer_loading: true``, Anthropic's tool search) are declared only once a
  ``tool_reference`` in the history loads them; a ``tool_reference`` becomes a line of text
  in its tool message (``neutral/deferred.py``).
- ``max_tokens`` goes out in the field the capability table names for the upstream model
  (``max_completion_tokens`` for OpenAI reasoning models, else ``max_tokens``).
- ``thinking`` -> ``reasoning_effort`` only where the model reasons and takes that knob
  (capability table): enabled by budget (<4096 low, <16384 medium, else high), adaptive
  by ``output_config.effort`` (default high), snapped to the values the model accepts;
  ``output_config.format`` -> ``response_format`` json_schema; ``top_k``,
  ``cache_control`` and ``context_management`` are dropped; ``metadata.user_id`` -> ``user``.
- streams ask for ``stream_options.include_usage`` (Anthropic clients need usage).
- ``ctx.estimated_input_tokens`` is filled from the request (``apex.tokens``) when 0, for
  ``message_start`` (0 breaks Claude Code's context meter, P8).
What this module must not do: any I/O.
"""

from __future__ import annotations

from typing import Final, final

import msgspec

from apex.errors import InvalidRequest
from apex.tokens import estimate_tokens
from apex.translate.base import StreamTranslator, TranslateContext, decode_json_object
from apex.translate.capabilities import MAX_STOP_SEQUENCES, SAMPLING_FIELDS
from apex.translate.neutral.deferred import TOOL_REFERENCE, is_declared, loaded_tools, reference_text
from apex.translate.neutral.parts import PipedStream
from apex.translate.neutral.serverstate import refuse_server_state
from apex.translate.neutral.toolids import OPENAI_NAMES, end_user_id, fit_chat_tool_names, openai_tool_id
from apex.translate.neutral.reply import anthropic_body, encode_body, reply_from_openai
from apex.translate.read.openai import OpenAIChatReader
from apex.translate.write.anthropic import AnthropicWriter
from apex.types import Dialect

__all__ = [
    "MAX_TOKENS_FIELD_KEY",
    "AnthropicToOpenAI",
    "anthropic_to_openai_request",
    "drop_refused_sampling",
    "max_tokens_field",
    "reasoning_effort_for",
    "response_format_for",
]

MAX_TOKENS_FIELD_KEY: Final = "max_tokens_field"  # ctx.extras: "max_tokens" | "max_completion_tokens"
TOOL_ERROR_PREFIX: Final = "Error: "

_ENCODER: Final = msgspec.json.Encoder()
_TOOL_CHOICE: Final[dict[str, str]] = {"auto": "auto", "any": "required", "none": "none"}
_TOOL_CHOICE_TYPES: Final = frozenset({*_TOOL_CHOICE, "tool"})

Json = dict[str, object]


def max_tokens_field(ctx: TranslateContext) -> str:
    """Which Chat field carries the output limit for this upstream model (capability table)."""
    forced = ctx.extras.get(MAX_TOKENS_FIELD_KEY)
    if forced in ("max_tokens", "max_completion_tokens"):
        return str(forced)
    return ctx.caps.max_tokens_field


def drop_refused_sampling(out: Json, ctx: TranslateContext) -> None:
    """Remove the sampling settings (and stop sequences) an OpenAI reasoning model refuses
    (capability table)."""
    if ctx.caps.refuses_sampling:
        for key in SAMPLING_FIELDS:
            out.pop(key, None)


def reasoning_effort_for(ctx: TranslateContext, thinking: object, output_config: object) -> str | None:
    """Anthropic ``thinking`` (+ ``output_config.effort``) -> a ``reasoning_effort`` the upstream
    model accepts, or None when the model does not reason or takes no effort knob (OpenAI
    answers 400 to reasoning_effort on gpt-4.1 / gpt-4o)."""
    caps = ctx.caps
    if not (caps.reasons and "effort" in caps.knobs) or not isinstance(thinking, dict):
        return None
    kind = thinking.get("type")
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        budget = budget if isinstance(budget, int) else 0
        return caps.effort("low" if budget < 4096 else "medium" if budget < 16384 else "high")
    if kind == "adaptive":
        effort = output_config.get("effort") if isinstance(output_config, dict) else None
        return caps.effort(effort if isinstance(effort, str) else "high")  # Anthropic's default effort
    return None


def response_format_for(output_config: object) -> Json | None:
    """``output_config.format`` (structured outputs) -> Chat ``response_format``."""
    fmt = output_config.get("format") if isinstance(output_config, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": fmt.get("schema") or {}}}


def anthropic_to_openai_request(req: Json, ctx: TranslateContext) -> Json:
    """A decoded Messages request -> a Chat Completions request (dict)."""
    refuse_server_state(req.get("thread"), req.get("mcp_servers"), req.get("container"))
    out: Json = {"model": ctx.upstream_model}
    messages: list[Json] = []
    system = req.get("system")
    if system:
        text = _joined_text(system, "system")
        if text:
            messages.append({"role": "system", "content": text})
    turns = req.get("messages")
    if not isinstance(turns, list) or not turns:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    for i, turn in enumerate(turns):
        messages.extend(_convert_turn(turn, f"messages[{i}]"))
    out["messages"] = messages
    max_tokens = req.get("max_tokens")
    if isinstance(max_tokens, int):
        out[max_tokens_field(ctx)] = ctx.caps.output_limit(max_tokens)
    tools = req.get("tools")
    if tools is not None and not isinstance(tools, list):  # dropped, the model would answer without them
        raise InvalidRequest("tools must be an array", param="tools")
    if isinstance(tools, list) and tools:
        loaded = loaded_tools(turns)
        declared = [_convert_tool(t) for t in tools if not isinstance(t, dict)
                    or is_declared(t.get("defer_loading"), t.get("name"), loaded)]
        if declared:
            out["tools"] = declared
    choice = req.get("tool_choice")
    kind = choice.get("type") if isinstance(choice, dict) else None
    if choice is not None and not (isinstance(kind, str) and kind in _TOOL_CHOICE_TYPES):
        raise InvalidRequest("tool_choice must be an object whose type is auto, any, tool or none", param="tool_choice")
    if isinstance(choice, dict) and "tools" in out:  # Chat refuses a tool_choice without tools
        if kind == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        elif isinstance(kind, str) and kind in _TOOL_CHOICE:
            out["tool_choice"] = _TOOL_CHOICE[kind]
        if choice.get("disable_parallel_tool_use") is True:
            out["parallel_tool_calls"] = False
    stop = req.get("stop_sequences")
    if isinstance(stop, list) and stop:
        out["stop"] = stop[:MAX_STOP_SEQUENCES]
    for key in ("temperature", "top_p"):
        if isinstance(req.get(key), (int, float)):
            out[key] = req[key]
    effort = reasoning_effort_for(ctx, req.get("thinking"), req.get("output_config"))
    if effort is not None:
        out["reasoning_effort"] = effort
    drop_refused_sampling(out, ctx)
    response_format = response_format_for(req.get("output_config"))
    if response_format is not None:
        out["response_format"] = response_format
    metadata = req.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        out["user"] = end_user_id(metadata["user_id"])
    if req.get("stream"):
        out["stream"] = True
        if ctx.upstream_takes_stream_usage:  # Groq and older Azure api-versions refuse it (400)
            out["stream_options"] = {"include_usage": True}
    fit_chat_tool_names(out, ctx)
    return out


def _joined_text(content: object, where: str) -> str:
    """``system`` or a system turn's ``content`` (path ``where``): a string or text blocks."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"{where} must be a string or an array of text blocks", param=where)
    texts = []
    for k, block in enumerate(content):
        # A string or a block with no text would be dropped unseen: Anthropic answers 400 to both.
        if not isinstance(block, dict):
            raise InvalidRequest(f"{where}[{k}] must be a text block object", param=f"{where}[{k}]")
        kind = block.get("type")
        if kind == "text":
            texts.append(_text_of(block, f"{where}[{k}]"))
        elif kind in ("image", "document"):
            raise InvalidRequest(f"{where}: {kind} blocks cannot go here for this upstream", param=f"{where}[{k}]")
    return "\n".join(texts)


def _text_of(block: Json, where: str, key: str = "text") -> str:
    """A text block's ``key`` string; a number or object there is the client's error (Anthropic's 400),
    which Chat would have received stringified or not at all."""
    text = block.get(key)
    if not isinstance(text, str):
        raise InvalidRequest(f"{where}.{key} must be a string", param=f"{where}.{key}")
    return text


def _convert_turn(turn: object, where: str) -> list[Json]:
    if not isinstance(turn, dict):
        raise InvalidRequest(f"{where} must be an object")
    role, content = turn.get("role"), turn.get("content")
    if role == "system":
        # Mid-conversation system message (Claude Code's beta): Chat takes system messages
        # anywhere, so it stays at its place.
        return [{"role": "system", "content": _joined_text(content, f"{where}.content")}]
    if role not in ("user", "assistant"):
        raise InvalidRequest(f"{where}: role must be user, assistant or system")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content must be a string or an array")
    return _user_turn(content, where) if role == "user" else [_assistant_turn(content, where)]


def _user_turn(blocks: list[object], where: str) -> list[Json]:
    tool_messages: list[Json] = []
    moved_images: list[Json] = []
    parts: list[Json] = []
    for k, block in enumerate(blocks):
        at = f"{where}.content[{k}]"
        if not isinstance(block, dict):
            raise InvalidRequest(f"{at} must be an object")
        kind = block.get("type")
        if kind == "tool_result":
            text, images = _tool_result_content(block.get("content"), at)
            if block.get("is_error") is True:
                text = TOOL_ERROR_PREFIX + text
            tool_messages.append({"role": "tool", "tool_call_id": _chat_id(block.get("tool_use_id")), "content": text})
            moved_images.extend(images)
        else:
            part = _user_part(block, at)
            if part is not None:
                parts.append(part)
    out = tool_messages
    rest = moved_images + parts
    if rest:
        if all(p["type"] == "text" for p in rest):
            out.append({"role": "user", "content": "\n".join(str(p["text"]) for p in rest)})
        else:
            out.append({"role": "user", "content": rest})
    return out


def _tool_result_content(content: object, where: str) -> tuple[str, list[Json]]:
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content must be a string or an array")
    texts: list[str] = []
    images: list[Json] = []
    for j, block in enumerate(content):
        if not isinstance(block, dict):  # was skipped: the tool's output went missing unseen
            raise InvalidRequest(f"{where}.content[{j}] must be an object", param=f"{where}.content[{j}]")
        part = _user_part(block, f"{where}.content[{j}]")
        if part is None:
            continue
        if part["type"] == "text":
            texts.append(str(part["text"]))
        else:
            images.append(part)
    return "\n".join(texts), images


def _user_part(block: Json, where: str) -> Json | None:
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": _text_of(block, where)}
    if kind == TOOL_REFERENCE:
        return {"type": "text", "text": reference_text(block.get("tool_name"), OPENAI_NAMES)}
    if kind in ("image", "document"):
        source = block.get("source")
        if not isinstance(source, dict):
            raise InvalidRequest(f"{where}.source must be an object", param=f"{where}.source")
        stype = source.get("type")
        if stype == "base64":
            # Formatted into a data URL, an object here went upstream as its Python repr.
            url = f"data:{_text_of(source, f'{where}.source', 'media_type')};base64,{_text_of(source, f'{where}.source', 'data')}"
            if kind == "image":
                return {"type": "image_url", "image_url": {"url": url}}
            return {"type": "file", "file": {"file_data": url, "filename": "document.pdf"}}
        if stype == "url" and kind == "image":
            return {"type": "image_url", "image_url": {"url": _text_of(source, f"{where}.source", "url")}}
        if stype == "text" and kind == "document":
            return {"type": "text", "text": _text_of(source, f"{where}.source", "data")}
        raise InvalidRequest(f"{where}: {kind} source {stype!r} is not supported by this upstream")
    raise InvalidRequest(f"{where}: block type {kind!r} is not supported by this upstream")


def _assistant_turn(blocks: list[object], where: str) -> Json:
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[Json] = []
    for k, block in enumerate(blocks):
        if not isinstance(block, dict):
            raise InvalidRequest(f"{where}.content[{k}] must be an object", param=f"{where}.content[{k}]")
        kind = block.get("type")
        if kind == "text":
            texts.append(_text_of(block, f"{where}.content[{k}]"))
        elif kind == "thinking":
            thinking.append(_text_of(block, f"{where}.content[{k}]", "thinking"))
        elif kind == "tool_use":
            calls.append({"id": _chat_id(block.get("id")), "type": "function",
                          "function": {"name": block.get("name"),
                                       "arguments": _ENCODER.encode(block.get("input") or {}).decode()}})
        # redacted_thinking and server-tool blocks have no Chat form: dropped.
    message: Json = {"role": "assistant", "content": "".join(texts) or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    return message


def _chat_id(value: object) -> object:
    """A tool-call id as OpenAI Chat takes it (at most 40 characters), the same in the call
    and in its result; anything not a string goes on for the upstream to refuse."""
    return openai_tool_id(value) if isinstance(value, str) else value


def _convert_tool(tool: object) -> Json:
    if not isinstance(tool, dict) or "input_schema" not in tool or tool.get("type", "custom") != "custom":
        name = tool.get("type") if isinstance(tool, dict) else None
        raise InvalidRequest(f"server tool {name!r} cannot be used with this upstream", param="tools")
    fn: Json = {"name": tool.get("name"), "parameters": tool["input_schema"]}
    if tool.get("description"):
        fn["description"] = tool["description"]
    return {"type": "function", "function": fn}


@final
class AnthropicToOpenAI:
    """The ANTHROPIC_MESSAGES client -> OPENAI_CHAT upstream Translator."""

    client: Dialect = Dialect.ANTHROPIC_MESSAGES
    upstream: Dialect = Dialect.OPENAI_CHAT

    def request(self, body: bytes, ctx: TranslateContext) -> bytes:
        """Messages request bytes -> Chat request bytes; fills ctx.estimated_input_tokens."""
        req = decode_json_object(body)
        if not ctx.estimated_input_tokens:
            ctx.estimated_input_tokens = estimate_tokens(body)
        return _ENCODER.encode(anthropic_to_openai_request(req, ctx))

    def response(self, body: bytes, ctx: TranslateContext) -> bytes:
        """chat.completion body -> Messages body; sets ctx.usage."""
        reply = reply_from_openai(body)
        ctx.usage = reply.usage
        return encode_body(anthropic_body(reply, ctx))

    def stream(self, ctx: TranslateContext) -> StreamTranslator:
        """Chat chunks -> Anthropic events."""
        return PipedStream(OpenAIChatReader(), AnthropicWriter(ctx))

