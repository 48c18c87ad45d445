"""Typed aiohttp AppKeys shared by the server modules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from aiohttp import web

if TYPE_CHECKING:
    pass

__all__ = ["GATEWAY_KEY"]

GATEWAY_KEY: Final = web.AppKey("apex_gateway", "Gateway")
