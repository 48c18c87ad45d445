"""Connected TCP sockets for the upstream pool, and handing them to the event loop safely.

``open_socket`` resolves a name and connects the way RFC 8305 (Happy Eyeballs v2) asks:
IPv6 and IPv4 addresses interleaved, the next attempt started 250 ms after the previous one
if it has not connected yet. uvloop's ``create_connection`` tries the addresses one after
the other, so on a network whose IPv6 route is broken (AAAA records, no way there) each new
connection used to spend the whole connect timeout on the first address. The race is
aiohappyeyeballs' (the library aiohttp's own client uses; already installed with aiohttp).

``hand_over`` gives a connected socket to the loop and, when that fails, closes it with
``drop_socket``: only while its descriptor still is that socket (see there).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from typing import Final

import aiohappyeyeballs

__all__ = ["drop_socket", "hand_over", "open_socket", "socket_identity"]

HAPPY_EYEBALLS_DELAY: Final = 0.25  # seconds before the next address is tried (RFC 8305 section 5; aiohttp's too)


async def open_socket(host: str, port: int) -> socket.socket:
    """A non-blocking TCP socket connected to ``host:port``. socket.gaierror when the name
    does not resolve; OSError (ConnectionRefusedError...) when no address takes the
    connection (one error, or aiohappyeyeballs' summary of them, with a shared errno kept)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return await aiohappyeyeballs.start_connection(
        infos, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY, interleave=1, loop=loop
    )


async def hand_over(
    loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.BaseProtocol], sock: socket.socket
) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
    """``loop.create_connection(factory, sock=sock)``; the socket is closed if that fails."""
    identity = socket_identity(sock)
    try:
        return await loop.create_connection(factory, sock=sock)
    except BaseException:
        drop_socket(sock, identity)
        raise


def socket_identity(sock: socket.socket) -> tuple[int, int]:
    """The open file ``sock`` is (device, inode): unique while it stays open."""
    st = os.fstat(sock.fileno())
    return st.st_dev, st.st_ino


def drop_socket(sock: socket.socket, identity: tuple[int, int]) -> None:
    """Close ``sock`` after ``create_connection(sock=...)`` failed with it. uvloop may have
    closed the descriptor already without detaching the socket object, and the number may
    name a file opened since: close it only while it is still the socket of ``identity``
    (taken before the hand-over), else just let go of the number."""
    try:
        still_ours = socket_identity(sock) == identity
    except OSError:
        still_ours = False
    if still_ours:
        sock.close()
    else:
        sock.detach()
