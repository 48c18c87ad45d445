"""The Gemini API endpoints: ``/v1beta/models/{model}:{method}`` and the model list (also under ``/v1/``).

The method after the colon picks the client dialect: ``generateContent`` and
``streamGenerateContent`` (``?alt=sse`` gives SSE, anything else Google's incremental JSON
array) are GEMINI_GENERATE, ``countTokens`` GEMINI_COUNT_TOKENS, ``embedContent`` and
``batchEmbedContents`` GEMINI_EMBED (a single ``embedContent`` is served as a batch of
one and unwrapped on the way out). The model comes from the path, so the body is never
decoded to route it; from there the request takes the same pipeline as every dialect
(``pipeline.serve``): policy, routing, limits, attempts, metrics and the access line.
The client's key is read from ``x-goog-api-key``, ``?key=`` or ``Authorization: Bearer``
(what the google-genai SDKs and Gemini CLI send); it is never forwarded, and the query
string is never logged.
"""

from __future__ import annotations

from typing import Final

import msgspec
from aiohttp import web

from apex.auth import presented_key
from apex.errors import AuthenticationFailed, InvalidRequest, NotFound
from apex.server.exchange import Exchange
from apex.server.inputs import check_model
from apex.server.pipeline import read_body, serve
from apex.server.responses import json_response, method_not_allowed
from apex.snapshot import Snapshot
from apex.translate.directions.gemini_embeddings import batch_to_single, single_to_batch
from apex.types import Dialect
from apex.wire.gemini import RequestLimitView
from apex.wire.request import RequestView

__all__ = ["gemini_key", "generate", "is_gemini_request", "models"]

_METHODS: Final[dict[str, tuple[Dialect, bool]]] = {
    "generateContent": (Dialect.GEMINI_GENERATE, False),
    "streamGenerateContent": (Dialect.GEMINI_GENERATE, True),
    "countTokens": (Dialect.GEMINI_COUNT_TOKENS, False),
    "embedContent": (Dialect.GEMINI_EMBED, False),
    "batchEmbedContents": (Dialect.GEMINI_EMBED, False),
}
_HOW_TO_SEND: Final = "'x-goog-api-key: <key>', '?key=<key>' or 'Authorization: Bearer <key>'"
_GENERATION_METHODS: Final = ["generateContent", "streamGenerateContent", "countTokens", "embedContent",
                              "batchEmbedContents"]


_VIEW: Final = msgspec.json.Decoder(RequestLimitView)


def gemini_key(request: web.Request) -> str | None:
    """The key a Gemini client presents, or None; AuthenticationFailed for one no key could match."""
    key = request.headers.get("x-goog-api-key") or request.query.get("key")
    if key and key.strip():
        if not (key.isascii() and key.isprintable()):  # non-UTF-8 bytes arrive as lone surrogates
            raise AuthenticationFailed("the API key holds bytes no API key has (keys are printable ASCII)")
        return key.strip()
    return presented_key(request.headers)


def is_gemini_request(request: web.Request) -> bool:
    """True when a request on a shared path (``GET /v1/models``) comes from a Gemini client."""
    return "x-goog-api-key" in request.headers or "key" in request.query


def _decode_view(body: bytes) -> RequestLimitView:
    if not body:
        raise InvalidRequest("request body is empty; expected a JSON object")
    try:
        return _VIEW.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid request: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # msgspec's depth guard: later full decodes would hit it too
        raise InvalidRequest("request body is nested too deeply") from exc


async def generate(request: web.Request, snap: Snapshot, ex: Exchange, dialect: Dialect) -> web.StreamResponse:
    """``POST .../models/{model}:{method}``: route by the path's model, serve in the method's dialect."""
    model, sep, method = request.match_info["target"].rpartition(":")
    served = _METHODS.get(method) if sep and model else None
    if served is None:
        raise NotFound(f"unknown method {request.match_info['target']!r}: expected models/{{model}}:"
                       "generateContent, streamGenerateContent, countTokens, embedContent or batchEmbedContents")
    client, stream = served
    check_model(model)
    ex.dialect = client
    if ex.trace is not None:
        ex.trace.dialect_known(client)  # its span began as a generate one: the URL's method says which
    principal = snap.keys.authenticate_key(gemini_key(request), _HOW_TO_SEND)
    ex.authenticated(principal)
    body = await read_body(request, snap.max_body_bytes, ex)
    view = _decode_view(body)
    if method == "embedContent":
        body = single_to_batch(body, model)
    ex.request_body = body
    ex.json_array_stream = stream and request.query.get("alt") != "sse"
    limit = view.generation_config.max_output_tokens if view.generation_config is not None else None
    response = await serve(request, snap, ex, client, principal, body,
                           RequestView(model=model, stream=stream, max_output_tokens=limit))
    if method == "embedContent" and isinstance(response, web.Response) and response.status == 200:
        assert isinstance(response.body, bytes)
        response.body = batch_to_single(response.body)
    return response


def _model_object(name: str) -> dict[str, object]:
    return {"name": f"models/{name}", "baseModelId": name, "version": "apex", "displayName": name,
            "description": f"{name} through Apex", "supportedGenerationMethods": _GENERATION_METHODS}


async def models(request: web.Request, snap: Snapshot, ex: Exchange, dialect: Dialect) -> web.StreamResponse:
    """``GET .../models`` and ``.../models/{model}`` in Gemini's shape: the models this key may use."""
    ex.dialect = Dialect.GEMINI_GENERATE
    principal = snap.keys.authenticate_key(gemini_key(request), _HOW_TO_SEND)
    ex.authenticated(principal)
    names = snap.models_for(principal)
    one = request.match_info.get("model_id")
    if one is not None and one.rpartition(":")[2] in _METHODS:  # GET on gemini-x:generateContent: the
        # method is wrong, not the model (a name may hold ":" itself: qwen2.5:7b)
        return method_not_allowed(Dialect.GEMINI_GENERATE, request.method, request.path, "POST")
    if one is not None:
        one = one.removeprefix("models/")
        if one not in names:
            raise NotFound(f"model '{one}' does not exist or is not available to this key")
        return json_response(_model_object(one))
    return json_response({"models": [_model_object(n) for n in names]})
