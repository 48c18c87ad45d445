"""A tiny, dependency-free ``sd_notify``: tell systemd the gateway is ready, reloading or stopping.

systemd's ``Type=notify`` services report their state as datagrams on the unix socket named
in ``$NOTIFY_SOCKET`` (see sd_notify(3)). This module only speaks that protocol: it never
raises (a failed notification must not take the gateway down) and does nothing when the
variable is unset, so it is safe to call unconditionally outside systemd.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Final

__all__ = ["Watchdog", "notify", "ready", "reloading", "status", "stopping", "watchdog_interval"]

_log: Final = logging.getLogger(__name__)


def notify(state: str, *, env: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to ``$NOTIFY_SOCKET``; True when it was sent."""
    address = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        # A leading "@" names a Linux abstract-namespace socket, which is spelled with a NUL.
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        _log.warning("ignoring NOTIFY_SOCKET %r: not a unix socket path", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        _log.warning("sd_notify %r failed: %s", state, exc)
        return False
    return True


def ready(*, env: Mapping[str, str] | None = None) -> bool:
    """The gateway is serving: systemd's ``start`` returns now."""
    return notify(f"READY=1\nMAINPID={os.getpid()}", env=env)


def reloading(*, env: Mapping[str, str] | None = None) -> bool:
    """A reload began; ``ready()`` ends it. MONOTONIC_USEC is required by Type=notify-reload."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}", env=env)


def stopping(*, env: Mapping[str, str] | None = None) -> bool:
    """The gateway is draining and will exit."""
    return notify("STOPPING=1", env=env)


def status(text: str, *, env: Mapping[str, str] | None = None) -> bool:
    """A one-line status shown by ``systemctl status``."""
    return notify("STATUS=" + text.replace("\n", " "), env=env)


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of ``$WATCHDOG_USEC``), or None when off.

    systemd sets WATCHDOG_USEC (and WATCHDOG_PID) for a unit with ``WatchdogSec=``; a ping
    that does not arrive in time means the process is stuck and systemd restarts it.
    """
    e = os.environ if env is None else env
    usec, pid = e.get("WATCHDOG_USEC", ""), e.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


class Watchdog:
    """Pings systemd's watchdog from the event loop itself, so a stuck loop stops the pings."""

    def __init__(self, loop: asyncio.AbstractEventLoop, env: Mapping[str, str] | None = None) -> None:
        self._env = env
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None
        self.interval = watchdog_interval(env)
        if self.interval is not None:
            self._ping()

    def _ping(self) -> None:
        notify("WATCHDOG=1", env=self._env)
        assert self.interval is not None
        self._handle = self._loop.call_later(self.interval, self._ping)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
