"""drop_socket: after a failed create_connection(sock=...), close the SOCKS tunnel's socket only
while its descriptor still is that socket (uvloop may have closed it, and the number may have
been handed to another file since)."""

from __future__ import annotations

import os
import socket

import pytest

pytest.importorskip("python_socks")

from apex.upstream.socks import drop_socket, socket_identity  # noqa: E402  # needs the socks extra


def test_a_socket_still_open_is_closed() -> None:
    a, b = socket.socketpair()
    try:
        fd = a.fileno()
        drop_socket(a, socket_identity(a))
        assert a.fileno() == -1
        with pytest.raises(OSError):
            os.fstat(fd)
    finally:
        b.close()


def test_a_descriptor_already_closed_is_only_let_go() -> None:
    a, b = socket.socketpair()
    try:
        identity = socket_identity(a)
        os.close(a.fileno())  # what uvloop does on a failed hand-over
        drop_socket(a, identity)
        assert a.fileno() == -1
    finally:
        b.close()


def test_a_number_reused_by_another_file_is_not_closed() -> None:
    a, b = socket.socketpair()
    try:
        identity = socket_identity(a)
        number = a.fileno()
        os.close(number)
        with open(os.devnull, "rb") as other:  # the lowest free number: the one just closed
            if other.fileno() != number:
                pytest.skip("the kernel handed out another descriptor number")
            drop_socket(a, identity)
            os.fstat(other.fileno())  # still open: not closed behind its owner's back
            assert a.fileno() == -1
    finally:
        b.close()
