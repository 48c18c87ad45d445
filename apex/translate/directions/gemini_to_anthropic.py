"""Gemini generateContent client -> Anthropic Messages upstream: request, response and stream.

The ``Conversation`` (``gemini_request``) is rendered as a Messages request: the system
instruction is ``system``; function responses are ``tool_result`` blocks at the start of
their user message (``is_error`` for ``{"error": ...}``); inline images are base64 image
blocks, PDFs documents, file URIs URL images; a model turn's thoughts become ``thinking``
blocks only when they carry a genuine Anthropic signature (one Apex minted for this
client earlier; unsigned thinking is refused by Anthropic), its text text blocks, its
calls ``tool_use`` blocks (ids made Anthropic-safe by ``toolids.anthropic_tool_id``, the
same function on both ends). ``max_tokens`` is required: ``maxOutputTokens`` or
``DEFAULT_MAX_TOKENS``. A thinking config becomes ``thinking`` where the model reasons
(capability table: adaptive with an effort, or a budget of at least 1024 that leaves room
for the answer, as for OpenAI clients); it is not sent when the last model turn called tools
without a signed thought (Anthropic answers 400, P6), and it drops temperature/top_p/top_k.
Temperature is clamped to 0..1, and ``top_p`` dropped beside it (P17). JSON output becomes
``output_config.format`` with the schema fitted (``anthropic_output_schema``) on models that
take it, else a system instruction, as for OpenAI clients. Answers come back through
``reply_from_anthropic`` / ``AnthropicReader`` into the Gemini writers.
What this module must not do: any I/O.
"""

from __future__ import annotations

import base64
from typing import Final, final

import msgspec

from apex.errors import InvalidRequest
from apex.translate.base import StreamTranslator, TranslateContext
from apex.translate.request.gemini_conversation import (
    Call,
    Conversation,
    enum_instruction,
    Item,
    Media,
    Result,
    Text,
    Thought,
    Turn,
    read_gemini_request,
)
from apex.translate.directions.gemini_to_openai import result_text
from apex.translate.directions.openai_to_anthropic import ANSWER_ROOM, JSON_OBJECT_INSTRUCTION, JSON_SCHEMA_INSTRUCTION
from apex.translate.neutral.outputschema import anthropic_output_schema
from apex.translate.neutral.parts import PipedStream
from apex.translate.request.responses_tools import DROPPED_TOOLS_HEADER
from apex.translate.neutral.reply import encode_body, reply_from_anthropic
from apex.translate.read.anthropic import AnthropicReader
from apex.translate.write.gemini import HIDE_THOUGHTS, GeminiWriter, gemini_body
from apex.translate.neutral.toolids import anthropic_tool_id, fit_messages_tool_names
from apex.types import Dialect

__all__ = ["DEFAULT_MAX_TOKENS", "GeminiToAnthropic", "gemini_to_anthropic_request"]

DEFAULT_MAX_TOKENS: Final = 8192
MIN_THINKING_BUDGET: Final = 1024
LEVEL_BUDGETS: Final[dict[str, int]] = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}
DYNAMIC_BUDGET: Final = 4096

_TOOL_CHOICE: Final[dict[str, str]] = {"auto": "auto", "any": "any", "none": "none"}
_DECODER: Final = msgspec.json.Decoder(dict[str, object])

Json = dict[str, object]


def gemini_to_anthropic_request(conv: Conversation, ctx: TranslateContext) -> Json:
    """A Conversation -> a Messages request (dict)."""
    if conv.max_tokens is not None:
        conv.max_tokens = ctx.caps.output_limit(conv.max_tokens)
    if conv.candidates is not None and conv.candidates > 1:
        raise InvalidRequest("candidateCount above 1 cannot be served by this channel",
                             param="generationConfig.candidateCount")
    messages: list[Json] = []
    for turn in conv.turns:
        content = _blocks(turn)
        if not content:
            continue
        role = "assistant" if turn.role == "model" else "user"
        if messages and messages[-1]["role"] == role:
            previous = messages[-1]["content"]
            assert isinstance(previous, list)
            previous.extend(content)
        else:
            messages.append({"role": role, "content": content})
    thinking = _thinking(conv, ctx)
    thinking_block: Json | None = None
    effort: str | None = None
    if thinking is not None:
        thinking_block, max_tokens, effort = thinking
    else:
        max_tokens = conv.max_tokens or DEFAULT_MAX_TOKENS
    out: Json = {"model": ctx.upstream_model, "max_tokens": max_tokens, "messages": messages}
    system = conv.system
    native_format: Json | None = None
    if conv.json_output and conv.json_schema and ctx.caps.json_schema and conv.json_schema.lstrip().startswith(b"{"):
        # As for OpenAI clients: a model with structured outputs enforces the schema itself,
        # fitted first (Gemini has no additionalProperties rule, and takes minimum/maxItems...).
        schema = anthropic_output_schema(_DECODER.decode(conv.json_schema))
        if schema is not None:
            native_format = {"type": "json_schema", "schema": schema}
    if conv.json_output and native_format is None:
        instruction = (JSON_SCHEMA_INSTRUCTION + conv.json_schema.decode()) if conv.json_schema else JSON_OBJECT_INSTRUCTION
        system = f"{system}\n\n{instruction}" if system else instruction
    if conv.enum_choices:
        instruction = enum_instruction(conv.enum_choices)
        system = f"{system}\n\n{instruction}" if system else instruction
    if system:
        out["system"] = system
    if conv.tools:
        out["tools"] = [{"name": t.name, **({"description": t.description} if t.description else {}),
                         "input_schema": msgspec.Raw(t.schema)} for t in conv.tools]
        if conv.tool_mode is not None:
            if conv.tool_mode == "any" and len(conv.tool_names) == 1:
                out["tool_choice"] = {"type": "tool", "name": conv.tool_names[0]}
            else:
                out["tool_choice"] = {"type": _TOOL_CHOICE[conv.tool_mode]}
    if conv.stop:
        out["stop_sequences"] = conv.stop
    output_config: Json = {}
    if native_format is not None:
        output_config["format"] = native_format
    if thinking_block is not None:
        out["thinking"] = thinking_block
        if effort is not None:
            output_config["effort"] = effort
    else:
        if conv.temperature is not None:
            out["temperature"] = min(max(conv.temperature, 0.0), 1.0)
        elif conv.top_p is not None:
            out["top_p"] = conv.top_p
        if conv.top_k is not None:
            out["top_k"] = conv.top_k
    if output_config:
        out["output_config"] = output_config
    if ctx.stream:
        out["stream"] = True
    fit_messages_tool_names(out, ctx)
    return out


def _thinking(conv: Conversation, ctx: TranslateContext) -> tuple[Json, int, str | None] | None:
    """(thinking, max_tokens, output_config.effort or None), or None for no thinking: only
    where the model reasons (capability table), as for OpenAI clients (``openai_to_anthropic``)."""
    level = conv.thinking_level
    budget = LEVEL_BUDGETS.get(level or "") if level else conv.thinking_budget
    caps = ctx.caps
    if budget is None or budget == 0 or not caps.reasons:
        return None
    if budget < 0:
        budget = DYNAMIC_BUDGET
    if conv.tool_mode == "any":
        return None  # Anthropic refuses thinking with a forced tool
    last_model = next((t for t in reversed(conv.turns) if t.role == "model"), None)
    if last_model is not None and any(isinstance(i, Call) for i in last_model.items) and not any(
            isinstance(i, Thought) and i.signature for i in last_model.items):
        return None  # P6: no signed thinking block to replay
    asked = conv.max_tokens
    if "adaptive" in caps.knobs:
        effort = level if level in LEVEL_BUDGETS else "low" if budget < 4096 else "medium" if budget < 16384 else "high"
        return {"type": "adaptive"}, asked if asked is not None else caps.output_limit(budget + ANSWER_ROOM), caps.effort(effort)
    if "budget" not in caps.knobs:
        return None
    budget = max(budget, MIN_THINKING_BUDGET)
    if asked is None:
        # Sized for the budget, within the model's limit (Gemini 2.5 Pro's top budget, 32,768,
        # plus room is over Opus 4.1's 32,000: a 400), as for OpenAI clients.
        asked = caps.output_limit(budget + ANSWER_ROOM)
        if asked == budget + ANSWER_ROOM:
            return {"type": "enabled", "budget_tokens": budget}, asked, None
    budget = min(budget, asked - min(ANSWER_ROOM, asked // 2))
    if budget < MIN_THINKING_BUDGET:
        return None
    return {"type": "enabled", "budget_tokens": budget}, asked, None


def _blocks(turn: Turn) -> list[Json]:
    if turn.role == "model":
        return _model_blocks(turn.items)
    results: list[Json] = []
    rest: list[Json] = []
    for item in turn.items:
        if isinstance(item, Result):
            text, is_error = result_text(item.response)
            block: Json = {"type": "tool_result", "tool_use_id": anthropic_tool_id(item.call_id), "content": text}
            if is_error:
                block["is_error"] = True
            results.append(block)
        elif isinstance(item, Text):
            if item.text.strip():
                rest.append({"type": "text", "text": item.text})
        elif isinstance(item, Media):
            rest.append(_media_block(item))
        elif isinstance(item, (Call, Thought)):
            raise InvalidRequest("functionCall and thought parts belong in model turns", param="contents")
    return results + rest


def _model_blocks(items: list[Item]) -> list[Json]:
    """A model turn's blocks. One Anthropic thinking block reaches a Gemini client as thought
    parts: its text (streamed, in pieces) and then its signature on a part of its own. The
    pieces up to a signed part are one block again, text intact: Anthropic refuses a tool
    turn whose thinking was altered (P6). Thought text no signature follows is dropped
    (Anthropic refuses thinking it did not sign)."""
    out: list[Json] = []
    thinking: list[str] = []
    for item in items:
        if isinstance(item, Thought):
            thinking.append(item.text)
            if item.signature:
                out.append({"type": "thinking", "thinking": "".join(thinking), "signature": item.signature})
                thinking.clear()
            continue
        thinking.clear()
        block = _model_block(item)
        if block is not None:
            out.append(block)
    return out


def _model_block(item: Item) -> Json | None:
    if isinstance(item, Text):
        return {"type": "text", "text": item.text} if item.text.strip() else None
    if isinstance(item, Call):
        return {"type": "tool_use", "id": anthropic_tool_id(item.call_id), "name": item.name,
                "input": msgspec.Raw(item.arguments)}
    raise InvalidRequest("model turns may hold only text, thoughts and function calls for this channel",
                         param="contents")


def _media_block(media: Media) -> Json:
    if media.mime_type and not media.mime_type.startswith(("image/", "text/")) and media.mime_type != "application/pdf":
        # Messages takes images and documents only: audio or video went as an "image" and
        # came back as Anthropic's 400 about an image.
        raise InvalidRequest(f"{media.mime_type} parts cannot be sent to this upstream (images, PDF and text only)",
                             param="contents")
    kind = "document" if media.mime_type == "application/pdf" else "image"
    if media.data is not None:
        if media.mime_type.startswith("text/"):
            return {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                                   "data": _b64_text(media.data)}}
        return {"type": kind, "source": {"type": "base64", "media_type": media.mime_type, "data": media.data}}
    return {"type": kind, "source": {"type": "url", "url": media.url or ""}}


def _b64_text(data: str) -> str:
    return base64.b64decode(data).decode("utf-8", "replace")


@final
class GeminiToAnthropic:
    """The GEMINI_GENERATE client -> ANTHROPIC_MESSAGES upstream Translator."""

    client: Dialect = Dialect.GEMINI_GENERATE
    upstream: Dialect = Dialect.ANTHROPIC_MESSAGES

    def request(self, body: bytes, ctx: TranslateContext) -> bytes:
        """generateContent request bytes -> Messages request bytes."""
        conv = read_gemini_request(body)
        if not conv.include_thoughts:
            ctx.extras[HIDE_THOUGHTS] = True
        for name in conv.dropped_tools:
            ctx.notice(DROPPED_TOOLS_HEADER, name)
        return msgspec.json.encode(gemini_to_anthropic_request(conv, ctx))

    def response(self, body: bytes, ctx: TranslateContext) -> bytes:
        """Messages body -> GenerateContentResponse body; sets ctx.usage."""
        reply = reply_from_anthropic(body)
        ctx.usage = reply.usage
        return encode_body(gemini_body(reply, ctx))

    def stream(self, ctx: TranslateContext) -> StreamTranslator:
        """Anthropic events -> Gemini chunks."""
        return PipedStream(AnthropicReader(), GeminiWriter(ctx))
