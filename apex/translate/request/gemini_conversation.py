"""A Gemini client's generateContent request read into a neutral ``Conversation``.

The Gemini-client directions (to OpenAI Chat, to Anthropic Messages) render this one form,
so the Gemini request is read once. Rules (docs/protocols.md 6.2, 8.3 read backwards):
- ``systemInstruction`` parts -> one system text; ``role`` absent means ``user``. A Content
  without parts (``{"text": ...}`` decodes so) and a ``functionCall`` without a name are
  InvalidRequest naming the path, as Gemini answers: read on, they were dropped or renamed.
- ``text`` parts -> text; ``thought: true`` text -> reasoning (model turns), carrying an
  Anthropic signature when its ``thoughtSignature`` is one Apex minted (``thought_signature``);
  ``inlineData`` -> base64 media; ``fileData`` -> media by URL.
- ``functionCall`` -> a call whose id is the part's ``id`` when the client echoed one, else
  a positional ``call_<n>`` (stable while the history grows); ``functionResponse`` -> the
  result of the call with its ``id``, else of the oldest unanswered call of that name.
- ``tools[].functionDeclarations`` -> tools with a JSON Schema: ``parametersJsonSchema`` as
  sent, ``parameters`` (Gemini's OpenAPI subset) converted (``openapi_to_json_schema``).
  Built-in tools (googleSearch, googleMaps, codeExecution...) have no portable form: dropped,
  and named in ``dropped_tools`` (the directions say so in ``x-apex-dropped-tools``).
- ``toolConfig`` and ``generationConfig`` -> the neutral knobs below.
What this module must not do: know an upstream's wire shape.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Final

import msgspec
from msgspec import UNSET, UnsetType

from apex.errors import InvalidRequest
from apex.wire.gemini import Content, GenerateContentRequest, GenerationConfig, Int32, decode_request, whole

__all__ = [
    "Call",
    "Conversation",
    "Item",
    "Media",
    "Result",
    "Text",
    "Thought",
    "ToolSpec",
    "SNAKE_KEY",
    "Turn",
    "camel_case_request",
    "decode_carried_thinking",
    "enum_instruction",
    "decode_thought_signature",
    "encode_carried_thinking",
    "encode_thought_signature",
    "openapi_to_json_schema",
    "read_gemini_request",
]

# Anthropic thinking signatures travel to Gemini clients inside thoughtSignature, which the
# Python SDK treats as base64 bytes: wrapped as base64(prefix + signature) they survive the
# SDK's decode/encode round trip and are told apart from Gemini's own signatures.
_SIGNATURE_PREFIX: Final = b"apex-anthropic:"
_EMPTY_SCHEMA: Final = b'{"type":"object","properties":{}}'
_INT_KEYWORDS: Final = frozenset({"minItems", "maxItems", "minLength", "maxLength", "minProperties",
                                  "maxProperties"})
_DROPPED_KEYWORDS: Final = frozenset({"propertyOrdering", "nullable", "example"})
_ENCODER: Final = msgspec.json.Encoder()
SNAKE_KEY: Final = re.compile(rb'"[a-z]+_[a-z_]+"\s*:')
# Values relayed as the client wrote them: their keys are the client's (argument names, schema
# property names), never Gemini field names.
_OPAQUE: Final = frozenset({"args", "response", "parameters", "parametersJsonSchema", "responseSchema",
                            "responseJsonSchema"})
# Every built-in tool google-genai knows: each dropped one is named (googleMaps and fileSearch
# were dropped unnamed).
_BUILT_IN_TOOLS: Final[dict[str, str]] = {
    "google_search": "googleSearch", "google_search_retrieval": "googleSearchRetrieval", "code_execution": "codeExecution",
    "url_context": "urlContext", "google_maps": "googleMaps", "file_search": "fileSearch",
    "enterprise_web_search": "enterpriseWebSearch", "computer_use": "computerUse", "retrieval": "retrieval",
    "mcp_servers": "mcpServers", "parallel_ai_search": "parallelAiSearch", "exa_ai_search": "exaAiSearch"}


def encode_thought_signature(signature: str) -> str:
    """An Anthropic thinking signature as a Gemini ``thoughtSignature``."""
    return base64.b64encode(_SIGNATURE_PREFIX + signature.encode()).decode()


_CARRIED_PREFIX: Final = b"apex-anthropic-thinking:"


def encode_carried_thinking(text: str, signature: str) -> str:
    """A turn's thinking (text, and Anthropic's signature or "") as the ``thoughtSignature``
    of the function call that followed it. The Gemini CLI keeps a call's signature but drops
    thought parts from its history (as Gemini's own clients do): the empty thought part alone
    lost Claude's signature after every tool call, so thinking went off for the rest of the
    agent loop (P6), and a DeepSeek reasoner got a tool-call turn without its
    ``reasoning_content`` (P7, a 400)."""
    return base64.b64encode(_CARRIED_PREFIX + _ENCODER.encode({"t": text, "s": signature})).decode()


def _minted(value: str, prefix: bytes) -> bytes | None:
    """What follows ``prefix`` in a base64 ``thoughtSignature`` Apex minted, else None."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw[len(prefix):] if raw.startswith(prefix) else None


def decode_carried_thinking(value: str) -> tuple[str, str] | None:
    """(thinking text, signature) from a ``thoughtSignature`` ``encode_carried_thinking`` made, else None."""
    raw = _minted(value, _CARRIED_PREFIX)
    if raw is None:
        return None
    try:
        carried = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    if not isinstance(carried, dict) or not isinstance(carried.get("t"), str) or not isinstance(carried.get("s"), str):
        return None
    return carried["t"], carried["s"]


def decode_thought_signature(value: str) -> str | None:
    """The Anthropic signature inside a ``thoughtSignature`` Apex minted, else None."""
    raw = _minted(value, _SIGNATURE_PREFIX)
    return raw.decode("utf-8", "replace") if raw is not None else None


@dataclass(slots=True)
class Text:
    text: str


@dataclass(slots=True)
class Thought:
    text: str
    signature: str | None  # a genuine Anthropic signature, when the part carried one


@dataclass(slots=True)
class Media:
    mime_type: str
    data: str | None = None  # base64 (inlineData)
    url: str | None = None   # fileData.fileUri


@dataclass(slots=True)
class Call:
    call_id: str
    name: str
    arguments: bytes  # a JSON object


@dataclass(slots=True)
class Result:
    call_id: str
    name: str
    response: bytes  # a JSON object


Item = Text | Thought | Media | Call | Result


@dataclass(slots=True)
class Turn:
    role: str  # "user" | "model"
    items: list[Item] = field(default_factory=list)


@dataclass(slots=True)
class ToolSpec:
    name: str
    description: str | None
    schema: bytes  # JSON Schema of the arguments (an object schema)


@dataclass(slots=True)
class Conversation:
    """Everything a Gemini request asks for, in neutral terms."""

    system: str = ""
    turns: list[Turn] = field(default_factory=list)
    tools: list[ToolSpec] = field(default_factory=list)
    dropped_tools: list[str] = field(default_factory=list)  # built-in tools no other upstream has
    tool_mode: str | None = None        # "auto" | "any" | "none"
    tool_names: list[str] = field(default_factory=list)  # allowedFunctionNames
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    candidates: int | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    json_output: bool = False
    json_schema: bytes | None = None
    enum_choices: list[str] | None = None  # responseMimeType text/x.enum: answer one of these, bare
    thinking_budget: int | None = None  # -1: dynamic; 0: off
    thinking_level: str | None = None   # "low" | "medium" | "high"
    include_thoughts: bool = False
    logprobs: int | None = None  # responseLogprobs: the top candidates asked per step (0: none)


_MODES: Final[dict[str, str]] = {"AUTO": "auto", "ANY": "any", "NONE": "none", "VALIDATED": "auto"}


def read_gemini_request(body: bytes) -> Conversation:
    """A generateContent body -> Conversation; InvalidRequest when it is not one."""
    if SNAKE_KEY.search(body):
        body = camel_case_request(body)
    try:
        req = decode_request(body)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid generateContent request: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    return conversation_of(req)


def camel_case_request(body: bytes) -> bytes:
    """The body with snake_case field names in camelCase, as Google's REST API reads both
    (the Python SDK sends nested objects such as ``inline_data`` as ``{"mime_type": ...}``).
    Opaque values (function arguments and responses, schemas) keep their keys as sent."""
    try:
        tree = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidRequest("request body is nested too deeply") from exc
    return _ENCODER.encode(_camel(tree))


def _camel_name(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def _camel(node: object) -> object:
    if isinstance(node, list):
        return [_camel(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, object] = {}
    for key, value in node.items():
        name = _camel_name(key) if "_" in key else key
        out[name] = value if name in _OPAQUE else _camel(value)
    return out


def conversation_of(req: GenerateContentRequest) -> Conversation:
    """A decoded GenerateContentRequest -> Conversation."""
    conv = Conversation()
    if not isinstance(req.system_instruction, UnsetType):
        if not req.system_instruction.parts:  # {"text": ...} decodes so: it was dropped unseen
            raise InvalidRequest("systemInstruction must be a Content with parts: {\"parts\": [{\"text\": ...}]}",
                                 param="systemInstruction")
        conv.system = "\n".join(p.text for p in req.system_instruction.parts
                                if isinstance(p.text, str) and p.text)
    _read_contents(req.contents, conv)
    if not conv.turns:
        raise InvalidRequest("'contents' must hold at least one part", param="contents")
    if not isinstance(req.tools, UnsetType):
        for tool in req.tools:
            for name in _BUILT_IN_TOOLS:
                if not isinstance(getattr(tool, name), UnsetType):
                    conv.dropped_tools.append(_BUILT_IN_TOOLS[name])
            for decl in tool.function_declarations:
                conv.tools.append(ToolSpec(decl.name, decl.description or None, _schema_of(decl.parameters_json_schema,
                                                                                          decl.parameters)))
    cfg = req.tool_config.function_calling_config if not isinstance(req.tool_config, UnsetType) else UNSET
    if not isinstance(cfg, UnsetType):
        conv.tool_mode = _MODES.get(cfg.mode.upper(), "auto") if isinstance(cfg.mode, str) else "auto"
        if not isinstance(cfg.allowed_function_names, UnsetType):
            conv.tool_names = list(cfg.allowed_function_names)
            if conv.tool_names and conv.tool_mode == "any":
                # Only these may be called: the others are not offered (OpenAI and Anthropic
                # name one forced tool at most; with all declared, an excluded one could run).
                allowed = set(conv.tool_names)
                conv.tools = [t for t in conv.tools if t.name in allowed]
    if not isinstance(req.generation_config, UnsetType):
        _read_generation(req.generation_config, conv)
    return conv


def _read_contents(contents: list[Content], conv: Conversation) -> None:
    pending: dict[str, list[str]] = {}  # function name -> ids of calls not yet answered
    calls = 0
    for i, content in enumerate(contents):
        if not content.parts:  # Gemini's 400; a {"text": ...} turn decodes so, and was dropped unseen
            raise InvalidRequest(f"contents[{i}].parts must not be empty", param=f"contents[{i}]")
        role = "model" if content.role == "model" else "user"
        items: list[Item] = []
        for k, part in enumerate(content.parts):
            call = part.function_call
            response = part.function_response
            if not isinstance(call, UnsetType):
                if not call.name:  # a call named "" reached the upstream as tool_e3b0c442
                    where = f"contents[{i}].parts[{k}].functionCall.name"
                    raise InvalidRequest(f"{where} must not be empty", param=where)
                call_id = call.id if isinstance(call.id, str) and call.id else f"call_{calls}"
                calls += 1
                pending.setdefault(call.name, []).append(call_id)
                args = b"{}" if isinstance(call.args, UnsetType) else bytes(call.args).strip() or b"{}"
                sig = part.thought_signature
                carried = decode_carried_thinking(sig) if isinstance(sig, str) else None
                if carried is not None and not any(isinstance(i, Thought) and (i.text == carried[0] or (
                        carried[1] and i.signature == carried[1])) for i in items):
                    # The thinking the call's part carried (the client dropped its thought parts):
                    # first in the turn, where Anthropic wants it (Claude often writes text first).
                    items.insert(0, Thought(carried[0], carried[1] or None))
                items.append(Call(call_id, call.name, args))
            elif not isinstance(response, UnsetType):
                waiting = pending.get(response.name) or []
                if isinstance(response.id, str) and response.id:
                    call_id = response.id
                    if call_id in waiting:
                        waiting.remove(call_id)
                elif waiting:
                    call_id = waiting.pop(0)
                else:
                    call_id = f"call_{calls}"  # a result for a call the history does not show
                    calls += 1
                items.append(Result(call_id, response.name, bytes(response.response)))
                for media in response.parts if not isinstance(response.parts, UnsetType) else ():
                    # What the tool returned beside its JSON (a screenshot): after the result, in
                    # the same user turn, where the other protocols can carry it (it was dropped).
                    if not isinstance(media.inline_data, UnsetType):
                        items.append(Media(media.inline_data.mime_type, data=media.inline_data.data))
                    elif not isinstance(media.file_data, UnsetType):
                        fd = media.file_data
                        items.append(Media(fd.mime_type if isinstance(fd.mime_type, str) else "", url=fd.file_uri))
            elif not isinstance(part.inline_data, UnsetType):
                items.append(Media(part.inline_data.mime_type, data=part.inline_data.data))
            elif not isinstance(part.file_data, UnsetType):
                fd = part.file_data
                mime = fd.mime_type if isinstance(fd.mime_type, str) else ""
                items.append(Media(mime, url=fd.file_uri))
            elif isinstance(part.text, str):
                if part.thought:
                    sig = part.thought_signature
                    signature = decode_thought_signature(sig) if isinstance(sig, str) else None
                    if part.text or signature:
                        items.append(Thought(part.text, signature))
                elif part.text:
                    items.append(Text(part.text))
        if not items:
            continue
        if conv.turns and conv.turns[-1].role == role:
            conv.turns[-1].items.extend(items)
        else:
            conv.turns.append(Turn(role, items))


def _enum_values(cfg: GenerationConfig) -> list[str] | None:
    """The values of a ``text/x.enum`` schema (``{"type": "STRING", "enum": [...]}``), else None."""
    raw = cfg.response_json_schema if not isinstance(cfg.response_json_schema, UnsetType) else cfg.response_schema
    if isinstance(raw, UnsetType):
        return None
    try:
        schema = msgspec.json.decode(bytes(raw))
    except msgspec.DecodeError:
        return None
    values = schema.get("enum") if isinstance(schema, dict) else None
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        return None
    return [str(v) for v in values]


def enum_instruction(choices: list[str]) -> str:
    """What a model without Gemini's enum mode is told (the constraint was dropped unseen)."""
    return "Respond with exactly one of these values and nothing else: " + ", ".join(choices)


def _int(value: Int32, name: str) -> int:
    """An int32 field as Gemini reads it: 4.0 is 4 (the Python SDK sends topK so), 4.5 a 400."""
    number = whole(value)
    if number is None:
        raise InvalidRequest(f"Invalid value at '{name}' (TYPE_INT32), {value}", param=name)
    return number


def _read_generation(cfg: GenerationConfig, conv: Conversation) -> None:
    if not isinstance(cfg.max_output_tokens, UnsetType):
        conv.max_tokens = _int(cfg.max_output_tokens, "generationConfig.maxOutputTokens")
    if not isinstance(cfg.temperature, UnsetType):
        conv.temperature = cfg.temperature
    if not isinstance(cfg.top_p, UnsetType):
        conv.top_p = cfg.top_p
    if not isinstance(cfg.top_k, UnsetType):
        conv.top_k = _int(cfg.top_k, "generationConfig.topK")
    if not isinstance(cfg.stop_sequences, UnsetType):
        conv.stop = list(cfg.stop_sequences)
    if not isinstance(cfg.candidate_count, UnsetType):
        conv.candidates = _int(cfg.candidate_count, "generationConfig.candidateCount")
    if not isinstance(cfg.seed, UnsetType):
        conv.seed = _int(cfg.seed, "generationConfig.seed")
    if not isinstance(cfg.presence_penalty, UnsetType):
        conv.presence_penalty = cfg.presence_penalty
    if not isinstance(cfg.frequency_penalty, UnsetType):
        conv.frequency_penalty = cfg.frequency_penalty
    if isinstance(cfg.response_mime_type, str) and cfg.response_mime_type == "application/json":
        conv.json_output = True
        if not isinstance(cfg.response_json_schema, UnsetType):
            conv.json_schema = bytes(cfg.response_json_schema)
        elif not isinstance(cfg.response_schema, UnsetType):
            conv.json_schema = openapi_to_json_schema(bytes(cfg.response_schema))
    if isinstance(cfg.response_mime_type, str) and cfg.response_mime_type == "text/x.enum":
        conv.enum_choices = _enum_values(cfg)
    if cfg.response_logprobs is True:
        conv.logprobs = 0 if isinstance(cfg.logprobs, UnsetType) else _int(cfg.logprobs, "generationConfig.logprobs")
    thinking = cfg.thinking_config
    if not isinstance(thinking, UnsetType):
        if not isinstance(thinking.thinking_budget, UnsetType):
            conv.thinking_budget = _int(thinking.thinking_budget, "generationConfig.thinkingConfig.thinkingBudget")
        if isinstance(thinking.thinking_level, str) and thinking.thinking_level:
            conv.thinking_level = thinking.thinking_level.lower()
        conv.include_thoughts = thinking.include_thoughts is True


def _schema_of(json_schema: msgspec.Raw | UnsetType, openapi: msgspec.Raw | UnsetType) -> bytes:
    if not isinstance(json_schema, UnsetType) and bytes(json_schema).strip() not in (b"", b"null"):
        return bytes(json_schema)
    if not isinstance(openapi, UnsetType) and bytes(openapi).strip() not in (b"", b"null"):
        return openapi_to_json_schema(bytes(openapi))
    return _EMPTY_SCHEMA


def openapi_to_json_schema(schema: bytes) -> bytes:
    """Gemini's OpenAPI-subset Schema (``"type": "OBJECT"``, ``nullable``, int64 limits as
    strings) -> standard JSON Schema, as OpenAI and Anthropic take it."""
    try:
        value = msgspec.json.decode(schema)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"function parameters are not valid JSON: {exc}", param="tools") from exc
    return _ENCODER.encode(_convert(value))


def _convert(node: object) -> object:
    if isinstance(node, list):
        return [_convert(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, object] = {}
    for raw_key, value in node.items():
        key = _camel_name(raw_key) if "_" in raw_key else raw_key  # any_of, min_items...
        if key in _DROPPED_KEYWORDS:
            continue
        if key == "type" and isinstance(value, str):
            out[key] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: _convert(sub) for name, sub in value.items()}
        elif key in ("items", "anyOf", "oneOf", "allOf", "not", "additionalProperties"):
            out[key] = _convert(value)
        elif key in _INT_KEYWORDS and isinstance(value, str) and value.isdigit():
            out[key] = int(value)
        else:
            out[key] = value
    if node.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if out.get("type") == "type_unspecified":
        del out["type"]
    return out
