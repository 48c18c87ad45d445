"""Anthropic Messages client <-> Gemini generateContent upstream (request and response).

``anthropic_to_gemini_request`` follows docs/protocols.md 8.3: ``system`` becomes
``systemInstruction``; user/assistant turns become ``user``/``model`` contents (merged
when adjacent); ``tool_use`` becomes a functionCall part with the stored thought
signature (or the foreign placeholder); ``tool_result`` becomes a functionResponse keyed
by the tool NAME found from its ``tool_use_id`` earlier in the history (images inside a
result follow it as separate parts); ``thinking`` blocks are dropped (Gemini thoughts are
not sent back); base64 images and PDFs are inlined, URLs passed by reference; client
tools are declared with ``parametersJsonSchema`` (deferred ones once a ``tool_reference``
has loaded them, ``neutral/deferred.py``); server tools are refused, and so are ``thread``,
``mcp_servers`` and ``container`` (``neutral/serverstate.py``).
The registered ``AnthropicToGemini`` maps answers back through the shared Gemini
direction (``gemini_direction``: Reply and stream parts into the Anthropic writers,
8.4-8.6). What this module must not do: I/O.
"""

from __future__ import annotations

from typing import Final, final

import msgspec
from msgspec import Raw

from apex.errors import InvalidRequest
from apex.translate.base import TranslateContext
from apex.translate.capabilities import ANY_THINKING_MODEL, ModelCaps
from apex.translate.request.gemini_contents import (
    TurnBuilder,
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
from apex.translate.neutral.deferred import TOOL_REFERENCE, is_declared, reference_text
from apex.translate.neutral.parts import PartWriter, Reply
from apex.translate.neutral.serverstate import refuse_server_state
from apex.translate.neutral.reply import anthropic_body
from apex.translate.neutral.signatures import SignatureStore
from apex.translate.neutral.toolids import GEMINI_NAMES
from apex.translate.write.anthropic import AnthropicWriter
from apex.types import Dialect
from apex.wire.gemini import (
    FunctionDeclaration,
    GenerationConfig,
    Part,
    ThinkingConfig,
    ToolConfig,
)
from apex.wire.anthropic import (
    InputBlock,
    InputMessage,
    MessagesRequest,
    ToolChoice,
    ToolDef,
)

__all__ = ["AnthropicToGemini", "anthropic_to_gemini_request"]


_REQUEST: Final = msgspec.json.Decoder(MessagesRequest)
_MODES: Final[dict[str, str]] = {"auto": "AUTO", "any": "ANY", "tool": "ANY", "none": "NONE"}
_CLIENT_TOOL_TYPES: Final = frozenset({None, "custom"})


def anthropic_to_gemini_request(body: bytes, signatures: SignatureStore, *, caps: ModelCaps = ANY_THINKING_MODEL,
                                ctx: TranslateContext | None = None) -> bytes:
    """Anthropic Messages request body -> Gemini GenerateContentRequest body (``ctx`` learns
    the tool names fitted for Gemini).

    Raises InvalidRequest for a body that is not a Messages request, server tools, or a
    tool_result whose tool_use Apex cannot find."""
    try:
        req = _REQUEST.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"invalid messages request: {exc}") from exc
    refuse_server_state(req.thread, req.mcp_servers, req.container)
    turns = TurnBuilder()
    names: dict[str, str] = {}
    asked: list[str] = []  # the tool_use ids of the last assistant message
    system = _system_text(req.system)
    for msg in req.messages:
        if msg.role == "system":
            # Mid-conversation system message (Claude Code's beta): Gemini has one system
            # instruction, so it joins it; its place in the history is not kept.
            extra = _system_text(msg.content)
            system = f"{system}\n\n{extra}" if system and extra else system or extra
            continue
        if msg.role not in ("user", "assistant"):
            raise InvalidRequest(f"unsupported message role {msg.role!r}", param="messages")
        blocks = [InputBlock(type="text", text=msg.content)] if isinstance(msg.content, str) else msg.content
        if msg.role == "assistant":
            turns.add("model", _assistant_parts(blocks, names, signatures))
            asked = [b.id or "" for b in blocks if b.type == "tool_use"]
        else:
            turns.add("user", _user_parts(blocks, names, signatures, asked))
            asked = []
    contents = turns.build()
    loaded = _loaded_tools(req.messages)
    declarations = [_declaration(t) for t in req.tools or () if is_declared(t.defer_loading, t.name, loaded)]
    choice = req.tool_choice if declarations or not req.tools else None  # none left: no tool config either
    return request_body(
        contents, [Part(text=system)] if system else [], declarations,
        _tool_config(choice) if choice is not None else None, _generation_config(req, caps), ctx)


def _loaded_tools(messages: list[InputMessage]) -> set[str]:
    """Names of deferred tools a ``tool_reference`` in some tool result has loaded."""
    return {ref.tool_name for msg in messages if not isinstance(msg.content, str) for block in msg.content
            if block.type == "tool_result" and isinstance(block.content, list)
            for ref in block.content if ref.type == TOOL_REFERENCE and ref.tool_name}


def _system_text(system: str | list[InputBlock] | None) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    return "\n\n".join(b.text for b in system if b.type == "text" and b.text)


def _assistant_parts(blocks: list[InputBlock], names: dict[str, str], signatures: SignatureStore) -> list[Part]:
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


def _user_parts(blocks: list[InputBlock], names: dict[str, str], signatures: SignatureStore,
                asked: list[str]) -> list[Part]:
    results: list[tuple[str, Part]] = []
    others: list[Part] = []
    for block in blocks:
        if block.type == "tool_result":
            call_id = block.tool_use_id or ""
            name = called_name(call_id, names, signatures)
            if not name:
                raise InvalidRequest(f"tool_result references unknown tool_use_id {call_id!r}", param="messages")
            text, media = _result_content(block.content)
            results.append((call_id, function_response_part(name, text, is_error=block.is_error)))
            others.extend(media)
        else:
            part = _content_part(block)
            if part is not None:
                others.append(part)
    # All results of a parallel batch first, in call order, as Gemini expects (8.3).
    return in_call_order(results, names, asked) + others


def _result_content(content: str | list[InputBlock] | None) -> tuple[str, list[Part]]:
    if content is None or isinstance(content, str):
        return content or "", []
    texts: list[str] = []
    media: list[Part] = []
    for block in content:
        if block.type == "text":
            if block.text:
                texts.append(block.text)
        elif block.type == TOOL_REFERENCE:
            texts.append(reference_text(block.tool_name, GEMINI_NAMES))
        elif (part := _content_part(block)) is not None:
            media.append(part)
    return "\n".join(texts), media


def _content_part(block: InputBlock) -> Part | None:
    if block.type == "text":
        return text_part(block.text or "")
    if block.type == TOOL_REFERENCE:
        return text_part(reference_text(block.tool_name, GEMINI_NAMES))
    if block.type in ("image", "document") and block.source is not None:
        src = block.source
        if src.type == "base64" and src.data is not None:
            return media_part(f"data:{src.media_type or 'application/octet-stream'};base64,{src.data}")
        if src.type == "text" and src.data is not None:
            return text_part(src.data)
        if src.type == "url" and src.url:
            return media_part(src.url, src.media_type)
    raise InvalidRequest(f"content block type {block.type!r} is not supported by Gemini", param="messages")


def _declaration(tool: ToolDef) -> FunctionDeclaration:
    if tool.type not in _CLIENT_TOOL_TYPES:
        raise InvalidRequest(f"server tool {tool.type!r} is not available on this channel", param="tools")
    return declaration(tool.name, tool.description, tool.input_schema)


def _tool_config(choice: ToolChoice) -> ToolConfig:
    mode = _MODES.get(choice.type)
    if mode is None:
        raise InvalidRequest(f"unsupported tool_choice type {choice.type!r}", param="tool_choice")
    return tool_config(mode, choice.name if choice.type == "tool" else None)


def _generation_config(req: MessagesRequest, caps: ModelCaps) -> GenerationConfig:
    max_tokens = caps.output_limit(req.max_tokens) if req.max_tokens is not None else None
    cfg = generation_config(max_tokens, req.stop_sequences, req.temperature, req.top_p)
    if req.top_k is not None:
        cfg.top_k = req.top_k
    fmt = req.output_config.format if req.output_config is not None else None
    if fmt is not None and fmt.type == "json_schema":
        cfg.response_mime_type = "application/json"
        schema = present(fmt.schema)
        if schema is not None:
            cfg.response_json_schema = schema
    thinking = req.thinking if caps.reasons else None  # capability table: only where the model thinks
    if thinking is not None and thinking.type == "enabled" and thinking.budget_tokens:
        cfg.thinking_config = thinking_for_budget(thinking.budget_tokens, caps)
    elif thinking is not None and thinking.type == "adaptive":
        cfg.thinking_config = ThinkingConfig(include_thoughts=True)
    return cfg


@final
class AnthropicToGemini(GeminiDirection):
    """The ANTHROPIC_MESSAGES -> GEMINI_GENERATE direction."""

    client = Dialect.ANTHROPIC_MESSAGES
    id_prefix = "toolu_"

    def _request(self, body: bytes, signatures: SignatureStore, ctx: TranslateContext) -> bytes:
        return anthropic_to_gemini_request(body, signatures, caps=ctx.caps, ctx=ctx)

    def _body(self, reply: Reply, ctx: TranslateContext) -> dict[str, object]:
        return anthropic_body(reply, ctx)

    def _writer(self, ctx: TranslateContext) -> PartWriter:
        return AnthropicWriter(ctx)

