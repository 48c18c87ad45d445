"""Error kinds <-> wire error ``type`` strings for in-stream error events (spec section 3).

Apex kinds (``apex.errors``: ``invalid_request``, ``timeout``, ``overloaded``...) map to
each client family's ``type``; upstream ``type`` strings (and bare HTTP status codes, as
OpenRouter sends them) map back to a kind. What this module must not do: build bodies.
"""

from __future__ import annotations

from typing import Final

from apex.errors import ErrorKind, kind_for_status

__all__ = [
    "anthropic_error_type",
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
}


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


def responses_error_code(kind: ErrorKind) -> str:
    """Apex kind -> Responses ``response.error.code`` (a closed set in the API)."""
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
