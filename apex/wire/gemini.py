"""msgspec Structs for the Gemini Generative Language API (v1beta), both directions.

Field names are snake_case here and camelCase on the wire (``rename="camel"``); absent
fields are ``UNSET`` and never encoded. Opaque JSON the gateway only relays (function
arguments and responses, JSON Schemas) stays ``msgspec.Raw``. The view structs read only
what translation needs: unknown fields are ignored on decode. What this module must not
do: translate, or import anything from apex.
"""

from __future__ import annotations

from typing import Annotated, Final, TypeAlias

import msgspec
from msgspec import UNSET, Raw, Struct, UnsetType
from apex.wire.request import TokenLimit

__all__ = [
    "BatchEmbedRequest",
    "Blob",
    "Candidate",
    "CandidateView",
    "ChunkView",
    "Content",
    "CountTokensRequest",
    "EmbedRequest",
    "ErrorBody",
    "ErrorDetail",
    "ErrorStatus",
    "FileData",
    "FunctionCall",
    "FunctionCallingConfig",
    "FunctionDeclaration",
    "FunctionResponse",
    "GenerateContentRequest",
    "GenerateContentResponse",
    "GenerationConfig",
    "Int32",
    "LogprobsCandidate",
    "LogprobsResult",
    "OutputLimit",
    "Part",
    "PromptFeedback",
    "RawBatchEmbedRequest",
    "RawBatchEmbedResponse",
    "RawContentEmbedding",
    "RawEmbeddingsAnswer",
    "RequestLimitView",
    "ThinkingConfig",
    "Tool",
    "ToolConfig",
    "TopCandidates",
    "UsageMetadata",
    "decode_batch_embed_request",
    "decode_chunk_view",
    "decode_count_tokens_request",
    "decode_error_body",
    "decode_request",
    "decode_response",
    "encode",
    "whole",
]

# Gemini reads JSON by proto3's rules, where an int32 field takes any number without a
# fraction: google-genai's Python SDK types topK as a float and sends "topK": 4.0, which
# Gemini serves (Apex answered 400 "Expected int, got float" on translated channels). Such
# fields are read as sent and made ints by ``whole``; a fraction is a 400, as on Gemini.
Int32: TypeAlias = int | float
# The output limit Apex reads before routing (rate limit, budgets), in either number spelling.
_TokenLimit: TypeAlias = TokenLimit | Annotated[float, msgspec.Meta(ge=0, le=2**31 - 1)]


def whole(value: int | float) -> int | None:
    """The int a proto3 int32 field reads ``value`` as; None when it has a fraction."""
    if isinstance(value, int):
        return value
    return int(value) if value.is_integer() else None


class _Wire(Struct, rename="camel", omit_defaults=True):
    """Base: camelCase on the wire, defaults left out when encoding."""


class FunctionCall(_Wire):
    name: str = ""
    args: Raw | UnsetType = UNSET  # a JSON object; absent for argument-less calls
    id: str | UnsetType = UNSET    # Vertex / newer models only


class FunctionResponse(_Wire):
    name: str
    response: Raw                  # must be a JSON object
    id: str | UnsetType = UNSET    # echoes FunctionCall.id when the call had one
    parts: list[FunctionResponsePart] | UnsetType = UNSET  # media the tool returned (images, PDFs)


class Blob(_Wire):
    mime_type: str
    data: str                      # base64


class FunctionResponsePart(_Wire):
    inline_data: Blob | UnsetType = UNSET
    file_data: FileData | UnsetType = UNSET


class FileData(_Wire):
    file_uri: str
    mime_type: str | UnsetType = UNSET


class Part(_Wire):
    text: str | UnsetType = UNSET
    thought: bool = False
    thought_signature: str | UnsetType = UNSET
    function_call: FunctionCall | UnsetType = UNSET
    function_response: FunctionResponse | UnsetType = UNSET
    inline_data: Blob | UnsetType = UNSET
    file_data: FileData | UnsetType = UNSET


class Content(_Wire):
    parts: list[Part] = []
    role: str | UnsetType = UNSET  # "user" | "model"; ignored inside systemInstruction


class FunctionDeclaration(_Wire):
    name: str
    description: str | UnsetType = UNSET
    parameters: Raw | UnsetType = UNSET             # OpenAPI 3.0 subset (types in upper case)
    parameters_json_schema: Raw | UnsetType = UNSET


class Tool(_Wire):
    function_declarations: list[FunctionDeclaration] = []  # empty: a built-in tool (googleSearch...)
    google_search: Raw | UnsetType = UNSET       # built-in tools: read only to say they were dropped
    google_search_retrieval: Raw | UnsetType = UNSET
    code_execution: Raw | UnsetType = UNSET
    url_context: Raw | UnsetType = UNSET
    google_maps: Raw | UnsetType = UNSET
    file_search: Raw | UnsetType = UNSET
    enterprise_web_search: Raw | UnsetType = UNSET
    computer_use: Raw | UnsetType = UNSET
    retrieval: Raw | UnsetType = UNSET           # Vertex AI Search / RAG
    mcp_servers: Raw | UnsetType = UNSET
    parallel_ai_search: Raw | UnsetType = UNSET
    exa_ai_search: Raw | UnsetType = UNSET


class FunctionCallingConfig(_Wire):
    mode: str | UnsetType = UNSET  # AUTO | ANY | NONE | VALIDATED; optional on Gemini (unset: AUTO)
    allowed_function_names: list[str] | UnsetType = UNSET


class ToolConfig(_Wire):
    # Optional on Gemini: the SDK's ToolConfig(retrieval_config=...) (Maps grounding's
    # location) holds none.
    function_calling_config: FunctionCallingConfig | UnsetType = UNSET


class ThinkingConfig(_Wire):
    thinking_budget: Int32 | UnsetType = UNSET
    include_thoughts: bool | UnsetType = UNSET
    thinking_level: str | UnsetType = UNSET  # Gemini 3: "low" | "medium" | "high" (any case)


class GenerationConfig(_Wire):
    temperature: float | UnsetType = UNSET
    top_p: float | UnsetType = UNSET
    top_k: Int32 | UnsetType = UNSET
    candidate_count: Int32 | UnsetType = UNSET
    max_output_tokens: Int32 | UnsetType = UNSET
    stop_sequences: list[str] | UnsetType = UNSET
    presence_penalty: float | UnsetType = UNSET
    frequency_penalty: float | UnsetType = UNSET
    seed: Int32 | UnsetType = UNSET
    response_mime_type: str | UnsetType = UNSET
    response_json_schema: Raw | UnsetType = UNSET
    response_schema: Raw | UnsetType = UNSET   # OpenAPI subset, like FunctionDeclaration.parameters
    thinking_config: ThinkingConfig | UnsetType = UNSET
    response_logprobs: bool | UnsetType = UNSET
    logprobs: Int32 | UnsetType = UNSET        # top candidates per step, 0..20 (only with responseLogprobs)


class GenerateContentRequest(_Wire):
    """The body of :generateContent and :streamGenerateContent (model and stream live in the URL)."""

    contents: list[Content]
    system_instruction: Content | UnsetType = UNSET
    tools: list[Tool] | UnsetType = UNSET
    tool_config: ToolConfig | UnsetType = UNSET
    generation_config: GenerationConfig | UnsetType = UNSET


class LogprobsCandidate(_Wire):
    token: str = ""
    log_probability: float = 0.0  # proto3 JSON leaves a 0 out


class TopCandidates(_Wire):
    candidates: list[LogprobsCandidate] = []


class LogprobsResult(_Wire):
    """One entry per decoding step in both lists (``topCandidates`` only when asked for)."""

    chosen_candidates: list[LogprobsCandidate] = []
    top_candidates: list[TopCandidates] = []


class Candidate(_Wire):
    content: Content | None = None
    finish_reason: str | None = None
    index: int = 0
    logprobs_result: LogprobsResult | None = None  # only when the request set responseLogprobs


class UsageMetadata(_Wire):
    prompt_token_count: int = 0
    candidates_token_count: int = 0
    total_token_count: int = 0
    thoughts_token_count: int = 0
    cached_content_token_count: int = 0
    tool_use_prompt_token_count: int = 0


class PromptFeedback(_Wire):
    block_reason: str | None = None


class ErrorDetail(_Wire):
    reason: str | None = None  # google.rpc.ErrorInfo
    retry_delay: str | None = None  # google.rpc.RetryInfo: a protobuf Duration, e.g. "30s", "45.83s"


class ErrorStatus(_Wire):
    code: int = 0
    message: str = ""
    status: str = ""
    details: list[ErrorDetail] = []


class GenerateContentResponse(_Wire):
    """One non-stream response, or one SSE chunk (then ``error`` may be set instead)."""

    candidates: list[Candidate] = []
    usage_metadata: UsageMetadata | None = None
    prompt_feedback: PromptFeedback | None = None
    model_version: str = ""
    response_id: str = ""
    error: ErrorStatus | None = None


class CandidateView(_Wire):
    finish_reason: str | None = None


class ChunkView(_Wire):
    """What a pass-through observer reads from a chunk (parts are skipped, never built)."""

    candidates: list[CandidateView] = []
    usage_metadata: UsageMetadata | None = None
    prompt_feedback: PromptFeedback | None = None
    error: ErrorStatus | None = None


class ErrorBody(_Wire):
    error: ErrorStatus


class EmbedRequest(_Wire, kw_only=True):
    model: str = ""                # "models/<name>"
    content: Content
    output_dimensionality: int | UnsetType = UNSET
    task_type: str | UnsetType = UNSET


class BatchEmbedRequest(_Wire):
    requests: list[EmbedRequest]


class RawContentEmbedding(_Wire):
    values: Raw  # the JSON array as sent: passed on without a Python float per value


class RawBatchEmbedResponse(_Wire):
    embeddings: list[RawContentEmbedding]


class CountTokensRequest(_Wire):
    """:countTokens takes ``contents`` or a whole ``generateContentRequest``."""

    contents: list[Content] = []
    generate_content_request: GenerateContentRequest | None = None


# --- what Apex reads of a Gemini request before routing ---


class OutputLimit(msgspec.Struct):
    # Google's REST API reads both spellings (the Python SDK sends snake_case).
    max_output_tokens_camel: _TokenLimit | None = msgspec.field(default=None, name="maxOutputTokens")
    max_output_tokens_snake: _TokenLimit | None = msgspec.field(default=None, name="max_output_tokens")

    @property
    def max_output_tokens(self) -> int | None:
        """None also for a fraction (Gemini refuses it; a translator answers the 400)."""
        camel = self.max_output_tokens_camel
        value = camel if camel is not None else self.max_output_tokens_snake
        return whole(value) if value is not None else None


class RequestLimitView(msgspec.Struct):
    """What Apex reads of a Gemini body before routing: the output limit (for the rate limit
    and the budget), in either spelling (snake_case was left out of both)."""

    generation_config_camel: OutputLimit | None = msgspec.field(default=None, name="generationConfig")
    generation_config_snake: OutputLimit | None = msgspec.field(default=None, name="generation_config")

    @property
    def generation_config(self) -> OutputLimit | None:
        camel = self.generation_config_camel
        return camel if camel is not None else self.generation_config_snake


# --- batch embeddings with each item kept raw ---


class RawEmbeddingsAnswer(msgspec.Struct):
    embeddings: list[msgspec.Raw]


class RawBatchEmbedRequest(msgspec.Struct):
    requests: list[dict[str, msgspec.Raw]]


_REQUEST: Final = msgspec.json.Decoder(GenerateContentRequest)
_COUNT: Final = msgspec.json.Decoder(CountTokensRequest)
_BATCH_EMBED: Final = msgspec.json.Decoder(BatchEmbedRequest)
_RESPONSE: Final = msgspec.json.Decoder(GenerateContentResponse)
_CHUNK_VIEW: Final = msgspec.json.Decoder(ChunkView)
_ERROR: Final = msgspec.json.Decoder(ErrorBody)
_ENCODER: Final = msgspec.json.Encoder()


def decode_request(body: bytes) -> GenerateContentRequest:
    """Decode a client's generateContent body; raises msgspec.DecodeError / ValidationError."""
    return _REQUEST.decode(body)


def decode_count_tokens_request(body: bytes) -> CountTokensRequest:
    """Decode a client's countTokens body; raises msgspec.DecodeError / ValidationError."""
    return _COUNT.decode(body)


def decode_batch_embed_request(body: bytes) -> BatchEmbedRequest:
    """Decode a batchEmbedContents body; raises msgspec.DecodeError / ValidationError."""
    return _BATCH_EMBED.decode(body)


def decode_chunk_view(body: bytes) -> ChunkView:
    """Decode the observer's view of a chunk; raises msgspec.DecodeError / ValidationError."""
    return _CHUNK_VIEW.decode(body)


def decode_response(body: bytes) -> GenerateContentResponse:
    """Decode a response or stream chunk; raises msgspec.DecodeError / ValidationError."""
    return _RESPONSE.decode(body)


def decode_error_body(body: bytes) -> ErrorBody:
    """Decode ``{"error": {...}}``; raises msgspec.DecodeError / ValidationError."""
    return _ERROR.decode(body)


def encode(obj: Struct) -> bytes:
    """Encode a request struct as compact JSON."""
    return _ENCODER.encode(obj)
