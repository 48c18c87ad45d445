"""Client connections: read timeouts, and answers to HTTP the parser refuses.

aiohttp's server has a keep-alive idle timeout but no bound on how long a client may take
to send its request head or body: a slowloris holds a socket (and a file descriptor) for
as long as it trickles bytes. Here each connection notes when its current head and body
started, and a periodic sweep (see ``sweep_interval``) closes heads older than ``header_read_ms``
(after a 408) and fails bodies older than ``body_read_ms`` (the endpoint answers 408 in its protocol),
and closes a connection whose client took none of the bytes written to it for ``send_ms``.
That costs the request path a clock read per received chunk, no timer per request.

aiohttp answers bytes its parser rejects with a plain-text 400 that quotes the offending
header line and logs it with a traceback: the line can hold a client's key. Here the answer
is JSON in the protocol of the path (when the request line got that far), and the log line
names the problem without quoting any of the client's bytes.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Coroutine
from typing import Any, Final, cast

from aiohttp import web
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_exceptions import HTTPNotFound
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from apex.errors import ApexError, ErrorKind, InternalError, InvalidRequest, RequestTimeout
from apex.server.exchange import new_request_id
from apex.server.gateway import Gateway
from apex.server.keys import FALLBACK_KEY
from apex.server.responses import dialect_of_path, error_body, error_response
from apex.types import Dialect

__all__ = ["BodyReadTimeout", "ApexRunner", "raise_fd_limit", "sweep_interval"]

log = logging.getLogger("apex.server")

_PEEK: Final = 96  # bytes of a request head kept to know its path if the parser refuses it
# The sweep runs every tenth of the shorter read timeout, within these bounds (1 s with the
# defaults of 10 s and 60 s). Each wake-up of an idle process costs ~0.2 ms of CPU on a VM:
# a fixed 4/s sweep was a third of an idle gateway's CPU. A sweep is ~1 µs a connection.
SWEEP_MIN_S: Final = 0.05
SWEEP_MAX_S: Final = 1.0


def sweep_interval(header_read: float, body_read: float, send: float) -> float:
    """Seconds between sweeps: timeouts are enforced to within a tenth of themselves (at most 1 s)."""
    return min(SWEEP_MAX_S, max(SWEEP_MIN_S, min(header_read, body_read, send) / 10))


class BodyReadTimeout(asyncio.TimeoutError):
    """Set on a request body that took longer than ``body_read_ms``.

    A TimeoutError so aiohttp's own lingering read of an unread body ends quietly."""


def _dialect_of(peek: bytes) -> Dialect:
    """The protocol of the path in a request head's first bytes (see ``dialect_of_path``)."""
    _, _, rest = peek.partition(b" ")
    target = rest.split(b" ", 1)[0].split(b"?", 1)[0]
    return dialect_of_path(target.decode("latin-1"))


def _reason(exc: BaseException | None, message: str | None) -> str:
    """aiohttp's description of a parse error without the bytes it quotes ("Invalid header
    value char", not the header line that holds a key)."""
    text = (message or "").split("\n", 1)[0].split(":", 1)[0].strip()
    if text and len(text) <= 80 and not any(q in text for q in "'\"`\\"):
        return text
    return type(exc).__name__ if exc is not None else ""


class ApexRequestHandler(RequestHandler):
    """aiohttp's connection handler plus the times its current head and body began, and an
    answer for a client that half-closes after its request."""

    __slots__ = ("apex_gateway", "apex_head_since", "apex_peek", "apex_body", "apex_body_since", "apex_unsent",
                 "apex_unsent_since", "apex_upstream_for")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.apex_head_since = 0.0  # loop time the first byte of a pending head arrived; 0: none
        self.apex_peek = b""
        self.apex_body: StreamReader | None = None  # the body being received, if any
        self.apex_body_since = 0.0
        # id() of the request waiting on (or relaying) an upstream: an id holds no reference,
        # and a reused one only makes an EOF close at once, as aiohttp itself does.
        self.apex_upstream_for = 0
        self.apex_unsent = 0  # bytes the client had not taken at the last sweep
        self.apex_unsent_since = 0.0  # loop time that amount was first seen unchanged
        self.apex_gateway: Gateway | None = None  # set by the server: answers made here are counted too

    def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio.Protocol allows True: keep writing
        """The client closed its sending side. aiohttp's answer is to close the connection,
        which drops the answer to a request already sent: raw-socket clients (``nc -N``,
        probes that send, shut down, then read) got nothing, not even for /health. Here what
        was asked is answered, then the connection closes; a body cut short by the EOF is a
        400. A request already waiting on an upstream is still cancelled at once: at the TCP
        level a client that left looks the same, and its upstream call must not run on."""
        current = self._current_request
        if current is not None and id(current) == self.apex_upstream_for:
            return None  # close: connection_lost cancels the handler and its upstream call
        body = self.apex_body
        waiter = self._waiter
        idle = waiter is not None and not waiter.done()  # aiohttp waits for the next request
        # A head not yet taken, a handler running, or one about to (its task not started yet).
        pending = bool(self._messages) or self._request_in_progress or (self._request_count > 0 and not idle)
        if not pending or self.transport is None:
            return None
        if body is not None and not body.is_eof():
            body.feed_eof()  # the read sees a short body: 400, not a wait for the body timeout
        self.close()  # answer, then close instead of waiting for another request
        return True  # keep the sending side open for the answer

    def close_without_lingering(self) -> None:
        """Close once the answer is written, without reading the unread body first (aiohttp's
        lingering close reads it for up to ``lingering_time``, decompressing as it goes)."""
        self._lingering_time = 0.0

    def data_received(self, data: bytes) -> None:
        body = self.apex_body
        if body is None or body.is_eof():
            # Only bytes start a head: aiohttp calls data_received(b"") itself whenever a
            # body read drains its buffer (resume_reading), and that armed the head timer
            # for the request being served, so any answer slower than header_read_ms had
            # its connection closed under it.
            if data and not self.apex_head_since:
                self.apex_head_since = self._loop.time()
                self.apex_peek = data[:_PEEK]
            elif data and len(self.apex_peek) < _PEEK:  # a head arriving bit by bit: its path comes later
                self.apex_peek += data[:_PEEK - len(self.apex_peek)]
            queued = len(self._messages)
            super().data_received(data)
            if len(self._messages) != queued:  # a head is complete
                self.apex_head_since = 0.0
                payload = self._messages[-1][1]
                if payload is not EMPTY_PAYLOAD and not payload.is_eof():
                    self.apex_body = payload
                    self.apex_body_since = self._loop.time()
                else:
                    self.apex_body = None
            return
        super().data_received(data)

    def finish_response(self, request: BaseRequest, resp: StreamResponse,
                        start_time: float | None) -> Coroutine[Any, Any, tuple[StreamResponse, bool]]:
        # aiohttp's router answers a request-target that is no path (CONNECT host:port,
        # OPTIONS *) with its own plain-text 404, uncounted; every path has the fallback route,
        # so its 404 means exactly that. Not async: no extra coroutine on every answer.
        if type(resp) is HTTPNotFound and request.match_info.http_exception is resp:  # type: ignore[attr-defined]
            return self._no_path(request, start_time)
        return super().finish_response(request, resp, start_time)

    async def _no_path(self, request: BaseRequest, start_time: float | None) -> tuple[StreamResponse, bool]:
        answer = await request.app[FALLBACK_KEY](request)  # type: ignore[attr-defined]  # a web.Request here
        return await super().finish_response(request, answer, start_time)

    def sweep(self, now: float, header_read: float, body_read: float, send: float) -> None:
        """Enforce the read timeouts and the send timeout (called by the sweep for every connection)."""
        self._sweep_send(now, send)
        if self.apex_head_since and now - self.apex_head_since > header_read and self.transport is not None:
            self.apex_head_since = 0.0
            err = RequestTimeout(f"the request head was not received within {header_read:g} s")
            dialect = _dialect_of(self.apex_peek)
            body = error_body(dialect, err)
            if not self._request_in_progress:  # nothing else is being written on this connection
                rid = new_request_id()
                self.transport.write(
                    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    b"x-request-id: " + rid.encode() + b"\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                )
                self._count(rid, dialect, 408, err.kind)
            self.force_close()
            return
        body_stream = self.apex_body
        if body_stream is not None and now - self.apex_body_since > body_read:
            self.apex_body = None
            if not body_stream.is_eof():
                body_stream.set_exception(BodyReadTimeout(f"the request body was not received within {body_read:g} s"))

    def _sweep_send(self, now: float, send: float) -> None:
        """A client that takes none of what Apex wrote for ``send`` seconds is closed: its
        answer would sit in memory and its socket stay open for as long as it likes (a slow
        read). A stream's own writes have a deadline already (Attempt); this catches the rest,
        such as a large JSON answer aiohttp writes after the handler returned."""
        transport = self.transport
        unsent = transport.get_write_buffer_size() if transport is not None else 0
        if not unsent:
            self.apex_unsent = 0
            return
        if unsent != self.apex_unsent:  # progress, or more to send: the clock starts again
            self.apex_unsent = unsent
            self.apex_unsent_since = now
            return
        if now - self.apex_unsent_since > send and transport is not None:
            log.warning("a client took none of its answer for %g s; connection closed (%d bytes unsent)", send, unsent)
            self.apex_unsent = 0
            transport.abort()

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """What aiohttp answers when its parser (or a handler outside the API endpoints) fails:
        JSON in the path's protocol, and a log line that quotes none of the client's bytes."""
        if request.writer.output_size > 0:
            raise ConnectionError("the response had started; cannot send an error response")
        dialect = _dialect_of(self.apex_peek)
        self.apex_head_since = 0.0
        err: ApexError
        if status == 500:
            log.error("internal error outside an endpoint (%s)", type(exc).__name__ if exc else "unknown")
            err = InternalError("internal error")
        else:
            reason = _reason(exc, message) or str(status)
            log.debug("refused a malformed HTTP request (%s)", reason)
            err = InvalidRequest(f"malformed HTTP request ({reason})" if status == 400 else f"HTTP error {status}")
        resp = error_response(dialect, err)
        resp.set_status(status)
        resp.force_close()
        # A generated id: the client's own x-request-id is in a head the parser refused.
        rid = resp.headers["x-request-id"] = new_request_id()
        self._count(rid, dialect, status, err.kind)
        return resp

    def _count(self, request_id: str, dialect: Dialect, status: int, kind: ErrorKind) -> None:
        """Count and log an answer made here (the parser refused the request, its head timed
        out) like every answered request, under the id its x-request-id header carries:
        apex_requests_total and the access log missed them."""
        if self.apex_gateway is not None:
            self.apex_gateway.record_answer(request_id, None, dialect, status, kind)

    def log_exception(self, *args: Any, **kw: Any) -> None:
        # aiohttp's own messages here may carry an exception quoting request bytes: name it only.
        exc = kw.get("exc_info")
        name = type(exc).__name__ if isinstance(exc, BaseException) else "error"
        log.warning("connection error: %s (%s)", args[0] if args else "", name)


class _ApexServer(web.Server):
    apex_gateway: Gateway | None = None

    def __call__(self) -> RequestHandler:
        handler = ApexRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.apex_gateway = self.apex_gateway
        return handler


class ApexRunner(web.AppRunner):
    """An AppRunner whose connections are ApexRequestHandlers, with the timeout sweep running."""

    def __init__(self, app: web.Application, gateway: Gateway, **kwargs: Any) -> None:
        ct = gateway.snapshot.config.global_.client_timeouts
        kwargs.setdefault("keepalive_timeout", ct.keepalive_idle_ms / 1000)
        super().__init__(app, **kwargs)
        self._gateway = gateway
        self._sweeper: asyncio.Task[None] | None = None

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _ApexServer  # same object, handlers made by __call__ above
        cast(_ApexServer, server).apex_gateway = self._gateway
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever(server))
        return server

    async def _sweep_forever(self, server: web.Server) -> None:
        loop = asyncio.get_running_loop()
        while True:
            ct = self._gateway.snapshot.config.global_.client_timeouts  # a reload may change them
            header_read, body_read, send = ct.header_read_ms / 1000, ct.body_read_ms / 1000, ct.send_ms / 1000
            await asyncio.sleep(sweep_interval(header_read, body_read, send))
            now = loop.time()
            for handler in server.connections:
                if isinstance(handler, ApexRequestHandler):
                    handler.sweep(now, header_read, body_read, send)
            self._gateway.upstream.close_idle(now)  # upstream connections idle past their keep-alive

    async def cleanup(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        await super().cleanup()


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft open-files limit to the hard one (each client connection is one fd;
    the usual soft default of 1,024 runs out long before the machine does). Returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and (hard == resource.RLIM_INFINITY or soft < hard):
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, target, exc)
    return soft, hard
