"""apex.sdnotify speaks the sd_notify datagram protocol and never raises."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from apex import sdnotify


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, dict[str, str]]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield sock, {"NOTIFY_SOCKET": path}
    sock.close()


def test_ready_sends_ready_and_mainpid(notify_socket: tuple[socket.socket, dict[str, str]]) -> None:
    """ready() sends READY=1 with this process's MAINPID."""
    sock, env = notify_socket
    assert sdnotify.ready(env=env)
    assert sock.recv(1024).decode() == f"READY=1\nMAINPID={os.getpid()}"


def test_reloading_stopping_status(notify_socket: tuple[socket.socket, dict[str, str]]) -> None:
    """reloading() carries MONOTONIC_USEC; stopping and status send their lines."""
    sock, env = notify_socket
    assert sdnotify.reloading(env=env)
    assert sock.recv(1024).decode().startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert sdnotify.stopping(env=env)
    assert sock.recv(1024) == b"STOPPING=1"
    assert sdnotify.status("a\nb", env=env)
    assert sock.recv(1024) == b"STATUS=a b"


def test_abstract_socket(tmp_path: Path) -> None:
    """An '@' address names an abstract socket."""
    name = f"apex-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert sdnotify.notify("WATCHDOG=1", env={"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(100) == b"WATCHDOG=1"


def test_no_socket_is_a_no_op(tmp_path: Path) -> None:
    """Unset, relative or dead sockets return False instead of raising."""
    assert not sdnotify.notify("READY=1", env={})
    assert not sdnotify.notify("READY=1", env={"NOTIFY_SOCKET": "relative"})
    assert not sdnotify.notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "missing.sock")})
