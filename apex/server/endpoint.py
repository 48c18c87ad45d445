"""Endpoint wrapper: request id, the Exchange record, error rendering, the one catch-all.

Every API endpoint runs inside ``api_endpoint``: it assigns the request id (the client's
``x-request-id`` if sent), renders any ApexError in the endpoint's dialect, turns any other
exception into a logged 500 (the only ``except Exception`` on the request path), adds the
``x-apex-*`` headers, and hands the finished Exchange to the Gateway for logs and metrics.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from apex.errors import ApexError, InternalError
from apex.server.exchange import Exchange
from apex.server.gateway import Gateway
from apex.server.keys import GATEWAY_KEY
from apex.server.responses import error_response
from apex.snapshot import Snapshot
from apex.types import Dialect

__all__ = ["Endpoint", "api_endpoint", "new_request_id"]

log = logging.getLogger("apex.server")

Endpoint = Callable[[web.Request, Snapshot, Exchange, Dialect], Awaitable[web.StreamResponse]]

_PREFIX: Final = f"req_{os.urandom(5).hex()}"
_COUNTER: Final = itertools.count(1)
_MAX_CLIENT_RID: Final = 128


def new_request_id() -> str:
    """A process-unique request id (random prefix + counter: cheaper than a uuid)."""
    return f"{_PREFIX}{next(_COUNTER):08x}"


def api_endpoint(dialect: Dialect, endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap ``endpoint`` with the request lifecycle for ``dialect``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        gateway: Gateway = request.app[GATEWAY_KEY]
        client_rid = request.headers.get("x-request-id")
        if client_rid is not None and (not client_rid or len(client_rid) > _MAX_CLIENT_RID or not client_rid.isprintable()):
            client_rid = None
        ex = Exchange(client_rid or new_request_id(), client_rid, dialect)
        snap = gateway.snapshot  # one snapshot for the whole request, even across a reload
        gateway.in_flight_changed(ex, +1)
        response: web.StreamResponse | None = None
        try:
            try:
                response = await endpoint(request, snap, ex, dialect)
            except ApexError as err:
                if ex.committed:
                    raise InternalError("error after the response started") from err
                ex.error_kind = err.kind
                response = error_response(dialect, err)
            except asyncio.CancelledError:
                ex.status = 499  # client closed the connection
                raise
            except Exception as exc:  # noqa: BLE001  # the one catch-all: log it, answer 500
                log.exception("internal error serving %s", request.path)
                ex.error_kind = "internal"
                if ex.committed:
                    raise
                response = error_response(dialect, InternalError(f"internal error ({type(exc).__name__})"))
            if not response.prepared:
                ex.status = response.status
                response.headers.update(ex.response_headers())
                response.headers["x-apex-overhead-ms"] = f"{ex.measure_overhead():.3f}"
            return response
        finally:
            gateway.in_flight_changed(ex, -1)
            gateway.finish(ex)

    return handler
