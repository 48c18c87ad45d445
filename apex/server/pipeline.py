"""The request path: auth -> body -> policy/route -> rate limit -> attempts -> respond.

One function per stage, all driven by ``proxy``. Per-config work is already done in the
Snapshot (compiled routes, prebuilt headers and URLs, translators); per request Apex decodes
only ``model``/``stream`` (a view Struct), forwards the client's bytes untouched when nothing
must change, and streams answers back event by event as they arrive. Failover happens only
before the first event reaches the client; after that an error becomes an in-stream error
event in the client's dialect.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Final

import msgspec
from aiohttp import web

from apex.auth import Principal
from apex.errors import (
    ApexError,
    ChannelBusy,
    InvalidRequest,
    NotFound,
    RateLimited,
    RequestTimeout,
    RequestTooLarge,
    Untranslatable,
    UpstreamError,
)
from apex.routing.policy import AttemptPlan, Outcome
from apex.server.attempt import Attempt
from apex.server.conn import ApexRequestHandler, BodyReadTimeout
from apex.server.exchange import Exchange
from apex.server.inputs import check_model
from apex.server.keys import GATEWAY_KEY
from apex.routing.router import Route
from apex.snapshot import Snapshot
from apex.types import Dialect, Usage
from apex.wire.request import RequestView

__all__ = ["proxy", "read_body"]


_VIEW: Final = msgspec.json.Decoder(RequestView)
_NEVER_STREAM: Final = frozenset({Dialect.OPENAI_EMBEDDINGS, Dialect.ANTHROPIC_COUNT_TOKENS,
                                  Dialect.GEMINI_EMBED, Dialect.GEMINI_COUNT_TOKENS})
_attempt_log: Final = logging.getLogger("apex.gateway")
_NOTHING_SERVED: Final = Usage()


async def read_body(request: web.Request, limit: int, ex: Exchange) -> bytes:
    """The request body, its wait for a slow client kept on ``ex`` (the client's time, not
    Apex's overhead); see _read_body."""
    if request.content.is_eof():  # the whole body is here already: the common case
        return await _read_body(request, limit)
    started = time.perf_counter()
    try:
        return await _read_body(request, limit)
    finally:
        ex.waiting_ms += (time.perf_counter() - started) * 1000


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The request body; RequestTooLarge past ``limit`` bytes (checked before reading when
    the client declared a length). A compressed body (``Content-Encoding: gzip``, deflate,
    br, zstd) arrives decompressed by aiohttp, bit by bit: its Content-Length counts the
    compressed bytes, so it is read to its end and the limit applies to what it decompresses
    to (a zip bomb stops at the limit)."""
    declared = request.content_length
    try:
        if declared is not None and declared > limit:
            raise RequestTooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
        if declared is not None and "Content-Encoding" not in request.headers:
            if not declared:
                return b""  # aiohttp's empty payload refuses readexactly(0): decode_view names it
            try:
                return await request.content.readexactly(declared)  # one await for the common case
            except asyncio.IncompleteReadError as exc:
                raise InvalidRequest("request body is shorter than its Content-Length") from exc
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await request.content.readany()
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise RequestTooLarge(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        if not chunks and declared:  # bytes came, nothing decoded from them
            raise _not_its_encoding(request)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except BodyReadTimeout as exc:  # the connection sweep gave up on a slow upload
        raise RequestTimeout(str(exc)) from exc
    except web.RequestPayloadError as exc:  # aiohttp could not decode the body (its message is generic)
        raise _not_its_encoding(request) from exc


def _not_its_encoding(request: web.Request) -> InvalidRequest:
    encoding = request.headers.get("Content-Encoding", "")
    if not encoding.isascii() or not encoding.replace("-", "").isalnum():
        return InvalidRequest("request body could not be decoded")
    return InvalidRequest(f"request body is not valid {encoding.lower()} data (Content-Encoding: {encoding.lower()})")


def decode_view(body: bytes) -> RequestView:
    """Decode the routing view; InvalidRequest for bad JSON, wrong types or a missing model."""
    if not body:
        raise InvalidRequest("request body is empty; expected a JSON object")
    try:
        view = _VIEW.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid request: {exc}", param=_param_of(str(exc))) from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # msgspec's depth guard: later full decodes would hit it too
        raise InvalidRequest("request body is nested too deeply") from exc
    if not view.model:
        raise InvalidRequest("'model' is required", param="model")
    check_model(view.model)
    return view


def _param_of(message: str) -> str | None:
    marker = "`$."
    at = message.find(marker)
    if at < 0:
        return None
    return message[at + len(marker) :].rstrip("`")


async def proxy(request: web.Request, snap: Snapshot, ex: Exchange, dialect: Dialect) -> web.StreamResponse:
    """Serve one API request in ``dialect`` end to end; raise ApexError for the endpoint wrapper."""
    principal = snap.keys.authenticate(request.headers)
    ex.authenticated(principal)
    body = await read_body(request, snap.max_body_bytes, ex)
    ex.request_body = body  # a reference: the usage estimate needs it when an upstream reports none
    view = decode_view(body)
    return await serve(request, snap, ex, dialect, principal, body, view)


async def serve(
    request: web.Request,
    snap: Snapshot,
    ex: Exchange,
    dialect: Dialect,
    principal: Principal,
    body: bytes,
    view: RequestView,
) -> web.StreamResponse:
    """Policy, routing, rate limit and attempts for a request whose body was read and whose
    model (and stream flag) are known: from the body's view, or from a Gemini URL."""
    model = view.model
    assert model is not None
    ex.model = model
    ex.stream = bool(view.stream) and dialect not in _NEVER_STREAM
    route = snap.pick_route(principal, model, request.headers.get("x-apex-router"))
    ex.router = route.router
    ex.rule = route.rule.label
    ex.routed = True

    gateway = request.app[GATEWAY_KEY]
    grant = None
    team = principal.team
    channels = route_channels(snap, route, dialect, model, gateway.clock())
    if team is not None:
        max_out = view.max_tokens or view.max_completion_tokens or view.max_output_tokens or 0
        limit = team.rate_limit
        if limit is not None and gateway.limiter is not None:
            # Only a token limit charges the estimate: an RPM-only team skips decoding the body for
            # it. A token count uses no tokens (the providers count it for requests only).
            charged = limit.tpm is not None and not dialect.counts_tokens
            grant = await gateway.acquire_rate_limit(team, ex.prompt_estimate() + max_out if charged else 0, ex)
        if gateway.has_budget(team.id) and not dialect.counts_tokens:  # a count costs nothing (README)
            # After the rate limit: a request it refuses held no budget (a burst refused by rpm
            # held reservations until each was refunded, and the rest were told the budget was
            # spent). Settled by Gateway.finish, whatever happens next.
            try:
                await gateway.reserve_budget(team.id, ex, snap.channels[channels[0]], model, max_out)
            except BaseException:
                if grant is not None:
                    await gateway.settle_rate_limit(grant, _NOTHING_SERVED)
                raise
    if grant is None:
        return await _attempts(request, snap, ex, dialect, channels, body, view, model)
    try:
        response = await _attempts(request, snap, ex, dialect, channels, body, view, model)
    except BaseException:
        # Nothing served: refund the estimate. A stream the client left (or that broke) is
        # charged what it used so far.
        await gateway.settle_rate_limit(grant, _served_so_far(ex) if ex.committed else _NOTHING_SERVED)
        raise
    await gateway.settle_rate_limit(grant, ex.usage)  # no usage reported: the estimate stands
    return response


def _served_so_far(ex: Exchange) -> Usage:
    """Usage of a committed stream that did not finish: what the upstream reported so far,
    else Apex's estimate of what it carried (recorded on the Exchange for logs and metrics,
    the same figure Gateway.finish would estimate)."""
    ex.usage = ex.usage_so_far() or _NOTHING_SERVED
    return ex.usage


def route_channels(snap: Snapshot, route: Route, dialect: Dialect, model: str, now: float) -> list[str]:
    """Channel names of the route in attempt order that can serve ``dialect`` (health as of
    ``now``); NotFound if none."""
    health = snap.health
    order = route.order(lambda c: health.is_available(c, now) and snap.channels[c].credentials_ok)
    usable = [c for c in order if dialect in snap.channels[c].plans]
    if not usable:
        raise NotFound(f"no channel of router '{route.router}' can serve {dialect.value} requests for model '{model}'")
    return usable


async def _attempts(
    request: web.Request,
    snap: Snapshot,
    ex: Exchange,
    dialect: Dialect,
    channels: list[str],
    body: bytes,
    view: RequestView,
    model: str,
) -> web.StreamResponse:
    plan = AttemptPlan(channels, health=snap.health, retries=snap.config.global_.retries, rng=snap.rng)
    protocol = request.protocol
    if isinstance(protocol, ApexRequestHandler):
        protocol.apex_upstream_for = id(request)  # from here a client's EOF cancels, see eof_received
    gateway = request.app[GATEWAY_KEY]
    clock = gateway.clock
    last: ApexError | None = None
    refused: Untranslatable | None = None  # the first channel whose API could not carry the request
    # request_ms bounds a whole non-stream request, retries and failover included (spec 2); a
    # channel's own request_ms bounds each attempt on it within that.
    loop = asyncio.get_running_loop()
    request_ends = math.inf if ex.stream else loop.time() + snap.config.global_.timeouts.request_ms / 1000
    while (step := plan.next_attempt(clock())) is not None:
        if (last is not None or step.wait > 0) and loop.time() + step.wait >= request_ends:
            if last is None:  # the only channels left are held by a Retry-After past the request's time
                seconds = max(1, math.ceil(step.wait))
                raise RateLimited(f"every upstream channel is rate limited; retry in {seconds} s",
                                  retry_after=float(seconds))
            break  # no time left for another attempt: the last one's error stands
        if step.wait > 0:
            slept = time.perf_counter()
            await gateway.sleep(step.wait)  # a backoff or a Retry-After: no overhead of Apex's
            ex.waiting_ms += (time.perf_counter() - slept) * 1000
        channel = snap.channels[step.channel]
        attempt = Attempt(request, snap, ex, dialect, channel, body, view, model)
        attempt.request_ends = request_ends
        try:
            attempt.prepare()
        except Untranslatable as err:  # nothing was sent: another channel of the route may serve it
            plan.record(channel.name, Outcome.UNFIT, clock())
            refused = refused or err
            continue
        except ApexError:
            plan.record(channel.name, Outcome.REJECTED, clock())
            raise
        if step.previous is not None and step.previous != step.channel:
            request.app[GATEWAY_KEY].record_fallback(ex, step.previous, step.channel)
        ex.attempts = step.number
        ex.channel = channel.name
        ex.tried.append(channel.name)
        attempt_started = clock()
        if ex.trace is not None and attempt.outgoing is not None:  # None: Apex answers a count itself
            # The URL this attempt calls, not the config's base_url: that is None where the
            # provider's default (or a cloud's derived endpoint) applies, and a dual-protocol
            # channel sends Anthropic clients to its anthropic_base_url.
            ex.trace.begin_attempt(channel.name, channel.provider_type, attempt.outgoing[0])
        try:
            response = await attempt.run()
        except UpstreamError as err:
            channel.secrets.error(err)  # an upstream may quote the key it was given
            if ex.trace is not None:
                ex.trace.end_attempt(err.kind, ex.upstream_model)
            ex.attempt_errors.append(err.kind)
            last = err
            now = clock()
            request.app[GATEWAY_KEY].log_attempt(ex, channel.name, err, (now - attempt_started) * 1000)
            if not err.retryable:
                plan.record(channel.name, Outcome.REJECTED, now)
                raise
            if isinstance(err, ChannelBusy):  # Apex's own cap: try on, but the channel is not at fault
                plan.record(channel.name, Outcome.BUSY, now)
                continue
            plan.record(channel.name, Outcome.FAILED, now, retry_after=err.retry_after)
            continue
        except asyncio.CancelledError:
            plan.record(channel.name, Outcome.ABANDONED, clock())
            raise
        except ApexError:
            plan.record(channel.name, Outcome.REJECTED, clock())
            raise
        now = clock()
        if ex.stream_error is None or gateway.stopping:
            plan.record(channel.name, Outcome.SUCCEEDED, now)
        elif attempt.relay is not None and attempt.relay.blames_request:
            # The upstream's error event blamed the request (a prompt over the context window):
            # the client's doing, as a 400 would be; no verdict on the channel.
            plan.record(channel.name, Outcome.REJECTED, now)
        else:
            # The stream broke, idled out or carried an error event after it was committed: too
            # late to retry, but the channel failed this attempt, and its health must say so
            # (agents always stream: the breaker would otherwise never open for them).
            plan.record(channel.name, Outcome.FAILED, now)
            gateway.log_stream_failure(ex, channel.name, (now - attempt_started) * 1000)
        if ex.trace is not None:
            ex.trace.end_attempt(ex.stream_error, ex.upstream_model)
        if _attempt_log.isEnabledFor(logging.DEBUG):
            request.app[GATEWAY_KEY].log_attempt(ex, channel.name, None, (now - attempt_started) * 1000)
        return response
    limited = plan.rate_limited()
    if limited is not None:  # every channel left is held off by a Retry-After past the cap
        raise limited
    if last is None:
        raise refused or NotFound("no channel available")
    raise last
