"""One attempt of one request on one channel, its state on one object.

An ``Attempt`` holds what the stages of a try share (the request, the channel and its plan,
the upstream body and model, the translation context, the reply, timings) instead of passing
them between functions: ``run`` builds the upstream request, sends it through the channel's
transport (network or in-process, apex.upstream.transport) and answers the client, as one
JSON body or as a stream relayed by a ``Relay`` (pass-through or translating, apex.server.relay).
Before the stream commits, failures raise UpstreamError (the failover loop decides); after,
they end the stream with an error event in the client's dialect.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from typing import Final, NoReturn, Protocol
from urllib.parse import urlencode

import msgspec
from aiohttp import web
from aiohttp_sse import EventSourceResponse

from apex.count import count_answer
from apex.errors import ErrorKind, InvalidRequest, NotFound, Untranslatable, UpstreamMalformed, UpstreamStatus, UpstreamTimeout
from apex.server.deadline import Deadline
from apex.server.exchange import Exchange
from apex.server.keys import GATEWAY_KEY
from apex.server.relay import PassthroughRelay, Relay, TranslatingRelay
from apex.server.responses import SSE_HEADERS, json_response
from apex.sse import SseParser
from apex.snapshot import Snapshot
from apex.translate import TranslateContext
from apex.translate.capabilities import CapabilityTable, ModelCaps
from apex.translate.passthrough import (
    body_usage,
    compat_chat_request,
    fit_chat_request,
    fit_gemini_request,
    fit_messages_request,
    fit_reasoning_history,
    rewrite_request,
    rewrite_response_model,
    strip_reasoning,
    strip_unsigned_thinking,
    without_carried_signatures,
    without_openai_only_fields,
    without_sampling,
)
from apex.translate.directions.gemini_embeddings import (
    count_request_with_model,
    join_embed_answers,
    split_embed_batch,
    with_upstream_model,
)
from apex.translate.neutral.deferred import without_tool_search
from apex.translate.neutral.serverstate import refuse_thread
from apex.translate.passthrough_gemini import gemini_body_usage, without_apex_signatures
from apex.translate.write.gemini import GeminiFraming
from apex.translate.write.embeddings import openai_to_jina_embeddings_request, reencode_embeddings_response
from apex.types import Dialect
from apex.upstream.betas import accepted_betas
from apex.upstream.base import (
    TRANSPORT_ERRORS,
    UpstreamReply,
    map_transport_errors,
    scrub_key_shapes,
    transport_error,
    upstream_status_error,
)
from apex.upstream.channel import USER_AGENT, CompiledChannel, UpstreamPlan
from apex.upstream.http import HttpClientError, describe_target, encode_header_fields
from apex.upstream.presets import ANTHROPIC_VERSION
from apex.upstream.cloud import CloudRoute
from apex.upstream.transport import Transport, UpstreamRequest
from apex.wire.request import RequestView

__all__ = ["Attempt"]

_TOP_LEVEL: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])  # a body's top-level fields, values undecoded

_stream_log = logging.getLogger("apex.gateway")



class Attempt:
    """One try on one channel; ``run`` raises UpstreamError (retryable or not) before commit."""

    __slots__ = (
        "body", "channel", "ctx", "deadline", "dialect", "ex", "first_wait", "mapped", "model", "outgoing", "plan",
        "answer_by", "read_whole", "relay", "reply", "request", "request_ends", "route", "snap", "started",
        "upstream_model", "view",
    )

    def __init__(
        self,
        request: web.Request,
        snap: Snapshot,
        ex: Exchange,
        dialect: Dialect,
        channel: CompiledChannel,
        body: bytes,
        view: RequestView,
        model: str,
    ) -> None:
        self.request = request
        self.snap = snap
        self.ex = ex
        self.dialect = dialect
        self.channel = channel
        self.plan: UpstreamPlan = channel.plans[dialect]
        self.body = body          # the client's bytes
        self.view = view
        self.model = model        # as the client named it
        self.upstream_model = model
        self.mapped = False
        self.ctx: TranslateContext | None = None
        self.reply: UpstreamReply | None = None
        self.relay: Relay | None = None
        self.read_whole = False   # the reply's body was read to its end: its connection may be reused
        self.started = 0.0        # perf_counter at send: uvloop's loop.time() is whole milliseconds
        self.deadline: Deadline | None = None  # the wait for the upstream's answer (or first event)
        self.first_wait = 0.0     # its length, restarted once a queued request has a connection
        self.outgoing: tuple[str, bytes] | None = None  # prepare()'s URL and body; None: Apex answers itself
        self.route: CloudRoute | None = None  # prepare()'s cloud route for this request (the plan's, converted)
        # Loop time by which a non-stream request must be answered, retries included (the
        # global request_ms from the first attempt's start); no attempt runs past it.
        self.request_ends = math.inf
        self.answer_by = math.inf  # loop time by which this attempt's answer must be whole (non-stream)

    # --- the attempt ----------------------------------------------------------------------

    def prepare(self) -> None:
        """Build what goes upstream (the model mapped, the body translated) before anything is
        sent or counted: Untranslatable when this channel's API cannot carry the request."""
        plan = self.plan
        ex = self.ex
        if plan.local_estimate:
            ex.upstream_model = self.model
            return
        channel = self.channel
        self.upstream_model = channel.map_model(self.model)
        ex.upstream_model = self.upstream_model
        if channel.kind_plans is not None:  # a cloud: the model's family picks the wire format
            chosen = channel.plan_for(self.dialect, self.upstream_model)
            if chosen is None:
                raise NotFound(
                    f"channel {channel.name} cannot serve {self.dialect.value} requests for model '{self.upstream_model}'"
                )
            plan = self.plan = chosen
        self.mapped = self.upstream_model != self.model
        body = self._upstream_body()
        if plan.route is not None:  # a cloud's body (Claude's edited, Converse's converted): refused here, not once sending
            body, self.route = plan.route.convert(body)
        url = plan.url_for(self.upstream_model, ex.stream)
        if plan.forward_anthropic_headers and plan.native and plan.route is None and self.request.query_string:
            betas = self.request.rel_url.query.getall("beta", ())
            if betas:  # ?beta=true: Anthropic's beta surface; nothing else (a ?key= is the client's Apex key)
                url = f"{url}?{urlencode([('beta', b) for b in betas])}"
        self.outgoing = (url, body)

    async def run(self) -> web.StreamResponse:
        """Send what ``prepare`` built and answer the client (or answer a count locally)."""
        ex = self.ex
        outgoing = self.outgoing
        if outgoing is None:
            counted = count_answer(self.dialect, self.body, ex.prompt_estimate())
            return json_response(counted, headers={"x-apex-estimated": "true"})
        plan = self.plan
        # The head is built here, not in prepare: its traceparent names the attempt's span.
        upstream = UpstreamRequest(outgoing[0], self._header_fields(), outgoing[1], plan.upstream, self.upstream_model,
                                   ex.stream, self.route, self._queued)
        transport = self.channel.transport
        assert transport is not None  # compile_channel gives every channel one
        try:
            response = await (self._stream(transport, upstream) if ex.stream else self._json(transport, upstream))
            self.read_whole = True
            return response
        finally:
            relay = self.relay
            if not self.read_whole and ex.committed and relay is not None:
                ex.usage = relay.usage  # the client left or the stream broke: usage seen so far counts
            reply = self.reply
            if reply is not None:
                if self.read_whole:
                    reply.release()  # the connection goes back to the pool
                else:
                    reply.close()

    def _queued(self, waiting: bool) -> None:
        """The request waits for a free connection (max_connections): the first-byte wait
        stops while it does and starts again once it has one. The queue has its own bound
        (the connect timeout, then a 503 ChannelBusy that does not count against the channel);
        it used to eat the upstream's first_byte_ms, a 504 that cooled the channel down."""
        deadline = self.deadline
        if deadline is not None:
            # request_ms still bounds the whole answer: the wait in the queue is part of it.
            deadline.move(None if waiting else min(asyncio.get_running_loop().time() + self.first_wait, self.answer_by))

    @property
    def _client_usage(self) -> bool:
        options = self.view.stream_options
        return bool(options and options.include_usage)

    def _upstream_body(self) -> bytes:
        """The body to send: translated, or the client's bytes changed only where needed."""
        plan = self.plan
        body = self.body
        translator = plan.translator
        if translator is not None:
            ex = self.ex
            ctx = self.ctx = TranslateContext(
                client_model=self.model,
                upstream_model=self.upstream_model,
                stream=ex.stream,
                request_id=ex.request_id,
                include_usage=self._client_usage,
                estimated_input_tokens=ex.prompt_estimate(),
            )
            ctx.extras["created"] = int(time.time())
            ctx.upstream_takes_stream_usage = plan.stream_usage_option
            if plan.route is not None:
                ctx.upstream_server_tools = plan.route.server_tools
            if plan.caps is not None:
                ctx.caps = self._caps(plan.caps)
            try:
                translated = translator.request(body, ctx)
            except InvalidRequest as err:  # this channel's API cannot carry it; another may
                raise Untranslatable.of(err) from err
            out = fit_reasoning_history(translated, plan.reasoning_history)
            ex.notices = ctx.notices
            return without_openai_only_fields(out) if plan.strict_fields else out
        add_usage = self.ex.stream and plan.add_stream_usage and not self._client_usage
        rename = self.mapped and plan.model_in_body
        if rename or add_usage:
            body = rewrite_request(body, model=self.upstream_model if rename else None, add_stream_usage=add_usage)
        if plan.fix_embedding_encoding:
            body = self._embedding_request(body)
        if plan.compat_chat:
            body = compat_chat_request(body)
        if plan.strip_unsigned_thinking:
            body = strip_unsigned_thinking(body)
        if plan.refuses_threads and body.find(b'"thread"') >= 0:  # find: one substring search, most requests
            _refuse_thread(body)
        if plan.without_tool_search:
            body = without_tool_search(body)
        if plan.betas_in_body and plan.betas is not None:
            body = _with_body_betas(body, accepted_betas(self.request.headers.getall("anthropic-beta", ()), plan.betas))
        if plan.upstream is Dialect.GEMINI_GENERATE:
            body = without_apex_signatures(body)  # minted for Claude earlier in the session
        if plan.upstream is Dialect.GEMINI_EMBED:
            body = with_upstream_model(body, self.upstream_model)  # Gemini checks requests[].model
        elif plan.upstream is Dialect.GEMINI_COUNT_TOKENS and self.mapped:
            body = count_request_with_model(body, self.upstream_model)
        # Only Responses is fitted unrenamed; the other fits wait for a model_map hit (most requests have none).
        if plan.caps is not None and (self.mapped or plan.upstream is Dialect.OPENAI_RESPONSES):
            body = self._fit_to_model(body, plan.caps)
        return body

    def _fit_to_model(self, body: bytes, table: CapabilityTable) -> bytes:
        """A native request fitted to the upstream model (capability table): the client's fields
        suit the model it named, and a model_map may have named another. Called for renamed
        requests, and for every Responses one: Codex sends reasoning to every model, so a
        Responses request loses it on a non-reasoner even unrenamed."""
        upstream = self.plan.upstream
        model = self.upstream_model
        if upstream is Dialect.OPENAI_RESPONSES:
            body = without_carried_signatures(body)  # Claude's, carried by Codex: OpenAI cannot read them
            caps = self._caps(table)
            if caps.known and not caps.reasons:
                return strip_reasoning(body)
            return without_sampling(body) if self.mapped and caps.refuses_sampling else body
        if upstream is Dialect.OPENAI_CHAT:
            return fit_chat_request(body, self._caps(table))
        if upstream is Dialect.GEMINI_GENERATE:
            return fit_gemini_request(body, self._caps(table))
        if upstream is Dialect.ANTHROPIC_MESSAGES and model.startswith("claude-"):  # the table knows Anthropic's names only
            return fit_messages_request(body, table.lookup(model), self.view.max_tokens)
        return body

    def _caps(self, table: CapabilityTable) -> ModelCaps:
        """What the upstream model takes; by the client's name when the upstream's is unknown
        to the table: an Azure deployment named after no model (o3 behind "my-o3-deployment"
        was sent max_tokens, and Azure answered 400)."""
        caps = table.lookup(self.upstream_model)
        if not caps.known and self.mapped:
            return table.lookup(self.model)
        return caps

    def _embedding_request(self, body: bytes) -> bytes:
        """Ask a float-only upstream for floats (Apex encodes base64 for the client itself);
        Jina names the field ``embedding_type``."""
        if self.channel.provider_type == "jina":
            return openai_to_jina_embeddings_request(body)
        if self.view.encoding_format != "base64":
            return body
        top = msgspec.json.decode(body, type=dict[str, msgspec.Raw])
        top["encoding_format"] = msgspec.Raw(b'"float"')
        return msgspec.json.encode(top)

    def _header_fields(self) -> bytes:
        """The plan's prebuilt header lines plus what this request adds: its id and trace
        context; on a native hop the client's User-Agent (upstreams use it) and, towards an
        Anthropic-shaped upstream, every ``anthropic-*`` header the client sent (an open list:
        new betas need no release)."""
        plan = self.plan
        ex = self.ex
        client_rid = ex.client_request_id
        extra: dict[str, str] = {}
        if client_rid is not None:
            extra["x-request-id"] = client_rid
        if ex.trace is not None:  # W3C trace context of this attempt, for the upstream's own spans
            extra |= ex.trace.traceparent()
        if not plan.native:
            return plan.header_fields + encode_header_fields(extra) if extra else plan.header_fields
        headers = self.request.headers
        agent_line = b"" if plan.keep_user_agent else _user_agent_line(headers.get("User-Agent"))
        if plan.forward_anthropic_headers:
            several = False  # anthropic-beta sent on more than one line (SDKs may send one per beta)
            for name, value in headers.items():
                if len(name) > 10 and name[:10].lower() == "anthropic-" and _header_safe(value):
                    key = name.lower()
                    if key == "anthropic-beta" and key in extra:
                        several = True
                        value = f"{extra[key]},{value}"
                    extra[key] = value
            beta = extra.get("anthropic-beta")
            if beta is not None and (several or plan.betas is not None):  # one line, cut to what the upstream takes
                betas = accepted_betas((beta,), plan.betas)
                if betas:
                    extra["anthropic-beta"] = ",".join(betas)
                else:
                    del extra["anthropic-beta"]
            if "anthropic-version" not in extra:
                extra["anthropic-version"] = ANTHROPIC_VERSION
        fields = plan.header_fields_bare + agent_line
        return fields + encode_header_fields(extra) if extra else fields

    def _timed_out(self, upstream: UpstreamRequest, what: str, limit: str, seconds: float,
                   scope: str = "") -> UpstreamTimeout:
        """A timeout that says where and which limit: as transport errors do (README "Egress")."""
        where = describe_target(upstream.url, self.channel.egress)
        return UpstreamTimeout(f"upstream channel {self.channel.name}: failed after sending the request to {where}: "
                               f"{what} within {limit} ({seconds:g} s{scope})", channel=self.channel.name)

    def _status_error(self, reply: UpstreamReply, raw: bytes) -> UpstreamStatus:
        """The UpstreamStatus for a non-2xx answer; a native upstream's body is kept for the client."""
        channel = self.channel
        plan = self.plan
        err = upstream_status_error(channel.name, plan.family, reply.status, raw, reply.headers, self.snap.retry_on_status)
        if plan.native and plan.family == plan.client.family and _protocol_error(raw, plan.family):
            err.client_body = scrub_key_shapes(channel.secrets.data(raw))
        # else (a proxy's HTML page, a cloud's own error shape: Bedrock's {"message"}, Vertex's
        # google.rpc error for Claude): the client gets an error in its own protocol
        return err

    # --- non-stream -----------------------------------------------------------------------

    async def _json(self, transport: Transport, upstream: UpstreamRequest) -> web.Response:
        """first_byte_ms bounds the wait for the answer's head, request_ms the whole attempt."""
        if upstream.dialect is Dialect.GEMINI_EMBED and self.plan.client is Dialect.OPENAI_EMBEDDINGS:
            # An OpenAI client may send 2,048 inputs (the translation refuses more); a Gemini
            # client gets Gemini's own answer to a batch past its 100.
            batches = split_embed_batch(upstream.body)
            if len(batches) > 1:
                return await self._json_in_batches(transport, upstream, batches)
        raw = await self._exchange(transport, upstream)
        try:
            return self._json_answer(raw)
        except UpstreamMalformed as exc:
            raise self._bad_answer(upstream, exc) from exc

    async def _json_in_batches(self, transport: Transport, upstream: UpstreamRequest, batches: list[bytes]) -> web.Response:
        """Gemini embeds at most 100 texts per call and OpenAI clients send up to 2,048: one
        call per 100, one after the other on the channel's connections, vectors joined in order."""
        answers: list[bytes] = []
        for i, batch in enumerate(batches):
            if i:
                reply = self.reply
                if reply is not None:
                    reply.release()  # read to its end: the connection goes back for the next batch
                self.reply = None
                self.read_whole = False
            answers.append(await self._exchange(transport, dataclasses.replace(upstream, body=batch)))
        try:
            return self._json_answer(join_embed_answers(answers))
        except UpstreamMalformed as exc:
            raise self._bad_answer(upstream, exc) from exc

    def _bad_answer(self, upstream: UpstreamRequest, exc: UpstreamMalformed) -> UpstreamMalformed:
        if exc.channel != "none":
            return exc
        # Say which channel and where, as transport errors do (README "Egress").
        where = describe_target(upstream.url, self.channel.egress)
        return UpstreamMalformed(f"upstream channel {self.channel.name}: bad answer from {where}: {exc.message}",
                                 channel=self.channel.name)

    async def _exchange(self, transport: Transport, upstream: UpstreamRequest) -> bytes:
        """One request and its whole 2xx answer; the upstream's error otherwise."""
        timeouts = self.channel.timeouts
        ex = self.ex
        self.started = time.perf_counter()
        loop = asyncio.get_running_loop()
        begun = loop.time()
        ends = begun + timeouts.request
        whole = self.request_ends < ends  # the request's own bound comes first
        if whole:
            ends = self.request_ends
        self.first_wait = min(timeouts.first_byte, ends - begun)
        self.answer_by = ends
        try:
            with Deadline(loop, begun + self.first_wait) as deadline:
                self.deadline = deadline
                reply = self.reply = await transport.send(upstream)
                deadline.move(ends)
                raw = await reply.read()
            self.read_whole = True
        except TimeoutError as exc:
            if self.reply is None and loop.time() < ends:
                raise self._timed_out(upstream, "no answer", "first_byte_ms", timeouts.first_byte) from exc
            what = "no answer" if self.reply is None else "the answer did not finish"
            if whole:
                request_ms = self.snap.config.global_.timeouts.request_ms / 1000
                raise self._timed_out(upstream, what, "request_ms", request_ms, " for the whole request") from exc
            raise self._timed_out(upstream, what, "request_ms", timeouts.request) from exc
        except TRANSPORT_ERRORS as exc:
            raise transport_error(self.channel.name, exc) from exc
        finally:
            ex.upstream_ms += (time.perf_counter() - self.started) * 1000
        if reply.status >= 300:
            raise self._status_error(reply, raw)
        return raw

    def _json_answer(self, raw: bytes) -> web.Response:
        ex = self.ex
        plan = self.plan
        if plan.translator is not None:
            ctx = self.ctx
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
            ex.usage = body_usage(ex.dialect, raw)
            out = raw
            if self.mapped:
                out = rewrite_response_model(raw, self.model)
            if plan.fix_embedding_encoding:
                out = reencode_embeddings_response(out, "base64" if self.view.encoding_format == "base64" else "float")
        secrets = self.channel.secrets
        if secrets.has_credentials:  # an answer quoting the channel's own key: never sent on
            out = secrets.credentials_data(out)
        ex.response_body = out  # what the client got (capture_content, the usage estimate)
        if plan.family == "mock" and self.dialect.counts_tokens:  # the mock counts as Apex does: an estimate
            return web.Response(body=out, headers={"Content-Type": "application/json", "x-apex-estimated": "true"})
        return web.Response(body=out, headers={"Content-Type": "application/json"})

    # --- stream ---------------------------------------------------------------------------

    def _relay(self) -> Relay:
        plan = self.plan
        channel = self.channel
        if plan.translator is not None:
            ctx = self.ctx
            assert ctx is not None
            return TranslatingRelay(plan.translator.stream(ctx), ctx, channel.secrets)
        rewrite = self.mapped and self.dialect is not Dialect.GEMINI_GENERATE
        return PassthroughRelay(
            self.dialect, channel=channel.name, client_model=self.model if rewrite else None,
            strip_usage_chunk=plan.add_stream_usage and not self._client_usage, secrets=channel.secrets,
            repair_chat_chunks=plan.repair_chat_chunks,
        )

    async def _stream(self, transport: Transport, upstream: UpstreamRequest) -> web.StreamResponse:
        """Wait (first_byte_ms) for the upstream's first whole event, then commit and relay."""
        channel = self.channel
        ex = self.ex
        self.started = time.perf_counter()
        with map_transport_errors(channel.name):
            try:
                reply, relay, first = await self._first_event(transport, upstream)
            except BaseException as exc:
                # The wait was the upstream's, whatever ended it (a timeout, a bad answer, a
                # hang-up): it is no overhead of Apex's.
                ex.upstream_ms += (time.perf_counter() - self.started) * 1000
                if isinstance(exc, TimeoutError):
                    what = "no answer" if self.reply is None else "no first event"
                    raise self._timed_out(upstream, what, "first_byte_ms", channel.timeouts.first_byte) from exc
                raise
        # From the request's arrival, as the client waited: after a failover it includes the
        # failed attempts (it was this attempt's wait alone: 2 ms after 3 s of failover).
        ex.ttft_ms = ex.elapsed_ms()
        try:
            return await self._commit(relay, reply, first)
        finally:  # a client that hangs up mid-stream too: the usage seen so far, the upstream's time
            ex.usage = relay.usage
            ex.stream_events = relay.events
            ex.upstream_ms += (time.perf_counter() - self.started) * 1000

    async def _first_event(self, transport: Transport, upstream: UpstreamRequest) -> tuple[UpstreamReply, Relay, bytes]:
        """The reply, its relay and the client bytes of its first whole event(s), within first_byte_ms."""
        channel = self.channel
        loop = asyncio.get_running_loop()
        self.first_wait = channel.timeouts.first_byte
        with Deadline(loop, loop.time() + self.first_wait) as deadline:
            self.deadline = deadline
            reply = self.reply = await transport.send(upstream)
            if reply.status >= 300:
                raw = await reply.read()
                raise self._status_error(reply, raw)
            if "event-stream" not in reply.content_type:
                raise UpstreamMalformed(
                    f"upstream channel {channel.name} answered a stream request with {reply.content_type or 'no content type'}",
                    channel=channel.name,
                )
            relay = self.relay = self._relay()
            pending: list[bytes] = []
            while not relay.started:
                chunk = await reply.content.readany()
                if not chunk:
                    raise UpstreamMalformed(
                        f"upstream channel {channel.name} closed the stream before its first event",
                        channel=channel.name,
                    )
                pending.append(relay.feed(chunk))
            deadline.move(None)
        return reply, relay, b"".join(pending)

    async def _commit(self, relay: Relay, reply: UpstreamReply, first: bytes) -> web.StreamResponse:
        """Send the client its response head and relay the stream to its end; never raises UpstreamError."""
        ex = self.ex
        headers = ex.response_headers()
        # What Apex added before the first byte (the metric takes the whole stream's figure).
        waited = (time.perf_counter() - self.started) * 1000  # this attempt's, not yet in upstream_ms
        headers["x-apex-overhead-ms"] = f"{max(0.0, ex.elapsed_ms() - ex.upstream_ms - ex.waiting_ms - waited):.3f}"
        if self.dialect is Dialect.GEMINI_GENERATE:
            # No keep-alive comments: the Gemini SDKs read a line that is not ``data:`` as JSON.
            resp = web.StreamResponse(headers=headers)
            resp.headers.update(SSE_HEADERS)
            if ex.json_array_stream:
                resp.headers["Content-Type"] = "application/json; charset=UTF-8"
        else:
            resp = relay.response(headers)
        try:
            await resp.prepare(self.request)
        except ConnectionError:
            # The client left before its head could be written (its EOF and the first event
            # came in one loop turn, ahead of the handler's cancellation): from here on the
            # answer is the client's to lose, a 499 like a hang-up mid-stream, not an error.
            ex.committed = True
            raise
        try:
            sink = _JsonArraySink(resp) if ex.json_array_stream else resp
            await self._pump(relay, reply, sink, first)
            return resp
        finally:
            if isinstance(resp, EventSourceResponse):
                resp.stop_streaming()  # its keep-alive ping task must not outlive the stream

    async def _pump(self, relay: Relay, reply: UpstreamReply, resp: web.StreamResponse | _Sink, first: bytes) -> None:
        """Write the first events, then every later one as it arrives, then the closing bytes.

        The task is registered with the Gateway while it relays, so a shutdown that reaches its
        deadline can end it with an error event instead of cutting it mid-chunk."""
        ex = self.ex
        ex.committed = True
        ex.status = 200
        gateway = self.request.app[GATEWAY_KEY]
        task = asyncio.current_task()
        assert task is not None
        gateway.streams.add(task)
        try:
            await self._pump_events(relay, reply, resp, first, task)
        finally:
            gateway.streams.discard(task)
            ex.usage = relay.usage  # also when the client left: usage seen so far counts

    async def _pump_events(
        self, relay: Relay, reply: UpstreamReply, resp: web.StreamResponse | _Sink, first: bytes, task: asyncio.Task[object]
    ) -> None:
        ex = self.ex
        channel = self.channel
        request = self.request
        idle = channel.timeouts.stream_idle
        # A slow client is not an idle upstream, but one that stops reading would hold the
        # upstream connection for ever: each write to the client gets send_ms to go out.
        send = self.snap.config.global_.client_timeouts.send_ms / 1000
        loop = asyncio.get_running_loop()
        failure: tuple[str, ErrorKind] | None = None
        writing = True
        try:
            with Deadline(loop, loop.time() + send) as deadline:
                if first:
                    await resp.write(first)
                    ex.final_delivered = relay.ended
                events = relay.events
                idle_until = loop.time() + idle
                while True:
                    writing = False
                    deadline.move(idle_until)
                    chunk = await reply.content.readany()
                    if not chunk:
                        break
                    out = relay.feed(chunk)
                    if relay.events != events:  # idle is between events: bytes trickling into one do not count
                        events = relay.events
                        idle_until = loop.time() + idle
                    if out:
                        deadline.move(loop.time() + send)
                        writing = True
                        await resp.write(out)
                        if relay.ended:
                            ex.final_delivered = True
        except TimeoutError:
            if writing:
                self._client_too_slow(send)
            failure = (f"upstream channel {channel.name} sent nothing for {idle:g} s", "timeout")
        except asyncio.CancelledError:
            if not request.app[GATEWAY_KEY].stopping or task.cancelling() > 1 or request.transport is None:
                raise  # the client left (or a second cancel): nothing to tell it
            task.uncancel()  # the shutdown deadline: end the stream properly instead
            failure = ("Apex is shutting down; the stream was stopped at the shutdown deadline", "overloaded")
        except (HttpClientError, OSError) as exc:
            transport = request.transport
            if transport is None or transport.is_closing():
                # The client went away as the upstream broke: a hang-up (499), whichever came
                # first; the upstream's error escaped as an internal one.
                raise ConnectionResetError("the client closed the connection") from exc
            failure = (f"{transport_error(channel.name, exc).message} (mid-stream)", "api_error")
        data = relay.finish(failure)
        ex.usage = relay.usage
        if relay.stream_error is not None:
            ex.stream_error = relay.stream_error
        try:
            with Deadline(loop, loop.time() + send):
                if data:
                    await resp.write(data)
                ex.final_delivered = True
                await resp.write_eof()
        except TimeoutError:
            self._client_too_slow(send)

    def _client_too_slow(self, send: float) -> NoReturn:
        """The client took none of a write for ``send_ms``: close its connection; a hang-up (499)."""
        _stream_log.warning("a client did not read its stream for %g s; connection closed", send,
                            extra={"fields": {"request_id": self.ex.request_id, "channel": self.channel.name}})
        if self.request.transport is not None:
            self.request.transport.abort()
        raise ConnectionResetError(f"the client did not read for {send:g} s")


def _refuse_thread(body: bytes) -> None:
    """Untranslatable when the Messages request carries ``thread``: this endpoint keeps no
    threads, and sent on, the turn would reach it without its conversation."""
    try:
        thread = _TOP_LEVEL.decode(body).get("thread")
    except msgspec.DecodeError:
        return  # not a JSON object: the upstream answers it
    if thread is not None and bytes(thread) not in (b"null", b"false"):
        try:
            refuse_thread(thread)
        except InvalidRequest as err:
            raise Untranslatable.of(err) from err


def _with_body_betas(body: bytes, betas: list[str]) -> bytes:
    """Bedrock's InvokeModel takes betas in the body (``anthropic_beta``), as Anthropic's own
    Bedrock client sends them; a client that put them there itself keeps its list."""
    if not betas:
        return body
    try:
        top = msgspec.json.decode(body, type=dict[str, msgspec.Raw])
    except (msgspec.DecodeError, msgspec.ValidationError):
        return body  # not a JSON object: the cloud route refuses it with a clear error
    if "anthropic_beta" in top:
        return body
    top["anthropic_beta"] = msgspec.Raw(msgspec.json.encode(betas))
    return msgspec.json.encode(top)


_AGENT_LINES: dict[str | None, bytes] = {}
_AGENT_LINES_MAX: Final = 256  # distinct client User-Agents remembered (a fleet sends a handful)


def _user_agent_line(agent: str | None) -> bytes:
    """The ``User-Agent`` header line for a client's agent (Apex's own when it sent none or an
    unusable one), encoded once per distinct agent rather than per request."""
    line = _AGENT_LINES.get(agent)
    if line is None:
        line = encode_header_fields({"User-Agent": agent if agent is not None and _header_safe(agent) else USER_AGENT})
        if len(_AGENT_LINES) >= _AGENT_LINES_MAX:
            _AGENT_LINES.clear()
        _AGENT_LINES[agent] = line
    return line


def _header_safe(value: str) -> bool:
    """A client header value Apex may put on its own upstream request line by line."""
    return value.isascii() and value.isprintable()


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


def _protocol_error(raw: bytes, family: str) -> bool:
    """True when an upstream's error body is the protocol's own error object, the only kind
    passed on to a same-protocol client as it is: Anthropic's ``{"type": "error", "error":
    {...}}``, OpenAI's and Gemini's ``{"error": ...}`` (an error path only: one decode is fine)."""
    if not raw.lstrip().startswith(b"{"):
        return False
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return False
    if not isinstance(body, dict) or "error" not in body:
        return False
    return body.get("type") == "error" and isinstance(body["error"], dict) if family == "anthropic" else True

