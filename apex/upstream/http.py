"""A lean HTTP/1.1 client for upstream requests: a keep-alive pool and one write per request.

Why not aiohttp's ClientSession: profiled under load it was ~40 % of Apex's CPU per
request (ClientRequest, URL and CIMultiDict construction, trace hooks, connector and timer
bookkeeping) for features a proxy never uses (cookies, redirects, auth, proxies, multipart).
This client does only what Apex needs: POST a head built from prebuilt header bytes plus
the body on a pooled connection and hand the body back as it arrives, with flow control
and gzip/deflate decoding. The response framing (status line, headers, Content-Length,
chunked, until close) is llhttp's, through ``httptools`` (the binding uvicorn uses): a
strict, fuzzed parser in C, ~3x faster than the hand-written one it replaced on a JSON
answer and ~9x on a chunked SSE stream. Request deadlines are the caller's (``asyncio.timeout``); only
connecting has one here.

Errors (each names the upstream's host:port in ``where``)::

    HttpClientError
     ├── ConnectFailed        could not connect (DNS, refused, TLS verify, timeout, proxy):
     │                        nothing was sent
     ├── ServerDisconnected   failed after sending: the connection closed before the whole answer
     └── InvalidResponse      a bad answer: the bytes are not an HTTP/1.x response Apex can read

A POST that may have reached the upstream is never sent twice behind the caller's back. A
pooled connection the server closed while idle is dropped before reuse (its EOF or reset,
seen by the loop or by a zero-timeout poll of the socket), and a request whose bytes could
not be written at all goes once more on a fresh connection; the pipeline's failover never
sees either. Proxies (forwarding for http, CONNECT for https, over TLS to an https:// proxy; a SOCKS5 tunnel for both), TLS options and the
connection budget come from the channel's ``Egress`` (apex.upstream.egress); sockets are
connected by apex.upstream.sockets (every address raced, RFC 8305) and handed to the loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import select
import socket
import ssl
import zlib
from collections.abc import Callable, Mapping
from typing import Final, cast
from urllib.parse import urlsplit

import httptools

from apex.upstream.egress import DEFAULT_MAX_CONNECTIONS, Egress, Proxy, connect_reason
from apex.upstream.sockets import hand_over, open_socket

__all__ = [
    "ConnectFailed",
    "HttpClientError",
    "HttpReply",
    "InvalidResponse",
    "ReplyHeaders",
    "ServerDisconnected",
    "UpstreamPool",
    "encode_header_fields",
    "describe_target",
    "exchange_failure",
]

log = logging.getLogger("apex.upstream")

_CLOSES_AFTER_ANSWER_S: Final = 0.25  # a reuse this soon after the last answer that gets none: no keep-alive
_NO_REUSE_S: Final = 300  # how long such an upstream's connections are used once

_MAX_HEAD: Final = 64 * 1024
_BAD_NAME: Final = re.compile(r"[ \t\r\n:]")
_BAD_VALUE: Final = re.compile(r"[\r\n]")
_HIGH_WATER: Final = 256 * 1024  # buffered body bytes that pause reading from the upstream
_IDLE_SECONDS: Final = 30.0       # a pooled connection idle longer than this is closed, not reused
# A pooled connection is polled for an EOF/reset the loop has not delivered yet before its
# reuse only when it can have one: on its first reuse (an upstream that closes after every
# answer without saying so shows it there), or after this long idle (servers' keep-alive
# timeouts start at ~1 s: gunicorn 2 s, uvicorn/Node/llama.cpp 5 s, nginx 75 s). A connection
# that already carried a reused request and was answered moments ago skips the syscall (one
# poll(2) per request at saturation; alone, within the noise of wrk on the dev VM).
_POLL_AFTER_IDLE_SECONDS: Final = 0.5
_MAX_IDLE_PER_ORIGIN: Final = 256

# Where the connection is in the response it is reading.
_HEAD, _BODY, _UNTIL_CLOSE, _DONE = range(4)


class HttpClientError(Exception):
    """The upstream's HTTP exchange failed (beyond a plain socket error)."""

    where = ""  # host:port of the upstream (set by the connection that failed)


class ConnectFailed(HttpClientError):
    """No connection to the upstream could be made: nothing of the request was sent."""

    def __init__(self, where: str, reason: str, *, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.where = where
        self.reason = reason
        self.timed_out = timed_out


class PoolExhausted(ConnectFailed):
    """Every connection ``max_connections`` allows was busy for the whole connect timeout:
    Apex's own cap, not a verdict on the upstream."""


class ServerDisconnected(HttpClientError):
    """The connection closed before the response was complete."""


class InvalidResponse(HttpClientError):
    """The upstream's bytes are not an HTTP/1.x response."""


def describe_target(url: str, egress: Egress | None = None) -> str:
    """``HOST:PORT`` (``via proxy PHOST:PPORT`` when one serves it) of an upstream URL, as the
    transport's own failures name it: for failures the caller sees first (its deadlines).
    An address that is not http(s) (the in-process mock) is named as it is."""
    try:
        return _where(_Target(url, egress).origin)
    except ValueError:
        return url or "the upstream"


def exchange_failure(exc: HttpClientError) -> str:
    """Which of the three failures it was and where: ``could not connect to HOST:PORT: why``,
    ``failed after sending the request to HOST:PORT: why`` or ``bad answer from HOST:PORT:
    why`` (HOST:PORT ``via proxy PHOST:PPORT`` when there is one). Never a credential."""
    where = exc.where or "the upstream"
    if isinstance(exc, ConnectFailed):
        return f"could not connect to {where}: {exc.reason}"
    if isinstance(exc, InvalidResponse):
        return f"bad answer from {where}: {exc}"
    return f"failed after sending the request to {where}: {exc}"


def encode_header_fields(headers: Mapping[str, str]) -> bytes:
    """``Name: value\\r\\n`` lines; ValueError when a name or value could split the head."""
    out = []
    for name, value in headers.items():
        if not name or _BAD_NAME.search(name) or _BAD_VALUE.search(value):  # regex: no per-character genexpr
            raise ValueError(f"header {name!r} has a character that cannot appear in an HTTP header")
        out.append(f"{name}: {value}\r\n")
    return "".join(out).encode("latin-1")


class ReplyHeaders(dict[str, str]):
    """Response headers keyed by lower-case name; lookups ignore case."""

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return dict.get(self, key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and dict.__contains__(self, key.lower())


class _Origin:
    """Where a request goes: the upstream's host and port, whether TLS, and the proxy in between."""

    __slots__ = ("host", "label", "port", "proxy", "tls")

    def __init__(self, host: str, port: int, tls: bool, proxy: Proxy | None) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.proxy = proxy
        self.label = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Target:
    """A URL split once for one channel's egress: where to connect and the first head lines."""

    __slots__ = ("forwarding", "key", "origin", "prefix")

    def __init__(self, url: str, egress: Egress | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        host = parts.hostname
        if not host.isascii():  # an internationalised name: its IDNA form on the wire (checked at load)
            host = host.encode("idna").decode("ascii")
        proxy = egress.proxy_for(parts.scheme, host, port) if egress is not None else None
        self.origin = _Origin(host, port, tls, proxy)
        self.key = (egress.key if egress is not None else None, host, port, tls, proxy)
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        shown = f"[{host}]" if ":" in host else host
        if port != (443 if tls else 80):
            shown = f"{shown}:{port}"
        self.forwarding = proxy is not None and not tls and not proxy.socks
        if self.forwarding:  # absolute-form target (RFC 9112 3.2.2)
            assert proxy is not None
            auth = f"Proxy-Authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
            self.prefix = f"POST http://{shown}{path} HTTP/1.1\r\nHost: {shown}\r\n{auth}".encode("latin-1")
        else:
            self.prefix = f"POST {path} HTTP/1.1\r\nHost: {shown}\r\n".encode("latin-1")


class HttpReply:
    """One upstream response: status and headers at once, the body as it arrives.

    Satisfies the pipeline's ``UpstreamReply`` seam (the subset of aiohttp's
    ClientResponse Apex uses); ``content`` is the reply itself (``readany``).
    """

    __slots__ = (
        "_coded",
        "_conn",
        "_decoder",
        "_deflate",
        "_error",
        "_eof",
        "_head",
        "_parts",
        "_size",
        "_waiter",
        "headers",
        "status",
    )

    def __init__(self, conn: _Connection) -> None:
        self._conn: _Connection | None = conn
        self.status = 0
        self.headers = ReplyHeaders()
        self._head: asyncio.Future[None] = conn.loop.create_future()
        self._parts: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._decoder: zlib._Decompress | None = None
        self._coded = False  # a compressed byte has arrived (an empty coded body is an empty body)
        self._deflate = False  # the coding is "deflate": zlib-wrapped, or raw if its first bytes say so

    @property
    def content_type(self) -> str:
        value = self.headers.get("content-type")
        if not value:
            return ""
        return value.split(";", 1)[0].strip().lower()

    @property
    def content(self) -> HttpReply:
        return self

    async def readany(self) -> bytes:
        """Whatever body bytes have arrived (waiting for some); b"" at the end of the body."""
        while not self._parts:
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            self._waiter = self._conn.loop.create_future() if self._conn is not None else None
            if self._waiter is None:
                raise ServerDisconnected("the response was closed")
            try:
                await self._waiter
            finally:
                self._waiter = None
        parts = self._parts
        data = parts.popleft() if len(parts) == 1 else b"".join(parts)
        parts.clear()
        if self._size >= _HIGH_WATER and self._conn is not None:
            self._conn.resume()
        self._size = 0
        return data

    async def read(self) -> bytes:
        """The whole body."""
        if self._eof and self._error is None:
            parts = self._parts
            data = parts.popleft() if len(parts) == 1 else b"".join(parts)
            parts.clear()
            self._size = 0
            return data
        pieces = []
        while chunk := await self.readany():
            pieces.append(chunk)
        return b"".join(pieces)

    def release(self) -> None:
        """Done with the reply: a finished connection is already back in the pool; an
        unfinished one is closed (its unread body must not leak into the next request)."""
        self.close()

    def close(self) -> None:
        conn = self._conn
        if conn is not None:
            self._conn = None
            conn.abandon(self)

    # --- fed by the connection --------------------------------------------------

    def _feed(self, data: bytes) -> None:
        decoder = self._decoder
        if decoder is not None:
            try:
                try:
                    out = decoder.decompress(data)
                except zlib.error:
                    if self._coded or not self._deflate:
                        raise
                    # "deflate" as raw RFC 1951 data without the zlib wrapper (IIS, some
                    # middleboxes): httpx, urllib3 and curl retry the first bytes so; so does Apex.
                    self._decoder = decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                    out = decoder.decompress(data)
            except zlib.error as exc:
                # A corrupt body is the upstream's bytes, not the transport: as InvalidResponse it
                # fails the reply cleanly in data_received (uncaught, the loop logged a fatal
                # transport error and the reply saw ServerDisconnected).
                raise InvalidResponse(f"body does not match its content-encoding: {exc}") from None
            self._coded = True
            if not out:
                return
            data = out
        self._parts.append(data)
        self._size += len(data)
        if self._size >= _HIGH_WATER and self._conn is not None:
            self._conn.pause()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _finish(self) -> None:
        decoder = self._decoder
        if decoder is not None and self._coded:  # an empty body is empty whatever its coding (a 429 with no body)
            tail = decoder.flush()
            if tail:
                self._parts.append(tail)
            if not decoder.eof:  # the HTTP framing ended, the compressed stream did not
                exc = InvalidResponse("the compressed body ended before its end marker")
                if self._conn is not None:
                    exc.where = _where(self._conn.origin)
                self._fail(exc)
                return
        self._eof = True
        self._conn = None  # the connection has moved on (pool or closed)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self._error = exc
        self._conn = None
        if not self._head.done():
            self._head.set_exception(exc)
            self._head.exception()  # retrieved here: a caller that gave up must not log it
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Connection(asyncio.Protocol):
    """One upstream connection; llhttp (``httptools``) frames the response to the request it carries.

    The parser lives as long as the connection (it frames consecutive keep-alive responses)
    and calls back ``on_header`` .. ``on_message_complete`` from inside ``data_received``.
    The verdict on a response (finished, reusable, bytes past its end) is drawn after each
    ``feed_data`` returns, so a callback never hands the connection back to the pool while
    llhttp is still reading from it.
    """

    __slots__ = (
        "_complete_pending",
        "_error",
        "_extra",
        "_head_bytes",
        "_interim",
        "_parser",
        "_paused",
        "_phase",
        "_poll",
        "_pool",
        "_raw",
        "_reply",
        "_reusable",
        "idle_since",
        "lost",
        "loop",
        "origin",
        "served",
        "slots",
        "transport",
    )

    def __init__(self, pool: UpstreamPool, slots: _Slots, origin: _Origin, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self.slots = slots
        self.origin = origin
        self._poll: select.poll | None = None
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self._reply: HttpReply | None = None
        self._parser = httptools.HttpResponseParser(self)
        # What aiohttp, httpx and curl accept in an answer too (RFC 9112 2.2 allows bare LF):
        # strict, a small server that writes them failed every request as a "bad answer".
        self._parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True, lenient_spaces_after_chunk_size=True)
        self._phase = _DONE
        self._raw: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._interim = False
        self._extra = False
        self._complete_pending = False
        self._error: InvalidResponse | None = None
        self._reusable = True
        self._paused = False
        self.lost = False
        self.idle_since = 0.0
        self.served = 0  # whole responses read on this connection

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # not TCP (tests may use other transports)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                poller = select.poll()
                poller.register(sock.fileno(), select.POLLIN)
                self._poll = poller
            except (OSError, ValueError):
                self._poll = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.transport = None
        self._poll = None
        self._pool._forget(self)
        reply = self._reply
        if reply is None:
            return
        self._reply = None
        if self._phase == _UNTIL_CLOSE and exc is None:  # a clean close ends such a body; a reset does not
            reply._finish()
            return
        if self._phase == _HEAD and self.served == 0 and isinstance(exc, ssl.SSLError):
            # A TLS alert before any answer on a new connection (TLS 1.3: the server checks a
            # client certificate after the client's handshake is done and its request sent):
            # the handshake failed, so the request was never taken. "could not connect".
            reply._fail(ConnectFailed(_where(self.origin), connect_reason(exc)))
            return
        if self._phase == _HEAD:
            reason = "the upstream closed the connection before answering"
            now = self.loop.time()
            if (self.served and not self._head_bytes and now - self.idle_since < _CLOSES_AFTER_ANSWER_S
                    and now >= self.slots.reuse_after):
                # Reused moments after its last answer and closed with not a byte of this one:
                # the upstream closes after each answer without saying so (a keep-alive
                # timeout closes after a long idle instead). Its connections are used once for
                # a while (a race the poll before reuse cannot always win), then tried again.
                self.slots.reuse_after = now + _NO_REUSE_S
                log.warning("upstream %s closes its connections after each answer without "
                            "'Connection: close'; not reusing them for %d s", _where(self.origin), _NO_REUSE_S)
        else:
            reason = "the upstream closed the connection before the response body was complete"
        error = ServerDisconnected(reason if exc is None else f"{reason}: {exc}")
        error.where = _where(self.origin)
        reply._fail(error)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost settles the reply

    def data_received(self, data: bytes) -> None:
        reply = self._reply
        if reply is None:  # bytes nobody asked for: this connection cannot be trusted again
            self.close()
            return
        in_head = self._phase == _HEAD
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # 101 Switching Protocols: no answer to a POST Apex sent
            self._fail(reply, self._error or InvalidResponse("the upstream switched protocols (HTTP 101)"))
            return
        except httptools.HttpParserError as exc:
            if self._phase == _DONE and self._complete_pending:
                self._extra = True  # garbage after a whole response: the response stands
            else:
                error = self._error or InvalidResponse(f"not a valid HTTP/1.1 response: {exc}")
                self._fail(reply, error)
                return
        if in_head and self._phase == _HEAD:
            self._head_bytes += len(data)
            if self._head_bytes > _MAX_HEAD:
                self._fail(reply, InvalidResponse("response head is larger than 64 KiB"))
                return
        if self._complete_pending:
            self._complete_pending = False
            self._complete(reply)

    # --- llhttp callbacks (called inside feed_data) ---------------------------------

    def on_message_begin(self) -> None:
        if self._phase == _DONE:  # a second response to one request: the framing cannot be trusted
            self._extra = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw.append((name, value))  # decoded once the head is whole: one call, not one per header

    def on_headers_complete(self) -> None:
        if self._phase != _HEAD:
            self._raw.clear()
            return
        reply = self._reply
        assert reply is not None
        raw = self._raw
        self._raw = []
        headers = reply.headers
        get = dict.get
        size = 0
        for name, value in raw:
            size += len(name) + len(value) + 4
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1").strip()
            previous = get(headers, key)  # ReplyHeaders' own get lower-cases again
            headers[key] = text if previous is None else f"{previous}, {text}"
        if size > _MAX_HEAD:  # a whole oversized head can arrive in one read
            self._error = InvalidResponse("response head is larger than 64 KiB")
            raise self._error
        parser = self._parser
        status = parser.get_status_code()
        if parser.get_http_version() not in ("1.1", "1.0"):
            self._error = InvalidResponse(f"not an HTTP/1.x response (HTTP/{parser.get_http_version()})")
            raise self._error
        if status < 200:  # 100 Continue and friends: the real answer follows
            reply.headers = ReplyHeaders()
            self._interim = True
            return
        reply.status = status
        self._reusable = parser.should_keep_alive()
        encoding = get(headers, "content-encoding")
        if encoding is not None:
            # A list ("identity, gzip") names the codings applied in order; identity is none.
            # Two real codings ("gzip, gzip") stay one unsupported name.
            coding = ",".join(c for c in (part.strip() for part in encoding.lower().split(",")) if c not in ("", "identity"))
            if coding in ("gzip", "x-gzip"):
                reply._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
            elif coding == "deflate":
                reply._decoder = zlib.decompressobj()
                reply._deflate = True
            elif coding:
                self._error = InvalidResponse(f"unsupported content-encoding {encoding!r}")
                raise self._error
        if (
            status not in (204, 304)
            and get(headers, "content-length") is None
            and "chunked" not in get(headers, "transfer-encoding", "").lower()
        ):
            self._phase = _UNTIL_CLOSE  # llhttp reads such a body to EOF; connection_lost ends it
            self._reusable = False
        else:
            self._phase = _BODY
        reply._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        reply = self._reply
        if reply is not None and self._phase in (_BODY, _UNTIL_CLOSE):
            try:
                reply._feed(body)
            except InvalidResponse as exc:  # a corrupt compressed body
                self._error = exc
                raise

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self._phase == _DONE:
            return
        self._phase = _DONE
        self._complete_pending = True

    # --- settling ---------------------------------------------------------------------

    def _fail(self, reply: HttpReply, exc: InvalidResponse) -> None:
        self._reply = None
        self._reusable = False
        self._complete_pending = False
        self._error = None
        exc.where = _where(self.origin)
        reply._fail(exc)
        self.close()

    def _complete(self, reply: HttpReply) -> None:
        """The body is whole: settle the reply and hand the connection back (or close it)."""
        self._reply = None
        if self._extra:  # bytes past the end of the response: the framing cannot be trusted
            self._reusable = False
        owner_gone = reply._conn is None  # released/closed before the body ended
        reply._finish()
        if self._paused:
            self.resume()
        self.served += 1
        now = self.loop.time()
        if self._reusable and not owner_gone and not self.lost and now >= self.slots.reuse_after:
            self.idle_since = now
            self._pool._put_back(self)
        else:
            self.close()

    # --- used by the pool and the reply -------------------------------------------

    def start(self, head: bytes, body: bytes) -> HttpReply:
        reply = HttpReply(self)
        self._reply = reply
        self._phase = _HEAD
        self._head_bytes = 0
        self._interim = False
        self._extra = False
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if len(body) < 64 * 1024:
                transport.write(head + body)
            else:
                transport.writelines((head, body))
            if not transport.is_closing():
                return reply
        # Closed before the write, or the write failed at once (the kernel refused it): none
        # of the request reached the upstream, so the pool may send it on a fresh connection.
        self._reply = None
        self.close()
        reply._fail(ConnectFailed(_where(self.origin), "the connection closed before the request could be written"))
        return reply

    def abandon(self, reply: HttpReply) -> None:
        """The reply's owner is done before the body ended: close rather than reuse."""
        if self._reply is reply:
            self._reply = None
            self._reusable = False
            self.close()

    def close(self) -> None:
        self._reusable = False
        if self.transport is not None:
            self.transport.close()

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def readable(self) -> bool:
        """True when the idle socket has something to read: EOF, a reset or stray bytes."""
        poller = self._poll
        return poller is not None and bool(poller.poll(0))

    @property
    def usable(self) -> bool:
        return not self.lost and self._reusable and self._reply is None and self.transport is not None


class _Slots:
    """One origin's connections under one egress: the idle ones, how many are open (or opening)
    against ``limit``, and the requests waiting for one. A freed slot or an idle connection
    goes to the longest waiter first."""

    __slots__ = ("egress", "idle", "limit", "open", "reuse_after", "waiters")

    def __init__(self, egress: Egress | None, limit: int) -> None:
        self.egress = egress
        self.limit = limit
        self.reuse_after = 0.0  # loop time: until then the upstream closes after every answer
        self.idle: list[_Connection] = []
        self.open = 0
        self.waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()

    def hand_over(self, conn: _Connection | None) -> bool:
        """Give ``conn`` (or, with None, a free slot) to the first live waiter; False if none."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False


class UpstreamPool:
    """Keep-alive connections per channel egress and origin; one instance per Gateway.

    At most ``egress.max_connections`` connections per origin are open at once; past that a
    request waits (within its connect timeout) for one to come back. A pooled connection is
    checked before reuse (on its first reuse, and after idling ``poll_after_idle_seconds``):
    one the upstream closed meanwhile (EOF or reset not yet seen by the loop) is dropped, and a
    request whose bytes could not be written at all is sent once more on a fresh connection.
    Nothing that may have reached the upstream is ever re-sent.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        idle_seconds: float = _IDLE_SECONDS,
        poll_after_idle_seconds: float = _POLL_AFTER_IDLE_SECONDS,
        max_idle_per_origin: int = _MAX_IDLE_PER_ORIGIN,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self._ssl = ssl_context
        self._idle_seconds = idle_seconds
        self._poll_after = poll_after_idle_seconds
        self._max_idle = max_idle_per_origin
        self._max_connections = max_connections  # without an egress (tests, tools)
        self._slots: dict[tuple[object, ...], _Slots] = {}
        self._targets: dict[tuple[str, Egress | None], _Target] = {}
        self._open: set[_Connection] = set()
        self.connections_made = 0  # for tests and `apex status`-style introspection

    async def post(
        self, url: str, header_fields: bytes, body: bytes, *, connect_timeout: float, egress: Egress | None = None,
        queued: Callable[[bool], None] | None = None,
    ) -> HttpReply:
        """Send ``POST url`` with the prebuilt header lines and ``body``; return once the
        response head has arrived (the body is read from the reply).

        Raises ConnectFailed (nothing was sent), ServerDisconnected (sent, no whole answer)
        or InvalidResponse (an answer that is not HTTP/1.x)."""
        target = self._targets.get((url, egress))
        if target is None:
            target = self._target(url, egress)
        slots = self._slots.get(target.key)
        if slots is None:
            limit = egress.max_connections if egress is not None else self._max_connections
            slots = self._slots[target.key] = _Slots(egress, limit)
        elif egress is not None and slots.egress is not egress:
            self._reloaded(slots, egress)
        head = b"%sContent-Length: %d\r\n%s\r\n" % (target.prefix, len(body), header_fields)
        fresh = False
        while True:
            conn = None if fresh else self._take_idle(slots)
            if conn is None:
                told = queued if queued is not None and slots.open >= slots.limit else None
                if told is not None:
                    told(True)  # the caller's first-byte wait does not run in the queue
                conn = await self._acquire(target.origin, slots, connect_timeout)
                if told is not None:
                    told(False)
                fresh = True
            reply = conn.start(head, body)
            if reply._conn is None and not fresh:
                fresh = True  # the write failed at once: nothing reached the upstream; once more, fresh
                continue
            break
        try:
            await reply._head
        except BaseException:
            reply.close()
            raise
        if reply.status == 407 and target.forwarding:  # the proxy's answer, not the upstream's
            reply.close()
            raise ConnectFailed(_where(target.origin), "the proxy refused the request (HTTP 407)")
        return reply

    async def close(self) -> None:
        """Close every connection, idle or busy."""
        for conn in list(self._open):
            conn.close()
        for slots in self._slots.values():
            slots.idle.clear()
        self._open.clear()

    def close_idle(self, now: float) -> int:
        """Close the pooled connections idle longer than ``idle_seconds`` (loop time ``now``);
        how many. Reuse checks the age too, but a connection nobody asks for again would stay
        open for as long as the upstream lets it (called by the gateway's periodic sweep)."""
        closed = 0
        for slots in self._slots.values():
            idle = slots.idle
            if not idle:
                continue
            keep = []
            for conn in idle:
                if conn.usable and now - conn.idle_since <= self._idle_seconds:
                    keep.append(conn)
                else:
                    conn.close()
                    closed += 1
            idle[:] = keep
        return closed

    @property
    def idle_connections(self) -> int:
        return sum(1 for slots in self._slots.values() for c in slots.idle if c.usable)

    def connection_counts(self) -> dict[str, tuple[int, int]]:
        """``{channel: (active, idle)}`` for the metrics (read at scrape time)."""
        counts: dict[str, tuple[int, int]] = {}
        for slots in self._slots.values():
            if slots.egress is None:
                continue
            active, idle = counts.get(slots.egress.name, (0, 0))
            counts[slots.egress.name] = (active + slots.open - len(slots.idle), idle + len(slots.idle))
        return counts

    # --- internals ------------------------------------------------------------------

    def _target(self, url: str, egress: Egress | None) -> _Target:
        target = _Target(url, egress)
        if len(self._targets) >= 4096:  # Gemini URLs carry the model: keep the cache bounded
            self._targets.clear()
        self._targets[(url, egress)] = target
        return target

    def _take_idle(self, slots: _Slots) -> _Connection | None:
        conns = slots.idle
        if not conns:
            return None
        now = None
        while conns:
            conn = conns.pop()
            if not conn.usable:
                continue
            if slots.open > slots.limit:  # over a lowered max_connections: not reused
                conn.close()
                continue
            if now is None:
                now = conn.loop.time()
            if self._stale(conn, now):
                conn.close()
                continue
            return conn
        return None

    def _stale(self, conn: _Connection, now: float) -> bool:
        """Too old, or the upstream closed it (EOF/reset the loop has not delivered yet) or
        sent bytes nobody asked for: never write a request into it. Polled on a connection's
        first reuse (an upstream that closes after every answer shows itself there) and after
        it idled a while."""
        idle = now - conn.idle_since
        return idle > self._idle_seconds or ((conn.served < 2 or idle >= self._poll_after) and conn.readable())

    def _put_back(self, conn: _Connection) -> None:
        slots = conn.slots
        if slots.open > slots.limit:  # a reload lowered max_connections: shed down to it
            conn.close()  # its slot comes back through connection_lost
            return
        if slots.hand_over(conn):
            return
        if len(slots.idle) >= self._max_idle:
            conn.close()
            return
        slots.idle.append(conn)

    async def _acquire(self, origin: _Origin, slots: _Slots, connect_timeout: float) -> _Connection:
        """A connection of ``slots``: a new one when the budget allows, else the next one freed."""
        loop = asyncio.get_running_loop()
        if slots.open >= slots.limit:
            waiter: asyncio.Future[_Connection | None] = loop.create_future()
            slots.waiters.append(waiter)
            try:
                async with asyncio.timeout(connect_timeout):
                    handed = await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():  # handed over as we gave up: pass it on
                    late = waiter.result()
                    if late is not None:
                        self._put_back(late)
                    else:
                        self._release_slot(slots)
                else:
                    waiter.cancel()
                if isinstance(exc, TimeoutError):
                    raise PoolExhausted(
                        origin.label,
                        f"no free connection within {connect_timeout:g} s (max_connections {slots.limit} in use)",
                        timed_out=True,
                    ) from None
                raise
            if handed is not None:
                # Checked as an idle one is (it went straight from its last answer to this
                # waiter): behind max_connections, one closed after each answer failed every
                # other request.
                if handed.usable and not self._stale(handed, loop.time()):
                    return handed
                handed.close()  # its slot comes back through connection_lost
                return await self._acquire(origin, slots, connect_timeout)
            # A slot was freed for this waiter: open a connection in it (already counted).
        else:
            slots.open += 1
        try:
            return await self._connect(origin, slots, connect_timeout)
        except BaseException:
            self._release_slot(slots)
            raise

    def _reloaded(self, slots: _Slots, egress: Egress) -> None:
        """A config load made ``egress`` anew: its TLS context (the CA and certificate files as
        they are now) serves new connections, and its max_connections is the budget of the
        connections already open too (a reload used to start a second, empty budget)."""
        slots.egress = egress
        slots.limit = egress.max_connections
        while slots.open < slots.limit and slots.hand_over(None):
            slots.open += 1  # a raised budget lets waiters open connections now

    def _release_slot(self, slots: _Slots) -> None:
        if slots.open > slots.limit or not slots.hand_over(None):  # over a lowered limit: the slot goes
            slots.open -= 1

    async def _connect(self, origin: _Origin, slots: _Slots, connect_timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        context = self._context(slots) if origin.tls else None
        proxy = origin.proxy
        try:
            async with asyncio.timeout(connect_timeout):
                if proxy is None:
                    sock = await open_socket(origin.host, origin.port)
                    conn = await self._over_socket(loop, sock, origin, slots, context)
                elif proxy.socks:
                    from apex.upstream.socks import open_tunnel  # only for channels with a socks proxy (the extra)

                    sock = await open_tunnel(proxy, origin.host, origin.port)
                    conn = await self._over_socket(loop, sock, origin, slots, context)
                elif context is None:  # plain http through a forwarding proxy
                    transport = await self._to_proxy(loop, origin, proxy, slots)
                    conn = _Connection(self, slots, origin, loop)
                    transport.set_protocol(conn)
                    conn.connection_made(transport)
                else:
                    conn = await self._tunnel(loop, origin, proxy, slots, context)
        except TimeoutError:
            raise ConnectFailed(_where(origin), f"timed out after {connect_timeout:g} s", timed_out=True) from None
        except ConnectFailed:
            raise
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(_where(origin), connect_reason(exc)) from exc
        self.connections_made += 1
        self._open.add(conn)
        return conn

    async def _tunnel(
        self, loop: asyncio.AbstractEventLoop, origin: _Origin, proxy: Proxy, slots: _Slots, context: ssl.SSLContext
    ) -> _Connection:
        """CONNECT through ``proxy``, then TLS to the upstream inside the tunnel (TLS inside TLS
        for an https:// proxy)."""
        transport = await self._to_proxy(loop, origin, proxy, slots)
        tunnel = _Tunnel(loop)
        transport.set_protocol(tunnel)
        try:
            authority = origin.label
            auth = f"Proxy-Authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
            transport.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{auth}\r\n".encode("latin-1"))
            try:
                status = await tunnel.answer
            except InvalidResponse as exc:  # nothing was sent upstream yet: the proxy failed us
                raise ConnectFailed(_where(origin), str(exc)) from None
            if not 200 <= status < 300:
                raise ConnectFailed(_where(origin), f"the proxy refused the tunnel (HTTP {status})")
        except BaseException:
            transport.close()
            raise
        return await self._tls_inside(loop, transport, origin, slots, context)

    def _context(self, slots: _Slots) -> ssl.SSLContext:
        """The channel's TLS context (its ``tls`` options), else the default one (system store)."""
        egress_ssl = slots.egress.ssl if slots.egress is not None else None
        if egress_ssl is not None:
            return egress_ssl
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def _to_proxy(
        self, loop: asyncio.AbstractEventLoop, origin: _Origin, proxy: Proxy, slots: _Slots
    ) -> asyncio.Transport:
        """A connection to an HTTP proxy, its protocol still to be set by the caller (nothing
        arrives before the first request or CONNECT): TCP, then TLS for an https:// proxy, its
        certificate checked like the upstream's (the channel's ``tls`` options, else the
        system store)."""
        raw, protocol = await hand_over(loop, asyncio.Protocol, await open_socket(proxy.host, proxy.port))
        if not proxy.tls:
            return cast(asyncio.Transport, raw)  # uvloop's is no asyncio.Transport subclass
        try:
            tls = await loop.start_tls(raw, protocol, self._context(slots), server_hostname=proxy.host)  # type: ignore[arg-type]
        except ssl.SSLError as exc:
            raw.close()
            raise ConnectFailed(_where(origin), f"TLS to the proxy failed: {connect_reason(exc)}") from exc
        except BaseException:
            raw.close()
            raise
        if tls is None:  # only when the connection closed meanwhile
            raise ConnectFailed(_where(origin), "the proxy closed the connection during the TLS handshake")
        return tls

    async def _tls_inside(
        self, loop: asyncio.AbstractEventLoop, transport: asyncio.BaseTransport, origin: _Origin, slots: _Slots,
        context: ssl.SSLContext,
    ) -> _Connection:
        """TLS to the upstream inside a proxy's tunnel; the tunnel is closed if that fails."""
        try:
            conn = _Connection(self, slots, origin, loop)
            tls_transport = await loop.start_tls(transport, conn, context, server_hostname=origin.host)  # type: ignore[arg-type]
            if tls_transport is None:  # only when the transport closed meanwhile
                raise ConnectFailed(_where(origin), "the proxy closed the tunnel")
        except BaseException:
            transport.close()
            raise
        conn.connection_made(tls_transport)
        return conn

    async def _over_socket(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, origin: _Origin, slots: _Slots,
        context: ssl.SSLContext | None,
    ) -> _Connection:
        """Hand a connected socket (direct, to a forwarding proxy, or a SOCKS tunnel) to the
        loop, then TLS to the upstream inside it for https."""
        factory = (lambda: _Connection(self, slots, origin, loop)) if context is None else asyncio.Protocol
        transport, protocol = await hand_over(loop, factory, sock)
        if context is None:
            return cast(_Connection, protocol)
        # TLS by start_tls, not create_connection(ssl=...): a failed handshake then closes a
        # transport we own instead of a socket uvloop may already have closed.
        return await self._tls_inside(loop, transport, origin, slots, context)

    def _forget(self, conn: _Connection) -> None:
        if conn in self._open:
            self._open.discard(conn)
            self._release_slot(conn.slots)
        idle = conn.slots.idle
        if conn in idle:
            idle.remove(conn)


def _where(origin: _Origin) -> str:
    return origin.label if origin.proxy is None else f"{origin.label} via proxy {origin.proxy.label}"


_HEAD_END: Final = re.compile(rb"\r?\n\r?\n")


class _Tunnel(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT: its status line and headers (a refusal's page is ignored)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.answer: asyncio.Future[int] = loop.create_future()
        self._buf = b""

    def data_received(self, data: bytes) -> None:
        if self.answer.done():
            return
        self._buf += data
        # The head ends at a blank line; its lines may end in a bare LF (RFC 9112 2.2 lets a
        # recipient accept that, curl does, and some proxies send it).
        match = _HEAD_END.search(self._buf)
        if match is None:
            if len(self._buf) > _MAX_HEAD:
                self.answer.set_exception(InvalidResponse("the proxy's answer to CONNECT is too long"))
            return
        head_end = match.end()
        line = self._buf.split(b"\n", 1)[0].rstrip(b"\r").split(b" ")
        if len(line) < 2 or not line[0].startswith(b"HTTP/1.") or not line[1].isdigit():
            self.answer.set_exception(InvalidResponse("the proxy's answer to CONNECT is not HTTP"))
            return
        status = int(line[1])
        # A refusal (407, 403, 502...) may carry a page after its head: the status is the
        # answer and the connection is closed. A 2xx switches to tunnel mode (RFC 9110 9.3.6),
        # and TLS has not started yet, so bytes past its head are not ours.
        if 200 <= status < 300 and head_end != len(self._buf):
            self.answer.set_exception(InvalidResponse("the proxy sent bytes after its answer to CONNECT"))
            return
        self.answer.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(ConnectionResetError("the proxy closed the connection during CONNECT"))
