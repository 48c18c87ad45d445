"""The in-run baseline: a naive aiohttp + uvloop pass-through proxy, deliberately ~50 lines.

It reads the client's body, forwards it on one shared keep-alive ClientSession, and copies
the answer back (streamed chunk by chunk when the upstream sends SSE). It checks a bearer key
with a plain comparison and does nothing else: no routing, metrics, logging or translation.
Apex, with all of those on, is measured against what this costs in the same run.

    python -m bench.naive_proxy --port 9001 --upstream http://127.0.0.1:9000
"""

from __future__ import annotations

import argparse

import aiohttp
import uvloop
from aiohttp import web

_HOP = {"host", "content-length", "transfer-encoding", "connection", "authorization", "keep-alive"}


async def health(_: web.Request) -> web.Response:
    return web.json_response({"status": "healthy"})


def build_app(upstream: str, key: str) -> web.Application:
    app = web.Application()
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]  # cleanup_ctx generator
        app[session_key] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=600), auto_decompress=False
        )
        yield
        await app[session_key].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {key}":
            return web.json_response({"error": {"message": "bad key", "type": "authentication_error"}}, status=401)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers["Authorization"] = "Bearer sk-fake"
        async with app[session_key].post(upstream + request.path, data=body, headers=headers) as up:
            out_headers = {k: v for k, v in up.headers.items() if k.lower() not in _HOP}
            if up.headers.get("Content-Type", "").startswith("text/event-stream"):
                resp = web.StreamResponse(status=up.status, headers=out_headers)
                await resp.prepare(request)
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
            return web.Response(status=up.status, body=await up.read(), headers=out_headers)

    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v1/chat/completions", forward)
    app.router.add_post("/v1/messages", forward)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:9000")
    parser.add_argument("--key", default="bench-key")
    args = parser.parse_args()
    app = build_app(args.upstream.rstrip("/"), args.key)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
