"""Typed aiohttp AppKeys shared by the server modules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from aiohttp import web

if TYPE_CHECKING:
    from apex.server.gateway import Gateway

__all__ = ["FALLBACK_KEY", "GATEWAY_KEY"]

GATEWAY_KEY: Final[web.AppKey[Gateway]] = web.AppKey("apex_gateway")
# The handler of unknown paths, for a request-target that is no path at all (conn.py).
FALLBACK_KEY: Final[web.AppKey[Callable[[web.Request], Awaitable[web.StreamResponse]]]] = web.AppKey("apex_fallback")
