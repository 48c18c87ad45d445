"""Keys, team policies and rate limits over real HTTP, in both client dialects."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.conftest import StartApex, ant, oai
from tests.fakeclock import FakeTime
from tests.integration.fakes import FakeUpstream, error
from tests.redis_server import RedisServer


def policy_config(upstream: FakeUpstream, **team_policy: Any) -> dict[str, Any]:
    return {
        "global": {"auth": {"keys": ["global-key"]}},
        "logging": {"level": "error"},
        "channels": [
            {"name": "oa", "provider_type": "openai", "base_url": upstream.openai_url, "api_key": "sk-oa"},
            {"name": "an", "provider_type": "anthropic", "base_url": upstream.url, "api_key": "sk-an"},
        ],
        "routers": [
            {"name": "gpt", "vkey": "vk-gpt", "rules": [{"match": {"model": "gpt-*"}, "channels": [{"name": "oa"}]}]},
            {"name": "claude", "vkey": "vk-claude", "rules": [{"match": {"model": ["claude-*"]}, "channels": [{"name": "an"}]}],
             "channels": [{"name": "an"}]},
        ],
        "teams": [
            {"id": "search", "api_key": "team-search", "policy": team_policy},
            {"id": "open", "api_key": "team-open"},
        ],
    }


async def status_of(inst: Any, key: str | None, model: str, *, anthropic_dialect: bool = False,
                    router: str | None = None) -> tuple[int, dict[str, Any], Any]:
    headers = {}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    if router is not None:
        headers["x-apex-router"] = router
    async with aiohttp.ClientSession() as s:
        if anthropic_dialect:
            headers["anthropic-version"] = "2023-06-01"
            url, body = f"{inst.url}/v1/messages", {"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
        else:
            url, body = f"{inst.openai_url}/chat/completions", {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        async with s.post(url, json=body, headers=headers) as r:
            return r.status, await r.json(), r.headers


@pytest.mark.parametrize(
    ("key", "model", "router", "expected"),
    [
        ("vk-gpt", "gpt-4o", None, 200),
        ("vk-gpt", "claude-x", None, 404),           # its only router does not route claude
        ("vk-gpt", "gpt-4o", "claude", 403),         # may not use another router
        ("vk-claude", "anything", None, 200),        # default channels route every model
        ("global-key", "gpt-4o", None, 200),
        ("global-key", "claude-x", None, 200),       # every router, in file order
        ("global-key", "gpt-4o", "claude", 200),     # names a router it may use
        ("global-key", "gpt-4o", "nope", 404),       # names no router
        ("team-search", "gpt-4o", None, 200),
        ("team-search", "gpt-4o-mini", None, 200),
        ("team-search", "claude-x", None, 403),      # outside allowed_models
        ("team-search", "gpt-4o", "claude", 403),    # outside allowed_routers
        ("team-open", "claude-x", None, 200),        # no policy: every router and model
        ("wrong", "gpt-4o", None, 401),
        (None, "gpt-4o", None, 401),
    ],
)
async def test_policy_matrix(upstream: FakeUpstream, start_apex: StartApex, key: str | None, model: str,
                             router: str | None, expected: int) -> None:
    """Each kind of key reaches exactly what the spec allows, in both dialects."""
    inst = await start_apex(policy_config(upstream, allowed_routers=["gpt"], allowed_models=["gpt-4o*"]))
    for anthropic_dialect in (False, True):
        status, body, _ = await status_of(inst, key, model, anthropic_dialect=anthropic_dialect, router=router)
        assert status == expected, (anthropic_dialect, body)
        if status != 200:
            if anthropic_dialect:
                assert body["type"] == "error" and body["error"]["type"]
            else:
                assert body["error"]["type"]


async def test_refused_model_named_not_key(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A refused model's 403 names the model and never the key, and nothing goes upstream."""
    inst = await start_apex(policy_config(upstream, allowed_models=["gpt-4o"]))
    with pytest.raises(openai.PermissionDeniedError) as info:
        await oai(inst, "team-search").chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "x"}])
    assert "gpt-5" in info.value.message and "team-search" not in info.value.message
    assert info.value.body["type"] == "permission_error"  # type: ignore[index]
    with pytest.raises(anthropic.PermissionDeniedError):
        await ant(inst, "team-search").messages.create(model="gpt-5", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert upstream.requests == []


async def test_team_routers_in_order(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A team key tries its allowed routers in its own order: the first that routes the model wins."""
    inst = await start_apex(policy_config(upstream, allowed_routers=["claude", "gpt"]))
    _, _, headers = await status_of(inst, "team-search", "gpt-4o")
    assert headers["x-apex-channel"] == "an"  # claude's default channels route every model


async def test_models_list_filtered(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """/v1/models lists only what the key may use."""
    cfg = policy_config(upstream, allowed_models=["gpt-4o"])
    cfg["channels"][0]["models"] = ["gpt-4o", "gpt-4o-mini"]
    inst = await start_apex(cfg)
    team = sorted(m.id for m in (await oai(inst, "team-search").models.list()).data)
    assert team == ["gpt-4o"]
    everyone = sorted(m.id for m in (await oai(inst, "global-key").models.list()).data)
    assert everyone == ["gpt-4o", "gpt-4o-mini"]


async def test_anonymous_on_loopback(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """With anonymous auth a key-less request is served, but a wrong key is still 401."""
    cfg = policy_config(upstream)
    cfg["global"]["auth"]["anonymous"] = True
    inst = await start_apex(cfg)
    assert (await status_of(inst, None, "gpt-4o"))[0] == 200
    assert (await status_of(inst, "wrong", "gpt-4o"))[0] == 401


async def test_rpm_limit_429_then_recovers(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """The N+1th request in a minute is 429 with Retry-After and rate-limit headers; it passes after waiting.

    On fake time: on a busy machine 60 real requests can take over a second, and the bucket
    would refill one request meanwhile."""
    time = FakeTime()
    inst = await start_apex(policy_config(upstream, rate_limit={"rpm": 60}), time=time)
    headers: dict[str, str] = {}
    for i in range(60):
        status, _, headers = await status_of(inst, "team-search", "gpt-4o")
        assert status == 200, i
    assert headers["x-ratelimit-limit-requests"] == "60"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    status, body, headers = await status_of(inst, "team-search", "gpt-4o")
    assert status == 429
    assert body["error"]["type"] == "rate_limit_error"
    assert headers["Retry-After"] == "1"
    assert upstream.hits() == 60
    status, body, headers = await status_of(inst, "team-search", "gpt-4o", anthropic_dialect=True)
    assert status == 429 and body["error"]["type"] == "rate_limit_error"
    time.advance(0.9)
    assert (await status_of(inst, "team-search", "gpt-4o"))[0] == 429
    time.advance(0.15)
    assert (await status_of(inst, "team-search", "gpt-4o"))[0] == 200
    # Other teams are not affected.
    assert (await status_of(inst, "team-open", "gpt-4o"))[0] == 200


async def test_an_rpm_only_limit_does_not_estimate_the_prompt(
    upstream: FakeUpstream, start_apex: StartApex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a token limit is charged the prompt estimate: with RPM alone the body is not decoded
    for it (the estimate is ~5 µs of a ~150 µs request). A TPM team still gets one."""
    calls: list[int] = []
    from apex.tokens import estimate_tokens

    def counting(body: bytes) -> int:
        calls.append(len(body))
        return estimate_tokens(body)

    monkeypatch.setattr("apex.server.exchange.estimate_tokens", counting)  # the name exchange.py calls
    inst = await start_apex(policy_config(upstream, rate_limit={"rpm": 600}))
    assert (await status_of(inst, "team-search", "gpt-4o"))[0] == 200
    assert calls == []
    inst = await start_apex(policy_config(upstream, rate_limit={"rpm": 600, "tpm": 100_000}))
    assert (await status_of(inst, "team-search", "gpt-4o"))[0] == 200
    assert len(calls) == 1


async def test_tpm_estimate_over_bucket_refused_without_retry_after(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A request whose estimate exceeds the whole tpm bucket is refused, saying so, with no Retry-After."""
    inst = await start_apex(policy_config(upstream, rate_limit={"tpm": 100}))
    with pytest.raises(openai.RateLimitError) as info:
        await oai(inst, "team-search").chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}], max_tokens=500
        )
    assert "retry-after" not in info.value.response.headers
    assert "exceeds" in info.value.message or "never" in info.value.message
    assert upstream.hits() == 0


@pytest.mark.parametrize("config_key", ["generationConfig", "generation_config"])
async def test_a_gemini_output_limit_counts_in_either_spelling(upstream: FakeUpstream, start_apex: StartApex,
                                                               config_key: str) -> None:
    """maxOutputTokens and the snake_case spelling Google's API also reads both count in the
    token estimate (the snake one was left out: 200 for what can never fit)."""
    inst = await start_apex(policy_config(upstream, rate_limit={"tpm": 100}))
    limit = {"maxOutputTokens": 500} if config_key == "generationConfig" else {"max_output_tokens": 500}
    async with aiohttp.ClientSession() as s, s.post(
            f"{inst.url}/v1beta/models/gpt-4o:generateContent", headers={"x-goog-api-key": "team-search"},
            json={"contents": [{"role": "user", "parts": [{"text": "x"}]}], config_key: limit}) as r:
        assert r.status == 429, await r.text()
    assert upstream.hits() == 0


async def test_tpm_settles_from_real_usage(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """TPM is charged the upstream's reported usage (non-stream and stream), not the max_tokens estimate."""
    inst = await start_apex(policy_config(upstream, rate_limit={"tpm": 1000}))
    client = oai(inst, "team-search")
    # The fixture reports 19 + 10 = 29 tokens (non-stream) and 78 + 9 = 87 (stream), each far below max_tokens.
    raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], max_tokens=600)
    assert int(raw.headers["x-ratelimit-remaining-tokens"]) <= 1000 - 600
    raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], max_tokens=600)
    remaining_after_settle = int(raw.headers["x-ratelimit-remaining-tokens"])
    # Had the first request kept its 600+ estimate, this one could not have fit at all.
    assert remaining_after_settle <= 1000 - 600 - 29
    stream = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], max_tokens=300, stream=True)
    async for _ in stream:
        pass
    raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    remaining = int(raw.headers["x-ratelimit-remaining-tokens"])
    # Charged so far: 29 + 29 + 87 from usage, plus this request's own small estimate.
    assert 1000 - 29 - 29 - 87 - 40 <= remaining <= 1000 - 29 - 29 - 87


async def test_limits_survive_reload(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A reload that keeps the team keeps its consumption; changed numbers apply at once."""
    cfg = policy_config(upstream, rate_limit={"rpm": 3})
    inst = await start_apex(cfg)
    for _ in range(3):
        assert (await status_of(inst, "team-search", "gpt-4o"))[0] == 200
    cfg["channels"][0]["headers"] = {"X-Changed": "1"}
    assert inst.gateway.reload_bytes(json.dumps(cfg).encode())
    assert (await status_of(inst, "team-search", "gpt-4o"))[0] == 429
    cfg["teams"][0]["policy"]["rate_limit"] = {"rpm": 10}
    assert inst.gateway.reload_bytes(json.dumps(cfg).encode())
    status, _, headers = await status_of(inst, "team-search", "gpt-4o")
    assert status == 200 and headers["x-ratelimit-limit-requests"] == "10"


async def test_redis_shared_budget_two_instances(upstream: FakeUpstream, start_apex: StartApex, redis_server: RedisServer) -> None:
    """Two Apex instances on one Redis share one team budget."""
    cfg = policy_config(upstream, rate_limit={"rpm": 10})
    cfg["global"]["rate_limit_store"] = {"type": "redis", "url": "${APEX_REDIS_URL}"}
    env = {"APEX_REDIS_URL": redis_server.url}
    one = await start_apex(cfg, env=env)
    two = await start_apex(cfg, env=env)
    statuses = [(await status_of(one if i % 2 else two, "team-search", "gpt-4o"))[0] for i in range(14)]
    assert statuses.count(200) == 10 and statuses.count(429) == 4


async def test_a_redis_settlement_does_not_hold_the_answer(
    upstream: FakeUpstream, start_apex: StartApex, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Redis the token settlement (a round trip) runs after the answer: here it waits on
    a gate the test opens only once the answer is in, so an answer that waited for it would
    never come. The settlement then lands, and a stop would wait for it."""
    from apex.ratelimit.redis import RedisStore

    gate = asyncio.Event()
    settled: list[int] = []
    real_settle = RedisStore.settle

    async def gated_settle(self: RedisStore, team_id: str, limits: Any, delta: int) -> None:
        await gate.wait()
        await real_settle(self, team_id, limits, delta)
        settled.append(delta)

    monkeypatch.setattr(RedisStore, "settle", gated_settle)
    cfg = policy_config(upstream, rate_limit={"rpm": 100, "tpm": 100_000})
    cfg["global"]["rate_limit_store"] = {"type": "redis", "url": redis_server.url}
    inst = await start_apex(cfg)
    status, _, _ = await asyncio.wait_for(status_of(inst, "team-search", "gpt-4o"), 10)
    assert status == 200 and settled == []
    assert inst.gateway.pending_settlements == 1  # the settlement, waiting
    gate.set()
    for _ in range(100):
        if settled:
            break
        await asyncio.sleep(0.02)
    assert len(settled) == 1 and settled[0] != 0  # the estimate corrected to the reported usage
    assert inst.gateway.pending_settlements == 0


@pytest.mark.parametrize(("fail_mode", "expected"), [("open", 200), ("closed", 429)])
async def test_redis_down_fail_mode(upstream: FakeUpstream, start_apex: StartApex, redis_server: RedisServer,
                                    fail_mode: str, expected: int) -> None:
    """With Redis down Apex fails open (serves) or closed (429) as configured, and recovers when it returns."""
    cfg = policy_config(upstream, rate_limit={"rpm": 100})
    cfg["global"]["rate_limit_store"] = {"type": "redis", "url": redis_server.url, "fail_mode": fail_mode}
    inst = await start_apex(cfg)
    assert (await status_of(inst, "team-search", "gpt-4o"))[0] == 200
    redis_server.stop()
    assert (await status_of(inst, "team-search", "gpt-4o"))[0] == expected
    redis_server.start()
    status, headers = 0, dict[str, str]()
    for _ in range(60):
        await asyncio.sleep(0.2)
        status, _, headers = await status_of(inst, "team-search", "gpt-4o")
        if status == 200 and "x-ratelimit-remaining-requests" in headers:
            break
    assert status == 200 and "x-ratelimit-remaining-requests" in headers


async def test_failed_request_refunds_tpm_estimate(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A request that fails upstream gives its up-front token charge back."""
    inst = await start_apex(policy_config(upstream, rate_limit={"tpm": 1000}))
    upstream.push(error(400, "bad"))
    client = oai(inst, "team-search")
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], max_tokens=900)
    raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], max_tokens=900)
    assert raw.http_response.status_code == 200  # would not fit had the failed request kept its 900+ tokens


async def test_removed_team_buckets_are_freed(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A reload that removes a team frees its in-memory buckets; kept teams keep theirs."""
    from apex.ratelimit import MemoryStore

    cfg = policy_config(upstream, rate_limit={"rpm": 5})
    cfg["teams"][1]["policy"] = {"rate_limit": {"rpm": 5}}
    inst = await start_apex(cfg)
    assert (await status_of(inst, "team-search", "gpt-4o"))[0] == 200
    assert (await status_of(inst, "team-open", "gpt-4o"))[0] == 200
    store = inst.gateway.limiter.store  # type: ignore[union-attr]
    assert isinstance(store, MemoryStore) and set(store._teams) == {"search", "open"}  # noqa: SLF001
    del cfg["teams"][1]
    assert inst.gateway.reload_bytes(json.dumps(cfg).encode())
    assert set(store._teams) == {"search"}  # noqa: SLF001
