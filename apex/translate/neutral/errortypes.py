"""Error kinds <-> wire error ``type`` strings for in-stream error events (spec section 3).

Apex kinds (``apex.errors``: ``invalid_request``, ``timeout``, ``overloaded``...) map to
each client family's ``type``; upstream ``type`` strings (and bare HTTP status codes, as
OpenRouter sends them) map back to a kind. A context-window overflow, which only OpenAI
names with a code, is recognised here from every upstream's words
(``context_overflow``) and said back in each client's (``anthropic_error_message``,
``responses_error_code``). What this module must not do: build bodies.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from apex.errors import CONTEXT_LENGTH_EXCEEDED, ErrorKind, kind_for_status

__all__ = [
    "blames_request",
    "event_blames_request",
    "anthropic_error_message",
    "anthropic_error_type",
    "context_overflow",
    "gemini_rpc_status",
    "gemini_status_of_kind",
    "kind_from_upstream",
    "openai_error_type",
    "responses_error_code",
]

_OPENAI: Final[dict[ErrorKind, str]] = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "request_too_large": "invalid_request_error",
    "rate_limit": "rate_limit_error",
    "budget_exceeded": "insufficient_quota",
    "timeout": "timeout_error",
    "overloaded": "api_error",
    "api_error": "api_error",
}
_ANTHROPIC: Final[dict[ErrorKind, str]] = {
    **_OPENAI,
    "request_too_large": "request_too_large",
    "budget_exceeded": "rate_limit_error",
    "overloaded": "overloaded_error",
}
_KIND_OF_TYPE: Final[dict[str, ErrorKind]] = {
    "invalid_request_error": "invalid_request",
    "authentication_error": "authentication",
    "permission_error": "permission",
    "not_found_error": "not_found",
    "request_too_large": "request_too_large",
    "rate_limit_error": "rate_limit",
    "rate_limit_exceeded": "rate_limit",
    "insufficient_quota": "rate_limit",
    "tokens": "rate_limit",
    "api_error": "api_error",
    "server_error": "api_error",
    "overloaded_error": "overloaded",
    "timeout_error": "timeout",
    "billing_error": "invalid_request",
    "model_context_window_exceeded": "invalid_request",
    "exceed_context_size_error": "invalid_request",
}

# A prompt over the model's context window. OpenAI (and servers copying it) say so with a code;
# the others only in words, a 400 like any other bad request, so the words are all there is:
_OVERFLOW_CODES: Final = frozenset({
    CONTEXT_LENGTH_EXCEEDED,          # OpenAI, Azure OpenAI, Groq
    "model_context_window_exceeded",  # Anthropic's name for it (a stop reason today)
    "exceed_context_size_error",      # llama.cpp server's error type
})
_OVERFLOW_WORDS: Final = re.compile(
    r"prompt is too long"                                    # Anthropic: "prompt is too long: N tokens > M maximum"
    r"|input length and `max_tokens` exceed context limit"   # Anthropic, the prompt plus max_tokens
    r"|input token count.{0,32}exceeds the maximum number of tokens"  # Gemini (INVALID_ARGUMENT)
    r"|input is too long for requested model"                # Bedrock ValidationException
    r"|too many input tokens"                                # Bedrock (Titan) ValidationException
    r"|maximum context length"                               # OpenAI's words, vLLM, DeepSeek, Mistral, OpenRouter
    r"|longer than the maximum model length"                 # vLLM: "The decoder prompt (length N) is longer than..."
    r"|exceeds the available context size",                  # llama.cpp server
    re.IGNORECASE)
# What Claude Code (and Anthropic's own answers) call an overflow: left as they are.
_ANTHROPIC_OVERFLOW_WORDS: Final = re.compile(r"prompt is too long|exceed context limit", re.IGNORECASE)


# Gemini errors name a google.rpc status beside the HTTP code (docs/protocols.md 6.6).
_GEMINI_RPC: Final[dict[int, str]] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}
_STATUS_OF_KIND: Final[dict[ErrorKind, int]] = {
    "invalid_request": 400,
    "authentication": 401,
    "permission": 403,
    "not_found": 404,
    "request_too_large": 413,
    "rate_limit": 429,
    "budget_exceeded": 429,
    "timeout": 504,
    "overloaded": 503,
    "api_error": 500,
}


def gemini_rpc_status(status: int) -> str:
    """HTTP status -> the google.rpc status name Gemini puts beside it."""
    return _GEMINI_RPC.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")


def gemini_status_of_kind(kind: ErrorKind) -> int:
    """Apex kind -> the HTTP code a Gemini in-stream error carries."""
    return _STATUS_OF_KIND[kind]


def openai_error_type(kind: ErrorKind) -> str:
    """Apex kind -> OpenAI ``error.type``."""
    return _OPENAI[kind]


def anthropic_error_type(kind: ErrorKind) -> str:
    """Apex kind -> Anthropic ``error.type``."""
    return _ANTHROPIC[kind]


def context_overflow(kind: ErrorKind, message: str, *codes: str | None) -> bool:
    """True when a refused request's ``codes`` (an upstream's code, its error type) or its
    words say the prompt is over the context window: Apex's error then carries
    ``CONTEXT_LENGTH_EXCEEDED``. Only on the error path: one regex search."""
    if kind not in ("invalid_request", "request_too_large"):
        return False
    return any(c in _OVERFLOW_CODES for c in codes) or _OVERFLOW_WORDS.search(message) is not None


def anthropic_error_message(message: str, code: str | None) -> str:
    """``message`` for an Anthropic client: an overflow in Anthropic's words ("prompt is too
    long", what Claude Code compacts on), the upstream's own after them."""
    if code == CONTEXT_LENGTH_EXCEEDED and _ANTHROPIC_OVERFLOW_WORDS.search(message) is None:
        return f"prompt is too long: {message}"
    return message


def responses_error_code(kind: ErrorKind, code: str | None = None) -> str:
    """Apex kind -> Responses ``response.error.code``: the API's closed set, and
    ``context_length_exceeded`` for an overflow as OpenAI sends it (Codex keys on it)."""
    if code == CONTEXT_LENGTH_EXCEEDED:
        return code
    if kind in ("rate_limit", "budget_exceeded"):
        return "rate_limit_exceeded"
    if kind in ("invalid_request", "request_too_large"):
        return "invalid_prompt"
    return "server_error"


def kind_from_upstream(error_type: str | None, status: int | None = None) -> ErrorKind:
    """An upstream error's ``type`` (preferred) or HTTP status -> Apex kind."""
    if error_type and error_type in _KIND_OF_TYPE:
        return _KIND_OF_TYPE[error_type]
    if status is not None:
        return kind_for_status(status)
    return "api_error"


_REQUEST_KINDS: Final = frozenset({"invalid_request", "request_too_large"})
_REQUEST_RPC: Final = frozenset({"INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE"})  # Google's
_REQUEST_CODES: Final = frozenset({"invalid_prompt"})  # Responses' response.error.code for a bad request


def blames_request(kind: ErrorKind, code: str | None = None) -> bool:
    """An upstream error that is the request's doing (malformed, over the context window): no
    mark against the channel's health, whenever it arrives."""
    return kind in _REQUEST_KINDS or code == CONTEXT_LENGTH_EXCEEDED or code in _REQUEST_CODES


def event_blames_request(data: bytes) -> bool:
    """``blames_request`` for an upstream's in-stream error event, in any family's shape:
    Chat's and Gemini's ``{"error": {...}}``, Anthropic's ``{"type": "error", "error": {...}}``,
    Responses' ``response.failed`` (``response.error``) and ``error`` event. Only on a stream's
    error path."""
    try:
        obj = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return False
    if not isinstance(obj, dict):
        return False
    err = obj.get("error")
    if not isinstance(err, dict):
        response = obj.get("response")
        err = response.get("error") if isinstance(response, dict) else None
    if not isinstance(err, dict):
        err = obj if obj.get("type") == "error" else None  # Responses' own error event
    if err is None:
        return False
    etype = err.get("type") if isinstance(err.get("type"), str) else None
    code = err.get("code")
    status = err.get("status")
    if isinstance(status, str) and status in _REQUEST_RPC:
        return True
    kind = kind_from_upstream(etype, code if isinstance(code, int) else None)
    message = err.get("message") if isinstance(err.get("message"), str) else ""
    code_text = code if isinstance(code, str) else None
    return blames_request(kind, code_text) or context_overflow("invalid_request", str(message), code_text, etype)
