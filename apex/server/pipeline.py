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
import time
from collections.abc import Mapping
from typing import Final, Protocol

import msgspec
from aiohttp import web
from aiohttp_sse import EventSourceResponse

from apex.auth import Principal
from apex.errors import (
    ApexError,
    InvalidRequest,
    NotFound,
    RequestTimeout,
    RequestTooLarge,
    UpstreamError,
    UpstreamMalformed,
    UpstreamStatus,
)
from apex.translate.passthrough_gemini import gemini_body_usage
from apex.translate.passthrough import (
    PassthroughStream,
    body_usage,
    rewrite_request,
    rewrite_response_model,
    strip_reasoning,
    strip_unsigned_thinking,
)
from apex.upstream.base import (
    TRANSPORT_ERRORS,
    UpstreamReply,
    map_transport_errors,
    scrub_key_shapes,
    transport_error,
    upstream_status_error,
)
from apex.upstream.channel import USER_AGENT, CompiledChannel, UpstreamPlan
from apex.upstream.http import HttpClientError, UpstreamPool, encode_header_fields
from apex.upstream.mock import mock_reply
from apex.upstream.presets import ANTHROPIC_VERSION
from apex.routing.policy import AttemptPlan, Outcome
from apex.server.conn import BodyReadTimeout
from apex.server.deadline import Deadline
from apex.server.exchange import Exchange
from apex.server.inputs import check_model
from apex.server.keys import GATEWAY_KEY
from apex.server.responses import SSE_HEADERS, json_response, stream_error_event
from apex.routing.router import Route
from apex.snapshot import Snapshot
from apex.sse import SseParser
from apex.translate import StreamTranslator, TranslateContext
from apex.translate.write.embeddings import openai_to_jina_embeddings_request, reencode_embeddings_response
from apex.translate.directions.gemini_embeddings import with_upstream_model
from apex.translate.write.gemini import GeminiFraming
from apex.types import Dialect, Usage

__all__ = ["RequestView", "proxy", "read_body"]


class _StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class RequestView(msgspec.Struct):
    """The only fields Apex reads from a request body; the rest is forwarded untouched."""

    model: str | None = None
    stream: bool | None = False
    stream_options: _StreamOptions | None = None
    encoding_format: str | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    max_output_tokens: int | None = None


_VIEW: Final = msgspec.json.Decoder(RequestView)
_STREAM_FAMILY: Final[dict[Dialect, str]] = {
    Dialect.OPENAI_CHAT: "openai_chat",
    Dialect.ANTHROPIC_MESSAGES: "anthropic",
    Dialect.OPENAI_RESPONSES: "responses",
    Dialect.GEMINI_GENERATE: "gemini",
}
_NEVER_STREAM: Final = frozenset({Dialect.OPENAI_EMBEDDINGS, Dialect.ANTHROPIC_COUNT_TOKENS,
                                  Dialect.GEMINI_EMBED, Dialect.GEMINI_COUNT_TOKENS})
_ANTHROPIC_PASS_HEADERS: Final = ("anthropic-version", "anthropic-beta")
_attempt_log: Final = logging.getLogger("apex.gateway")
_NOTHING_SERVED: Final = Usage()


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body; RequestTooLarge past ``limit`` bytes (checked before reading when
    the client declared a length)."""
    declared = request.content_length
    try:
        if declared is not None:
            if declared > limit:
                raise RequestTooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
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
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except BodyReadTimeout as exc:  # the connection sweep gave up on a slow upload
        raise RequestTimeout(str(exc)) from exc


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
    ex.key_fingerprint = principal.fingerprint
    if principal.team is not None:
        ex.team = principal.team.id
    body = await read_body(request, snap.max_body_bytes)
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
        if gateway.has_budget(team.id):  # settled by Gateway.finish, whatever happens next
            await gateway.reserve_budget(team.id, ex, snap.channels[channels[0]], model, max_out)
        if team.rate_limit is not None and gateway.limiter is not None:
            grant = await gateway.acquire_rate_limit(team, ex.prompt_estimate() + max_out, ex)
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
    else Apex's estimate of the prompt (recorded on the Exchange for logs and metrics)."""
    if ex.usage is None:
        ex.usage = Usage(prompt_tokens=ex.prompt_estimate(), estimated=True)
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
    gateway = request.app[GATEWAY_KEY]
    clock = gateway.clock
    last: ApexError | None = None
    while (step := plan.next_attempt(clock())) is not None:
        if step.wait > 0:
            await gateway.sleep(step.wait)
        channel = snap.channels[step.channel]
        if step.previous is not None and step.previous != step.channel:
            request.app[GATEWAY_KEY].record_fallback(ex, step.previous, step.channel)
        ex.attempts = step.number
        ex.channel = channel.name
        ex.tried.append(channel.name)
        attempt_started = clock()
        if ex.trace is not None:
            ex.trace.begin_attempt(channel.name, channel.provider_type, channel.config.base_url)
        try:
            response = await _attempt(request, snap, ex, dialect, channel, channel.plans[dialect], body, view, model)
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
            plan.record(channel.name, Outcome.FAILED, now, retry_after=err.retry_after)
            continue
        except asyncio.CancelledError:
            plan.record(channel.name, Outcome.ABANDONED, clock())
            raise
        except ApexError:
            plan.record(channel.name, Outcome.REJECTED, clock())
            raise
        now = clock()
        plan.record(channel.name, Outcome.SUCCEEDED, now)
        if ex.trace is not None:
            ex.trace.end_attempt(ex.stream_error, ex.upstream_model)
        if _attempt_log.isEnabledFor(logging.DEBUG):
            request.app[GATEWAY_KEY].log_attempt(ex, channel.name, None, (now - attempt_started) * 1000)
        return response
    limited = plan.rate_limited()
    if limited is not None:  # every channel left is held off by a Retry-After past the cap
        raise limited
    if last is None:
        raise NotFound("no channel available")
    raise last


def _upstream_headers(request: web.Request, plan: UpstreamPlan, ex: Exchange) -> bytes:
    """The plan's prebuilt header lines plus what this request adds: its id and trace
    context; on a native hop the client's User-Agent (upstreams use it) and, towards an
    Anthropic-shaped upstream, every ``anthropic-*`` header the client sent (an open list:
    new betas need no release)."""
    client_rid = ex.client_request_id
    extra: dict[str, str] = {}
    if client_rid is not None:
        extra["x-request-id"] = client_rid
    if ex.trace is not None:  # W3C trace context of this attempt, for the upstream's own spans
        extra |= ex.trace.traceparent()
    if not plan.native:
        return plan.header_fields + encode_header_fields(extra) if extra else plan.header_fields
    headers = request.headers
    agent = headers.get("User-Agent")
    extra["User-Agent"] = agent if agent is not None and _header_safe(agent) else USER_AGENT
    if plan.forward_anthropic_headers:
        for name, value in headers.items():
            if len(name) > 10 and name[:10].lower() == "anthropic-" and _header_safe(value):
                extra[name.lower()] = value
        if "anthropic-version" not in extra:
            extra["anthropic-version"] = ANTHROPIC_VERSION
    return plan.header_fields_bare + encode_header_fields(extra)


def _header_safe(value: str) -> bool:
    """A client header value Apex may put on its own upstream request line by line."""
    return value.isascii() and value.isprintable()


async def _send(
    pool: UpstreamPool,
    channel: CompiledChannel,
    plan: UpstreamPlan,
    url: str,
    header_fields: bytes,
    body: bytes,
    upstream_model: str,
    stream: bool,
) -> UpstreamReply:
    """Send one attempt: in-process for the mock provider, else on the shared pool (through
    the cloud route when the channel is a cloud's)."""
    if channel.is_mock:
        return await mock_reply(channel.config, plan.upstream, body, upstream_model, stream)
    if plan.route is not None:
        return await plan.route.send(pool, url, header_fields, body, stream, channel.timeouts.connect)
    return await pool.post(url, header_fields, body, connect_timeout=channel.timeouts.connect)


async def _attempt(
    request: web.Request,
    snap: Snapshot,
    ex: Exchange,
    dialect: Dialect,
    channel: CompiledChannel,
    plan: UpstreamPlan,
    body: bytes,
    view: RequestView,
    model: str,
) -> web.StreamResponse:
    """One attempt on one channel. Raises UpstreamError (retryable or not) before commit."""
    if plan.local_estimate:
        ex.upstream_model = model
        counted = {"totalTokens": ex.prompt_estimate()} if dialect is Dialect.GEMINI_COUNT_TOKENS else {
            "input_tokens": ex.prompt_estimate()}
        return json_response(counted, headers={"x-apex-estimated": "true"})
    upstream_model = channel.map_model(model)
    ex.upstream_model = upstream_model
    if channel.kind_plans is not None:  # a cloud: the model's family picks the wire format
        chosen = channel.plan_for(dialect, upstream_model)
        if chosen is None:
            raise NotFound(f"channel {channel.name} cannot serve {dialect.value} requests for model '{upstream_model}'")
        plan = chosen
    mapped = upstream_model != model
    stream = ex.stream
    client_usage = bool(view.stream_options and view.stream_options.include_usage)
    ctx: TranslateContext | None = None
    translator = plan.translator
    if translator is not None:
        ctx = TranslateContext(
            client_model=model,
            upstream_model=upstream_model,
            stream=stream,
            request_id=ex.request_id,
            include_usage=client_usage,
            estimated_input_tokens=ex.prompt_estimate(),
        )
        ctx.extras["created"] = int(time.time())
        if plan.caps is not None:
            ctx.caps = plan.caps.lookup(upstream_model)
        up_body = translator.request(body, ctx)
        ex.notices = ctx.notices
    else:
        add_usage = stream and plan.add_stream_usage and not client_usage
        up_body = body
        if mapped or add_usage:
            up_body = rewrite_request(body, model=upstream_model if mapped else None, add_stream_usage=add_usage)
        if plan.fix_embedding_encoding:
            up_body = _embedding_request_for(channel, up_body, view)
        if plan.strip_unsigned_thinking:
            up_body = strip_unsigned_thinking(up_body)
        if plan.upstream is Dialect.GEMINI_EMBED:
            up_body = with_upstream_model(up_body, upstream_model)  # Gemini checks requests[].model
        if plan.caps is not None:  # native Responses: a known non-reasoning model gets no reasoning
            caps = plan.caps.lookup(upstream_model)
            if caps.known and not caps.reasons:
                up_body = strip_reasoning(up_body)

    headers = _upstream_headers(request, plan, ex)
    url = plan.url_for(upstream_model, stream)
    if plan.forward_anthropic_headers and plan.native and plan.route is None and request.query_string:
        url = f"{url}?{request.rel_url.raw_query_string}"  # ?beta=true: Anthropic's beta surface
    if not stream:
        return await _attempt_json(request.app[GATEWAY_KEY].upstream, snap, ex, channel, plan, url, headers, up_body, upstream_model, ctx, model, mapped, view)

    timeouts = channel.timeouts
    started = time.perf_counter()  # uvloop's loop.time() moves in whole milliseconds: too coarse to measure with
    pool = request.app[GATEWAY_KEY].upstream
    reply: UpstreamReply | None = None
    done = False
    try:
        with map_transport_errors(channel.name):
            loop = asyncio.get_running_loop()
            with Deadline(loop, loop.time() + timeouts.first_byte) as deadline:
                reply = await _send(pool, channel, plan, url, headers, up_body, upstream_model, True)
                if reply.status >= 300:
                    raw = await reply.read()
                    ex.upstream_ms += (time.perf_counter() - started) * 1000
                    raise _status_error(channel, plan, reply.status, raw, reply.headers, snap)
                if "event-stream" not in reply.content_type:
                    raise UpstreamMalformed(
                        f"upstream channel {channel.name} answered a stream request with {reply.content_type or 'no content type'}",
                        channel=channel.name,
                    )
                observer: PassthroughStream | None = None
                translating: StreamTranslator | None = None
                parser: SseParser | None = None
                if translator is not None:
                    assert ctx is not None
                    translating = translator.stream(ctx)
                    parser = SseParser()
                else:
                    observer = PassthroughStream(
                        _STREAM_FAMILY[dialect],
                        client_model=model if mapped and dialect is not Dialect.GEMINI_GENERATE else None,
                        strip_usage_chunk=plan.add_stream_usage and not client_usage,
                    )
                pending: list[bytes] = []
                while True:
                    chunk = await reply.content.readany()
                    if not chunk:
                        raise UpstreamMalformed(
                            f"upstream channel {channel.name} closed the stream before its first event",
                            channel=channel.name,
                        )
                    if observer is not None:
                        pending.append(observer.feed(chunk))
                        if observer.first_event_seen:
                            break
                    else:
                        assert parser is not None and translating is not None
                        events = parser.feed(chunk)
                        for event in events:
                            pending.extend(translating.feed(event))
                        if events:
                            break
                deadline.move(None)
        ex.ttft_ms = (time.perf_counter() - started) * 1000
        response = await _stream_to_client(
            request, ex, dialect, channel, reply, b"".join(pending), observer, translating, parser
        )
        if ctx is not None:
            ex.usage = ctx.usage
        ex.upstream_ms += (time.perf_counter() - started) * 1000
        done = True
        return response
    finally:
        if not done and ex.committed and ctx is not None:
            ex.usage = ctx.usage  # the client left or the stream broke: usage seen so far counts
        if reply is not None:
            if done:
                reply.release()
            else:
                reply.close()


async def _attempt_json(
    pool: UpstreamPool,
    snap: Snapshot,
    ex: Exchange,
    channel: CompiledChannel,
    plan: UpstreamPlan,
    url: str,
    headers: bytes,
    up_body: bytes,
    upstream_model: str,
    ctx: TranslateContext | None,
    model: str,
    mapped: bool,
    view: RequestView,
) -> web.Response:
    """A non-stream attempt: first_byte_ms bounds the wait for the answer's head,
    request_ms the whole attempt."""
    timeouts = channel.timeouts
    started = time.perf_counter()
    reply: UpstreamReply | None = None
    done = False
    try:
        try:
            loop = asyncio.get_running_loop()
            begun = loop.time()
            with Deadline(loop, begun + min(timeouts.first_byte, timeouts.request)) as deadline:
                reply = await _send(pool, channel, plan, url, headers, up_body, upstream_model, False)
                deadline.move(begun + timeouts.request)
                raw = await reply.read()
            done = True  # the body was read whole: the connection can go back to the pool
        except TRANSPORT_ERRORS as exc:
            raise transport_error(channel.name, exc) from exc
        finally:
            ex.upstream_ms += (time.perf_counter() - started) * 1000
        if reply.status >= 300:
            raise _status_error(channel, plan, reply.status, raw, reply.headers, snap)
        return _finish_json(ex, plan, ctx, raw, model, mapped, view)
    finally:
        if reply is not None:
            if done:
                reply.release()
            else:
                reply.close()


def _status_error(
    channel: CompiledChannel, plan: UpstreamPlan, status: int, raw: bytes, headers: Mapping[str, str], snap: Snapshot
) -> UpstreamStatus:
    """The UpstreamStatus for a non-2xx answer; a native upstream's body is kept for the client."""
    err = upstream_status_error(channel.name, plan.family, status, raw, headers, snap.retry_on_status)
    if plan.native and plan.family == plan.client.family and raw:
        err.client_body = scrub_key_shapes(channel.secrets.data(raw))
    return err


def _embedding_request_for(channel: CompiledChannel, body: bytes, view: RequestView) -> bytes:
    """Ask a float-only upstream for floats (Apex encodes base64 for the client itself);
    Jina names the field ``embedding_type``."""
    if channel.provider_type == "jina":
        return openai_to_jina_embeddings_request(body)
    if view.encoding_format != "base64":
        return body
    top = msgspec.json.decode(body, type=dict[str, msgspec.Raw])
    top["encoding_format"] = msgspec.Raw(b'"float"')
    return msgspec.json.encode(top)


def _finish_json(
    ex: Exchange,
    plan: UpstreamPlan,
    ctx: TranslateContext | None,
    raw: bytes,
    model: str,
    mapped: bool,
    view: RequestView,
) -> web.Response:
    ex.response_body = raw
    if plan.translator is not None:
        assert ctx is not None
        out = plan.translator.response(raw, ctx)
        ex.usage = ctx.usage
    elif plan.family == "gemini" and plan.client is Dialect.GEMINI_GENERATE:
        try:
            ex.usage = gemini_body_usage(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpstreamMalformed(f"upstream answered with a malformed body: {exc}") from exc
        out = raw
    elif plan.family == "gemini":
        out = raw  # embeddings and token counts report no usage: the gateway estimates
    else:
        family = "anthropic" if plan.family == "anthropic" else "openai"
        ex.usage = body_usage(family, raw)
        out = raw
        if mapped:
            out = rewrite_response_model(raw, model)
        if plan.fix_embedding_encoding:
            out = reencode_embeddings_response(out, "base64" if view.encoding_format == "base64" else "float")
    return web.Response(body=out, headers={"Content-Type": "application/json"})


async def _stream_to_client(
    request: web.Request,
    ex: Exchange,
    dialect: Dialect,
    channel: CompiledChannel,
    reply: UpstreamReply,
    first: bytes,
    observer: PassthroughStream | None,
    translating: StreamTranslator | None,
    parser: SseParser | None,
) -> web.StreamResponse:
    """Commit the stream to the client and relay it to the end; never raises UpstreamError."""
    resp: web.StreamResponse
    headers = ex.response_headers()
    # What Apex added before the first byte (the metric takes the whole stream's figure).
    headers["x-apex-overhead-ms"] = f"{max(0.0, ex.elapsed_ms() - ex.upstream_ms - (ex.ttft_ms or 0.0)):.3f}"
    if dialect is Dialect.GEMINI_GENERATE:
        # No keep-alive comments: the Gemini SDKs read a line that is not ``data:`` as JSON.
        resp = web.StreamResponse(headers=headers)
        resp.headers.update(SSE_HEADERS)
        if ex.json_array_stream:
            resp.headers["Content-Type"] = "application/json; charset=UTF-8"
    elif translating is not None:
        # Events Apex writes itself go out through aiohttp-sse (keep-alive pings included).
        resp = EventSourceResponse(sep="\n", allow_all_methods=True, headers=headers)
    else:
        resp = web.StreamResponse(headers=headers)
        resp.headers.update(SSE_HEADERS)
    await resp.prepare(request)
    try:
        sink = _JsonArraySink(resp) if ex.json_array_stream else resp
        await _relay(request, ex, dialect, channel, reply, sink, first, observer, translating, parser)
        return resp
    finally:
        if isinstance(resp, EventSourceResponse):
            resp.stop_streaming()  # its keep-alive ping task must not outlive the stream


class _Sink(Protocol):
    async def write(self, data: bytes) -> None: ...

    async def write_eof(self, data: bytes = b"") -> None: ...


class _JsonArraySink:
    """Gemini's stream without ``alt=sse``: the SSE events Apex produced, re-framed as the
    incremental JSON array Google sends (``[{...},\r\n{...}]``)."""

    __slots__ = ("_framing", "_parser", "_resp")

    def __init__(self, resp: web.StreamResponse) -> None:
        self._resp = resp
        self._parser = SseParser()
        self._framing = GeminiFraming(array=True)

    async def write(self, data: bytes) -> None:
        out = b"".join(self._framing.chunk(ev.data) for ev in self._parser.feed(data))
        if out:
            await self._resp.write(out)

    async def write_eof(self, data: bytes = b"") -> None:
        events = self._parser.feed(data) + self._parser.flush()
        out = b"".join(self._framing.chunk(ev.data) for ev in events)
        await self._resp.write_eof(out + self._framing.close())


async def _relay(
    request: web.Request,
    ex: Exchange,
    dialect: Dialect,
    channel: CompiledChannel,
    reply: UpstreamReply,
    resp: web.StreamResponse | _Sink,
    first: bytes,
    observer: PassthroughStream | None,
    translating: StreamTranslator | None,
    parser: SseParser | None,
) -> None:
    """Write the first events, then every later one as it arrives, then the closing events.

    The task is registered with the Gateway while it relays, so a shutdown that reaches its
    deadline can end it with an error event instead of cutting it mid-chunk."""
    ex.committed = True
    ex.status = 200
    gateway = request.app[GATEWAY_KEY]
    task = asyncio.current_task()
    assert task is not None
    gateway.streams.add(task)
    try:
        await _relay_events(request, ex, dialect, channel, reply, resp, first, observer, translating, parser, task)
    finally:
        gateway.streams.discard(task)
        if observer is not None:
            ex.usage = observer.usage  # also when the client left: usage seen so far counts


def _ended(observer: PassthroughStream | None, translating: StreamTranslator | None) -> bool:
    """The stream's last event (terminator or error) has been produced."""
    if observer is not None:
        return observer.terminated or observer.errored
    return translating is not None and translating.done


async def _relay_events(
    request: web.Request,
    ex: Exchange,
    dialect: Dialect,
    channel: CompiledChannel,
    reply: UpstreamReply,
    resp: web.StreamResponse | _Sink,
    first: bytes,
    observer: PassthroughStream | None,
    translating: StreamTranslator | None,
    parser: SseParser | None,
    task: asyncio.Task[object],
) -> None:
    secrets = channel.secrets
    if first:
        if secrets and ((observer is not None and observer.errored) or (translating is not None and translating.done)):
            first = secrets.data(first)
        await resp.write(first)
        ex.final_delivered = _ended(observer, translating)
    idle = channel.timeouts.stream_idle
    loop = asyncio.get_running_loop()
    failure: tuple[str, str] | None = None
    try:
        with Deadline(loop, None) as deadline:
            while True:
                deadline.move(loop.time() + idle)
                chunk = await reply.content.readany()
                deadline.move(None)  # a slow client is not an idle upstream
                if not chunk:
                    break
                if observer is not None:
                    out = observer.feed(chunk)
                    if observer.errored and secrets:
                        out = secrets.data(out)  # an upstream error event may quote the key
                else:
                    assert parser is not None and translating is not None
                    parts: list[bytes] = []
                    for event in parser.feed(chunk):
                        parts.extend(translating.feed(event))
                    out = b"".join(parts)
                    if translating.done and secrets:
                        out = secrets.data(out)
                if out:
                    await resp.write(out)
                    if _ended(observer, translating):
                        ex.final_delivered = True
    except TimeoutError:
        failure = (f"upstream channel {channel.name} sent nothing for {idle:g} s", "timeout")
    except asyncio.CancelledError:
        if not request.app[GATEWAY_KEY].stopping or task.cancelling() > 1 or request.transport is None:
            raise  # the client left (or a second cancel): nothing to tell it
        task.uncancel()  # the shutdown deadline: end the stream properly instead
        failure = ("Apex is shutting down; the stream was stopped at the shutdown deadline", "overloaded")
    except (HttpClientError, OSError) as exc:
        if request.transport is None or request.transport.is_closing():
            raise  # the client went away: nothing to tell it
        failure = (f"upstream channel {channel.name} failed mid-stream: {type(exc).__name__}", "api_error")
    tail: list[bytes] = []
    if observer is not None:
        if failure is None:
            tail.append(observer.flush())
        else:
            observer.drop()  # an event the break cut short is never forwarded
        ex.usage = observer.usage
        if failure is not None:
            tail.append(stream_error_event(dialect, *failure))
        elif not (observer.terminated or observer.finished or observer.errored):
            failure = (f"upstream channel {channel.name} ended the stream early", "api_error")
            tail.append(stream_error_event(dialect, *failure))
        if observer.errored:
            ex.stream_error = "upstream_error_event"
    else:
        assert translating is not None and parser is not None
        if failure is None:
            for event in parser.flush():
                tail.extend(translating.feed(event))
            tail.extend(translating.finish())
        else:
            tail.extend(translating.fail(*failure))
    if failure is not None:
        ex.stream_error = failure[1]
    data = b"".join(tail)
    if secrets:
        data = secrets.data(data)
    if data:
        await resp.write(data)
    ex.final_delivered = True
    await resp.write_eof()
