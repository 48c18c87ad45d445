"""Gemini generateContent client -> OpenAI Chat upstream: request, response and stream.

The request is read once into a ``Conversation`` (``gemini_request``) and rendered as a
Chat request: the system instruction becomes a leading ``system`` message; a user turn's
function responses become ``tool`` messages (before its other content, in order) whose
content is the response's ``output`` string when it has only that, else its JSON; images
and files become ``image_url`` / ``file`` parts (data URLs for inline data); a model turn
becomes one assistant message with ``reasoning_content`` (its thought text), text and
``tool_calls``. ``generationConfig`` maps to the Chat knobs (8.3 read backwards);
``responseLogprobs``/``logprobs`` become ``logprobs``/``top_logprobs``;
``thinkingBudget``/``thinkingLevel`` become ``reasoning_effort`` where the model reasons
(capability table); the output limit goes out in the field the model takes; streams
ask for ``include_usage``. Answers come back through ``reply_from_openai`` /
``OpenAIChatReader`` into the Gemini writers. What this module must not do: any I/O.
"""

from __future__ import annotations

import base64
from typing import Final, final

import msgspec

from apex.errors import InvalidRequest
from apex.translate.capabilities import MAX_STOP_SEQUENCES
from apex.translate.base import StreamTranslator, TranslateContext
from apex.translate.directions.anthropic_to_openai import drop_refused_sampling, max_tokens_field
from apex.translate.directions.openai_to_anthropic import JSON_OBJECT_INSTRUCTION
from apex.translate.request.gemini_conversation import (
    Call,
    Conversation,
    Item,
    Media,
    Result,
    Text,
    Thought,
    enum_instruction,
    read_gemini_request,
)
from apex.translate.neutral.parts import PipedStream
from apex.translate.neutral.toolids import fit_chat_tool_names, openai_tool_id
from apex.translate.request.responses_tools import DROPPED_TOOLS_HEADER
from apex.translate.neutral.reply import encode_body, reply_from_openai
from apex.translate.read.openai import OpenAIChatReader
from apex.translate.write.gemini import HIDE_THOUGHTS, GeminiWriter, gemini_body
from apex.types import Dialect

__all__ = ["GeminiToOpenAI", "gemini_to_openai_request", "reasoning_effort", "result_text"]

_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder()
_TOOL_CHOICE: Final[dict[str, str]] = {"auto": "auto", "any": "required", "none": "none"}
_LEVELS: Final = frozenset({"minimal", "low", "medium", "high"})

Json = dict[str, object]


def reasoning_effort(conv: Conversation) -> str | None:
    """The reasoning effort a Gemini thinking config asks for, or None (not asked). A budget
    of 0 turns thinking off: "none", which ``ModelCaps.effort`` brings to the least the model
    takes (gpt-5's "minimal"); it was treated as not asked and the model thought at its default."""
    if conv.thinking_level is not None and conv.thinking_level in _LEVELS:
        return conv.thinking_level
    budget = conv.thinking_budget
    if budget is None:
        return None
    if budget == 0:
        return "none"
    if budget < 0:
        return "medium"  # dynamic thinking: let the model decide, at its default depth
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


def result_text(response: bytes) -> tuple[str, bool]:
    """A functionResponse object -> (text for the upstream, is_error).

    ``{"output": s}`` and ``{"error": s}`` (what Apex and the SDKs write) give ``s``;
    anything else is sent as its JSON."""
    try:
        value = _DECODER.decode(response)
    except msgspec.DecodeError:
        return response.decode("utf-8", "replace"), False
    if isinstance(value, dict) and len(value) == 1:
        for key in ("output", "result", "error"):
            if isinstance(value.get(key), str):
                return str(value[key]), key == "error"
    return response.decode("utf-8", "replace"), False


def media_url(media: Media) -> str:
    """A data URL for inline data, else the file URI."""
    if media.data is not None:
        return f"data:{media.mime_type or 'application/octet-stream'};base64,{media.data}"
    return media.url or ""


def gemini_to_openai_request(conv: Conversation, ctx: TranslateContext) -> Json:
    """A Conversation -> a Chat Completions request (dict)."""
    if conv.candidates is not None and conv.candidates > 1:
        raise InvalidRequest("candidateCount above 1 cannot be served by this channel",
                             param="generationConfig.candidateCount")
    messages: list[Json] = []
    system = conv.system
    if conv.enum_choices:
        system = f"{system}\n\n{enum_instruction(conv.enum_choices)}" if system else enum_instruction(conv.enum_choices)
    if conv.json_output and conv.json_schema is None and not _mentions_json(conv):
        # OpenAI (and DeepSeek) refuse json_object unless a message says "json" (a 400);
        # Gemini's JSON mode has no such rule, so its clients seldom write the word.
        system = f"{system}\n\n{JSON_OBJECT_INSTRUCTION}" if system else JSON_OBJECT_INSTRUCTION
    if system:
        messages.append({"role": "system", "content": system})
    for turn in conv.turns:
        if turn.role == "model":
            messages.append(_assistant(turn.items))
        else:
            messages.extend(_user(turn.items))
    out: Json = {"model": ctx.upstream_model, "messages": messages}
    if conv.max_tokens is not None:
        out[max_tokens_field(ctx)] = ctx.caps.output_limit(conv.max_tokens)
    if conv.tools:
        out["tools"] = [
            {"type": "function", "function": {"name": t.name, **({"description": t.description} if t.description else {}),
                                              "parameters": msgspec.Raw(t.schema)}}
            for t in conv.tools
        ]
        if conv.tool_mode is not None:
            if conv.tool_mode == "any" and len(conv.tool_names) == 1:
                out["tool_choice"] = {"type": "function", "function": {"name": conv.tool_names[0]}}
            else:
                out["tool_choice"] = _TOOL_CHOICE[conv.tool_mode]
    for key, value in (("temperature", conv.temperature), ("top_p", conv.top_p), ("seed", conv.seed),
                       ("presence_penalty", conv.presence_penalty),
                       ("frequency_penalty", conv.frequency_penalty)):
        if value is not None:
            out[key] = value
    if conv.stop:
        out["stop"] = conv.stop[:MAX_STOP_SEQUENCES]
    drop_refused_sampling(out, ctx)
    if conv.logprobs is not None:
        out["logprobs"] = True
        if conv.logprobs:  # Gemini's 0..20 is OpenAI's
            out["top_logprobs"] = conv.logprobs
    if conv.json_output:
        if conv.json_schema is not None:
            out["response_format"] = {"type": "json_schema",
                                      "json_schema": {"name": "response", "schema": msgspec.Raw(conv.json_schema)}}
        else:
            out["response_format"] = {"type": "json_object"}
    effort = reasoning_effort(conv)
    caps = ctx.caps  # only models that reason take reasoning_effort (gpt-4o answers 400)
    if effort is not None and caps.reasons and "effort" in caps.knobs:
        out["reasoning_effort"] = caps.effort(effort)
    if ctx.stream:
        out["stream"] = True
        if ctx.upstream_takes_stream_usage:  # Groq and older Azure api-versions refuse it (400)
            out["stream_options"] = {"include_usage": True}
    fit_chat_tool_names(out, ctx)
    return out


def _mentions_json(conv: Conversation) -> bool:
    """True when the system instruction or a text says "json" in any case (OpenAI's test;
    a word only in a tool result or an image is not counted: the instruction is harmless)."""
    return "json" in conv.system.lower() or any(
        isinstance(item, Text) and "json" in item.text.lower() for turn in conv.turns for item in turn.items)


# Chat's input_audio formats (an image_url of audio was a 400 naming images).
_AUDIO_FORMATS: Final = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/wave": "wav", "audio/mpeg": "mp3", "audio/mp3": "mp3"}


def _user(items: list[Item]) -> list[Json]:
    tools: list[Json] = []
    parts: list[Json] = []
    for item in items:
        if isinstance(item, Result):
            text, is_error = result_text(item.response)
            tools.append({"role": "tool", "tool_call_id": openai_tool_id(item.call_id), "content": ("Error: " + text) if is_error else text})
        elif isinstance(item, Text):
            parts.append({"type": "text", "text": item.text})
        elif isinstance(item, Media):
            if item.mime_type == "application/pdf" and item.data is not None:
                parts.append({"type": "file", "file": {"file_data": media_url(item), "filename": "document.pdf"}})
            elif item.mime_type.startswith("text/") and item.data is not None:
                parts.append({"type": "text", "text": base64.b64decode(item.data).decode("utf-8", "replace")})
            elif item.mime_type.startswith("audio/"):
                fmt = _AUDIO_FORMATS.get(item.mime_type)
                if fmt is None or item.data is None:
                    raise InvalidRequest(f"{item.mime_type} audio cannot be sent to this upstream (inline wav or mp3 only)",
                                         param="contents")
                parts.append({"type": "input_audio", "input_audio": {"data": item.data, "format": fmt}})
            elif not item.mime_type.startswith("image/") and item.mime_type:
                raise InvalidRequest(f"{item.mime_type} parts cannot be sent to this upstream", param="contents")
            else:
                parts.append({"type": "image_url", "image_url": {"url": media_url(item)}})
        elif isinstance(item, Call):
            raise InvalidRequest("a functionCall part must be in a model turn", param="contents")
    if parts:
        if all(p["type"] == "text" for p in parts):
            tools.append({"role": "user", "content": "\n".join(str(p["text"]) for p in parts)})
        else:
            tools.append({"role": "user", "content": parts})
    return tools


def _assistant(items: list[Item]) -> Json:
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[Json] = []
    for item in items:
        if isinstance(item, Text):
            texts.append(item.text)
        elif isinstance(item, Thought):
            if item.text:
                thoughts.append(item.text)
        elif isinstance(item, Call):
            calls.append({"id": openai_tool_id(item.call_id), "type": "function",
                          "function": {"name": item.name, "arguments": item.arguments.decode()}})
        elif isinstance(item, (Media, Result)):
            raise InvalidRequest("model turns may hold only text, thoughts and function calls for this channel",
                                 param="contents")
    message: Json = {"role": "assistant", "content": "".join(texts) or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    return message


@final
class GeminiToOpenAI:
    """The GEMINI_GENERATE client -> OPENAI_CHAT upstream Translator."""

    client: Dialect = Dialect.GEMINI_GENERATE
    upstream: Dialect = Dialect.OPENAI_CHAT

    def request(self, body: bytes, ctx: TranslateContext) -> bytes:
        """generateContent request bytes -> Chat request bytes."""
        conv = read_gemini_request(body)
        if not conv.include_thoughts:
            ctx.extras[HIDE_THOUGHTS] = True
        for name in conv.dropped_tools:
            ctx.notice(DROPPED_TOOLS_HEADER, name)
        return _ENCODER.encode(gemini_to_openai_request(conv, ctx))

    def response(self, body: bytes, ctx: TranslateContext) -> bytes:
        """chat.completion body -> GenerateContentResponse body; sets ctx.usage."""
        reply = reply_from_openai(body)
        ctx.usage = reply.usage
        return encode_body(gemini_body(reply, ctx))

    def stream(self, ctx: TranslateContext) -> StreamTranslator:
        """Chat chunks -> Gemini chunks."""
        return PipedStream(OpenAIChatReader(), GeminiWriter(ctx))
