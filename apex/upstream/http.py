"""A lean HTTP/1.1 client for upstream requests: a keep-alive pool and one write per request.

Why not aiohttp's ClientSession: profiled under load it was ~40 % of Apex's CPU per
request (ClientRequest, URL and CIMultiDict construction, trace hooks, connector and timer
bookkeeping) for features a proxy never uses (cookies, redirects, auth, proxies, multipart).
This client does only what Apex needs: POST a head built from prebuilt header bytes plus
the body on a pooled connection, parse the status line and headers, and hand the body
back as it arrives (Content-Length, chunked, or until close), with flow control and
gzip/deflate decoding. Request deadlines are the caller's (``asyncio.timeout``); only
connecting has one here.

Errors raised besides ``OSError`` (refused, reset, TLS) and ``TimeoutError`` (connect)::

    HttpClientError
     ├── ServerDisconnected   the connection closed before the response was complete
     └── InvalidResponse      the bytes are not an HTTP/1.x response Apex can read

Nothing is retried here: a POST is never sent twice behind the caller's back. A pooled
connection the server closed while idle is noticed when its EOF arrives (the loop reports
it) and is not reused; one closed in the instant Apex reuses it fails that attempt, and
the pipeline's failover decides what happens next.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import ssl
import zlib
from collections.abc import Mapping
from typing import Final, cast
from urllib.parse import urlsplit

__all__ = [
    "HttpClientError",
    "HttpReply",
    "InvalidResponse",
    "ReplyHeaders",
    "ServerDisconnected",
    "UpstreamPool",
    "encode_header_fields",
]

_MAX_HEAD: Final = 64 * 1024
_MAX_CHUNK_LINE: Final = 4 * 1024
_HIGH_WATER: Final = 256 * 1024  # buffered body bytes that pause reading from the upstream
_IDLE_SECONDS: Final = 30.0       # a pooled connection idle longer than this is closed, not reused
_MAX_IDLE_PER_ORIGIN: Final = 256


class HttpClientError(Exception):
    """The upstream's HTTP exchange failed (beyond a plain socket error)."""


class ServerDisconnected(HttpClientError):
    """The connection closed before the response was complete."""


class InvalidResponse(HttpClientError):
    """The upstream's bytes are not an HTTP/1.x response."""


def encode_header_fields(headers: Mapping[str, str]) -> bytes:
    """``Name: value\\r\\n`` lines; ValueError when a name or value could split the head."""
    out = []
    for name, value in headers.items():
        if not name or any(c in name for c in " \t\r\n:") or "\r" in value or "\n" in value:
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
    __slots__ = ("host", "key", "port", "tls")

    def __init__(self, host: str, port: int, tls: bool) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.key = (host, port, tls)


class _Target:
    """A URL split once: where to connect and the first head lines to send."""

    __slots__ = ("origin", "prefix")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        host = parts.hostname
        self.origin = _Origin(host, port, tls)
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        shown = f"[{host}]" if ":" in host else host
        if port != (443 if tls else 80):
            shown = f"{shown}:{port}"
        self.prefix = f"POST {path} HTTP/1.1\r\nHost: {shown}\r\n".encode("latin-1")


# Body framing of the response being read.
_HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE, _DONE = range(5)


class _ChunkedDecoder:
    """Incremental ``Transfer-Encoding: chunked`` decoder; ``feed`` returns payload pieces."""

    __slots__ = ("_buf", "_left", "_state", "done")

    _SIZE, _DATA, _DATA_END, _TRAILER = range(4)

    def __init__(self) -> None:
        self._state = self._SIZE
        self._buf = b""
        self._left = 0
        self.done = False

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        if self._buf:
            data = self._buf + data
            self._buf = b""
        pos = 0
        end = len(data)
        while pos < end and not self.done:
            state = self._state
            if state == self._DATA:
                take = min(self._left, end - pos)
                out.append(data[pos : pos + take])
                pos += take
                self._left -= take
                if self._left == 0:
                    self._state = self._DATA_END
            elif state == self._DATA_END:
                if end - pos < 2:
                    self._buf = data[pos:]
                    return out
                if data[pos : pos + 2] != b"\r\n":
                    raise InvalidResponse("chunked body: missing CRLF after chunk data")
                pos += 2
                self._state = self._SIZE
            else:
                nl = data.find(b"\r\n", pos)
                if nl < 0:
                    if end - pos > _MAX_CHUNK_LINE:
                        raise InvalidResponse("chunked body: chunk size line too long")
                    self._buf = data[pos:]
                    return out
                line = data[pos:nl]
                pos = nl + 2
                if state == self._TRAILER:
                    if not line:
                        self.done = True
                    continue
                size_text = line.split(b";", 1)[0].strip()
                # Hex digits only: int(x, 16) would also take "0x1f", "+1f" and "1_f".
                if not size_text or len(size_text) > 16 or size_text.strip(b"0123456789abcdefABCDEF"):
                    raise InvalidResponse(f"chunked body: bad chunk size {size_text[:20]!r}")
                size = int(size_text, 16)
                if size == 0:
                    self._state = self._TRAILER
                else:
                    self._left = size
                    self._state = self._DATA
        if pos < end and self.done:
            self._buf = data[pos:]  # bytes after the last chunk: the caller treats them as garbage
        return out

    def leftover(self) -> bytes:
        return self._buf if self.done else b""


class HttpReply:
    """One upstream response: status and headers at once, the body as it arrives.

    Satisfies the pipeline's ``UpstreamReply`` seam (the subset of aiohttp's
    ClientResponse Apex uses); ``content`` is the reply itself (``readany``).
    """

    __slots__ = (
        "_conn",
        "_decoder",
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
        if self._decoder is not None:
            try:
                data = self._decoder.decompress(data)
            except zlib.error as exc:
                # A corrupt body is the upstream's bytes, not the transport: as InvalidResponse it
                # fails the reply cleanly in data_received (uncaught, the loop logged a fatal
                # transport error and the reply saw ServerDisconnected).
                raise InvalidResponse(f"body does not match its content-encoding: {exc}") from None
            if not data:
                return
        self._parts.append(data)
        self._size += len(data)
        if self._size >= _HIGH_WATER and self._conn is not None:
            self._conn.pause()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _finish(self) -> None:
        decoder = self._decoder
        if decoder is not None:
            tail = decoder.flush()
            if tail:
                self._parts.append(tail)
            if not decoder.eof:  # the HTTP framing ended, the compressed stream did not
                self._fail(InvalidResponse("the compressed body ended before its end marker"))
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
    """One upstream connection: parses the response to the request it carries."""

    __slots__ = (
        "_buf",
        "_chunked",
        "_left",
        "_paused",
        "_pool",
        "_reply",
        "_reusable",
        "_state",
        "idle_since",
        "lost",
        "loop",
        "origin",
        "transport",
    )

    def __init__(self, pool: UpstreamPool, origin: _Origin, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self.origin = origin
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self._reply: HttpReply | None = None
        self._state = _DONE
        self._buf = b""
        self._left = 0
        self._chunked: _ChunkedDecoder | None = None
        self._reusable = True
        self._paused = False
        self.lost = False
        self.idle_since = 0.0

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # not TCP (tests may use other transports)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.transport = None
        self._pool._forget(self)
        reply = self._reply
        if reply is None:
            return
        self._reply = None
        if self._state == _UNTIL_CLOSE and exc is None:  # a clean close ends such a body; a reset does not
            reply._finish()
            return
        if self._state == _HEAD:
            reason = "the upstream closed the connection before answering"
        else:
            reason = "the upstream closed the connection before the response body was complete"
        error = ServerDisconnected(reason if exc is None else f"{reason}: {exc}")
        reply._fail(error)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost settles the reply

    def data_received(self, data: bytes) -> None:
        reply = self._reply
        if reply is None:  # bytes nobody asked for: this connection cannot be trusted again
            self._reusable = False
            if self.transport is not None:
                self.transport.close()
            return
        try:
            if self._state == _HEAD:
                self._read_head(reply, data)
            else:
                self._read_body(reply, data)
        except InvalidResponse as exc:
            self._reply = None
            self._reusable = False
            reply._fail(exc)
            if self.transport is not None:
                self.transport.close()

    # --- parsing --------------------------------------------------------------------

    def _read_head(self, reply: HttpReply, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    raise InvalidResponse("response head is larger than 64 KiB")
                self._buf = buf
                return
            if end > _MAX_HEAD:  # a whole oversized head can arrive in one read, terminator included
                raise InvalidResponse("response head is larger than 64 KiB")
            head = buf[:end]
            buf = buf[end + 4 :]
            status = self._parse_head(reply, head)
            if 100 <= status < 200:  # 100 Continue and friends: the real answer follows
                reply.headers = ReplyHeaders()
                continue
            break
        self._buf = b""
        reply._head.set_result(None)
        if self._state == _DONE:
            self._complete(reply, extra=bool(buf))
        elif buf:
            self._read_body(reply, buf)

    def _parse_head(self, reply: HttpReply, head: bytes) -> int:
        lines = head.decode("latin-1").split("\r\n")
        status_line = lines[0]
        version, _, rest = status_line.partition(" ")
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            raise InvalidResponse(f"not an HTTP/1.x status line: {status_line[:40]!r}")
        code = rest[:3]
        # ASCII only: latin-1 "\xb2" decodes to "²", which isdigit() accepts and int() refuses.
        # Exactly three digits, then a space or the end: "HTTP/1.1 2000" is not a 200.
        if len(code) != 3 or not (code.isascii() and code.isdigit()) or rest[3:4] not in ("", " "):
            raise InvalidResponse(f"bad status code in {status_line[:40]!r}")
        status = int(code)
        headers = reply.headers
        get = dict.get  # ReplyHeaders' own get lower-cases again; keys here already are
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name[0] in " \t" or name[-1] in " \t":
                raise InvalidResponse(f"malformed header line {line[:40]!r}")
            key = name.lower()
            value = value.strip()
            previous = get(headers, key)
            headers[key] = value if previous is None else f"{previous}, {value}"
        reply.status = status
        if status < 200:
            return status
        connection = get(headers, "connection", "").lower()
        self._reusable = (
            "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        )
        encoding = get(headers, "content-encoding", "").lower()
        if encoding in ("gzip", "x-gzip"):
            reply._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            reply._decoder = zlib.decompressobj()
        elif encoding not in ("", "identity"):
            raise InvalidResponse(f"unsupported content-encoding {encoding!r}")
        if status in (204, 304):
            self._state = _DONE
        elif "chunked" in get(headers, "transfer-encoding", "").lower():
            self._state = _CHUNKED
            self._chunked = _ChunkedDecoder()
            if "content-length" in headers:  # both framings: RFC 9112 6.1 says close afterwards
                self._reusable = False
        elif (declared := get(headers, "content-length")) is not None:
            if not (declared.isascii() and declared.isdigit()):  # int() would take "+5", "5_0"
                raise InvalidResponse(f"bad content-length {declared[:20]!r}")
            length = int(declared)
            self._left = length
            self._state = _LENGTH if length else _DONE
        else:
            self._state = _UNTIL_CLOSE
            self._reusable = False
        return status

    def _read_body(self, reply: HttpReply, data: bytes) -> None:
        state = self._state
        if state == _LENGTH:
            left = self._left
            if len(data) >= left:
                extra = len(data) > left
                reply._feed(data[:left] if extra else data)
                self._left = 0
                self._complete(reply, extra=extra)
                return
            self._left = left - len(data)
            reply._feed(data)
        elif state == _CHUNKED:
            decoder = self._chunked
            assert decoder is not None
            for piece in decoder.feed(data):
                reply._feed(piece)
            if decoder.done:
                self._complete(reply, extra=bool(decoder.leftover()))
        elif state == _UNTIL_CLOSE:
            reply._feed(data)

    def _complete(self, reply: HttpReply, *, extra: bool) -> None:
        """The body is whole: settle the reply and hand the connection back (or close it)."""
        self._state = _DONE
        self._reply = None
        self._chunked = None
        if extra:  # bytes past the end of the response: the framing cannot be trusted
            self._reusable = False
        owner_gone = reply._conn is None  # released/closed before the body ended
        reply._finish()
        if self._paused:
            self.resume()
        if self._reusable and not owner_gone and not self.lost:
            self.idle_since = self.loop.time()
            self._pool._put_back(self)
        else:
            self.close()

    # --- used by the pool and the reply -------------------------------------------

    def start(self, head: bytes, body: bytes) -> HttpReply:
        reply = HttpReply(self)
        self._reply = reply
        self._state = _HEAD
        self._buf = b""
        assert self.transport is not None
        if len(body) < 64 * 1024:
            self.transport.write(head + body)
        else:
            self.transport.writelines((head, body))
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

    @property
    def usable(self) -> bool:
        return not self.lost and self._reusable and self._reply is None and self.transport is not None


class UpstreamPool:
    """Keep-alive connections per origin (scheme, host, port); one instance per Gateway."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        idle_seconds: float = _IDLE_SECONDS,
        max_idle_per_origin: int = _MAX_IDLE_PER_ORIGIN,
    ) -> None:
        self._ssl = ssl_context
        self._idle_seconds = idle_seconds
        self._max_idle = max_idle_per_origin
        self._idle: dict[tuple[str, int, bool], list[_Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._open: set[_Connection] = set()
        self.connections_made = 0  # for tests and `apex status`-style introspection

    async def post(self, url: str, header_fields: bytes, body: bytes, *, connect_timeout: float) -> HttpReply:
        """Send ``POST url`` with the prebuilt header lines and ``body``; return once the
        response head has arrived (the body is read from the reply)."""
        target = self._targets.get(url)
        if target is None:
            target = self._target(url)
        head = b"%sContent-Length: %d\r\n%s\r\n" % (target.prefix, len(body), header_fields)
        conn = self._take_idle(target.origin)
        if conn is None:
            conn = await self._connect(target.origin, connect_timeout)
        reply = conn.start(head, body)
        try:
            await reply._head
        except BaseException:
            reply.close()
            raise
        return reply

    async def close(self) -> None:
        """Close every connection, idle or busy."""
        for conn in list(self._open):
            conn.close()
        self._idle.clear()
        self._open.clear()

    @property
    def idle_connections(self) -> int:
        return sum(1 for conns in self._idle.values() for c in conns if c.usable)

    # --- internals ------------------------------------------------------------------

    def _target(self, url: str) -> _Target:
        target = _Target(url)
        if len(self._targets) >= 4096:  # Gemini URLs carry the model: keep the cache bounded
            self._targets.clear()
        self._targets[url] = target
        return target

    def _take_idle(self, origin: _Origin) -> _Connection | None:
        conns = self._idle.get(origin.key)
        if not conns:
            return None
        now = None
        while conns:
            conn = conns.pop()
            if not conn.usable:
                continue
            if now is None:
                now = conn.loop.time()
            if now - conn.idle_since > self._idle_seconds:
                conn.close()
                continue
            return conn
        return None

    def _put_back(self, conn: _Connection) -> None:
        conns = self._idle.setdefault(conn.origin.key, [])
        if len(conns) >= self._max_idle:
            conn.close()
            return
        conns.append(conn)

    async def _connect(self, origin: _Origin, connect_timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        if origin.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        async with asyncio.timeout(connect_timeout):
            _, conn = await loop.create_connection(
                lambda: _Connection(self, origin, loop),
                origin.host,
                origin.port,
                ssl=context,
                server_hostname=origin.host if context is not None else None,
            )
        self.connections_made += 1
        self._open.add(conn)
        return conn

    def _forget(self, conn: _Connection) -> None:
        self._open.discard(conn)

