"""OpenAI Chat Completions client <-> Gemini generateContent upstream (request and response).

``openai_to_gemini_request`` follows docs/protocols.md 8.3: system/developer messages become
``systemInstruction``; user/assistant turns become ``user``/``model`` contents (merged
when adjacent); assistant ``tool_calls`` become functionCall parts with their stored
thought signature; ``tool`` messages become functionResponse parts keyed by the function
NAME looked up from the call id earlier in the history (falling back to the signature
store, then the message's ``name``); tools, tool_choice, response_format, stop, sampling
and ``reasoning_effort`` map to ``tools``/``toolConfig``/``generationConfig``; ``logprobs`` and
``top_logprobs`` become ``responseLogprobs`` and ``logprobs`` (the same 0..20 on both);
``logit_bias`` has no Gemini equivalent: dropped, and named in ``x-apex-dropped-params``. The
body carries neither model nor stream flag: the provider puts both in the URL.
The registered ``OpenAIChatToGemini`` maps answers back through the shared Gemini
direction (``gemini_direction``: Reply and stream parts into the OpenAI writers, 8.4-8.6).
What this module must not do: I/O (image URLs are passed by reference, never downloaded).
"""

from __future__ import annotations

from typing import Final, final

import msgspec

from apex.errors import InvalidRequest
from apex.translate.base import TranslateContext, decode_json_object
from apex.translate.request.legacy_functions import has_legacy_functions, modern_chat
from apex.translate.capabilities import ANY_THINKING_MODEL, ModelCaps
from apex.translate.request.gemini_contents import (
    EFFORT_BUDGETS,
    TurnBuilder,
    arguments_object,
    called_name,
    in_call_order,
    declaration,
    function_call_part,
    function_response_part,
    generation_config,
    media_part,
    present,
    request_body,
    text_part,
    thinking_for_budget,
    tool_config,
)
from apex.translate.directions.gemini_direction import GeminiDirection
from apex.translate.directions.openai_to_anthropic import ANSWER_ROOM
from apex.translate.neutral.parts import PartWriter, Reply
from apex.translate.neutral.reply import openai_body
from apex.translate.neutral.signatures import SignatureStore
from apex.translate.write.openai import OpenAIChatWriter
from apex.types import Dialect
from apex.wire.gemini import (
    Blob,
    GenerationConfig,
    Part,
    ToolConfig,
)
from apex.wire.openai import (
    ChatMessage,
    ChatRequest,
    ContentPart,
    NamedToolChoice,
)

__all__ = ["DROPPED_PARAMS_HEADER", "OpenAIChatToGemini", "openai_to_gemini_request"]


_REQUEST: Final = msgspec.json.Decoder(ChatRequest)
_MODES: Final[dict[str, str]] = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
DROPPED_PARAMS_HEADER: Final = "x-apex-dropped-params"  # request fields the upstream has no equivalent of


def openai_to_gemini_request(body: bytes, signatures: SignatureStore, *, caps: ModelCaps = ANY_THINKING_MODEL,
                             ctx: TranslateContext | None = None) -> bytes:
    """OpenAI Chat request body -> Gemini GenerateContentRequest body (``ctx`` learns the
    tool names fitted for Gemini).

    Raises InvalidRequest when the body is not a Chat request or names a tool result
    whose call Apex cannot find."""
    if has_legacy_functions(body):
        body = msgspec.json.encode(modern_chat(decode_json_object(body), ctx))
    try:
        req = _REQUEST.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"invalid chat completions request: {exc}") from exc
    system: list[Part] = []
    turns = TurnBuilder()
    names: dict[str, str] = {}
    results: list[tuple[str, Part]] = []  # consecutive tool messages: one batch, put in call order
    asked: list[str] = []  # the call ids of the last assistant message
    for msg in req.messages:
        if results and msg.role not in ("tool", "function"):
            turns.add("user", in_call_order(results, names, asked))
            results = []
        if msg.role in ("system", "developer"):
            system.extend(_text_parts(msg.content))
        elif msg.role == "user":
            turns.add("user", _user_parts(msg.content))
        elif msg.role == "assistant":
            turns.add("model", _assistant_parts(msg, names, signatures))
            asked = [c.id for c in msg.tool_calls or ()]
        elif msg.role in ("tool", "function"):
            call_id = msg.tool_call_id or ""
            name = called_name(call_id, names, signatures) or msg.name
            if not name:
                raise InvalidRequest(f"tool message references unknown tool_call_id {call_id!r}", param="messages")
            results.append((call_id, function_response_part(name, _joined_text(msg.content))))
        else:
            raise InvalidRequest(f"unsupported message role {msg.role!r}", param="messages")
    if results:
        turns.add("user", in_call_order(results, names, asked))
    if req.logit_bias and ctx is not None:
        ctx.notice(DROPPED_PARAMS_HEADER, "logit_bias")
    functions = [t.function for t in req.tools or () if t.type == "function"]
    return request_body(
        turns.build(), system, [declaration(f.name, f.description, f.parameters) for f in functions],
        _tool_config(req.tool_choice) if req.tool_choice is not None else None, _generation_config(req, caps), ctx)


def _text_parts(content: str | list[ContentPart] | None) -> list[Part]:
    text = _joined_text(content)
    part = text_part(text)
    return [part] if part is not None else []


def _joined_text(content: str | list[ContentPart] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.text or "" for p in content if p.type == "text")


_AUDIO_TYPES: Final = {"wav": "audio/wav", "mp3": "audio/mp3"}  # Chat's input_audio formats


def _user_parts(content: str | list[ContentPart] | None) -> list[Part]:
    if content is None or isinstance(content, str):
        return _text_parts(content)
    parts: list[Part] = []
    for item in content:
        if item.type == "text":
            part = text_part(item.text or "")
            if part is not None:
                parts.append(part)
        elif item.type == "image_url" and item.image_url is not None:
            parts.append(media_part(item.image_url.url))
        elif item.type == "file" and item.file is not None and item.file.file_data:
            parts.append(media_part(item.file.file_data))
        elif item.type == "input_audio" and item.input_audio is not None:
            # Gemini takes audio as inline data (the way back, gemini_to_openai, maps it so too).
            mime = _AUDIO_TYPES.get(item.input_audio.format)
            if mime is None:
                raise InvalidRequest(f"input_audio format {item.input_audio.format!r} is not supported "
                                     "(wav or mp3)", param="messages")
            parts.append(Part(inline_data=Blob(mime_type=mime, data=item.input_audio.data)))
        else:
            raise InvalidRequest(f"content part type {item.type!r} is not supported by Gemini", param="messages")
    return parts


def _assistant_parts(msg: ChatMessage, names: dict[str, str], signatures: SignatureStore) -> list[Part]:
    parts: list[Part] = []
    if isinstance(msg.content, list):
        text = "".join(p.text or p.refusal or "" for p in msg.content)
    else:
        text = msg.content or ""
    # Tool-call turns often carry content "" or whitespace: Gemini wants no empty parts.
    if text.strip():
        parts.append(Part(text=text))
    for call in msg.tool_calls or ():
        names[call.id] = call.function.name
        parts.append(function_call_part(call.id, call.function.name, arguments_object(call.function.arguments), signatures))
    return parts


def _tool_config(choice: str | NamedToolChoice) -> ToolConfig:
    if isinstance(choice, str):
        mode = _MODES.get(choice)
        if mode is None:
            raise InvalidRequest(f"unsupported tool_choice {choice!r}", param="tool_choice")
        return tool_config(mode)
    return tool_config("ANY", choice.function.name)


def _generation_config(req: ChatRequest, caps: ModelCaps) -> GenerationConfig:
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    if max_tokens is not None:
        max_tokens = caps.output_limit(max_tokens)
    stops = [req.stop] if isinstance(req.stop, str) else req.stop
    cfg = generation_config(max_tokens, stops, req.temperature, req.top_p)
    if req.n is not None and req.n > 1:
        # The reply carries one candidate: asking Gemini for more would bill them and drop them.
        raise InvalidRequest("n > 1 is not supported by this model's upstream (Gemini)", param="n")
    if req.seed is not None:
        cfg.seed = req.seed
    if req.presence_penalty is not None:
        cfg.presence_penalty = req.presence_penalty
    if req.frequency_penalty is not None:
        cfg.frequency_penalty = req.frequency_penalty
    if req.logprobs:  # top_logprobs without logprobs asks for nothing (OpenAI refuses it)
        cfg.response_logprobs = True
        if req.top_logprobs is not None:
            cfg.logprobs = req.top_logprobs
    fmt = req.response_format
    if fmt is not None and fmt.type in ("json_object", "json_schema"):
        cfg.response_mime_type = "application/json"
        schema = present(fmt.json_schema.schema) if fmt.json_schema is not None else None
        if fmt.type == "json_schema" and schema is not None:
            cfg.response_json_schema = schema
    # "none" leaves Gemini's default: 2.5 Pro cannot turn thinking off (budget 0 is a 400).
    # Only where the model thinks (capability table): 2.0 models refuse a thinkingConfig.
    budget = EFFORT_BUDGETS.get(req.reasoning_effort or "") if caps.reasons else None
    if budget is not None and max_tokens is not None:
        # Gemini counts thinking inside maxOutputTokens: a budget past the client's limit left
        # no room to answer (empty or cut answers). It fits as for Anthropic; below the
        # smallest effort's budget the model's own default stands.
        fitted = min(budget, max_tokens - min(ANSWER_ROOM, max_tokens // 2))
        budget = fitted if fitted >= EFFORT_BUDGETS["minimal"] else None
    if budget is not None:
        cfg.thinking_config = thinking_for_budget(budget, caps)
    return cfg


@final
class OpenAIChatToGemini(GeminiDirection):
    """The OPENAI_CHAT -> GEMINI_GENERATE direction."""

    client = Dialect.OPENAI_CHAT
    id_prefix = "call_"

    def _request(self, body: bytes, signatures: SignatureStore, ctx: TranslateContext) -> bytes:
        return openai_to_gemini_request(body, signatures, caps=ctx.caps, ctx=ctx)

    def _body(self, reply: Reply, ctx: TranslateContext) -> dict[str, object]:
        return openai_body(reply, ctx)

    def _writer(self, ctx: TranslateContext) -> PartWriter:
        return OpenAIChatWriter(ctx)

