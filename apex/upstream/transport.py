"""The transport seam: one method, send a request and get a reply whose body streams.

The way httpx's ``_transports/base.py`` / ``mock.py`` split it: the pipeline builds an
``UpstreamRequest`` and hands it to its channel's ``Transport``; whether the answer comes from
the network (``HttpTransport``: the shared keep-alive pool, through the channel's egress) or
from inside the process (``apex.upstream.mock.MockTransport``) is the transport's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from apex.types import Dialect
from apex.upstream.base import UpstreamReply
from apex.upstream.egress import Egress
from apex.upstream.http import UpstreamPool

if TYPE_CHECKING:
    from apex.upstream.cloud import CloudRoute

__all__ = ["HttpTransport", "Transport", "UpstreamRequest"]


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One request to an upstream: the POST on the wire plus what an in-process upstream needs."""

    url: str
    header_fields: bytes  # prebuilt ``Name: value\r\n`` lines (Host and Content-Length are added)
    body: bytes
    dialect: Dialect      # the upstream dialect the body is written in
    model: str            # the upstream model name
    stream: bool = False
    route: CloudRoute | None = None  # a cloud's request signing and stream framing (the body is edited already)
    # Told True when the request waits for a free connection (max_connections), False once
    # it has one: the wait for the upstream's first byte starts then, not in the queue.
    queued: Callable[[bool], None] | None = None


class Transport(Protocol):
    async def send(self, request: UpstreamRequest) -> UpstreamReply:
        """The reply once its status and headers are in; transport failures raise
        HttpClientError/OSError/TimeoutError (apex.upstream.base maps them)."""
        ...


class HttpTransport:
    """A channel's way to a real upstream: the gateway's pool, the channel's egress and connect timeout."""

    __slots__ = ("_connect_timeout", "_egress", "_pool")

    def __init__(self, pool: UpstreamPool, egress: Egress | None, connect_timeout: float) -> None:
        self._pool = pool
        self._egress = egress
        self._connect_timeout = connect_timeout

    async def send(self, request: UpstreamRequest) -> UpstreamReply:
        route = request.route
        if route is not None:
            return await route.send(
                self._pool, request.url, request.header_fields, request.body, request.stream,
                self._connect_timeout, self._egress, request.queued,
            )
        return await self._pool.post(
            request.url, request.header_fields, request.body,
            connect_timeout=self._connect_timeout, egress=self._egress, queued=request.queued,
        )
