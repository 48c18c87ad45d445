"""Endpoints that are not the proxy: models list, health, unknown paths and the metrics path.

The API endpoints themselves are ``pipeline.proxy``, registered once per dialect in ``app``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Final

from aiohttp import web

from apex.errors import ApexError, ErrorKind, InvalidRequest, NotFound
from apex.server.exchange import Exchange
from apex.server.gateway import Gateway
from apex.server.gemini import is_gemini_request, models as gemini_models
from apex.server.keys import GATEWAY_KEY
from apex.server.endpoint import new_request_id, record_answer
from apex.server.inputs import client_request_id
from apex.server.responses import dialect_of_path, error_response, json_response, method_not_allowed
from apex.snapshot import Snapshot
from apex.types import Dialect

__all__ = ["API_PATHS", "fallback", "health", "models", "ready"]

API_PATHS: Final[dict[str, Dialect]] = {
    "/v1/chat/completions": Dialect.OPENAI_CHAT,
    "/v1/responses": Dialect.OPENAI_RESPONSES,
    "/v1/embeddings": Dialect.OPENAI_EMBEDDINGS,
    "/v1/messages": Dialect.ANTHROPIC_MESSAGES,
    "/v1/messages/count_tokens": Dialect.ANTHROPIC_COUNT_TOKENS,
}


async def models(request: web.Request, snap: Snapshot, ex: Exchange, dialect: Dialect) -> web.StreamResponse:
    """The models this key may use: OpenAI's list shape, Anthropic's with anthropic-version,
    Gemini's when the key comes the Gemini way (``x-goog-api-key`` or ``?key=``)."""
    if is_gemini_request(request):
        try:
            return await gemini_models(request, snap, ex, dialect)
        except ApexError as err:  # this path's endpoint renders OpenAI errors: answer in Gemini's
            ex.error_kind = err.kind
            return error_response(Dialect.GEMINI_GENERATE, err)
    anthropic = "anthropic-version" in request.headers
    try:
        principal = snap.keys.authenticate(request.headers)
        ex.authenticated(principal)
        names = snap.models_for(principal)
        one = request.match_info.get("model_id")
        if anthropic:
            ex.dialect = Dialect.ANTHROPIC_MESSAGES
        if one is not None:
            if one not in names:
                raise NotFound(f"model '{one}' does not exist or is not available to this key", code="model_not_found")
            names = [one]
    except ApexError as err:
        if not anthropic:
            raise
        ex.error_kind = err.kind  # an Anthropic client (anthropic-version) gets Anthropic's error shape
        return error_response(Dialect.ANTHROPIC_MESSAGES, err)
    if anthropic:
        has_more = False
        if one is None:
            try:
                names, has_more = _anthropic_page(names, request.query)
            except InvalidRequest as err:
                ex.error_kind = err.kind
                return error_response(Dialect.ANTHROPIC_MESSAGES, err)
        data = [{"type": "model", "id": n, "display_name": n, "created_at": "1970-01-01T00:00:00Z"} for n in names]
        if one is not None:
            return json_response(data[0])
        return json_response({"data": data, "has_more": has_more,
                              "first_id": names[0] if names else None, "last_id": names[-1] if names else None})
    objs = [{"id": n, "object": "model", "created": 0, "owned_by": "apex"} for n in names]
    if one is not None:
        return json_response(objs[0])
    return json_response({"object": "list", "data": objs})


def _anthropic_page(names: list[str], query: Mapping[str, str]) -> tuple[list[str], bool]:
    """Anthropic's list paging: ``limit`` (1-1000, default 20) names after ``after_id`` or
    before ``before_id``; whether more are left in that direction."""
    raw = query.get("limit", "20")
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise InvalidRequest("limit: must be an integer from 1 to 1000", param="limit")
    limit = int(raw)
    after, before = query.get("after_id"), query.get("before_id")
    if after is not None and before is not None:
        raise InvalidRequest("give after_id or before_id, not both", param="after_id")
    if before is not None:
        end = names.index(before) if before in names else 0  # an unknown id: nothing before it
        return names[max(0, end - limit):end], end - limit > 0
    if after is None:
        start = 0
    else:
        start = names.index(after) + 1 if after in names else len(names)  # an unknown id: nothing after it
    return names[start:start + limit], start + limit < len(names)


async def health(request: web.Request) -> web.Response:
    """Liveness: the process serves HTTP. No key; never depends on upstreams."""
    gateway = request.app[GATEWAY_KEY]
    return json_response(
        {"status": "healthy", "version": gateway.version, "uptime_seconds": int(gateway.uptime_seconds())},
        headers={"x-request-id": client_request_id(request.headers) or new_request_id()},
    )


async def ready(request: web.Request) -> web.Response:
    """Readiness: 200 while this instance should get new requests, else 503 with the reasons.

    Not ready while draining (shutdown began) or while some router has every one of its
    channels cooling down: a load balancer then prefers another instance.
    """
    gateway: Gateway = request.app[GATEWAY_KEY]
    reasons = gateway.unready_reasons()
    body: dict[str, object] = {"status": "not_ready" if reasons else "ready", "reasons": reasons}
    credentials = gateway.credential_problems()
    if credentials:  # cloud channels whose token or keys failed to refresh, and why
        body["credentials"] = credentials
    resp = json_response(body, headers={"x-request-id": client_request_id(request.headers) or new_request_id()})
    if reasons:
        resp.set_status(503)
    return resp


async def fallback(request: web.Request) -> web.StreamResponse:
    """Unknown paths (404) and wrong methods on API paths (405), in the path's dialect.
    Also serves the metrics path, which may change on reload."""
    started = time.perf_counter()
    gateway: Gateway = request.app[GATEWAY_KEY]
    snap = gateway.snapshot
    mcfg = snap.config.metrics
    rid = client_request_id(request.headers) or new_request_id()
    if request.method == "GET" and request.path == mcfg.path and mcfg.enabled:
        metrics = gateway.metrics_response()
        metrics.headers["x-request-id"] = rid
        return metrics
    dialect = Dialect.GEMINI_GENERATE if is_gemini_request(request) else dialect_of_path(request.path)
    if not request.path.startswith("/"):  # CONNECT host:port, OPTIONS *: no path at all
        resp = error_response(dialect, NotFound(f"{request.method} {request.raw_path[:200]} is not served: "
                                                "Apex is an API gateway, not a forwarding proxy"))
        kind: ErrorKind = "not_found"
    elif (allowed := allowed_method(request.raw_path.partition("?")[0], mcfg.path if mcfg.enabled else None)) is not None:
        resp = method_not_allowed(dialect, request.method, request.path, allowed)
        kind = "invalid_request"
    else:
        resp = error_response(dialect, NotFound(f"unknown path {request.path}"))
        kind = "not_found"
    resp.headers["x-request-id"] = rid
    resp.headers["x-apex-overhead-ms"] = f"{(time.perf_counter() - started) * 1000:.3f}"  # all of it Apex's
    record_answer(request, rid, client_request_id(request.headers), dialect, resp.status, kind)  # spec: every request counts
    return resp


def allowed_method(raw_path: str, metrics_path: str | None = None) -> str | None:
    """The method a known path takes (for a 405), None for an unknown path. The raw path:
    ``/v1/chat%2Fcompletions`` is not the chat path (it used to get a 405 "use POST")."""
    if raw_path in API_PATHS:
        return "POST"
    if raw_path in ("/health", "/ready"):
        return "GET, HEAD"
    if raw_path == metrics_path:
        return "GET"
    if raw_path in ("/v1/models", "/v1beta/models"):
        return "GET"
    for prefix in ("/v1/models/", "/v1beta/models/"):
        if raw_path.startswith(prefix):
            rest = raw_path[len(prefix):]
            if not rest or "/" in rest:
                return None
            return "POST" if ":" in rest else "GET"  # gemini-x:generateContent, or a model's own path
    return None
