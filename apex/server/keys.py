"""Typed aiohttp AppKeys shared by the server modules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from aiohttp import web

if TYPE_CHECKING:
    from apex.server.gateway import Gateway

__all__ = ["GATEWAY_KEY"]

GATEWAY_KEY: Final[web.AppKey[Gateway]] = web.AppKey("apex_gateway")
