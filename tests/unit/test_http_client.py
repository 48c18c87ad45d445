"""Tests for apex.upstream.http: the lean HTTP/1.1 upstream client, against real loopback sockets.

Most tests script a raw asyncio TCP server byte for byte (framing, splits, closes, resets,
delays), so each failure mode the client must survive can be produced on demand; a few use an
aiohttp server as a well-behaved peer. Every await is bounded by ``within`` and every server
and pool is closed by its fixture.
"""

from __future__ import annotations

import asyncio
import gzip
import random
import shutil
import socket
import ssl
import struct
import zlib
from pathlib import Path
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

try:
    import trustme
except ImportError:  # optional: only the TLS tests need it
    trustme = None  # type: ignore[assignment]  # the TLS tests skip on None

from apex.upstream.http import (
    _HIGH_WATER,
    ConnectFailed,
    HttpReply,
    InvalidResponse,
    ReplyHeaders,
    ServerDisconnected,
    UpstreamPool,
    _Connection,
    _Slots,
    _Target,
    encode_header_fields,
)
from tests.chunking import split_at
import contextlib

T = TypeVar("T")

LIMIT: Final = 5.0  # seconds any single await in these tests may take

# --- helpers: bounded awaits, response and chunked encoders, splitting --------------------


async def within(aw: Awaitable[T], seconds: float = LIMIT) -> T:
    """``await aw``, failing the test instead of hanging when it takes too long."""
    async with asyncio.timeout(seconds):
        return await aw


def response(
    body: bytes = b"ok",
    *,
    status: bytes = b"200 OK",
    headers: Sequence[bytes] = (),
    version: bytes = b"HTTP/1.1",
    length: bool = True,
) -> bytes:
    """A whole response: status line, ``headers``, Content-Length (unless ``length`` is False), body."""
    lines = [version + b" " + status, *headers]
    if length:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def chunk_encode(
    pieces: Iterable[bytes],
    *,
    upper: bool = False,
    extension: bytes = b"",
    trailers: Sequence[bytes] = (),
) -> bytes:
    """``pieces`` as a chunked body (empty pieces are skipped: a zero size ends the body)."""
    out = []
    for piece in pieces:
        if piece:
            size = b"%X" % len(piece) if upper else b"%x" % len(piece)
            out.append(size + extension + b"\r\n" + piece + b"\r\n")
    out.append(b"0" + extension + b"\r\n" + b"".join(t + b"\r\n" for t in trailers) + b"\r\n")
    return b"".join(out)


CHUNKED_HEAD: Final = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


class _FakeTransport:
    """Just enough of a transport for a connection fed by hand (no socket)."""

    def __init__(self) -> None:
        self.closed = False

    def write(self, data: bytes) -> None: ...

    def writelines(self, data: Iterable[bytes]) -> None: ...

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


@dataclass
class Decoded:
    done: bool   # the body ended
    extra: bool  # bytes followed its end (the connection was closed, not pooled)


def decode_all(pieces: Iterable[bytes]) -> tuple[bytes, Decoded]:
    """Feed a chunked head then ``pieces`` to one connection, as the loop would, with no socket;
    the payload and how it ended. Raises the reply's error (InvalidResponse) if it failed."""
    loop = asyncio.new_event_loop()
    try:
        pool = UpstreamPool()
        conn = _Connection(pool, _Slots(None, 1), _Target("http://127.0.0.1:9/").origin, loop)
        transport = _FakeTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        reply = conn.start(b"", b"")
        conn.data_received(CHUNKED_HEAD)
        for piece in pieces:
            if piece:  # the loop never delivers an empty read
                conn.data_received(piece)
        if reply._error is not None:
            raise reply._error
        return b"".join(reply._parts), Decoded(done=reply._eof, extra=transport.closed)
    finally:
        loop.close()


# --- a scriptable raw TCP server -----------------------------------------------------------


@dataclass
class Request:
    """One request as the server read it: the head (without the blank line) and the body."""

    head: bytes
    body: bytes


class Peer:
    """The server's side of one accepted connection, driven by a test's script."""

    def __init__(self, server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.index = index  # 0 for the first connection the server accepted

    async def request(self) -> Request | None:
        """The next request on this connection, or None once the client has closed it."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.server.client_closes += 1
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length)
        request = Request(head[:-4], body)
        self.server.requests.append((self.index, request))
        return request

    async def send(self, *pieces: bytes, gap: float | None = None) -> None:
        """Write ``pieces`` one by one; with ``gap``, sleep between them so each is read on its own."""
        for i, piece in enumerate(pieces):
            if gap is not None and i:
                await asyncio.sleep(gap)
            self.writer.write(piece)
            await self.writer.drain()

    async def wait_client_close(self) -> None:
        """Return once the client has closed its side (any bytes it still sends are discarded)."""
        try:
            while await self.reader.read(65536):
                pass
        except ConnectionError:
            pass
        self.server.client_closes += 1

    def reset(self) -> None:
        """Close with an RST instead of a FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Script = Callable[[Peer], Awaitable[None]]


class RawServer:
    """asyncio TCP server on 127.0.0.1:0 running ``script`` per connection; the connection is
    closed when the script returns. Counts connections and records requests and script errors."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.accepted = 0
        self.client_closes = 0
        self.requests: list[tuple[int, Request]] = []
        self.errors: list[BaseException] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]

    def url(self, path: str = "/v1/echo", *, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        index = self.accepted
        self.accepted += 1
        try:
            await self.script(Peer(self, reader, writer, index))
        except asyncio.CancelledError:
            pass  # only stop() cancels; re-raised, Python 3.11's start_server callback logs it as an error
        except Exception as exc:  # a broken script must fail the test, at teardown
            self.errors.append(exc)
        finally:
            writer.close()
            self._tasks.discard(task)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await within(asyncio.gather(*self._tasks, return_exceptions=True))
        await within(self._server.wait_closed())


StartServer = Callable[..., Awaitable[RawServer]]


@pytest.fixture
async def pool() -> AsyncIterator[UpstreamPool]:
    """A fresh UpstreamPool, closed after the test."""
    upstream = UpstreamPool()
    yield upstream
    await upstream.close()
    await asyncio.sleep(0)  # let the closed transports call connection_lost inside this loop


@pytest.fixture
async def serve() -> AsyncIterator[StartServer]:
    """Factory: ``await serve(script, ssl_context=None)`` starts a RawServer; all are stopped after
    the test, which then fails if any script raised."""
    servers: list[RawServer] = []

    async def start(script: Script, *, ssl_context: ssl.SSLContext | None = None) -> RawServer:
        server = RawServer(script)
        await server.start(ssl_context)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()
    for server in servers:
        assert not server.errors, server.errors


def answer_each(reply_bytes: bytes) -> Script:
    """Script: answer every request on the connection with ``reply_bytes``."""

    async def script(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(reply_bytes)

    return script


def answer_once(*pieces: bytes, gap: float | None = None) -> Script:
    """Script: answer the first request with ``pieces`` (``gap`` seconds apart), then wait for the
    client to close."""

    async def script(peer: Peer) -> None:
        if await peer.request() is None:
            return
        await peer.send(*pieces, gap=gap)
        await peer.wait_client_close()

    return script


async def post(pool: UpstreamPool, url: str, body: bytes = b"{}", fields: bytes = b"") -> HttpReply:
    """``pool.post`` with a bounded wait."""
    return await within(pool.post(url, fields, body, connect_timeout=LIMIT))


async def fetch(pool: UpstreamPool, url: str, body: bytes = b"{}") -> bytes:
    """POST and read the whole body, releasing the reply."""
    reply = await post(pool, url, body)
    try:
        return await within(reply.read())
    finally:
        reply.release()


async def until(condition: Callable[[], bool]) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    async with asyncio.timeout(LIMIT):
        while not condition():  # noqa: ASYNC110 -- polls transport state no event signals
            await asyncio.sleep(0.001)


async def settle() -> None:
    """Let pending transport callbacks (closes, connection_lost) run."""
    for _ in range(5):
        await asyncio.sleep(0)


# --- Content-Length bodies and keep-alive ------------------------------------------------


async def test_content_length_body_in_one_packet_and_connection_reused(pool: UpstreamPool, serve: StartServer) -> None:
    """A Content-Length body is read exactly and the keep-alive connection carries the next request."""
    server = await serve(answer_each(response(b'{"id": 1}', headers=[b"Content-Type: application/json"])))
    first = await post(pool, server.url())
    assert first.status == 200
    assert first.content_type == "application/json"
    assert await within(first.read()) == b'{"id": 1}'
    first.release()
    assert pool.idle_connections == 1
    assert await fetch(pool, server.url()) == b'{"id": 1}'
    assert server.accepted == 1
    assert pool.connections_made == 1
    assert len(server.requests) == 2


@pytest.mark.parametrize("size", [1, 7, 100])
async def test_content_length_body_split_across_writes(pool: UpstreamPool, serve: StartServer, size: int) -> None:
    """A response written in pieces of ``size`` bytes (1 = byte by byte, head included) reads the same."""
    body = bytes(range(256)) * 2
    whole = response(body, headers=[b"X-Thing: 1"])
    pieces = [whole[i : i + size] for i in range(0, len(whole), size)]

    async def script(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(*pieces, gap=0.0005)

    server = await serve(script)
    for _ in range(2):
        reply = await post(pool, server.url())
        assert reply.headers["x-thing"] == "1"
        assert await within(reply.read()) == body
        reply.release()
    assert server.accepted == 1
    assert pool.connections_made == 1


async def test_readany_streams_pieces_then_empty_at_end(pool: UpstreamPool, serve: StartServer) -> None:
    """readany hands over bytes as they arrive and returns b"" once the body is complete."""
    release = asyncio.Event()

    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc")
        await release.wait()
        await peer.send(b"def")
        await peer.wait_client_close()

    server = await serve(script)
    reply = await post(pool, server.url())
    assert await within(reply.content.readany()) == b"abc"
    release.set()
    assert await within(reply.readany()) == b"def"
    assert await within(reply.readany()) == b""
    assert await within(reply.readany()) == b""
    reply.release()


async def test_zero_content_length_is_complete_at_once(pool: UpstreamPool, serve: StartServer) -> None:
    """Content-Length: 0 completes the reply with the head and keeps the connection."""
    server = await serve(answer_each(response(b"")))
    assert await fetch(pool, server.url()) == b""
    assert await fetch(pool, server.url()) == b""
    assert server.accepted == 1


async def test_bytes_past_content_length_close_the_connection(pool: UpstreamPool, serve: StartServer) -> None:
    """Extra bytes after the declared body are not handed over and the connection is not reused."""
    server = await serve(answer_each(response(b"hello", length=False, headers=[b"Content-Length: 2"])))
    assert await fetch(pool, server.url()) == b"he"
    assert pool.idle_connections == 0
    assert await fetch(pool, server.url()) == b"he"
    assert server.accepted == 2
    assert pool.connections_made == 2


async def test_unsolicited_bytes_on_idle_connection_close_it(pool: UpstreamPool, serve: StartServer) -> None:
    """Bytes arriving on a pooled connection nobody asked for make the pool drop it."""

    async def script(peer: Peer) -> None:
        if await peer.request() is None:
            return
        await peer.send(response(b"one"))
        await asyncio.sleep(0.02)
        await peer.send(b"HTTP/1.1 200 OK\r\n")  # a stray response start, e.g. a late duplicate
        await peer.wait_client_close()

    server = await serve(script)
    assert await fetch(pool, server.url()) == b"one"
    await until(lambda: server.client_closes == 1)
    assert pool.idle_connections == 0
    assert await fetch(pool, server.url()) == b"one"
    assert server.accepted == 2


async def test_large_request_body_arrives_intact(pool: UpstreamPool, serve: StartServer) -> None:
    """A request body over 64 KiB (written as head + body) reaches the server byte for byte."""
    body = random.Random(1).randbytes(300_000)
    server = await serve(answer_each(response(b"ok")))
    assert await fetch(pool, server.url(), body) == b"ok"
    assert server.requests[0][1].body == body


# --- chunked bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("upper", "extension", "trailers"),
    [
        (False, b"", ()),
        (True, b"", ()),
        (False, b";name=value", ()),
        (True, b';a=1;b="two"', ()),
        (False, b"", (b"X-Checksum: abc", b"X-Other: 1")),
        (True, b";x", (b"Expires: never",)),
    ],
    ids=["lower", "upper", "extension", "extensions-upper", "trailers", "extension-trailer-upper"],
)
async def test_chunked_body_variants(
    pool: UpstreamPool, serve: StartServer, upper: bool, extension: bytes, trailers: Sequence[bytes]
) -> None:
    """Chunk extensions, trailers and either hex case decode to the payload; the connection is reused."""
    pieces = [b"a" * 10, b"b" * 255, b"c", b"d" * 4096]
    server = await serve(answer_each(CHUNKED_HEAD + chunk_encode(pieces, upper=upper, extension=extension, trailers=trailers)))
    for _ in range(2):
        assert await fetch(pool, server.url()) == b"".join(pieces)
    assert server.accepted == 1


def test_chunked_hex_sizes() -> None:
    """Chunk sizes are hex in either case, with or without leading zeros."""
    payload, decoded = decode_all([b"A\r\n0123456789\r\n00b\r\nabcdefghijk\r\n1f\r\n" + b"z" * 31 + b"\r\n0\r\n\r\n"])
    assert payload == b"0123456789abcdefghijk" + b"z" * 31
    assert decoded == Decoded(done=True, extra=False)


def test_chunked_bytes_after_the_end_are_not_decoded() -> None:
    """Bytes after the terminating chunk are not payload, and the connection is not reused."""
    payload, decoded = decode_all([b"3\r\nabc\r\n0\r\n\r\nHTTP/1.1", b" 200"])
    assert payload == b"abc"
    assert decoded == Decoded(done=True, extra=True)


@pytest.mark.parametrize(
    "encoded",
    [
        b"zz\r\nabc\r\n0\r\n\r\n",
        b"\r\nabc\r\n",
        b"-3\r\nabc\r\n0\r\n\r\n",
        b"3 4\r\nabc\r\n",
        b"0x3\r\nabc\r\n0\r\n\r\n",
        b"+3\r\nabc\r\n0\r\n\r\n",
        b"0_3\r\nabc\r\n0\r\n\r\n",
    ],
    ids=["not-hex", "empty", "negative", "two-numbers", "0x-prefix", "plus-sign", "underscore"],
)
def test_chunked_rejects_bad_size(encoded: bytes) -> None:
    """A chunk size that is not a non-negative hex number raises InvalidResponse."""
    with pytest.raises(InvalidResponse):
        decode_all([encoded])


def test_chunked_rejects_missing_crlf_after_data() -> None:
    """Chunk data not followed by CRLF raises InvalidResponse, even when split before the CRLF."""
    with pytest.raises(InvalidResponse):
        decode_all([b"3\r\nabcX\r\n0\r\n\r\n"])
    with pytest.raises(InvalidResponse):
        decode_all([b"3\r\nabc", b"\r", b"X0\r\n\r\n"])


def test_chunked_rejects_endless_size_line() -> None:
    """A chunk size line that never ends raises instead of buffering forever."""
    with pytest.raises(InvalidResponse, match="chunk size|Chunk size"):
        decode_all([b"1" * 1024] * 10)


chunk_lists = st.lists(st.binary(min_size=1, max_size=300), max_size=12)
chunk_styles = st.tuples(
    st.booleans(),
    st.sampled_from([b"", b";a=b", b";ext", b';q="x;y"']),
    st.lists(st.sampled_from([b"X-T: 1", b"Trailer-Two: some value"]), max_size=2),
)


@given(chunks=chunk_lists, style=chunk_styles, cuts=st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=30))
def test_chunked_any_split_gives_same_payload(
    chunks: list[bytes], style: tuple[bool, bytes, list[bytes]], cuts: list[int]
) -> None:
    """Property: however the encoded bytes are split, the same payload comes out and the body ends."""
    upper, extension, trailers = style
    encoded = chunk_encode(chunks, upper=upper, extension=extension, trailers=trailers)
    payload, decoded = decode_all(split_at(encoded, cuts))
    assert payload == b"".join(chunks)
    assert decoded == Decoded(done=True, extra=False)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=chunk_lists, style=chunk_styles, cuts=st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=12))
async def test_chunked_any_split_end_to_end(
    pool: UpstreamPool, chunks: list[bytes], style: tuple[bool, bytes, list[bytes]], cuts: list[int]
) -> None:
    """Property: a chunked response written in arbitrary pieces reads back as the same payload
    through the pool, and leaves its connection reusable."""
    upper, extension, trailers = style
    pieces = split_at(CHUNKED_HEAD + chunk_encode(chunks, upper=upper, extension=extension, trailers=trailers), cuts)

    async def script(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(*pieces, gap=0)

    server = RawServer(script)
    await server.start()
    try:
        assert await fetch(pool, server.url()) == b"".join(chunks)
        assert await fetch(pool, server.url()) == b"".join(chunks)
        assert server.accepted == 1
    finally:
        await pool.close()
        await server.stop()
    assert not server.errors


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"5\r\nhello\r\nxyz\r\n", "chunk size"), (b"5\r\nhelloXX3\r\nabc\r\n0\r\n\r\n", "chunk data")],
    ids=["bad-size", "missing-crlf"],
)
@pytest.mark.parametrize("separate", [False, True], ids=["with-head", "after-head"])
async def test_bad_chunked_body_raises_from_read(
    pool: UpstreamPool, serve: StartServer, body: bytes, message: str, separate: bool
) -> None:
    """A malformed chunked body raises InvalidResponse from read/readany (after the good chunks)
    and the connection is not reused."""
    pieces = (CHUNKED_HEAD, body) if separate else (CHUNKED_HEAD + body,)
    server = await serve(answer_once(*pieces, gap=0.01))
    reply = await post(pool, server.url())
    assert reply.status == 200
    received = b""
    with pytest.raises(InvalidResponse, match=message):
        while True:
            received += await within(reply.readany())
    assert received in (b"", b"hello")
    with pytest.raises(InvalidResponse):
        await within(reply.read())
    reply.release()
    await until(lambda: server.client_closes == 1)
    assert pool.idle_connections == 0


# --- body until close, Connection: close, HTTP/1.0 -----------------------------------------


async def test_body_until_close_is_read_to_eof_and_not_reused(pool: UpstreamPool, serve: StartServer) -> None:
    """Without Content-Length or chunked, the body runs to EOF and the connection is not reused."""

    async def script(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst ", b"second", gap=0.01)

    server = await serve(script)
    assert await fetch(pool, server.url()) == b"first second"
    assert pool.idle_connections == 0
    assert await fetch(pool, server.url()) == b"first second"
    assert server.accepted == 2
    assert pool.connections_made == 2


@pytest.mark.parametrize(
    "reply_bytes",
    [
        response(b"bye", headers=[b"Connection: close"]),
        response(b"bye", headers=[b"connection: Close"]),
        response(b"bye", version=b"HTTP/1.0"),
        response(b"bye", version=b"HTTP/1.0", headers=[b"Connection: close"]),
    ],
    ids=["connection-close", "connection-close-case", "http10", "http10-close"],
)
async def test_response_asking_to_close_is_not_reused(pool: UpstreamPool, serve: StartServer, reply_bytes: bytes) -> None:
    """Connection: close and HTTP/1.0 (without keep-alive) responses close the connection after the body."""
    server = await serve(answer_each(reply_bytes))
    assert await fetch(pool, server.url()) == b"bye"
    await until(lambda: server.client_closes == 1)
    assert await fetch(pool, server.url()) == b"bye"
    assert server.accepted == 2
    assert pool.connections_made == 2


async def test_http10_keep_alive_is_reused(pool: UpstreamPool, serve: StartServer) -> None:
    """An HTTP/1.0 response with Connection: keep-alive keeps the connection."""
    server = await serve(answer_each(response(b"hi", version=b"HTTP/1.0", headers=[b"Connection: keep-alive"])))
    assert await fetch(pool, server.url()) == b"hi"
    assert await fetch(pool, server.url()) == b"hi"
    assert server.accepted == 1


# --- statuses without a body, interim responses -------------------------------------------


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
async def test_no_body_statuses(pool: UpstreamPool, serve: StartServer, status: bytes) -> None:
    """204 and 304 have no body (even with a Content-Length) and keep the connection."""
    server = await serve(answer_each(response(b"", status=status, length=False, headers=[b"Content-Length: 12"])))
    reply = await post(pool, server.url())
    assert reply.status == int(status[:3])
    assert await within(reply.read()) == b""
    assert await within(reply.readany()) == b""
    reply.release()
    assert await fetch(pool, server.url()) == b""
    assert server.accepted == 1


@pytest.mark.parametrize("separate", [False, True], ids=["same-packet", "separate-packets"])
async def test_interim_100_continue_is_skipped(pool: UpstreamPool, serve: StartServer, separate: bool) -> None:
    """1xx responses before the real one are skipped; their headers do not leak into the reply."""
    interim = b"HTTP/1.1 100 Continue\r\nX-Interim: yes\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
    final = response(b"done", headers=[b"X-Final: yes"])
    pieces = (interim, final) if separate else (interim + final,)
    server = await serve(answer_once(*pieces, gap=0.01))
    reply = await post(pool, server.url())
    assert reply.status == 200
    assert "x-interim" not in reply.headers
    assert reply.headers["X-Final"] == "yes"
    assert await within(reply.read()) == b"done"
    reply.release()


# --- headers ---------------------------------------------------------------------------------


async def test_reply_headers_are_case_insensitive_and_joined(pool: UpstreamPool, serve: StartServer) -> None:
    """Header lookups ignore case; repeated fields join with ", "; content_type drops parameters."""
    server = await serve(
        answer_once(response(b"{}", headers=[b"Content-Type: Application/JSON; charset=utf-8", b"Vary: a", b"vary: b", b"X-Empty:"]))
    )
    reply = await post(pool, server.url())
    assert isinstance(reply.headers, ReplyHeaders)
    assert reply.headers["VARY"] == "a, b"
    assert reply.headers.get("Vary") == "a, b"
    assert reply.headers.get("x-missing") is None
    assert reply.headers.get("x-missing", "d") == "d"
    assert "X-EMPTY" in reply.headers
    assert reply.headers["x-empty"] == ""
    assert reply.content_type == "application/json"
    assert reply.content is reply
    await within(reply.read())
    reply.release()


async def test_content_type_empty_without_header(pool: UpstreamPool, serve: StartServer) -> None:
    """content_type is "" when the response has no Content-Type."""
    server = await serve(answer_once(response(b"x")))
    reply = await post(pool, server.url())
    assert reply.content_type == ""
    reply.release()


# --- stale keep-alive retry and disconnects before the head ---------------------------------


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_reused_connection_dropped_unanswered_is_not_resent(pool: UpstreamPool, serve: StartServer, how: str) -> None:
    """A pooled connection the server drops after reading the request raises ServerDisconnected:
    a POST is never sent twice behind the caller's back (failover decides what happens next)."""

    async def script(peer: Peer) -> None:
        await peer.request()
        if peer.index == 0:
            await peer.send(response(b"one"))
            await peer.request()  # the reuse: read it, then drop the connection unanswered
            if how == "reset":
                peer.reset()
            return
        await peer.send(response(b"two"))
        await peer.wait_client_close()

    server = await serve(script)
    assert await fetch(pool, server.url(), b"A") == b"one"
    with pytest.raises(ServerDisconnected):
        await post(pool, server.url(), b"B")
    assert [(i, r.body) for i, r in server.requests] == [(0, b"A"), (0, b"B")]
    assert await fetch(pool, server.url(), b"C") == b"two"  # the next request gets a new connection
    assert server.accepted == 2


async def test_idle_connection_closed_by_server_is_not_reused(pool: UpstreamPool, serve: StartServer) -> None:
    """A server closing an idle keep-alive connection (an idle timeout) takes it out of the pool."""

    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(response(b"hi"))
        if peer.index == 0:
            await asyncio.sleep(0.02)
            peer.writer.close()
            return
        await peer.wait_client_close()

    server = await serve(script)
    assert await fetch(pool, server.url()) == b"hi"
    await until(lambda: pool.idle_connections == 0)
    assert await fetch(pool, server.url()) == b"hi"
    assert server.accepted == 2
    assert len(server.requests) == 2


async def test_fresh_connection_closed_unanswered_is_not_retried(pool: UpstreamPool, serve: StartServer) -> None:
    """A new connection the server closes after reading the request raises ServerDisconnected."""

    async def script(peer: Peer) -> None:
        await peer.request()

    server = await serve(script)
    with pytest.raises(ServerDisconnected):
        await post(pool, server.url())
    assert server.accepted == 1
    assert pool.idle_connections == 0


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_fresh_connection_dropped_on_accept(pool: UpstreamPool, serve: StartServer, how: str) -> None:
    """A server that drops a new connection before reading anything: ServerDisconnected when
    the request was written before the close arrived, ConnectFailed ("closed before the request
    could be written") when it arrived first (which one is the kernel's timing); never a
    second connection behind the caller's back."""

    async def script(peer: Peer) -> None:
        if how == "reset":
            peer.reset()

    server = await serve(script)
    with pytest.raises((ServerDisconnected, ConnectFailed)) as caught:
        await post(pool, server.url())
    if isinstance(caught.value, ConnectFailed):
        assert "closed before the request could be written" in caught.value.reason
    assert server.accepted == 1


@pytest.mark.parametrize("reused", [False, True], ids=["fresh", "reused"])
async def test_partial_head_then_close_is_not_retried(pool: UpstreamPool, serve: StartServer, reused: bool) -> None:
    """Part of a head followed by a close raises ServerDisconnected, with no retry even on a reused connection."""

    async def script(peer: Peer) -> None:
        if reused:
            await peer.request()
            await peer.send(response(b"one"))
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Le")

    server = await serve(script)
    if reused:
        assert await fetch(pool, server.url()) == b"one"
    with pytest.raises(ServerDisconnected):
        await post(pool, server.url())
    assert server.accepted == 1
    assert pool.connections_made == 1


# --- mid-body disconnects -------------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_mid_body_disconnect_raises_after_delivered_bytes(pool: UpstreamPool, serve: StartServer, how: str) -> None:
    """A Content-Length body cut short hands over what arrived, then readany raises ServerDisconnected."""
    sent = asyncio.Event()

    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b"partial", gap=0.01)
        sent.set()
        await asyncio.sleep(0.02)
        if how == "reset":
            peer.reset()

    server = await serve(script)
    reply = await post(pool, server.url())
    await within(sent.wait())
    assert await within(reply.readany()) == b"partial"
    with pytest.raises(ServerDisconnected):
        await within(reply.readany())
    with pytest.raises(ServerDisconnected):
        await within(reply.read())
    reply.release()
    assert server.accepted == 1
    assert pool.idle_connections == 0


async def test_mid_chunked_disconnect_raises(pool: UpstreamPool, serve: StartServer) -> None:
    """A chunked body cut before its last chunk raises ServerDisconnected from read."""

    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(CHUNKED_HEAD + b"5\r\nhello\r\n")

    server = await serve(script)
    reply = await post(pool, server.url())
    with pytest.raises(ServerDisconnected):
        await within(reply.read())


# --- malformed heads ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b"HELLO WORLD\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 \xb200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNo-Colon-Here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Space : 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0_3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 0\r\n\r\n",
    ],
    ids=[
        "garbage", "http2", "status-not-digits", "status-short", "status-four-digits", "http2.0", "status-latin1-superscript", "header-no-colon", "space-before-colon",
        "obs-fold", "content-length-text", "content-length-negative", "content-length-list", "content-length-plus",
        "content-length-underscore", "unknown-encoding",
    ],
)
async def test_malformed_head_raises_invalid_response(pool: UpstreamPool, serve: StartServer, head: bytes) -> None:
    """A head Apex cannot read makes post raise InvalidResponse and closes the connection."""
    server = await serve(answer_once(head))
    with pytest.raises(InvalidResponse):
        await post(pool, server.url())
    await until(lambda: server.client_closes == 1)
    assert pool.idle_connections == 0


@pytest.mark.parametrize("terminated", [False, True], ids=["unterminated", "terminated"])
async def test_head_over_64_kib_raises_invalid_response(pool: UpstreamPool, serve: StartServer, terminated: bool) -> None:
    """A response head over 64 KiB is refused, whether or not its end arrives in the same read."""
    fields = b"".join(b"X-Filler-%05d: %s\r\n" % (i, b"v" * 60) for i in range(1200))  # ~90 KiB
    head = b"HTTP/1.1 200 OK\r\n" + fields + (b"Content-Length: 0\r\n\r\n" if terminated else b"")
    server = await serve(answer_once(head))
    with pytest.raises(InvalidResponse, match="64 KiB"):
        await post(pool, server.url())


async def test_head_just_under_limit_is_accepted(pool: UpstreamPool, serve: StartServer) -> None:
    """A head a little under 64 KiB is still read."""
    fields = b"".join(b"X-Filler-%05d: %s\r\n" % (i, b"v" * 60) for i in range(800))  # ~62 KiB
    server = await serve(answer_once(response(b"fine", headers=[fields.rstrip(b"\r\n")])))
    assert await fetch(pool, server.url()) == b"fine"


# --- content encodings ----------------------------------------------------------------------

PLAIN: Final = b'{"message": "' + b"compressible text " * 2000 + b'"}'


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        (b"gzip", gzip.compress(PLAIN)),
        (b"x-gzip", gzip.compress(PLAIN)),
        (b"deflate", zlib.compress(PLAIN)),
        (b"identity", PLAIN),
        # Raw RFC 1951 deflate (no zlib wrapper, IIS) and a coding list naming identity: httpx,
        # urllib3 and curl decode both; Apex answered 502.
        (b"deflate", (lambda c: c.compress(PLAIN) + c.flush())(zlib.compressobj(wbits=-zlib.MAX_WBITS))),
        (b"identity, gzip", gzip.compress(PLAIN)),
    ],
    ids=["gzip", "x-gzip", "deflate", "identity", "raw-deflate", "identity-then-gzip"],
)
@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_content_encoding_is_decoded(
    pool: UpstreamPool, serve: StartServer, encoding: bytes, encoded: bytes, framing: str
) -> None:
    """gzip and deflate bodies (Content-Length or chunked) come back decoded."""
    if framing == "length":
        reply_bytes = response(encoded, headers=[b"Content-Encoding: " + encoding])
    else:
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: " + encoding + b"\r\n\r\n"
        reply_bytes = head + chunk_encode(encoded[i : i + 500] for i in range(0, len(encoded), 500))
    server = await serve(answer_each(reply_bytes))
    assert await fetch(pool, server.url()) == PLAIN
    assert await fetch(pool, server.url()) == PLAIN
    assert server.accepted == 1


async def test_corrupt_gzip_body_raises_invalid_response(pool: UpstreamPool, serve: StartServer) -> None:
    """A body that is not valid gzip raises InvalidResponse, not a transport failure."""
    server = await serve(answer_once(response(b"this is not gzip at all", headers=[b"Content-Encoding: gzip"])))
    reply = await post(pool, server.url())
    with pytest.raises(InvalidResponse):
        await within(reply.read())
    reply.release()
    await until(lambda: server.client_closes == 1)
    assert pool.idle_connections == 0


async def test_truncated_gzip_body_raises_invalid_response(pool: UpstreamPool, serve: StartServer) -> None:
    """A gzip stream cut short inside a complete Content-Length body is an error, not a short answer."""
    cut = gzip.compress(PLAIN)[:-12]
    server = await serve(answer_once(response(cut, headers=[b"Content-Encoding: gzip"])))
    reply = await post(pool, server.url())
    with pytest.raises(InvalidResponse):
        await within(reply.read())
    reply.release()


@pytest.mark.parametrize("framing", [b"Content-Length: 0\r\n", b"Transfer-Encoding: chunked\r\n"])
async def test_an_empty_body_marked_gzip_is_an_empty_body(pool: UpstreamPool, serve: StartServer, framing: bytes) -> None:
    """A 429 with Retry-After, Content-Encoding: gzip and no body (gzip middlewares mark empty
    bodies too) was a bad answer: the client got a 502 and lost the rate limit."""
    tail = b"0\r\n\r\n" if b"chunked" in framing else b""
    server = await serve(answer_each(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Encoding: gzip\r\n"
                                     + framing + b"\r\n" + tail))
    reply = await post(pool, server.url())
    assert reply.status == 429 and await within(reply.read()) == b""


async def test_a_truncated_gzip_body_names_where_it_came_from(pool: UpstreamPool, serve: StartServer) -> None:
    """The error said "from the upstream": issue 15 wants host:port in every transport error."""
    server = await serve(answer_once(response(gzip.compress(PLAIN)[:-12], headers=[b"Content-Encoding: gzip"])))
    reply = await post(pool, server.url())
    with pytest.raises(InvalidResponse) as err:
        await within(reply.read())
    assert f"127.0.0.1:{server.port}" in str(err.value.where)
    reply.release()


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\nContent-Length: 4\n\nfine",  # bare LF (RFC 9112 2.2: a recipient MAY accept it)
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4  \r\nfine\r\n0\r\n\r\n",  # spaces after the size
], ids=["bare-lf", "chunk-size-spaces"])
async def test_answers_that_aiohttp_httpx_and_curl_accept_are_read(pool: UpstreamPool, serve: StartServer,
                                                                   answer: bytes) -> None:
    """Strict llhttp refused them: a small server writing them failed every request (502)."""
    server = await serve(answer_once(answer))
    assert await fetch(pool, server.url()) == b"fine"


async def test_body_until_close_ended_by_reset_raises(pool: UpstreamPool, serve: StartServer) -> None:
    """A close-delimited body ends cleanly only on a clean close; a reset means it was cut."""

    async def script(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npartial", gap=0.01)
            await asyncio.sleep(0.02)
            peer.reset()

    server = await serve(script)
    reply = await post(pool, server.url())
    with pytest.raises(ServerDisconnected):
        await within(reply.read())
    reply.release()


async def test_chunked_with_content_length_is_a_bad_answer(pool: UpstreamPool, serve: StartServer) -> None:
    """Both framings in one response (the shape of a smuggling attempt, RFC 9112 6.1): llhttp refuses
    it, so it is a malformed answer (failover) and the connection is closed."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
    server = await serve(answer_once(head + chunk_encode([b"hello"])))
    with pytest.raises(InvalidResponse, match="Content-Length"):
        await post(pool, server.url())
    await until(lambda: server.client_closes == 1)
    assert pool.idle_connections == 0


# --- flow control ---------------------------------------------------------------------------


async def test_large_streamed_body_stays_bounded_and_intact(pool: UpstreamPool, serve: StartServer) -> None:
    """A fast multi-MB chunked stream read slowly pauses the transport, keeps the reply's buffer near
    the high-water mark, and arrives intact."""
    payload = random.Random(7).randbytes(8 * 1024 * 1024)
    encoded = chunk_encode(payload[i : i + 65536] for i in range(0, len(payload), 65536))

    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(CHUNKED_HEAD, *(encoded[i : i + 65536] for i in range(0, len(encoded), 65536)))
        await peer.wait_client_close()

    server = await serve(script)
    reply = await post(pool, server.url())
    conn = reply._conn
    assert conn is not None
    received, most_buffered, paused_seen = [], 0, False
    async with asyncio.timeout(4 * LIMIT):
        while True:
            await asyncio.sleep(0.002)  # a slow reader: the upstream outpaces it
            most_buffered = max(most_buffered, reply._size)
            paused_seen = paused_seen or conn._paused
            piece = await reply.readany()
            if not piece:
                break
            received.append(piece)
    assert b"".join(received) == payload
    assert paused_seen
    # Reading pauses once the buffer reaches the mark; at most one more socket read lands on top.
    assert most_buffered <= _HIGH_WATER + 256 * 1024, most_buffered
    assert not conn._paused
    reply.release()


# --- release and close ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["release", "close"])
async def test_release_before_body_end_closes_connection(pool: UpstreamPool, serve: StartServer, method: str) -> None:
    """Releasing or closing a reply with body still to come closes its connection; the next request
    opens a new one."""

    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nsome")
        await peer.wait_client_close()

    server = await serve(script)
    reply = await post(pool, server.url())
    assert await within(reply.readany()) == b"some"
    getattr(reply, method)()
    await until(lambda: server.client_closes == 1)
    assert pool.idle_connections == 0
    with pytest.raises(ServerDisconnected):
        await within(reply.readany())
    second = await post(pool, server.url())
    assert server.accepted == 2
    assert pool.connections_made == 2
    second.close()


async def test_release_after_complete_body_keeps_connection(pool: UpstreamPool, serve: StartServer) -> None:
    """A reply whose body has fully arrived (read or not) leaves its connection pooled on release."""
    server = await serve(answer_each(response(b"complete")))
    reply = await post(pool, server.url())
    await until(lambda: pool.idle_connections == 1)  # the body came with the head
    reply.release()
    reply.release()  # idempotent
    assert pool.idle_connections == 1
    assert await fetch(pool, server.url()) == b"complete"
    assert server.accepted == 1


async def test_release_of_chunked_reply_mid_body(pool: UpstreamPool, serve: StartServer) -> None:
    """Releasing a chunked reply mid-stream closes the connection instead of pooling it."""

    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(CHUNKED_HEAD + b"3\r\nabc\r\n")
        await peer.wait_client_close()

    server = await serve(script)
    reply = await post(pool, server.url())
    assert await within(reply.readany()) == b"abc"
    reply.release()
    await until(lambda: server.client_closes == 1)
    assert pool.idle_connections == 0


# --- cancellation ---------------------------------------------------------------------------


@pytest.mark.parametrize("reused", [False, True], ids=["fresh", "reused"])
async def test_cancel_while_waiting_for_head_closes_connection(pool: UpstreamPool, serve: StartServer, reused: bool) -> None:
    """Cancelling post before the head arrives closes that connection (the server sees it) and
    leaves nothing in the pool."""
    got_request = asyncio.Event()

    async def script(peer: Peer) -> None:
        if peer.index == 0:
            if reused:
                await peer.request()
                await peer.send(response(b"first"))
            await peer.request()
            got_request.set()
            await peer.wait_client_close()
            return
        await peer.request()
        await peer.send(response(b"later"))
        await peer.wait_client_close()

    server = await serve(script)
    if reused:
        assert await fetch(pool, server.url()) == b"first"
    task = asyncio.create_task(pool.post(server.url(), b"", b"{}", connect_timeout=LIMIT))
    await within(got_request.wait())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await within(task)
    await until(lambda: server.client_closes == 1)
    assert pool.idle_connections == 0
    assert await fetch(pool, server.url()) == b"later"
    assert server.accepted == 2


async def test_deadline_while_waiting_for_head(pool: UpstreamPool, serve: StartServer) -> None:
    """A caller's asyncio.timeout firing before the head raises TimeoutError and closes the connection."""

    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.wait_client_close()

    server = await serve(script)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await pool.post(server.url(), b"", b"{}", connect_timeout=LIMIT)
    await until(lambda: server.client_closes == 1)
    assert pool.idle_connections == 0


# --- connecting -----------------------------------------------------------------------------


def _free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connection_refused_raises_connect_failed(pool: UpstreamPool) -> None:
    """Nothing listening: post raises ConnectFailed naming host:port and "connection refused",
    caused by the ConnectionRefusedError, and counts no connection."""
    port = _free_port()
    with pytest.raises(ConnectFailed) as caught:
        await within(pool.post(f"http://127.0.0.1:{port}/", b"", b"", connect_timeout=LIMIT))
    assert caught.value.where == f"127.0.0.1:{port}"
    assert caught.value.reason == "connection refused"
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert not caught.value.timed_out
    assert pool.connections_made == 0


async def test_dns_failure_raises_connect_failed(pool: UpstreamPool) -> None:
    """A name that cannot resolve (the reserved .invalid TLD, RFC 6761) is a DNS failure, said so."""
    with pytest.raises(ConnectFailed) as caught:
        await within(pool.post("http://no-such-host.invalid:8080/", b"", b"", connect_timeout=LIMIT))
    assert caught.value.where == "no-such-host.invalid:8080"
    assert caught.value.reason.startswith("DNS lookup failed")


async def test_connect_timeout(pool: UpstreamPool) -> None:
    """A listener whose accept queue is full never completes the handshake: post raises TimeoutError
    after connect_timeout."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(8):  # Linux drops SYNs once the (backlog + 1) queue is full
            filler = socket.socket()
            filler.setblocking(False)
            fillers.append(filler)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await within(pool.post(f"http://127.0.0.1:{port}/", b"", b"", connect_timeout=0.2))
        except ConnectFailed as exc:
            assert exc.timed_out
            assert exc.reason == "timed out after 0.2 s"
        else:
            pytest.skip("this kernel completed the handshake despite a full accept queue")
        assert 0.15 <= loop.time() - started < 2
        assert pool.connections_made == 0
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "http:///nohost", "not a url"])
async def test_non_http_url_raises_value_error(pool: UpstreamPool, url: str) -> None:
    """URLs that are not http(s) with a host raise ValueError before any connection."""
    with pytest.raises(ValueError, match="not an http"):
        await within(pool.post(url, b"", b"", connect_timeout=LIMIT))


# --- the request on the wire ----------------------------------------------------------------


def test_encode_header_fields_lines() -> None:
    """Fields become ``Name: value`` CRLF lines in order; an empty mapping gives b""."""
    assert encode_header_fields({"Authorization": "Bearer k", "X-Empty": ""}) == b"Authorization: Bearer k\r\nX-Empty: \r\n"
    assert encode_header_fields({}) == b""


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Evil", "a\r\nInjected: 1"),
        ("X-Evil", "a\nb"),
        ("X-Evil", "a\rb"),
        ("", "v"),
        ("Bad Name", "v"),
        ("Bad:Name", "v"),
        ("Bad\tName", "v"),
        ("Bad\r\nName", "v"),
        ("X-Unicode", "snow \u2603"),
    ],
    ids=["crlf-value", "lf-value", "cr-value", "empty-name", "space-name", "colon-name", "tab-name", "crlf-name", "not-latin1"],
)
def test_encode_header_fields_rejects_head_splitting(name: str, value: str) -> None:
    """Names or values that could break the head (or not encode) raise ValueError."""
    with pytest.raises(ValueError):
        encode_header_fields({name: value})


async def test_request_on_the_wire_is_exact(pool: UpstreamPool, serve: StartServer) -> None:
    """The server receives the request line, Host with port, Content-Length, the fields, then the body."""
    server = await serve(answer_each(response(b"ok")))
    fields = encode_header_fields({"Authorization": "Bearer sk-test", "Content-Type": "application/json"})
    reply = await post(pool, server.url("/v1/chat/completions?alt=sse&x=1"), b'{"a":1}', fields)
    await within(reply.read())
    reply.release()
    assert await fetch(pool, server.url("/"), b"") == b"ok"
    (_, first), (_, second) = server.requests
    assert first.head == (
        b"POST /v1/chat/completions?alt=sse&x=1 HTTP/1.1\r\n"
        b"Host: 127.0.0.1:%d\r\n"
        b"Content-Length: 7\r\n"
        b"Authorization: Bearer sk-test\r\n"
        b"Content-Type: application/json" % server.port
    )
    assert first.body == b'{"a":1}'
    assert second.head == b"POST / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 0" % server.port
    assert second.body == b""


@pytest.mark.parametrize(
    ("url", "prefix"),
    [
        ("http://api.example.test/v1/x", b"POST /v1/x HTTP/1.1\r\nHost: api.example.test\r\n"),
        ("https://api.example.test/v1/x?k=v", b"POST /v1/x?k=v HTTP/1.1\r\nHost: api.example.test\r\n"),
        ("https://api.example.test:8443/v1", b"POST /v1 HTTP/1.1\r\nHost: api.example.test:8443\r\n"),
        ("http://api.example.test:443", b"POST / HTTP/1.1\r\nHost: api.example.test:443\r\n"),
        ("http://[::1]:8080/v1", b"POST /v1 HTTP/1.1\r\nHost: [::1]:8080\r\n"),
        ("https://[::1]/v1", b"POST /v1 HTTP/1.1\r\nHost: [::1]\r\n"),
    ],
)
def test_request_line_and_host_from_url(url: str, prefix: bytes) -> None:
    """The Host header omits the scheme's default port and brackets IPv6; an empty path is "/"."""
    assert _Target(url).prefix == prefix


# --- pool housekeeping ----------------------------------------------------------------------


async def test_idle_connection_past_idle_seconds_is_not_reused(serve: StartServer) -> None:
    """A pooled connection idle longer than idle_seconds is closed and a new one is opened."""
    pool = UpstreamPool(idle_seconds=0.05)
    try:
        server = await serve(answer_each(response(b"x")))
        assert await fetch(pool, server.url()) == b"x"
        await asyncio.sleep(0.1)
        assert await fetch(pool, server.url()) == b"x"
        assert server.accepted == 2
        await until(lambda: server.client_closes == 1)
    finally:
        await pool.close()


async def test_idle_connections_are_closed_by_the_sweep_without_a_next_request(serve: StartServer) -> None:
    """An idle connection past idle_seconds was closed only when the next request came: with no
    more traffic it stayed open (40 s later in the probe). close_idle, run by the gateway's
    periodic sweep, closes it; a fresh one stays."""
    pool = UpstreamPool(idle_seconds=30)
    try:
        server = await serve(answer_each(response(b"x")))
        assert await fetch(pool, server.url()) == b"x"
        now = asyncio.get_running_loop().time()
        assert pool.close_idle(now) == 0 and pool.idle_connections == 1
        assert pool.close_idle(now + 31) == 1 and pool.idle_connections == 0
        await until(lambda: server.client_closes == 1)
    finally:
        await pool.close()


async def test_idle_connections_capped_per_origin(serve: StartServer) -> None:
    """At most max_idle_per_origin connections stay pooled; the surplus is closed."""
    pool = UpstreamPool(max_idle_per_origin=1)
    try:
        server = await serve(answer_each(response(b"x")))
        first, second = await within(asyncio.gather(post(pool, server.url()), post(pool, server.url())))
        assert server.accepted == 2
        await until(lambda: server.client_closes == 1)
        assert pool.idle_connections == 1
        first.release()
        second.release()
    finally:
        await pool.close()


async def test_pool_close_closes_idle_and_busy_connections(pool: UpstreamPool, serve: StartServer) -> None:
    """pool.close() closes pooled connections and fails replies still reading their body."""

    async def script(peer: Peer) -> None:
        await peer.request()
        if peer.index == 0:
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nbu")
        else:
            await peer.send(response(b"idle"))
        await peer.wait_client_close()

    server = await serve(script)
    busy = await post(pool, server.url())
    assert await fetch(pool, server.url()) == b"idle"
    assert server.accepted == 2
    assert pool.idle_connections == 1
    await pool.close()
    with pytest.raises(ServerDisconnected):
        await within(busy.read())
    await until(lambda: server.client_closes == 2)
    assert pool.idle_connections == 0


# --- against a real HTTP server (aiohttp) ---------------------------------------------------


@pytest.fixture
async def aiohttp_upstream() -> AsyncIterator[str]:
    """An aiohttp app on 127.0.0.1:0: /echo, /stream (chunked), /gzip (compressed); yields its base URL."""

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read(), headers={"X-Seen-Auth": request.headers.get("Authorization", "")})

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(50):
            await resp.write(b"data: %d\n\n" % i)
        await resp.write_eof()
        return resp

    async def compressed(request: web.Request) -> web.Response:
        resp = web.Response(body=PLAIN)
        resp.enable_compression(web.ContentCoding.gzip)
        return resp

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_post("/stream", stream)
    app.router.add_post("/gzip", compressed)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_aiohttp_server_round_trips(pool: UpstreamPool, aiohttp_upstream: str) -> None:
    """Against aiohttp: bodies echo, headers arrive, chunked SSE streams and gzip decode, on one connection."""
    fields = encode_header_fields({"Authorization": "Bearer k"})
    for i in range(3):
        reply = await within(pool.post(f"{aiohttp_upstream}/echo", fields, b"body %d" % i, connect_timeout=LIMIT))
        assert reply.headers["x-seen-auth"] == "Bearer k"
        assert await within(reply.read()) == b"body %d" % i
        reply.release()
    reply = await post(pool, f"{aiohttp_upstream}/stream")
    assert reply.content_type == "text/event-stream"
    assert await within(reply.read()) == b"".join(b"data: %d\n\n" % i for i in range(50))
    reply.release()
    reply = await post(pool, f"{aiohttp_upstream}/gzip")
    assert reply.headers["content-encoding"] == "gzip"
    assert await within(reply.read()) == PLAIN
    reply.release()
    assert pool.connections_made == 1


# --- TLS ------------------------------------------------------------------------------------

needs_trustme = pytest.mark.skipif(trustme is None, reason="trustme is not installed")

def _server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


def _client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@needs_trustme
async def test_tls_request_and_reuse(serve: StartServer) -> None:
    """Over TLS with a trusted CA and a certificate for 127.0.0.1, requests work and reuse the connection."""
    ca = trustme.CA()
    server = await serve(answer_each(response(b"secure")), ssl_context=_server_context(ca, "127.0.0.1"))
    pool = UpstreamPool(ssl_context=_client_context(ca))
    try:
        for _ in range(2):
            assert await fetch(pool, server.url(scheme="https")) == b"secure"
        assert server.accepted == 1
        assert pool.connections_made == 1
        assert server.requests[0][1].head.split(b"\r\n")[1] == b"Host: 127.0.0.1:%d" % server.port
    finally:
        await pool.close()
        await settle()


@needs_trustme
@pytest.mark.parametrize("problem", ["wrong-hostname", "untrusted-ca"])
async def test_tls_verification_failures(serve: StartServer, problem: str) -> None:
    """A certificate for another name, or from a CA the pool does not trust, fails with ConnectFailed
    saying "TLS certificate verify failed" and why, caused by the ssl error."""
    ca = trustme.CA()
    names = ("api.example.test",) if problem == "wrong-hostname" else ("127.0.0.1",)
    server = await serve(answer_each(response(b"secure")), ssl_context=_server_context(ca, *names))
    trusted = ca if problem == "wrong-hostname" else trustme.CA()
    pool = UpstreamPool(ssl_context=_client_context(trusted))
    try:
        with pytest.raises(ConnectFailed) as caught:
            await post(pool, server.url(scheme="https"))
        assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
        assert caught.value.reason.startswith("TLS certificate verify failed (")
        why = "IP address mismatch" if problem == "wrong-hostname" else "unable to get local issuer certificate"
        assert why in caught.value.reason
        assert pool.connections_made == 0
    finally:
        await pool.close()
        await settle()


# --- connection budget (max_connections) and stale connections --------------------------------


class Concurrent:
    """A server script answering "ok" to each request once ``before()`` is done, counting
    its open connections now and at their peak (on the server's side)."""

    def __init__(self, before: Callable[[], Awaitable[object]]) -> None:
        self.before = before
        self.open = 0
        self.peak = 0

    async def script(self, peer: Peer) -> None:
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            while await peer.request() is not None:
                await self.before()
                await peer.send(response(b"ok"))
        finally:
            self.open -= 1


async def test_pool_never_exceeds_max_connections_under_500_concurrent_requests(serve: StartServer) -> None:
    """500 requests at once with max_connections 16: all answered, and the server never has more
    than 16 connections open at the same time (counted on the server side)."""
    counted = Concurrent(lambda: asyncio.sleep(0.001))  # busy long enough for the requests to pile up
    server = await serve(counted.script)
    pool = UpstreamPool(max_connections=16)
    try:
        bodies = await within(asyncio.gather(*(fetch(pool, server.url()) for _ in range(500))), 60)
        assert bodies == [b"ok"] * 500
        assert counted.peak <= 16
        assert pool.connections_made <= 16
        assert len(server.requests) == 500
    finally:
        await pool.close()
        await settle()


async def test_a_connection_handed_to_a_waiter_is_checked_like_an_idle_one(serve: StartServer) -> None:
    """An upstream that closes after every answer without saying so (tinyproxy forwarding
    plain http does): behind max_connections, the connection its last answer freed goes to a
    waiting request. It is polled before the request is written, as an idle one is; it used to
    be written into and about half the requests failed "closed before answering"."""

    async def script(peer: Peer) -> None:
        if await peer.request() is not None:
            await asyncio.sleep(0.005)
            await peer.send(response(b"ok"))  # keep-alive by HTTP/1.1 default, then closed

    server = await serve(script)
    pool = UpstreamPool(max_connections=3)
    try:
        results = await within(asyncio.gather(*(fetch(pool, server.url()) for _ in range(60)), return_exceptions=True), 60)
        failures = [r for r in results if isinstance(r, BaseException)]
        assert not failures, failures[:3]
        assert len(server.requests) == 60
    finally:
        await pool.close()
        await settle()


async def test_waiting_for_a_connection_is_bounded_by_the_connect_timeout(serve: StartServer) -> None:
    """max_connections 1 with a slow answer in flight: a second request gives up after its connect
    timeout with ConnectFailed (timed out, max_connections named); a third one after the first
    finishes reuses the connection."""
    server = await serve(_slow_each(0.5))
    pool = UpstreamPool(max_connections=1)
    try:
        first = asyncio.create_task(fetch(pool, server.url()))
        await until(lambda: len(server.requests) == 1)
        with pytest.raises(ConnectFailed) as caught:
            await within(pool.post(server.url(), b"", b"{}", connect_timeout=0.1))
        assert caught.value.timed_out
        assert "max_connections 1" in caught.value.reason
        assert await within(first) == b"slow"
        assert await fetch(pool, server.url()) == b"slow"
        assert server.accepted == 1
    finally:
        await pool.close()
        await settle()


def _slow_each(delay: float) -> Script:
    async def script(peer: Peer) -> None:
        while await peer.request() is not None:
            await asyncio.sleep(delay)
            await peer.send(response(b"slow"))

    return script


def _close_under_the_loop(peer: Peer, *, reset: bool = False) -> None:
    """Shut the server side of ``peer`` down (FIN, or RST with ``reset``) on the socket itself,
    not via the loop's transport, so the client's loop has not seen it when the test next sends."""
    sock = peer.writer.get_extra_info("socket")
    raw = socket.socket(fileno=sock.fileno())
    try:
        if reset:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.shutdown(socket.SHUT_RDWR)
    finally:
        raw.detach()


@pytest.mark.parametrize("how", ["fin", "reset"])
async def test_connection_closed_in_the_instant_before_reuse_is_detected(
    pool: UpstreamPool, serve: StartServer, how: str
) -> None:
    """The server closes an idle connection and Apex reuses it before the loop has seen the EOF or
    reset: the pool notices (poll of the socket) and sends the request on a fresh connection,
    so the request succeeds and each connection carried exactly one request."""
    peers: list[Peer] = []

    async def script(peer: Peer) -> None:
        peers.append(peer)
        while await peer.request() is not None:
            await peer.send(response(b"ok"))

    server = await serve(script)
    assert await fetch(pool, server.url()) == b"ok"
    await settle()
    _close_under_the_loop(peers[0], reset=how == "reset")
    # No await between the close and the request: the client's loop has not run meanwhile.
    assert await fetch(pool, server.url()) == b"ok"
    assert pool.connections_made == 2
    assert [index for index, _ in server.requests] == [0, 1]


async def test_connection_answered_moments_ago_is_reused_without_a_poll(
    pool: UpstreamPool, serve: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The socket poll before reuse is a syscall per request: a connection that has already
    carried a reused request and was answered moments ago skips it. Its first reuse is polled."""
    polls: list[int] = []
    real = _Connection.readable

    def counting(conn: _Connection) -> bool:
        polls.append(conn.served)
        return real(conn)

    monkeypatch.setattr(_Connection, "readable", counting)
    server = await serve(answer_each(response(b"ok")))
    for _ in range(4):
        assert await fetch(pool, server.url()) == b"ok"
    assert pool.connections_made == 1
    assert polls == [1]  # before the second request only


async def test_connection_idle_past_the_poll_threshold_is_polled_again(serve: StartServer) -> None:
    """A connection that carried several requests, idle longer than poll_after_idle_seconds (where
    servers' keep-alive timers fire), closed by the server in the instant before reuse: the poll
    catches it and the request goes on a fresh connection."""
    pool = UpstreamPool(poll_after_idle_seconds=0.05)
    peers: list[Peer] = []

    async def script(peer: Peer) -> None:
        peers.append(peer)
        while await peer.request() is not None:
            await peer.send(response(b"ok"))

    try:
        server = await serve(script)
        for _ in range(3):
            assert await fetch(pool, server.url()) == b"ok"
        await asyncio.sleep(0.1)
        _close_under_the_loop(peers[0])
        assert await fetch(pool, server.url()) == b"ok"  # no await between the close and the send
        assert pool.connections_made == 2
        assert [index for index, _ in server.requests] == [0, 0, 0, 1]
    finally:
        await pool.close()


async def _answer_one(sock: socket.socket, reply: bytes) -> bytes:
    """Read one request from the raw server-side ``sock`` and answer ``reply``; the request body."""
    loop = asyncio.get_running_loop()
    data = b""
    while b"\r\n\r\n" not in data:
        data += await loop.sock_recv(sock, 65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += await loop.sock_recv(sock, 65536)
    await loop.sock_sendall(sock, reply)
    return body


async def test_write_failing_at_once_on_a_reused_connection_goes_once_more_on_a_fresh_one(pool: UpstreamPool) -> None:
    """The upstream resets an idle connection (a real RST: SO_LINGER 0 and close) and the
    pre-reuse poll does not see it (the reset lands between the poll and the write; here the
    poll is switched off to stand for that instant): the write fails at once, so nothing
    reached the upstream and the request goes once more on a fresh connection and succeeds."""
    loop = asyncio.get_running_loop()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1/echo"
    sockets: list[socket.socket] = []
    tasks: list[asyncio.Task[bytes]] = []

    async def serve_one() -> bytes:
        sock, _ = await loop.sock_accept(listener)
        sockets.append(sock)
        return await _answer_one(sock, response(b"ok"))

    try:
        first = asyncio.create_task(serve_one())
        tasks.append(first)
        assert await fetch(pool, url, b"A") == b"ok"
        assert await within(first) == b"A"
        await settle()
        [idle] = [conn for slots in pool._slots.values() for conn in slots.idle]
        idle._poll = None  # the poll misses it, as when the reset arrives just after it
        sockets[0].setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sockets[0].close()  # the RST is in the client's socket now
        second = asyncio.create_task(serve_one())
        tasks.append(second)
        # No await between the reset and the request: the client's loop has not seen the reset.
        assert await fetch(pool, url, b"B") == b"ok"
        assert await within(second) == b"B"
        assert pool.connections_made == 2
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sock in (*sockets, listener):
            sock.close()


def test_an_internationalised_host_goes_out_in_its_idna_form() -> None:
    """The request line's Host and the name resolved are the ASCII (IDNA) form: latin-1 cannot
    carry the name itself (it failed every request before)."""
    target = _Target("http://例え.jp:8080/v1/chat/completions")
    assert target.origin.host == "xn--r8jz45g.jp"
    assert target.prefix == b"POST /v1/chat/completions HTTP/1.1\r\nHost: xn--r8jz45g.jp:8080\r\n"


# --- a reload's egress: one budget, TLS files as they are now ------------------------------


async def _post_read(pool: UpstreamPool, url: str, egress: object) -> bytes:
    """POST through ``egress`` and read the answer whole, releasing the connection."""
    reply = await within(pool.post(url, b"", b"{}", connect_timeout=LIMIT, egress=egress))  # type: ignore[arg-type]
    try:
        return await within(reply.read())
    finally:
        reply.release()


async def test_a_reload_keeps_one_budget_across_the_connections_already_open(serve: StartServer) -> None:
    """A reload makes the channel's Egress anew (max_connections 2 -> 3) while two slow
    requests hold connections: the new budget counts them, so at most 3 are open at once (a
    reload used to start a second, empty budget: 2 + 3)."""
    from apex.upstream.egress import build_egress

    gate = asyncio.Event()
    counted = Concurrent(gate.wait)
    server = await serve(counted.script)
    pool = UpstreamPool()
    before, after = build_egress("c", "direct", None, 2), build_egress("c", "direct", None, 3)
    url = server.url()

    async def one(egress: object) -> bytes:
        return await _post_read(pool, url, egress)

    try:
        first = [asyncio.create_task(one(before)) for _ in range(2)]
        await until(lambda: counted.open == 2)
        later = [asyncio.create_task(one(after)) for _ in range(4)]
        await asyncio.sleep(0.1)
        assert counted.peak == 3  # one more connection under the raised budget, not three
        gate.set()
        assert await within(asyncio.gather(*first, *later)) == [b"ok"] * 6
        assert counted.peak == 3
    finally:
        gate.set()
        await pool.close()
        await settle()


async def test_a_reload_that_lowers_max_connections_sheds_down_to_it(serve: StartServer) -> None:
    """max_connections 4 -> 2 while four requests hold connections and more keep coming: the
    connections were handed on to the next request whatever the new limit, so four stayed
    open under steady load. They are closed as they come free until two are left."""
    from apex.upstream.egress import build_egress

    gate = asyncio.Event()
    counted = Concurrent(gate.wait)
    server = await serve(counted.script)
    pool = UpstreamPool()
    before, after = build_egress("c", "direct", None, 4), build_egress("c", "direct", None, 2)
    url = server.url()

    async def one(egress: object) -> bytes:
        return await _post_read(pool, url, egress)

    try:
        first = [asyncio.create_task(one(before)) for _ in range(4)]
        await until(lambda: counted.open == 4)
        later = [asyncio.create_task(one(after)) for _ in range(6)]
        await asyncio.sleep(0.05)
        gate.set()
        assert await within(asyncio.gather(*first, *later)) == [b"ok"] * 10
        await until(lambda: counted.open <= 2)
        assert sum(slots.open for slots in pool._slots.values()) <= 2
    finally:
        gate.set()
        await pool.close()
        await settle()


@needs_trustme
async def test_a_reload_reads_a_ca_file_rotated_in_place(serve: StartServer, tmp_path: Path) -> None:
    """The CA bundle replaced at the same path, then a reload: new connections trust the new
    one (the pool kept the first load's TLS context until a restart)."""
    from apex.upstream.egress import TlsOptions, build_egress

    server_ca, other_ca = trustme.CA(), trustme.CA()
    server = await serve(answer_each(response(b"secure")), ssl_context=_server_context(server_ca, "127.0.0.1"))
    bundle = tmp_path / "ca.pem"
    other_ca.cert_pem.write_to_path(str(bundle))
    pool = UpstreamPool()
    url = server.url(scheme="https")
    try:
        wrong = build_egress("c", "direct", TlsOptions(ca_file=str(bundle)), 4)
        with pytest.raises(ConnectFailed, match="TLS certificate verify failed"):
            await within(pool.post(url, b"", b"{}", connect_timeout=LIMIT, egress=wrong))
        server_ca.cert_pem.write_to_path(str(bundle))  # rotated in place
        right = build_egress("c", "direct", TlsOptions(ca_file=str(bundle)), 4)  # what a reload builds
        reply = await within(pool.post(url, b"", b"{}", connect_timeout=LIMIT, egress=right))
        assert await within(reply.read()) == b"secure"
        reply.release()
    finally:
        await pool.close()
        await settle()


@needs_trustme
async def test_a_connect_answer_with_bare_newlines_is_accepted(serve: StartServer) -> None:
    """A proxy whose CONNECT answer ends its lines in a bare LF (RFC 9112 2.2 lets a recipient
    accept that; curl does): the tunnel opens (Apex waited for CRLF CRLF until its connect
    timeout)."""
    from apex.upstream.egress import build_egress

    ca = trustme.CA()
    server = await serve(answer_each(response(b"secure")), ssl_context=_server_context(ca, "127.0.0.1"))

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        host, _, port = head.split(b" ")[1].decode().rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\nProxy-agent: q\n\n")
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    listener = await asyncio.start_server(proxy, "127.0.0.1", 0)
    proxy_port = listener.sockets[0].getsockname()[1]
    pool = UpstreamPool(ssl_context=_client_context(ca))
    try:
        egress = build_egress("c", f"http://127.0.0.1:{proxy_port}", None, 4)
        reply = await within(pool.post(server.url(scheme="https"), b"", b"{}", connect_timeout=2.0, egress=egress))
        assert await within(reply.read()) == b"secure"
        reply.release()
    finally:
        await pool.close()
        listener.close()
        await settle()


@needs_trustme
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_an_mtls_refusal_is_could_not_connect(tmp_path: Path) -> None:
    """An upstream that requires a client certificate the channel does not send (openssl
    s_server -Verify): under TLS 1.3 its alert comes after the request was written, but the
    handshake failed, so it is ConnectFailed ("could not connect", the TLS reason), not
    "failed after sending"."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, key, client_ca = tmp_path / "srv.pem", tmp_path / "srv.key", tmp_path / "ca.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(client_ca))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = await asyncio.create_subprocess_exec(
        "openssl", "s_server", "-accept", str(port), "-cert", str(cert), "-key", str(key), "-Verify", "1",
        "-verify_return_error", "-CAfile", str(client_ca), "-www", "-quiet",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    pool = UpstreamPool(ssl_context=_client_context(ca))
    try:
        await until(lambda: _listening(port))
        with pytest.raises(ConnectFailed) as caught:
            reply = await post(pool, f"https://127.0.0.1:{port}/v1/chat/completions")
            await within(reply.read())
        assert caught.value.reason.startswith("TLS"), caught.value.reason
    finally:
        await pool.close()
        server.terminate()
        await server.wait()
        await settle()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_an_upstream_that_closes_after_each_answer_is_not_reused_once_it_showed_it(serve: StartServer) -> None:
    """An upstream that closes a moment after each answer, without 'Connection: close': the
    request written into a connection it is closing gets no answer. After the first such
    failure its connections are used once (the poll before reuse cannot win every race);
    before, every reuse failed."""

    async def script(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(response(b"ok"))
            await asyncio.sleep(0.03)  # then close: later than the client's next request

    server = await serve(script)
    pool = UpstreamPool()
    failures = 0
    try:
        for _ in range(12):
            try:
                assert await fetch(pool, server.url()) == b"ok"
            except ServerDisconnected:
                failures += 1
        assert failures <= 1
    finally:
        await pool.close()
        await settle()


def test_a_101_answer_is_a_bad_answer_not_a_transport_crash() -> None:
    """101 Switching Protocols made llhttp raise HttpParserUpgrade, which is not an
    HttpParserError: asyncio logged "Fatal error on transport" and the client was told the
    upstream closed the connection. It is an InvalidResponse naming the switch."""
    loop = asyncio.new_event_loop()
    try:
        conn = _Connection(UpstreamPool(), _Slots(None, 1), _Target("http://127.0.0.1:9/").origin, loop)
        transport = _FakeTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        reply = conn.start(b"", b"")
        conn.data_received(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        assert isinstance(reply._error, InvalidResponse) and "101" in str(reply._error)
        assert transport.closed
    finally:
        loop.close()
