"""Anthropic Messages client <-> Gemini generateContent upstream (request and response).

``anthropic_to_gemini_request`` follows protocols.md 8.3: ``system`` becomes
``systemInstruction``; user/assistant turns become ``user``/``model`` contents (merged
when adjacent); ``tool_use`` becomes a functionCall part with the stored thought
signature (or the foreign placeholder); ``tool_result`` becomes a functionResponse keyed
by the tool NAME found from its ``tool_use_id`` earlier in the history (images inside a
result follow it as separate parts); ``thinking`` blocks are dropped (Gemini thoughts are
not sent back); base64 images and PDFs are inlined, URLs passed by reference; client
tools are declared with ``parametersJsonSchema``; server tools are refused.
``gemini_to_anthropic_response`` maps a non-stream answer to a Messages body (8.4-8.6).
What this module must not do: I/O.
"""

from __future__ import annotations

from typing import Final, final

import msgspec
from msgspec import UNSET, Raw, Struct, UnsetType

from apex.errors import InvalidRequest, UpstreamMalformed
from apex.translate.base import StreamTranslator, TranslateContext, register
from apex.translate.gemini_contents import (
    TurnBuilder,
    declare_tools,
    function_call_part,
    function_response_part,
    media_part,
    present,
    text_part,
    thinking_for_budget,
)
from apex.translate.gemini_results import (
    ANTHROPIC_STOP,
    BROKEN_FINISHES,
    CallItem,
    IdFactory,
    PartReader,
    finish_kind,
    first_candidate,
    random_call_id,
    usage_of,
)
from apex.translate.signatures import DEFAULT_STORE, SignatureStore
from apex.translate.stream_gemini_to_anthropic import GeminiToAnthropicStream
from apex.translate.usage import anthropic_usage_body
from apex.types import Dialect
from apex.wire.gemini import (
    Content,
    FunctionCallingConfig,
    FunctionDeclaration,
    GenerateContentRequest,
    GenerationConfig,
    Part,
    ThinkingConfig,
    ToolConfig,
    decode_response,
    encode,
)

__all__ = ["AnthropicToGemini", "anthropic_to_gemini_request", "gemini_to_anthropic_response"]


class _Source(Struct):
    type: str
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class _Block(Struct):
    type: str
    text: str | None = None
    source: _Source | None = None
    id: str | None = None
    name: str | None = None
    input: Raw | UnsetType = UNSET
    tool_use_id: str | None = None
    content: str | list[_Block] | None = None
    is_error: bool = False


class _Message(Struct):
    role: str
    content: str | list[_Block]


class _Tool(Struct):
    name: str
    description: str | None = None
    input_schema: Raw | UnsetType = UNSET
    type: str | None = None


class _ToolChoice(Struct):
    type: str
    name: str | None = None


class _Thinking(Struct):
    type: str
    budget_tokens: int | None = None


class _MessagesRequest(Struct):
    messages: list[_Message]
    system: str | list[_Block] | None = None
    tools: list[_Tool] | None = None
    tool_choice: _ToolChoice | None = None
    max_tokens: int | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    thinking: _Thinking | None = None


_REQUEST: Final = msgspec.json.Decoder(_MessagesRequest)
_ENCODER: Final = msgspec.json.Encoder()
_MODES: Final[dict[str, str]] = {"auto": "AUTO", "any": "ANY", "tool": "ANY", "none": "NONE"}
_CLIENT_TOOL_TYPES: Final = frozenset({None, "custom"})


def anthropic_to_gemini_request(body: bytes, signatures: SignatureStore) -> bytes:
    """Anthropic Messages request body -> Gemini GenerateContentRequest body.

    Raises InvalidRequest for a body that is not a Messages request, server tools, or a
    tool_result whose tool_use Apex cannot find."""
    try:
        req = _REQUEST.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"invalid messages request: {exc}") from exc
    turns = TurnBuilder()
    names: dict[str, str] = {}
    for msg in req.messages:
        if msg.role not in ("user", "assistant"):
            raise InvalidRequest(f"unsupported message role {msg.role!r}", param="messages")
        blocks = [_Block(type="text", text=msg.content)] if isinstance(msg.content, str) else msg.content
        if msg.role == "assistant":
            turns.add("model", _assistant_parts(blocks, names, signatures))
        else:
            turns.add("user", _user_parts(blocks, names, signatures))
    out = GenerateContentRequest(contents=turns.build())
    system = _system_text(req.system)
    if system:
        out.system_instruction = Content(parts=[Part(text=system)])
    if req.tools:
        tools = declare_tools([_declaration(t) for t in req.tools])
        if tools:
            out.tools = tools
    if req.tool_choice is not None:
        out.tool_config = _tool_config(req.tool_choice)
    out.generation_config = _generation_config(req)
    return encode(out)


def _system_text(system: str | list[_Block] | None) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    return "\n\n".join(b.text for b in system if b.type == "text" and b.text)


def _assistant_parts(blocks: list[_Block], names: dict[str, str], signatures: SignatureStore) -> list[Part]:
    parts: list[Part] = []
    for block in blocks:
        if block.type == "text":
            part = text_part(block.text or "")
            if part is not None:
                parts.append(part)
        elif block.type == "tool_use":
            call_id, name = block.id or "", block.name or ""
            names[call_id] = name
            args = present(block.input)
            if args is None:
                args = Raw(b"{}")
            parts.append(function_call_part(call_id, name, args, signatures))
        # thinking / redacted_thinking / server-tool blocks: Gemini takes no foreign thoughts.
    return parts


def _user_parts(blocks: list[_Block], names: dict[str, str], signatures: SignatureStore) -> list[Part]:
    results: list[Part] = []
    others: list[Part] = []
    for block in blocks:
        if block.type == "tool_result":
            call_id = block.tool_use_id or ""
            name = names.get(call_id)
            if name is None:
                record = signatures.recall(call_id)
                name = record.name if record is not None else None
            if not name:
                raise InvalidRequest(f"tool_result references unknown tool_use_id {call_id!r}", param="messages")
            text, media = _result_content(block.content)
            results.append(function_response_part(name, text, is_error=block.is_error))
            others.extend(media)
        else:
            part = _content_part(block)
            if part is not None:
                others.append(part)
    # All results of a parallel batch first, in call order, as Gemini expects (8.3).
    return results + others


def _result_content(content: str | list[_Block] | None) -> tuple[str, list[Part]]:
    if content is None or isinstance(content, str):
        return content or "", []
    texts = [b.text for b in content if b.type == "text" and b.text]
    media = [p for b in content if b.type != "text" for p in (_content_part(b),) if p is not None]
    return "\n".join(texts), media


def _content_part(block: _Block) -> Part | None:
    if block.type == "text":
        return text_part(block.text or "")
    if block.type in ("image", "document") and block.source is not None:
        src = block.source
        if src.type == "base64" and src.data is not None:
            return media_part(f"data:{src.media_type or 'application/octet-stream'};base64,{src.data}")
        if src.type == "text" and src.data is not None:
            return text_part(src.data)
        if src.type == "url" and src.url:
            return media_part(src.url, src.media_type)
    raise InvalidRequest(f"content block type {block.type!r} is not supported by Gemini", param="messages")


def _declaration(tool: _Tool) -> FunctionDeclaration:
    if tool.type not in _CLIENT_TOOL_TYPES:
        raise InvalidRequest(f"server tool {tool.type!r} is not available on this channel", param="tools")
    decl = FunctionDeclaration(name=tool.name)
    if tool.description:
        decl.description = tool.description
    schema = present(tool.input_schema)
    if schema is not None:
        decl.parameters_json_schema = schema
    return decl


def _tool_config(choice: _ToolChoice) -> ToolConfig:
    mode = _MODES.get(choice.type)
    if mode is None:
        raise InvalidRequest(f"unsupported tool_choice type {choice.type!r}", param="tool_choice")
    cfg = FunctionCallingConfig(mode=mode)
    if choice.type == "tool" and choice.name:
        cfg.allowed_function_names = [choice.name]
    return ToolConfig(function_calling_config=cfg)


def _generation_config(req: _MessagesRequest) -> GenerationConfig:
    cfg = GenerationConfig()
    if req.max_tokens is not None:
        cfg.max_output_tokens = req.max_tokens
    if req.stop_sequences:
        cfg.stop_sequences = req.stop_sequences[:5]  # Gemini's limit
    if req.temperature is not None:
        cfg.temperature = req.temperature
    if req.top_p is not None:
        cfg.top_p = req.top_p
    if req.top_k is not None:
        cfg.top_k = req.top_k
    thinking = req.thinking
    if thinking is not None and thinking.type == "enabled" and thinking.budget_tokens:
        cfg.thinking_config = thinking_for_budget(thinking.budget_tokens)
    elif thinking is not None and thinking.type == "adaptive":
        cfg.thinking_config = ThinkingConfig(include_thoughts=True)
    return cfg


def gemini_to_anthropic_response(
    body: bytes, ctx: TranslateContext, signatures: SignatureStore, new_id: IdFactory = random_call_id
) -> bytes:
    """Gemini non-stream response -> Anthropic Messages body; sets ``ctx.usage``.

    Raises UpstreamMalformed for a body that is not a Gemini response, or when Gemini
    reports a broken turn (e.g. MALFORMED_FUNCTION_CALL) and produced nothing."""
    try:
        resp = decode_response(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UpstreamMalformed(f"Gemini response is not valid: {exc}") from exc
    reader = PartReader("toolu_", signatures, new_id)
    cand = first_candidate(resp)
    items = reader.read(cand.content.parts) if cand is not None and cand.content is not None else []
    reason = cand.finish_reason if cand is not None else None
    blocked = cand is None and resp.prompt_feedback is not None and resp.prompt_feedback.block_reason is not None
    if not items and reason in BROKEN_FINISHES:
        raise UpstreamMalformed(f"Gemini produced no usable output (finishReason {reason})")
    content: list[dict[str, object]] = []
    for item in items:
        if isinstance(item, CallItem):
            content.append({"type": "tool_use", "id": item.call_id, "name": item.name, "input": Raw(item.arguments)})
            continue
        key = "thinking" if item.thought else "text"
        last = content[-1] if content else None
        if last is not None and last["type"] == key:
            last[key] = str(last[key]) + item.text  # adjacent parts of one kind: one block
        elif item.thought:
            content.append({"type": "thinking", "thinking": item.text, "signature": ""})
        else:
            content.append({"type": "text", "text": item.text})
    usage = usage_of(resp.usage_metadata, ctx.estimated_input_tokens)
    ctx.usage = usage
    out = {
        "id": "msg_" + (resp.response_id or ctx.request_id),
        "type": "message",
        "role": "assistant",
        "model": ctx.client_model,
        "content": content,
        "stop_reason": ANTHROPIC_STOP[finish_kind(reason, reader.saw_call, blocked)],
        "stop_sequence": None,
        "usage": anthropic_usage_body(usage),
    }
    return _ENCODER.encode(out)


@final
class AnthropicToGemini:
    """The ANTHROPIC_MESSAGES -> GEMINI_GENERATE direction."""

    client = Dialect.ANTHROPIC_MESSAGES
    upstream = Dialect.GEMINI_GENERATE

    def __init__(self, signatures: SignatureStore = DEFAULT_STORE, new_id: IdFactory = random_call_id) -> None:
        self._signatures = signatures
        self._new_id = new_id

    def request(self, body: bytes, ctx: TranslateContext) -> bytes:
        return anthropic_to_gemini_request(body, self._signatures)

    def response(self, body: bytes, ctx: TranslateContext) -> bytes:
        return gemini_to_anthropic_response(body, ctx, self._signatures, self._new_id)

    def stream(self, ctx: TranslateContext) -> StreamTranslator:
        return GeminiToAnthropicStream(ctx, self._signatures, self._new_id)


register(AnthropicToGemini())
