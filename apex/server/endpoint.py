"""Endpoint wrapper: request id, the Exchange record, error rendering, the one catch-all.

Every API endpoint runs inside ``api_endpoint``: it assigns the request id (the client's
``x-request-id`` if sent), renders any ApexError in the endpoint's dialect, turns any other
exception into a logged 500 (the only ``except Exception`` on the request path), adds the
``x-apex-*`` headers, and hands the finished Exchange to the Gateway for logs and metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from apex.errors import (
    ApexError,
    ErrorKind,
    ExpectationFailed,
    InternalError,
    InvalidRequest,
    RequestTooLarge,
    ShuttingDown,
)
from apex.server.conn import ApexRequestHandler
from apex.server.exchange import Exchange, new_request_id
from apex.server.gateway import Gateway
from apex.server.inputs import check_request_headers, client_request_id
from apex.server.keys import GATEWAY_KEY
from apex.server.responses import dialect_of_path, error_response
from apex.snapshot import Snapshot
from apex.types import Dialect

__all__ = ["Endpoint", "api_endpoint", "expect_handler", "new_request_id", "record_answer"]

log = logging.getLogger("apex.server")

Endpoint = Callable[[web.Request, Snapshot, Exchange, Dialect], Awaitable[web.StreamResponse]]

def api_endpoint(dialect: Dialect, endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap ``endpoint`` with the request lifecycle for ``dialect``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        gateway: Gateway = request.app[GATEWAY_KEY]
        client_rid = client_request_id(request.headers)
        ex = Exchange(client_rid or new_request_id(), client_rid, dialect)
        if gateway.tracer is not None:
            ex.trace = gateway.tracer.start_request(ex, request.headers)
        snap = gateway.snapshot  # one snapshot for the whole request, even across a reload
        gateway.in_flight_changed(ex, +1)
        gateway.requests.add(request.task)  # the shutdown deadline answers what is still open
        response: web.StreamResponse | None = None
        try:
            try:
                check_request_headers(request.headers)
                response = await endpoint(request, snap, ex, dialect)
            except ApexError as err:
                if ex.committed:
                    raise InternalError("error after the response started") from err
                ex.error_kind = err.kind
                response = error_response(dialect, err)
            except RecursionError as exc:
                # Only a body nested hundreds of levels deep gets here (msgspec refuses ~1,000
                # levels with this error, a translation walking one may hit Python's limit):
                # the client's input, answered 400 like other malformed JSON.
                if ex.committed:
                    raise InternalError("error after the response started") from exc
                too_deep = InvalidRequest("the request's JSON is nested too deeply")
                ex.error_kind = too_deep.kind
                response = error_response(dialect, too_deep)
            except asyncio.CancelledError:
                if not _stopped_at_deadline(gateway, request, ex):
                    # The client closed the connection; after a stream's final event that is how
                    # many SDKs end a stream (openai's helper, langchain, Codex): a success.
                    ex.status = 200 if ex.final_delivered else 499
                    raise
                request.task.uncancel()
                stopped = ShuttingDown("Apex is shutting down; the request was stopped at the shutdown deadline",
                                       retry_after=1.0)
                ex.error_kind = stopped.kind
                response = error_response(dialect, stopped)
            except Exception as exc:  # noqa: BLE001  # the one catch-all: log it, answer 500
                if ex.committed and isinstance(exc, ConnectionError):
                    ex.status = 200 if ex.final_delivered else 499  # a write found the client gone
                    raise
                log.exception("internal error", extra={"fields": {"request_id": ex.request_id, "path": request.path}})
                ex.error_kind = "internal"
                if ex.committed:
                    raise
                response = error_response(dialect, InternalError(f"internal error ({type(exc).__name__})"))
            if not response.prepared:
                ex.status = response.status
                if ex.error_kind is not None and isinstance(response, web.Response) and isinstance(response.body, bytes):
                    ex.response_body = response.body  # the error the client got (capture_content)
                if ex.error_kind is not None and not request.content.is_eof() and "Content-Encoding" in request.headers:
                    # A compressed body refused before it was read (no key, too large): aiohttp
                    # would read and decompress the rest on the loop for up to 10 s (its
                    # lingering close); three gzip bombs sent with no key stalled every client.
                    response.force_close()
                    if isinstance(request.protocol, ApexRequestHandler):
                        request.protocol.close_without_lingering()
                response.headers.update(ex.response_headers())
                response.headers["x-apex-overhead-ms"] = f"{ex.measure_overhead():.3f}"
            return response
        finally:
            gateway.requests.discard(request.task)
            gateway.in_flight_changed(ex, -1)
            # Metrics, cost, budget settlement and the log lines run once the answer is out:
            # aiohttp writes it when this returns, so they are not part of the client's wait
            # (~5-15 µs per request), and the duration they record ends at the last byte.
            asyncio.get_running_loop().call_soon(gateway.finish, ex)

    return handler


def _stopped_at_deadline(gateway: Gateway, request: web.Request, ex: Exchange) -> bool:
    """True when the cancellation is the shutdown deadline's (once) on a request whose
    answer has not started and whose client is still connected: it gets a 503, not a cut."""
    return (gateway.stopping and not ex.committed and request.task.cancelling() == 1
            and request.transport is not None and not request.transport.is_closing())


def expect_handler(dialect: Dialect | None = None) -> Callable[[web.Request], Awaitable[web.StreamResponse | None]]:
    """``Expect: 100-continue``: refuse a declared oversize body with 413 *before* inviting
    the client to upload it; any other expectation is 417. Both in ``dialect``'s shape (by
    default the path's: Anthropic under /v1/messages, else OpenAI)."""

    async def handle(request: web.Request) -> web.StreamResponse | None:
        started = time.perf_counter()
        expect = request.headers.get("Expect", "")
        err: ApexError | None = None
        if expect.lower() != "100-continue":
            err = ExpectationFailed("only 'Expect: 100-continue' is supported")
        else:
            limit = request.app[GATEWAY_KEY].snapshot.max_body_bytes
            declared = request.content_length
            if declared is not None and declared > limit:
                err = RequestTooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
        if err is None:
            if request.version >= (1, 1):
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                request.writer.output_size = 0  # the interim answer is not the response's start
            return None
        shape = dialect or dialect_of_path(request.path)
        response = error_response(shape, err)
        client_rid = client_request_id(request.headers)
        rid = client_rid or new_request_id()
        response.headers["x-request-id"] = rid
        response.headers["x-apex-overhead-ms"] = f"{(time.perf_counter() - started) * 1000:.3f}"
        response.force_close()  # the body the client may still send is not read
        record_answer(request, rid, client_rid, shape, response.status, err.kind)
        return response

    return handle


def record_answer(request: web.Request, request_id: str, client_rid: str | None, dialect: Dialect, status: int,
                  kind: ErrorKind) -> None:
    """Count and log an answer Apex made outside an endpoint (a 404, a 405, a refused
    Expect) like every answered request, once it is out."""
    request.app[GATEWAY_KEY].record_answer(request_id, client_rid, dialect, status, kind)
