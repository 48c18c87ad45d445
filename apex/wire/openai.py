"""OpenAI Chat Completions view Structs: stream chunks and the non-stream completion body.

Covers the compatible providers' deviations Apex reads: ``reasoning_content`` (DeepSeek,
Moonshot), ``reasoning`` (OpenRouter, Groq), DeepSeek's ``prompt_cache_hit_tokens``,
Groq's ``x_groq.usage``, OpenRouter's top-level ``error`` in a normal chunk; the Responses
API's usage names; and the usage-only views pass-through reads (the rest of the body is
skipped unparsed, so watching a forwarded stream stays cheap). Unknown fields are ignored. What this module must not do: translate or import from apex.
"""

from __future__ import annotations

from typing import Final

import msgspec

__all__ = [
    "ReasoningItemView",
    "ChatChunk",
    "ChatCompletion",
    "ChatMessage",
    "ChatRequest",
    "ChatUsage",
    "ChoiceLogprobs",
    "ChunkDelta",
    "ContentPart",
    "EmbeddingItem",
    "EmbeddingsAnswer",
    "EmbeddingsEncoding",
    "EmbeddingsRequest",
    "EmbeddingsUsage",
    "ErrorEnvelope",
    "ErrorView",
    "FileInput",
    "FunctionCall",
    "FunctionDef",
    "ImageUrl",
    "InputAudio",
    "JsonSchemaFormat",
    "NamedFunction",
    "NamedToolChoice",
    "ResponseFormat",
    "ResponsesEvent",
    "ResponsesUsage",
    "ResponsesUsageBody",
    "ToolCall",
    "ToolCallDelta",
    "ToolDef",
    "TokenLogprob",
    "TopLogprob",
    "UsageBody",
    "UsageChunk",
    "decode_chunk",
    "decode_completion",
]


class PromptDetails(msgspec.Struct):
    cached_tokens: int | None = None


class CompletionDetails(msgspec.Struct):
    reasoning_tokens: int | None = None


class ChatUsage(msgspec.Struct):
    """Usage as OpenAI and compatible providers send it."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_details: PromptDetails | None = None
    completion_tokens_details: CompletionDetails | None = None
    prompt_cache_hit_tokens: int | None = None  # DeepSeek
    cached_tokens: int | None = None  # Moonshot (Kimi): cache hits at the top level


class ResponsesUsage(msgspec.Struct):
    """Usage as the Responses API names it (``input``/``output`` instead of prompt/completion)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    input_tokens_details: PromptDetails | None = None
    output_tokens_details: CompletionDetails | None = None


class FunctionDelta(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(msgspec.Struct):
    """A tool-call fragment in a chunk, or a whole call in a message."""

    index: int | None = None
    id: str | None = None
    type: str | None = None
    function: FunctionDelta | None = None


class ChunkDelta(msgspec.Struct):
    """``choices[i].delta`` (also used for the non-stream ``message``)."""

    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class TopLogprob(msgspec.Struct):
    token: str = ""
    logprob: float = 0.0


class TokenLogprob(msgspec.Struct):
    """One token of ``choices[i].logprobs.content`` (``bytes`` is not read: it follows from the token)."""

    token: str = ""
    logprob: float = 0.0
    top_logprobs: list[TopLogprob] = []


class ChoiceLogprobs(msgspec.Struct):
    content: list[TokenLogprob] | None = None
    refusal: list[TokenLogprob] | None = None


class ChunkChoice(msgspec.Struct):
    index: int = 0
    delta: ChunkDelta | None = None
    message: ChunkDelta | None = None
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None  # only when the request asked for logprobs
    usage: ChatUsage | None = None  # Moonshot (Kimi): a stream's usage on its finishing choice


class ErrorView(msgspec.Struct):
    """An OpenAI-style error object; OpenRouter puts a numeric ``code`` here."""

    message: str | None = None
    type: str | None = None
    code: str | int | None = None
    status_code: int | None = None


class ErrorEnvelope(msgspec.Struct):
    """A non-2xx body as OpenAI-shaped servers send it: ``{"error": {...}}`` (OpenAI, Anthropic,
    Gemini: their error objects share ``message``/``type``/``code``), ``{"error": "text"}``,
    ``{"detail": ...}`` (Jina, FastAPI servers) or a bare ``{"message": ...}``."""

    error: ErrorView | str | None = None
    detail: object = None
    message: str | None = None


class XGroq(msgspec.Struct):
    usage: ChatUsage | None = None


class ChatChunk(msgspec.Struct):
    """One ``chat.completion.chunk`` (or an error payload with only ``error``)."""

    id: str = ""
    choices: list[ChunkChoice] = []
    usage: ChatUsage | None = None
    error: ErrorView | None = None
    x_groq: XGroq | None = None


class ChatCompletion(msgspec.Struct):
    """A non-stream ``chat.completion`` body."""

    choices: list[ChunkChoice]
    id: str = ""
    usage: ChatUsage | None = None
    x_groq: XGroq | None = None


class ChoiceUsageView(msgspec.Struct):
    """A stream chunk's choice read only for the usage Moonshot puts there."""

    usage: ChatUsage | None = None


class UsageChunk(msgspec.Struct):
    """A Chat stream chunk as pass-through reads it: usage (Moonshot's on the finishing
    choice), error and model; the rest of the choices skipped."""

    choices: list[ChoiceUsageView] | None = None
    usage: ChatUsage | None = None
    x_groq: XGroq | None = None
    error: msgspec.Raw = msgspec.Raw(b"")  # Raw cannot sit in a union; empty means absent
    model: str | None = None


class UsageBody(msgspec.Struct):
    """A non-stream Chat or Embeddings body read only for its usage (and a top-level
    ``error``, which some OpenAI-compatible servers send with a 200)."""

    usage: ChatUsage | None = None
    error: msgspec.Raw = msgspec.Raw(b"")  # Raw cannot sit in a union; empty means absent
    choices: msgspec.Raw = msgspec.Raw(b"")  # a Chat body must have them (Embeddings: ``data``)


class ResponsesUsageBody(msgspec.Struct):
    """A Responses ``response`` object (a body, or inside a terminal event) read only for its usage."""

    usage: ResponsesUsage | None = None


class ReasoningItemView(msgspec.Struct):
    """A Responses input item read only for whether it is reasoning and what it carries."""

    type: str | None = None
    encrypted_content: str | None = None


class ResponsesEvent(msgspec.Struct):
    """A Responses stream event as pass-through reads it: its type and the response's usage."""

    type: str | None = None
    response: ResponsesUsageBody | None = None


# --- Chat request views: what a translating direction reads of a client's request ---


class ImageUrl(msgspec.Struct):
    url: str


class FileInput(msgspec.Struct):
    file_data: str | None = None
    filename: str | None = None


class InputAudio(msgspec.Struct):
    data: str                      # base64
    format: str                    # "wav" | "mp3"


class ContentPart(msgspec.Struct):
    type: str
    text: str | None = None
    image_url: ImageUrl | None = None
    file: FileInput | None = None
    input_audio: InputAudio | None = None
    refusal: str | None = None


class FunctionCall(msgspec.Struct):
    name: str
    arguments: str = ""


class ToolCall(msgspec.Struct):
    id: str
    function: FunctionCall


class ChatMessage(msgspec.Struct):
    role: str
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class FunctionDef(msgspec.Struct):
    name: str
    description: str | None = None
    parameters: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


class ToolDef(msgspec.Struct):
    function: FunctionDef
    type: str = "function"


class NamedFunction(msgspec.Struct):
    name: str


class NamedToolChoice(msgspec.Struct):
    function: NamedFunction


class JsonSchemaFormat(msgspec.Struct):
    name: str = ""
    schema: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


class ResponseFormat(msgspec.Struct):
    type: str
    json_schema: JsonSchemaFormat | None = None


class ChatRequest(msgspec.Struct):
    messages: list[ChatMessage]
    tools: list[ToolDef] | None = None
    tool_choice: str | NamedToolChoice | None = None
    response_format: ResponseFormat | None = None
    max_completion_tokens: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    reasoning_effort: str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None


class EmbeddingsRequest(msgspec.Struct):
    """An embeddings request as a translating direction reads it."""

    input: str | list[object]
    dimensions: int | None = None


class EmbeddingsEncoding(msgspec.Struct):
    """An embeddings request read only for ``encoding_format`` (pass-through reads no more)."""

    encoding_format: str | None = None


# --- embeddings answers, as a translating direction reads them ---


class EmbeddingItem(msgspec.Struct):
    embedding: list[float] | str
    index: int = 0


class EmbeddingsUsage(msgspec.Struct):
    prompt_tokens: int = 0


class EmbeddingsAnswer(msgspec.Struct):
    data: list[EmbeddingItem]
    usage: EmbeddingsUsage | None = None


_CHUNK: Final = msgspec.json.Decoder(ChatChunk)
_COMPLETION: Final = msgspec.json.Decoder(ChatCompletion)


def decode_chunk(data: bytes) -> ChatChunk:
    """Decode one stream chunk; raises msgspec.DecodeError / ValidationError."""
    return _CHUNK.decode(data)


def decode_completion(body: bytes) -> ChatCompletion:
    """Decode a non-stream completion; raises msgspec.DecodeError / ValidationError."""
    return _COMPLETION.decode(body)
