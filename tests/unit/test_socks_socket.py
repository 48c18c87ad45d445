"""drop_socket: after a failed create_connection(sock=...), close the socket (a direct one, or a
SOCKS tunnel's) only
while its descriptor still is that socket (uvloop may have closed it, and the number may have
been handed to another file since)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from apex.upstream.sockets import drop_socket, socket_identity


@pytest.fixture
def sock() -> Iterator[socket.socket]:
    """One end of a connected pair (standing in for a tunnel); the other end closes after the test."""
    a, b = socket.socketpair()
    with b:
        yield a
    if a.fileno() != -1:
        a.close()


def test_a_socket_still_open_is_closed(sock: socket.socket) -> None:
    fd = sock.fileno()
    drop_socket(sock, socket_identity(sock))
    assert sock.fileno() == -1
    with pytest.raises(OSError):
        os.fstat(fd)


def test_a_descriptor_already_closed_is_only_let_go(sock: socket.socket) -> None:
    identity = socket_identity(sock)
    os.close(sock.fileno())  # what uvloop does on a failed hand-over
    drop_socket(sock, identity)
    assert sock.fileno() == -1


def test_a_number_reused_by_another_file_is_not_closed(sock: socket.socket) -> None:
    identity = socket_identity(sock)
    number = sock.fileno()
    os.close(number)
    with open(os.devnull, "rb") as other:  # the lowest free number: the one just closed
        if other.fileno() != number:
            sock.detach()  # its number is closed: nothing for the fixture to close
            pytest.skip("the kernel handed out another descriptor number")
        drop_socket(sock, identity)
        os.fstat(other.fileno())  # still open: not closed behind its owner's back
        assert sock.fileno() == -1
