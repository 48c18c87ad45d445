"""Gemini error bodies -> Apex's status and kind, and kind -> client wire error types.

``gemini_error(status, body)`` reads ``{"error":{"code","message","status","details"}}``
(docs/protocols.md 6.6) and classifies by the HTTP status, the RPC status and the details'
``reason`` (never by message text). Gemini answers a bad API key with 400
``INVALID_ARGUMENT`` + ``API_KEY_INVALID``: that is a 401 (P19), which the provider turns
into a failover like any refused channel key. A stream that fails before its first event
sends the same JSON without SSE framing; a non-JSON body (proxy HTML) keeps a short
excerpt as the message. What this module must not do: raise.
"""

from __future__ import annotations

from typing import Final, NamedTuple

import msgspec

from apex.errors import ErrorKind, kind_for_status
from apex.wire.gemini import decode_error_body

__all__ = ["GeminiError", "gemini_error"]


class GeminiError(NamedTuple):
    """A decoded Gemini error: the status Apex should treat it as, its kind and message."""

    status: int
    kind: ErrorKind
    message: str
    rpc_status: str | None    # e.g. "NOT_FOUND", "RESOURCE_EXHAUSTED"; None when not JSON
    # google.rpc.RetryInfo's retryDelay in seconds: Gemini (and Vertex) say how long to wait
    # only there, never in a Retry-After header.
    retry_after: float | None = None


_STATUS_OF_RPC: Final[dict[str, int]] = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
_AUTH_REASONS: Final = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"})
_EXCERPT: Final = 200


def gemini_error(status: int, body: bytes) -> GeminiError:
    """Classify a Gemini error answer (HTTP ``status`` may be 200 for an in-stream error)."""
    try:
        err = decode_error_body(body).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = body[:_EXCERPT].decode("utf-8", "replace").strip()
        return GeminiError(status, kind_for_status(status), text or f"upstream HTTP {status}", None)
    effective = status if status >= 400 else (err.code or _STATUS_OF_RPC.get(err.status, 500))
    if any(d.reason in _AUTH_REASONS for d in err.details) or err.status == "UNAUTHENTICATED":
        effective = 401
    retry_after = next((d for d in (_duration(x.retry_delay) for x in err.details if x.retry_delay) if d is not None), None)
    return GeminiError(effective, kind_for_status(effective), err.message or err.status, err.status or None, retry_after)


def _duration(text: str) -> float | None:
    """A protobuf Duration in its JSON form ("30s", "0.5s", "45.837906927s"); None if it is not one."""
    if not text.endswith("s"):
        return None
    try:
        seconds = float(text[:-1])
    except ValueError:
        return None
    return seconds if 0 <= seconds < 1e9 else None
