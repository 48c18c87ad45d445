"""Faults that must show in metrics (issue 13, item 14), read from ``/metrics`` over HTTP:
a Redis outage behind the shared rate limits, and a reload whose ``logging.file`` cannot be opened."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp

from tests.conftest import StartApex
from tests.integration.fakes import FakeUpstream
from tests.integration.test_teams import policy_config
from tests.redis_server import RedisServer


async def scrape(url: str, name: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as r:
        text = await r.text()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else -1.0


async def test_redis_outage_is_counted(upstream: FakeUpstream, start_apex: StartApex, redis_server: RedisServer) -> None:
    cfg = policy_config(upstream, rate_limit={"rpm": 1000})
    cfg["global"]["rate_limit_store"] = {"type": "redis", "url": redis_server.url, "fail_mode": "open"}
    inst = await start_apex(cfg)
    headers = {"Authorization": "Bearer team-search"}
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    async with aiohttp.ClientSession() as s:
        async with s.post(inst.openai_url + "/chat/completions", headers=headers, json=body) as r:
            assert r.status == 200
        assert await scrape(inst.url, "apex_rate_limit_store_errors_total") == 0
        redis_server.stop()
        for _ in range(3):
            async with s.post(inst.openai_url + "/chat/completions", headers=headers, json=body) as r:
                assert r.status == 200  # fail open: served without limits
    assert await scrape(inst.url, "apex_rate_limit_store_errors_total") >= 3


async def test_unopenable_log_file_is_a_failed_reload(upstream: FakeUpstream, start_apex: StartApex, tmp_path: Path) -> None:
    cfg = policy_config(upstream)
    inst = await start_apex(cfg)
    failed = 'apex_config_reloads_total{result="failure"}'
    before = await scrape(inst.url, re.escape(failed))
    cfg["logging"] = {"level": "error", "file": str(tmp_path / "no-such-dir" / "apex.log")}
    assert inst.gateway.reload_bytes(json.dumps(cfg).encode(), "SIGHUP") is False
    assert await scrape(inst.url, re.escape(failed)) == before + 1
    assert inst.gateway.snapshot.config.logging.file is None  # the running config stays
