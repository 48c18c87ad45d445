"""Render ApexError and JSON in the client's dialect. The endpoint decides the wire shape.

Shapes: OpenAI ``{"error": {message, type, param, code}}``, Anthropic ``{"type": "error",
"error": {type, message, details?}}`` (``details`` when the error carries them), Gemini
``{"error": {code, message, status}}``. The ``kind -> type`` tables (spec section 3) live in
``apex.translate.neutral.errortypes``, shared with the stream translators. An upstream's own
error body keeps its message and, when the protocols match, its type.
"""

from __future__ import annotations

import math
from typing import Final

import msgspec
from aiohttp import web

from apex.errors import ApexError, ErrorKind, MethodNotAllowed, UpstreamStatus
from apex.sse import encode_event
from apex.translate.neutral.errortypes import (
    anthropic_error_message,
    anthropic_error_type,
    gemini_rpc_status,
    gemini_status_of_kind,
    openai_error_type,
    responses_error_code,
)
from apex.translate.write.anthropic import anthropic_error_event
from apex.translate.write.gemini import gemini_error_object
from apex.translate.write.openai import openai_error_event
from apex.types import Dialect

__all__ = ["error_body", "error_response", "json_response", "method_not_allowed", "stream_error_event", "SSE_HEADERS"]

_ENC: Final = msgspec.json.Encoder()

SSE_HEADERS: Final[dict[str, str]] = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def _type_for(dialect: Dialect, err: ApexError) -> str:
    anthropic = dialect.family == "anthropic"
    if isinstance(err, UpstreamStatus):
        same_family = err.upstream_dialect == dialect.family
        if same_family and err.upstream_type and err.status == err.upstream_status:
            return err.upstream_type
        if err.upstream_status == 529:
            return "overloaded_error" if anthropic else "api_error"
    return anthropic_error_type(err.kind) if anthropic else openai_error_type(err.kind)


def _gemini_rpc_status(err: ApexError) -> str:
    if (isinstance(err, UpstreamStatus) and err.upstream_dialect == "gemini" and err.upstream_type
            and err.status == err.upstream_status):
        return err.upstream_type  # Gemini's own status name, e.g. RESOURCE_EXHAUSTED
    return gemini_rpc_status(err.status)


def dialect_of_path(path: str) -> Dialect:
    """The protocol an error on ``path`` is answered in when no endpoint took the request
    (a parse error, an unknown path, a refused ``Expect``): Anthropic under /v1/messages,
    Gemini under /v1beta/ and for ``/v1/models/{model}:{method}``, else OpenAI."""
    if path.startswith("/v1/messages"):
        return Dialect.ANTHROPIC_MESSAGES
    if path.startswith("/v1beta/") or (path.startswith("/v1/models/") and ":" in path):
        return Dialect.GEMINI_GENERATE
    return Dialect.OPENAI_CHAT


def error_body(dialect: Dialect, err: ApexError) -> bytes:
    """The error object in ``dialect``'s shape."""
    if isinstance(err, UpstreamStatus) and err.client_body is not None and err.status == err.upstream_status:
        return err.client_body  # a native upstream's own body: untouched but for scrubbed secrets
    if dialect.family == "gemini":
        return _ENC.encode(gemini_error_object(err.status, err.message, _gemini_rpc_status(err)))
    etype = _type_for(dialect, err)
    if dialect.family == "anthropic":
        error: dict[str, object] = {"type": etype, "message": anthropic_error_message(err.message, err.code)}
        if err.details:
            error["details"] = dict(err.details)
        return _ENC.encode({"type": "error", "error": error})
    return _ENC.encode({"error": {"message": err.message, "type": etype, "param": err.param, "code": err.code}})


def error_response(dialect: Dialect, err: ApexError) -> web.Response:
    """A complete error response: status, dialect-shaped body, Retry-After when known."""
    headers = {}
    if err.retry_after is not None and err.status in (429, 503, 529):
        headers["Retry-After"] = str(max(1, math.ceil(err.retry_after)))
    return web.Response(status=err.status, body=error_body(dialect, err), content_type="application/json", headers=headers)


def method_not_allowed(dialect: Dialect, method: str, path: str, allowed: str) -> web.Response:
    """405 with ``Allow``, in ``dialect``'s error shape."""
    resp = error_response(dialect, MethodNotAllowed(f"method {method} is not allowed on {path}; use {allowed}"))
    resp.headers["Allow"] = allowed
    return resp


def stream_error_event(dialect: Dialect, message: str, kind: ErrorKind) -> bytes:
    """The in-stream error event that ends a committed stream in ``dialect`` (the same events
    the stream translators write, so pass-through and translated streams fail alike)."""
    if dialect.family == "anthropic":
        return anthropic_error_event(message, kind)
    if dialect.family == "gemini":
        return encode_event(_ENC.encode(gemini_error_object(gemini_status_of_kind(kind), message)))
    if dialect is Dialect.OPENAI_RESPONSES:
        body = {"type": "error", "code": responses_error_code(kind), "message": message, "param": None}
        return encode_event(_ENC.encode(body), "error")
    return openai_error_event(message, kind)


def json_response(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=_ENC.encode(data), content_type="application/json", headers=headers)
