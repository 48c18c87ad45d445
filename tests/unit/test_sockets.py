"""apex.upstream.sockets.open_socket: every address of a name, raced (Happy Eyeballs), so an
address that never answers does not hold a new connection until the connect timeout.

The address that never answers is real: a loopback listener with a backlog of 0 whose queue
one connection already fills, so the kernel drops further SYNs (as a broken IPv6 route
does). Name resolution is the test's: the loop's getaddrinfo returns that address first.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from apex.upstream.http import UpstreamPool
from apex.upstream.sockets import open_socket

LIMIT = 5.0  # a hang guard, far above the 0.25 s the race waits before the next address


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A loopback port where a new connection neither succeeds nor fails (SYNs dropped)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname())  # the one queued connection
    try:
        yield listener.getsockname()[1]
    finally:
        filler.close()
        listener.close()


@pytest.fixture
async def answering() -> AsyncIterator[int]:
    """A loopback HTTP server answering every request with 200 "ok"."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                await reader.readexactly(2)  # the tests send "{}"
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def resolve_to(monkeypatch: pytest.MonkeyPatch, *ports: int) -> None:
    """Make the running loop resolve every name to 127.0.0.1 at ``ports``, in that order."""
    loop = asyncio.get_running_loop()

    async def getaddrinfo(host: Any, port: Any, **kwargs: Any) -> list[Any]:
        wanted = [port] if host == "127.0.0.1" else ports  # uvloop's sock_connect resolves the literal too
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", p)) for p in wanted]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)


async def test_an_address_that_never_answers_is_raced_past(
    black_hole: int, answering: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolve_to(monkeypatch, black_hole, answering)
    sock = await asyncio.wait_for(open_socket("dual-stack.test", 443), LIMIT)
    with sock:
        assert sock.getpeername()[1] == answering


async def test_the_pool_connects_through_the_race(
    black_hole: int, answering: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request to a name whose first address is a black hole is answered, well inside a
    connect timeout the first address alone would have used up."""
    resolve_to(monkeypatch, black_hole, answering)
    pool = UpstreamPool()
    try:
        reply = await pool.post(f"http://dual-stack.test:{answering}/v1/x", b"", b"{}", connect_timeout=LIMIT)
        try:
            assert reply.status == 200 and await reply.read() == b"ok"
        finally:
            reply.close()
    finally:
        await pool.close()


async def test_every_address_refusing_is_one_connection_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    ports = []
    for _ in range(2):
        with socket.socket() as s:  # bound then closed: nothing listens there
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    resolve_to(monkeypatch, *ports)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(open_socket("nowhere.test", 443), LIMIT)
