"""The design's floor: aiohttp's server and Apex's own upstream client, nothing else.

It forwards a JSON POST the way Apex's pass-through does (one shared ``UpstreamPool``,
prebuilt header lines, the answer read whole and sent back) and does no auth, routing,
attempt bookkeeping, usage, metrics or logging. What Apex costs above this is what its own
Python work costs; what this costs is fixed by aiohttp + uvloop (see bench/README.md).
Non-stream only: for profiling, not a bench target.

    python -m bench.floor_proxy --port 9002 --upstream http://127.0.0.1:9000
"""

from __future__ import annotations

import argparse

import uvloop
from aiohttp import web

from apex.upstream.http import UpstreamPool, encode_header_fields


def build_app(upstream: str) -> web.Application:
    pool = UpstreamPool()
    fields = encode_header_fields(
        {"Host": upstream.split("//", 1)[1], "Content-Type": "application/json", "Authorization": "Bearer sk-fake"}
    )

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        reply = await pool.post(upstream + request.path, fields, body, connect_timeout=5.0)
        data = await reply.read()
        reply.release()
        return web.Response(body=data, status=reply.status, content_type="application/json")

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "healthy"})

    async def close_pool(_: web.Application) -> None:
        await pool.close()

    app = web.Application()
    app.on_cleanup.append(close_pool)
    app.router.add_post("/v1/chat/completions", forward)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:9000")
    args = ap.parse_args()
    web.run_app(build_app(args.upstream.rstrip("/")), host="127.0.0.1", port=args.port, access_log=None, print=None,
                loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
