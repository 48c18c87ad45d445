"""Team budgets over real HTTP with the official SDKs: header, gauge, 429s in both dialects, Redis sharing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
import redis.asyncio as aioredis

from apex.budget import NANO
from tests.conftest import StartApex, ant, basic_config, oai
from tests.integration.fakes import Behaviour, FakeUpstream
from tests.redis_server import RedisServer

MSG: Any = [{"role": "user", "content": "what is 4200 + 42?"}]
# 1000 USD per million tokens: one token costs $0.001, so the figures below are easy to follow.
PRICES = {"gpt-*": {"input": 1000, "output": 1000}, "claude-*": {"input": 1000, "output": 1000}}


def _config(upstream: FakeUpstream, usd: float, **store: Any) -> dict[str, Any]:
    cfg = basic_config(upstream)
    cfg["prices"] = PRICES
    cfg["teams"] = [{"id": "t1", "api_key": "tk-1", "policy": {"budget": {"usd": usd, "period": "day"}}},
                    {"id": "free", "api_key": "tk-free"}]
    if store:
        cfg["global"]["rate_limit_store"] = store
    return cfg


def _remaining_gauge(inst: Any, team: str) -> float | None:
    value: float | None = inst.gateway.metrics.registry.get_sample_value("apex_budget_remaining_usd", {"team_id": team})
    return value


async def test_budget_admits_below_cap_then_429s_in_both_dialects(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """Requests run while spend < budget and carry x-apex-budget-remaining-usd; then OpenAI clients get
    insufficient_quota and Anthropic clients rate_limit_error, naming the budget and its reset."""
    inst = await start_apex(_config(upstream, 0.05))
    client = oai(inst, "tk-1")
    first = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG, max_tokens=20)
    reserved_left = float(first.headers["x-apex-budget-remaining-usd"])
    assert 0 < reserved_left < 0.05 - 0.020  # the estimate (prompt + 20 output tokens) was reserved
    await asyncio.sleep(0.05)  # the settlement runs just after the response
    assert _remaining_gauge(inst, "t1") == pytest.approx(0.05 - 0.028)  # the fixture's 16 + 12 tokens
    await client.chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=20)  # 0.028 < 0.05: admitted
    await asyncio.sleep(0.05)
    hits = upstream.hits()
    with pytest.raises(openai.RateLimitError) as oa_err:
        await client.chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=20)
    body = oa_err.value.body
    assert isinstance(body, dict)
    assert body["type"] == "insufficient_quota" and body["code"] == "insufficient_quota"
    assert "budget of $0.05 per day (UTC)" in body["message"] and "resets at" in body["message"]
    assert int(oa_err.value.response.headers["retry-after"]) >= 1
    assert float(oa_err.value.response.headers["x-apex-budget-remaining-usd"]) == 0.0  # the 429 says it too
    with pytest.raises(anthropic.RateLimitError) as an_err:
        await ant(inst, "tk-1").messages.create(model="claude-sonnet-4-5", max_tokens=20, messages=MSG)
    assert an_err.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]  # the SDK types body as object
    assert "budget of $0.05" in an_err.value.message
    assert upstream.hits() == hits  # refused before any upstream call
    assert _remaining_gauge(inst, "t1") == 0.0
    free = await oai(inst, "tk-free").chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG)
    assert "x-apex-budget-remaining-usd" not in free.headers  # unbudgeted teams: no header
    errors = inst.gateway.metrics.registry.get_sample_value(
        "apex_errors_total", {"router": "default", "model": "unmatched", "team_id": "t1", "channel": "none",
                              "error_type": "budget_exceeded"})
    assert errors == 1


async def test_failed_request_is_refunded(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A request that fails upstream costs nothing: its reservation is given back."""
    inst = await start_apex(_config(upstream, 1.0))
    upstream.persistent = Behaviour(status=400, body=b'{"error":{"message":"bad","type":"invalid_request_error"}}')
    with pytest.raises(openai.BadRequestError):
        await oai(inst, "tk-1").chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=100)
    await asyncio.sleep(0.05)
    assert _remaining_gauge(inst, "t1") == 1.0


async def test_two_instances_share_a_budget_through_redis(
    upstream: FakeUpstream, start_apex: StartApex, redis_server: RedisServer
) -> None:
    """Two Apex instances on one Redis, hammered concurrently, never overspend the shared budget by more
    than one request's estimate; the spend survives a restart (a third instance refuses at once)."""
    store = {"type": "redis", "url": redis_server.url, "key_prefix": "apex-test:"}
    budget = 0.5
    a = await start_apex(_config(upstream, budget, **store))
    b = await start_apex(_config(upstream, budget, **store))
    upstream.stream_gap = 0.0
    body = json.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}}).encode()
    upstream.persistent = Behaviour(body=body, stall=0.02)  # each request costs exactly $0.030
    admitted = refused = 0

    async def one(i: int) -> None:
        nonlocal admitted, refused
        client = oai(a if i % 2 else b, "tk-1")
        try:
            raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG, max_tokens=10)
        except openai.RateLimitError:
            refused += 1
            return
        admitted += 1
        assert float(raw.headers["x-apex-budget-remaining-usd"]) >= 0

    for _ in range(6):  # waves of concurrent requests until the budget is gone
        await asyncio.gather(*(one(i) for i in range(8)))
        await asyncio.sleep(0.05)
    r = aioredis.Redis.from_url(redis_server.url)
    try:
        keys = [k async for k in r.scan_iter("apex-test:budget:t1:*")]
        assert len(keys) == 1
        raw = await r.get(keys[0])
        assert isinstance(raw, bytes)
        spent = int(raw) / NANO
    finally:
        await r.aclose()
    one_estimate = 0.040  # prompt estimate + 10 output tokens, at most (checked below)
    assert spent == pytest.approx(admitted * 0.030)  # settled to real cost, no reservation left over
    assert budget <= spent <= budget + one_estimate
    assert refused > 0 and admitted >= 16
    assert a.gateway.prices.price("oa", "gpt-4o") is not None
    prompt = 0.001 * (await _prompt_estimate(a))
    assert prompt + 0.010 <= one_estimate

    c = await start_apex(_config(upstream, budget, **store))  # a fresh process: the spend is still there
    with pytest.raises(openai.RateLimitError):
        await oai(c, "tk-1").chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=10)


async def _prompt_estimate(inst: Any) -> int:
    from apex.tokens import estimate_tokens

    return estimate_tokens(json.dumps({"model": "gpt-4o", "messages": MSG, "max_tokens": 10}).encode())


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
async def test_budget_store_down_follows_fail_mode(
    upstream: FakeUpstream, start_apex: StartApex, redis_server: RedisServer, fail_mode: str
) -> None:
    """With Redis gone, a budgeted team is admitted untracked (fail_mode open) or refused with a 429 saying
    the store is unavailable (closed); when Redis is back, spend is tracked again."""
    store = {"type": "redis", "url": redis_server.url, "fail_mode": fail_mode, "key_prefix": f"apex-{fail_mode}:"}
    inst = await start_apex(_config(upstream, 5.0, **store))
    client = oai(inst, "tk-1")
    await client.chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=10)
    redis_server.stop()
    if fail_mode == "open":
        raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG, max_tokens=10)
        assert "x-apex-budget-remaining-usd" not in raw.headers  # not known while the store is down
    else:
        with pytest.raises(openai.RateLimitError) as refused:
            await client.chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=10)
        assert "budget store unavailable" in refused.value.message
        body = refused.value.body
        assert isinstance(body, dict)
        # the outage's, not the team's money: retryable (insufficient_quota stops agents for good)
        assert body["code"] == "rate_limit_exceeded" and body["type"] != "insufficient_quota"
    redis_server.start()  # an empty Redis (the test server keeps nothing on disk)
    await asyncio.sleep(1.1)  # past the store's backoff
    raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG, max_tokens=10)
    assert 0 < float(raw.headers["x-apex-budget-remaining-usd"]) < 5.0


def test_a_budget_under_a_cent_is_named_with_its_digits() -> None:
    """``$0.004``, not ``$0.00`` (the message that names the budget must not say it is zero)."""
    from apex.budget.ledger import _dollars

    assert [_dollars(v) for v in (0.004, 0.05, 5, 12.5, 0.0125)] == ["0.004", "0.05", "5.00", "12.50", "0.0125"]


async def test_a_request_the_rate_limit_refuses_holds_no_budget(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A burst against rpm 2 and a budget three served requests fit in: the refused ones are
    rate limited, never "budget spent" (each held a reservation until its refund ran)."""
    cfg = _config(upstream, 0.1)
    cfg["teams"][0]["policy"]["rate_limit"] = {"rpm": 2}
    inst = await start_apex(cfg)
    client = oai(inst, "tk-1")

    async def one() -> str:
        try:
            await client.chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=20)
        except openai.RateLimitError as exc:
            body = exc.body
            assert isinstance(body, dict)
            return str(body.get("code"))
        return "ok"

    got = await asyncio.gather(*[one() for _ in range(30)])
    assert got.count("ok") == 2, got
    assert "insufficient_quota" not in got, got


async def test_token_counts_are_neither_checked_nor_charged(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A count reserved the prompt plus 1024 output tokens while it ran (a real request sent
    beside it was told the budget was spent), and once the budget was spent, counts got 429."""
    inst = await start_apex(_config(upstream, 0.05))
    client = ant(inst, "tk-1")
    counted = await client.messages.count_tokens(model="claude-sonnet-4-5", messages=MSG)
    assert counted.input_tokens > 0
    await asyncio.sleep(0.05)
    assert _remaining_gauge(inst, "t1") in (None, 0.05)  # nothing reserved, nothing spent
    for _ in range(2):  # the fixture's 0.028 each: spent past the budget
        await oai(inst, "tk-1").chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=20)
        await asyncio.sleep(0.05)
    with pytest.raises(openai.RateLimitError):
        await oai(inst, "tk-1").chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=20)
    again = await client.messages.count_tokens(model="claude-sonnet-4-5", messages=MSG)
    assert again.input_tokens == counted.input_tokens


async def test_a_reload_removing_a_budget_or_its_team_removes_its_gauge(
    upstream: FakeUpstream, start_apex: StartApex
) -> None:
    """apex_budget_remaining_usd{team_id} disappears once a reload removes the team's budget or
    the team (it was scraped for ever: a low-budget alert never cleared); other teams' stay."""
    cfg = _config(upstream, 1.0)
    cfg["teams"].append({"id": "t2", "api_key": "tk-2", "policy": {"budget": {"usd": 1.0, "period": "day"}}})
    inst = await start_apex(cfg)
    for key in ("tk-1", "tk-2"):
        await oai(inst, key).chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=20)
    for _ in range(500):  # the settlement runs just after the response
        if _remaining_gauge(inst, "t1") is not None and _remaining_gauge(inst, "t2") is not None:
            break
        await asyncio.sleep(0.01)

    async def scraped() -> str:
        await oai(inst, "tk-free").chat.completions.create(model="gpt-4o", messages=MSG)  # serve on the new config
        async with aiohttp.ClientSession() as s, s.get(inst.url + "/metrics") as r:
            return await r.text()

    del cfg["teams"][0]["policy"]["budget"]
    assert inst.gateway.reload_bytes(json.dumps(cfg).encode())
    text = await scraped()
    assert 'apex_budget_remaining_usd{team_id="t1"}' not in text and 'apex_budget_remaining_usd{team_id="t2"}' in text
    cfg["teams"].pop()
    assert inst.gateway.reload_bytes(json.dumps(cfg).encode())
    assert "apex_budget_remaining_usd{" not in await scraped()
