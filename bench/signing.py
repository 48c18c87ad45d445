"""Per-request CPU of a Bedrock channel's own work: the body edit plus SigV4 signing.

``python -m bench.signing`` compiles a bedrock channel exactly as the gateway does, binds
static AWS keys, and times what an attempt does to the bytes before they go out (the
Anthropic body edit for InvokeModel, ``CloudRoute.prepare``; botocore's SigV4 over those
bytes and the header lines, ``CloudRoute.send``)
for bodies of several sizes, in process CPU time. For comparison it times the same for an
Azure channel with an Entra ID token (a prebuilt header line) and the body edit alone.
No network: the request path's socket work is what ``python -m bench`` measures.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from apex.config.load import load_config_bytes
from apex.snapshot import build_snapshot
from apex.types import Dialect
from apex.upstream.credentials import Fetched, Refresher

SIZES = (1_000, 16_000, 256_000)


def _body(size: int) -> bytes:
    text = "x" * max(size - 120, 1)
    return json.dumps({"model": "claude-sonnet-4", "max_tokens": 256, "stream": True,
                       "messages": [{"role": "user", "content": text}]}).encode()


def _time(fn: Callable[[], object], n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n * 1e6


async def main() -> None:
    cfg = load_config_bytes(json.dumps({
        "channels": [
            {"name": "br", "provider_type": "bedrock", "region": "us-east-1",
             "aws": {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "secret", "session_token": "tok"}},
            {"name": "az", "provider_type": "azure_openai", "base_url": "https://r.openai.azure.com", "api_version": "v1",
             "azure_ad": {"tenant_id": "t", "client_id": "c", "client_secret": "s"}},
        ],
        "routers": [{"name": "r", "channels": [{"name": "br"}]}],
    }).encode())
    snap = build_snapshot(cfg)
    br = snap.channels["br"]
    assert br.cloud is not None and br.cloud.credentials is not None
    slot = br.cloud.credentials
    slot.refresher = slot.factory(None)  # type: ignore[arg-type]  # static keys need no pool
    await slot.refresher.refresh_once()
    plan = br.plan_for(Dialect.ANTHROPIC_MESSAGES, "us.anthropic.claude-sonnet-4-20250514-v1:0")
    assert plan is not None and plan.route is not None
    route = plan.route
    assert route.prepare is not None and route.authorize is not None
    url = plan.url_for("us.anthropic.claude-sonnet-4-20250514-v1:0", True)

    az = snap.channels["az"]
    assert az.cloud is not None and az.cloud.credentials is not None
    az_slot = az.cloud.credentials

    async def token() -> Fetched[bytes]:
        return Fetched(b"Authorization: Bearer " + b"t" * 1500 + b"\r\n", 3600.0)

    az_slot.refresher = Refresher("az", "token", token)
    await az_slot.refresher.refresh_once()
    az_plan = az.plans[Dialect.OPENAI_CHAT]
    assert az_plan.route is not None and az_plan.route.authorize is not None
    az_auth = az_plan.route.authorize

    print("per-request CPU, microseconds (process time; mean of many calls)")
    print(f"{'body':>9} | {'bedrock edit':>12} | {'bedrock sign':>12} | {'bedrock total':>13} | {'azure token':>11}")
    for size in SIZES:
        body = _body(size)
        n = 2000 if size < 100_000 else 300
        prepared = route.prepare(body)
        prepare, authorize = route.prepare, route.authorize
        edit = _time(lambda: prepare(body), n)  # noqa: B023  # timed right here, in this iteration
        sign = _time(lambda: authorize(url, prepared), n)  # noqa: B023
        tok = _time(lambda: az_auth(url, prepared), n)  # noqa: B023
        print(f"{len(body):>9} | {edit:>12.1f} | {sign:>12.1f} | {edit + sign:>13.1f} | {tok:>11.2f}")


if __name__ == "__main__":
    asyncio.run(main())
