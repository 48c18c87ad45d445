"""The answer to CONNECT (apex.upstream.http._Tunnel), byte for byte, as proxies send it.

The egress integration tests drive real proxies (tests/proxy_server.py, tinyproxy); these pin
the parsing rules on the answers those do not produce: split reads, other 2xx codes, bytes
after a success (which cannot be ours: TLS has not started), a refusal's page, not-HTTP.
"""

from __future__ import annotations

import asyncio

import pytest

from apex.upstream.http import InvalidResponse, _Tunnel


async def answer(*reads: bytes) -> int:
    tunnel = _Tunnel(asyncio.get_running_loop())
    for data in reads:
        tunnel.data_received(data)
    assert tunnel.answer.done(), "the head was complete: the answer must be settled"
    return tunnel.answer.result()


@pytest.mark.parametrize("reads", [
    (b"HTTP/1.1 200 Connection established\r\n\r\n",),
    (b"HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n",),  # tinyproxy
    (b"HTTP/1.1 200 ", b"OK\r\n", b"Via: 1.1 squid\r\n\r", b"\n"),  # split anywhere
    (b"HTTP/1.1 200\r\n\r\n",),  # no reason phrase
])
async def test_success_in_any_split(reads: tuple[bytes, ...]) -> None:
    assert await answer(*reads) == 200


async def test_another_2xx_is_a_tunnel_too() -> None:
    assert await answer(b"HTTP/1.1 204 No Content\r\n\r\n") == 204  # RFC 9110 9.3.6: any 2xx


async def test_refusal_with_a_page_is_its_status() -> None:
    page = b"<html><h1>407 Proxy Authentication Required</h1></html>"
    head = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: %d\r\n\r\n" % len(page)
    assert await answer(head + page) == 407
    assert await answer(b"HTTP/1.0 403 Forbidden\r\nContent-Type: text/html\r\n\r\n<p>no</p>") == 403


async def test_bytes_after_a_success_are_refused() -> None:
    with pytest.raises(InvalidResponse, match="bytes after its answer"):
        await answer(b"HTTP/1.1 200 OK\r\n\r\n\x16\x03\x01")


@pytest.mark.parametrize("data", [b"SSH-2.0-OpenSSH_9.2\r\n\r\n", b"HTTP/1.1 abc Nope\r\n\r\n", b"\r\n\r\n"])
async def test_not_http_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidResponse, match="not HTTP"):
        await answer(data)


async def test_an_endless_head_is_refused() -> None:
    tunnel = _Tunnel(asyncio.get_running_loop())
    tunnel.data_received(b"HTTP/1.1 200 OK\r\n")
    for _ in range(70):
        tunnel.data_received(b"X-Filler: " + b"a" * 1000 + b"\r\n")
    with pytest.raises(InvalidResponse, match="too long"):
        tunnel.answer.result()


async def test_close_before_the_answer_is_a_reset() -> None:
    tunnel = _Tunnel(asyncio.get_running_loop())
    tunnel.data_received(b"HTTP/1.1 200 OK\r\n")
    tunnel.connection_lost(None)
    with pytest.raises(ConnectionResetError):
        tunnel.answer.result()
