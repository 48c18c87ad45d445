"""Routing and resilience over real HTTP: strategies, failover, retries, timeouts, health."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from apex.routing.balance import WeightedRandom
from tests.conftest import StartApex, ant, oai
from tests.fakeclock import FakeTime, ScriptedRandom
from tests.integration.fakes import Behaviour, FakeUpstream, error, fixture_bytes, named_events, split_events


STALL_S = 30.0      # an upstream stall no test waits out
TEST_LIMIT_S = 5.0  # what a timed-out attempt plus the next one may take at most


def two_channel_config(a: FakeUpstream, b: FakeUpstream, *, strategy: str = "priority",
                       weights: tuple[int, int] = (1, 1), fallback: list[str] | None = None,
                       **global_: Any) -> dict[str, Any]:
    g: dict[str, Any] = {"auth": {"keys": ["k"]},
                         "retries": {"max_attempts": 3, "backoff_ms": 1, "max_backoff_ms": 100}}
    g.update(global_)
    rule: dict[str, Any] = {"match": {"model": "gpt-*"}, "strategy": strategy,
                            "channels": [{"name": "a", "weight": weights[0]}, {"name": "b", "weight": weights[1]}]}
    if fallback is not None:
        rule["fallback"] = fallback
        rule["channels"] = rule["channels"][:1]
    return {
        "global": g,
        "logging": {"level": "error"},
        "channels": [
            {"name": "a", "provider_type": "openai", "base_url": a.openai_url, "api_key": "ka"},
            {"name": "b", "provider_type": "openai", "base_url": b.openai_url, "api_key": "kb"},
        ],
        "routers": [{"name": "r", "rules": [rule]}],
    }


@pytest.fixture
async def second() -> Any:
    fake = FakeUpstream()
    await fake.start()
    yield fake
    await fake.stop()


async def chat(inst: Any, model: str = "gpt-4o") -> Any:
    return await oai(inst, "k").chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "x"}]
    )


async def test_weighted_round_robin_3_to_1(upstream: FakeUpstream, second: FakeUpstream, start_apex: StartApex) -> None:
    """3:1 weights over 400 requests land exactly 300/100 with smooth round robin."""
    inst = await start_apex(two_channel_config(upstream, second, strategy="round_robin", weights=(3, 1)))
    async with aiohttp.ClientSession() as s:
        for _ in range(400):
            async with s.post(f"{inst.openai_url}/chat/completions", headers={"Authorization": "Bearer k"},
                              json={"model": "gpt-4o", "messages": []}) as r:
                assert r.status == 200
    assert (upstream.hits(), second.hits()) == (300, 100)


async def test_round_robin_among_the_channels_a_models_filter_leaves(upstream: FakeUpstream, second: FakeUpstream,
                                                                     start_apex: StartApex) -> None:
    """a, b, c at 1:1:1 where a's `models` leave the model out: b and c alternate (the rotation
    advanced over a too and gave its turns to b: b b c)."""
    cfg = {
        "global": {"auth": {"keys": ["k"]}, "retries": {"max_attempts": 1}},
        "channels": [{"name": "a", "provider_type": "openai", "base_url": upstream.openai_url, "api_key": "x", "models": ["gpt-4o"]},
                     {"name": "b", "provider_type": "openai", "base_url": upstream.openai_url, "api_key": "x"},
                     {"name": "c", "provider_type": "openai", "base_url": second.openai_url, "api_key": "x"}],
        "routers": [{"name": "r", "rules": [{"match": {"model": "*"}, "strategy": "round_robin",
                                              "channels": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}]}],
    }
    inst = await start_apex(cfg)
    for _ in range(30):
        await chat(inst, model="mix")
    assert (upstream.hits(), second.hits()) == (15, 15)


async def test_weighted_random_3_to_1(upstream: FakeUpstream, second: FakeUpstream, start_apex: StartApex) -> None:
    """Weighted random 3:1 with a seeded generator: the 400 requests go exactly where the
    same-seeded balancer sends them (its 3:1 split is proven exactly in the unit tests)."""
    inst = await start_apex(two_channel_config(upstream, second, strategy="random", weights=(3, 1)), rng=random.Random(2024))
    served = []
    async with aiohttp.ClientSession() as s:
        for _ in range(400):
            async with s.post(f"{inst.openai_url}/chat/completions", headers={"Authorization": "Bearer k"},
                              json={"model": "gpt-4o", "messages": []}) as r:
                assert r.status == 200
                served.append(r.headers["x-apex-channel"])
    reference = WeightedRandom([("a", 3), ("b", 1)], rng=random.Random(2024))
    expected = [reference.order(lambda _: True)[0] for _ in range(400)]
    assert served == expected
    assert (upstream.hits(), second.hits()) == (expected.count("a"), expected.count("b"))
    assert 250 <= expected.count("a") <= 350  # the seed is not a degenerate one


async def test_smooth_sequence_5_1_1(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """Weights 5:1:1 give the smooth order a a b a c a a, read from x-apex-channel."""
    cfg = {
        "global": {"auth": {"keys": ["k"]}},
        "channels": [{"name": n, "provider_type": "openai", "base_url": upstream.openai_url, "api_key": "x"} for n in "abc"],
        "routers": [{"name": "r", "channels": [{"name": "a", "weight": 5}, {"name": "b", "weight": 1}, {"name": "c", "weight": 1}]}],
    }
    inst = await start_apex(cfg)
    seq = [ (await chat(inst)).headers["x-apex-channel"] for _ in range(14)]
    assert "".join(seq) == "aabacaa" * 2


async def test_priority_keeps_first_healthy(upstream: FakeUpstream, second: FakeUpstream, start_apex: StartApex) -> None:
    """Priority sends everything to the first channel while it is healthy."""
    inst = await start_apex(two_channel_config(upstream, second, strategy="priority"))
    for _ in range(10):
        assert (await chat(inst)).headers["x-apex-channel"] == "a"
    assert second.hits() == 0


@pytest.mark.parametrize("status", [500, 429, 502])
async def test_primary_error_falls_back(upstream: FakeUpstream, second: FakeUpstream, start_apex: StartApex, status: int) -> None:
    """500/429/502 on the primary: the fallback serves, after exactly one hit on each."""
    inst = await start_apex(two_channel_config(upstream, second, fallback=["b"]))
    upstream.push(error(status))
    raw = await chat(inst)
    assert raw.headers["x-apex-channel"] == "b"
    assert raw.headers["x-apex-attempts"] == "2"
    assert (upstream.hits(), second.hits()) == (1, 1)


async def test_max_attempts_exact(upstream: FakeUpstream, second: FakeUpstream, start_apex: StartApex) -> None:
    """With max_attempts 5 and both channels failing, exactly 5 upstream requests are made."""
    cfg = two_channel_config(upstream, second, retries={"max_attempts": 5, "backoff_ms": 1, "max_backoff_ms": 5})
    inst = await start_apex(cfg)
    upstream.persistent = error(503)
    second.persistent = error(503)
    with pytest.raises(openai.InternalServerError) as info:
        await chat(inst)
    assert info.value.status_code == 503
    assert upstream.hits() + second.hits() == 5
    assert (upstream.hits(), second.hits()) == (3, 2)  # a b a b a: wrapping round


async def test_backoff_when_retrying_same_channel(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """Trying the only channel again waits the equal-jitter backoff its generator draws."""
    cfg = {
        "global": {"auth": {"keys": ["k"]}, "retries": {"max_attempts": 2, "backoff_ms": 200, "max_backoff_ms": 1000}},
        "channels": [{"name": "a", "provider_type": "openai", "base_url": upstream.openai_url, "api_key": "x"}],
        "routers": [{"name": "r", "channels": [{"name": "a"}]}],
    }
    fake = FakeTime()
    inst = await start_apex(cfg, time=fake, rng=ScriptedRandom([0.25]))
    upstream.push(error(500))
    raw = await chat(inst)
    assert raw.headers["x-apex-attempts"] == "2"
    assert fake.sleeps == [pytest.approx(0.125, abs=1e-12)]  # ceiling 0.2 s: 0.1 + 0.25 * 0.1


async def test_retry_after_keeps_channel_off(upstream: FakeUpstream, second: FakeUpstream, start_apex: StartApex) -> None:
    """A 429 with Retry-After keeps later requests off that channel until it passes, to the moment."""
    fake = FakeTime()
    inst = await start_apex(two_channel_config(upstream, second, strategy="priority"), time=fake)
    upstream.push(error(429, retry_after="1"))
    assert (await chat(inst)).headers["x-apex-channel"] == "b"
    assert (await chat(inst)).headers["x-apex-channel"] == "b"  # a is held off
    fake.advance(0.999)
    assert (await chat(inst)).headers["x-apex-channel"] == "b"  # still held
    assert upstream.hits() == 1
    fake.advance(0.001)
    assert (await chat(inst)).headers["x-apex-channel"] == "a"
    assert fake.sleeps == []  # moving on to b never waited


async def test_retry_after_past_cap_only_channel_429(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """An only channel whose Retry-After runs past max_backoff gives the client 429 with the seconds left."""
    cfg = {
        "global": {"auth": {"keys": ["k"]}, "retries": {"max_attempts": 3, "backoff_ms": 1, "max_backoff_ms": 100}},
        "channels": [{"name": "a", "provider_type": "openai", "base_url": upstream.openai_url, "api_key": "x"}],
        "routers": [{"name": "r", "channels": [{"name": "a"}]}],
    }
    inst = await start_apex(cfg, time=FakeTime())
    upstream.push(error(429, retry_after="30"))
    with pytest.raises(openai.RateLimitError) as info:
        await chat(inst)
    assert info.value.response.headers["retry-after"] == "30"
    assert upstream.hits() == 1


async def test_geminis_retry_delay_in_the_body_holds_the_channel(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """Gemini's 429 says how long to wait only in the body (google.rpc.RetryInfo retryDelay,
    no Retry-After header): it holds the channel like a Retry-After, and the client's 429 says
    so. (It was ignored: three hits in 0.2 s and a 429 without Retry-After.)"""
    cfg = {
        "global": {"auth": {"keys": ["k"]}, "retries": {"max_attempts": 3, "backoff_ms": 1, "max_backoff_ms": 100}},
        "channels": [{"name": "g", "provider_type": "gemini", "base_url": upstream.url, "api_key": "gk"}],
        "routers": [{"name": "r", "channels": [{"name": "g"}]}],
    }
    inst = await start_apex(cfg, time=FakeTime())
    body = {"error": {"code": 429, "message": "You exceeded your current quota.", "status": "RESOURCE_EXHAUSTED",
                      "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                                   "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                                                   "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
                                  {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"description": "Learn more",
                                                                                             "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
                                  {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "29.52s"}]}}
    upstream.push(Behaviour(status=429, body=json.dumps(body).encode()))
    with pytest.raises(openai.RateLimitError) as info:
        await chat(inst, model="gemini-2.5-flash")
    assert info.value.response.headers["retry-after"] == "30"
    assert upstream.hits() == 1


async def test_a_retry_after_past_request_ms_is_not_waited_out(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """request_ms (1 s) bounds the whole non-stream request, waits included: a Retry-After of
    3 s (inside max_backoff_ms) is answered as the 429 it is, not slept through to an attempt
    past the request's time (it was: the upstream was asked again, and its answer thrown away
    for a 504). The next request meets the hold the same way, with nothing sent."""
    cfg = {
        "global": {"auth": {"keys": ["k"]}, "retries": {"max_attempts": 3, "backoff_ms": 1, "max_backoff_ms": 10_000},
                   "timeouts": {"request_ms": 1000}},
        "channels": [{"name": "a", "provider_type": "openai", "base_url": upstream.openai_url, "api_key": "x"}],
        "routers": [{"name": "r", "channels": [{"name": "a"}]}],
    }
    inst = await start_apex(cfg, time=FakeTime())
    upstream.push(error(429, retry_after="3"))
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as info:
            await chat(inst)
        assert info.value.response.headers["retry-after"] == "3"
    assert upstream.hits() == 1


@pytest.mark.parametrize("header", ["date", "ms"])
async def test_retry_after_as_a_date_or_in_ms_is_honoured(upstream: FakeUpstream, start_apex: StartApex, header: str) -> None:
    """Retry-After as an HTTP date (and a bare retry-after-ms) was read as absent: the only
    channel was hit three times in 0.2 s and the client's 429 had no Retry-After."""
    import email.utils
    import time as _time

    cfg = {
        "global": {"auth": {"keys": ["k"]}, "retries": {"max_attempts": 3, "backoff_ms": 1, "max_backoff_ms": 100}},
        "channels": [{"name": "a", "provider_type": "openai", "base_url": upstream.openai_url, "api_key": "x"}],
        "routers": [{"name": "r", "channels": [{"name": "a"}]}],
    }
    inst = await start_apex(cfg, time=FakeTime())
    answer = error(429)
    if header == "date":
        answer.headers["Retry-After"] = email.utils.formatdate(_time.time() + 30, usegmt=True)
    else:
        answer.headers["retry-after-ms"] = "30000"
    upstream.push(answer)
    with pytest.raises(openai.RateLimitError) as info:
        await chat(inst)
    assert 28 <= int(info.value.response.headers["retry-after"]) <= 31
    assert upstream.hits() == 1


async def test_connection_refused_moves_on(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A refused connection on the first channel moves to the next one."""
    cfg = two_channel_config(upstream, upstream)
    cfg["channels"][0]["base_url"] = "http://127.0.0.1:9/v1"
    inst = await start_apex(cfg)
    raw = await chat(inst)
    assert raw.headers["x-apex-channel"] == "b"


async def test_first_byte_timeout_moves_on(upstream: FakeUpstream, second: FakeUpstream, start_apex: StartApex) -> None:
    """A first-byte timeout on the primary moves on to the next channel. The primary stalls
    far longer than the test may run, so only the timeout can let it finish."""
    inst = await start_apex(two_channel_config(upstream, second, timeouts={"first_byte_ms": 200}))
    upstream.push(Behaviour(stall=STALL_S))
    async with asyncio.timeout(TEST_LIMIT_S):
        raw = await chat(inst)
    assert raw.headers["x-apex-channel"] == "b"
    assert raw.headers["x-apex-attempts"] == "2"


async def test_per_channel_timeout_override(upstream: FakeUpstream, second: FakeUpstream, start_apex: StartApex) -> None:
    """A channel's own first_byte_ms overrides the global one."""
    cfg = two_channel_config(upstream, second, timeouts={"first_byte_ms": 5000})
    cfg["channels"][0]["timeouts"] = {"first_byte_ms": 150}
    inst = await start_apex(cfg)
    upstream.push(Behaviour(stall=STALL_S))
    async with asyncio.timeout(TEST_LIMIT_S):  # the global 5 s would not fit: only the override can
        assert (await chat(inst)).headers["x-apex-channel"] == "b"


async def test_stream_fails_before_first_event_is_retried(upstream: FakeUpstream, second: FakeUpstream, start_apex: StartApex) -> None:
    """A stream whose upstream dies before its first event is retried on the next channel."""
    inst = await start_apex(two_channel_config(upstream, second))
    upstream.push(Behaviour(reset=True))
    stream = await oai(inst, "k").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "The capital of the UK is London."
    assert (upstream.hits(), second.hits()) == (1, 1)


async def test_committed_stream_not_retried(upstream: FakeUpstream, second: FakeUpstream, start_apex: StartApex) -> None:
    """A stream cut after its first chunk is not retried: the client sees an error event."""
    inst = await start_apex(two_channel_config(upstream, second))
    upstream.push(Behaviour(content_type="text/event-stream", events=split_events(fixture_bytes("openai_chat_stream_text.sse")), cut_after=2))
    stream = await oai(inst, "k").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True)
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    assert second.hits() == 0


async def test_streams_that_break_after_starting_cool_the_channel(upstream: FakeUpstream, second: FakeUpstream,
                                                                   start_apex: StartApex) -> None:
    """A committed stream that breaks is not retried, but it is a failed attempt for the
    channel's health: two in a row (failure_threshold 2) cool the channel, and the next streams
    go to the healthy one. (Each counted as a success: every stream went to the broken channel.)"""
    cfg = two_channel_config(upstream, second, strategy="priority", health={"failure_threshold": 2, "cooldown_ms": 60_000})
    inst = await start_apex(cfg)
    events = split_events(fixture_bytes("openai_chat_stream_text.sse"))
    upstream.push(Behaviour(content_type="text/event-stream", events=events, cut_after=2),
                  Behaviour(content_type="text/event-stream", events=events, rst_after=2))
    for _ in range(2):
        stream = await oai(inst, "k").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}],
                                                              stream=True)
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass
    raw = await oai(inst, "k").chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True)
    assert raw.headers["x-apex-channel"] == "b"
    assert (upstream.hits(), second.hits()) == (2, 1)
    async with aiohttp.ClientSession() as s, s.get(f"{inst.url}/metrics") as r:
        text = await r.text()
    assert 'apex_channel_up{channel="a"} 0.0' in text
    assert 'apex_attempt_failures_total{channel="a",error_type="api_error",router="r"} 2.0' in text


@pytest.mark.parametrize("client", ["anthropic", "openai"])
async def test_an_upstream_that_only_pings_is_no_first_event(upstream: FakeUpstream, second: FakeUpstream,
                                                             start_apex: StartApex, client: str) -> None:
    """`event: ping` before message_start is keep-alive, not an answer: first_byte_ms still runs
    out and the stream fails over, passed through (Anthropic client) or translated (OpenAI
    client). (A ping committed the stream: the client got 200 and pings, and no failover.)"""
    cfg = two_channel_config(upstream, second)
    cfg["global"]["timeouts"] = {"first_byte_ms": 300}
    for ch, fake in zip(cfg["channels"], (upstream, second), strict=True):
        ch.update(provider_type="anthropic", base_url=fake.url)
    cfg["routers"][0]["rules"][0]["match"] = {"model": "claude-*"}
    inst = await start_apex(cfg)
    ping = b'event: ping\ndata: {"type": "ping"}\n\n'
    upstream.push(Behaviour(content_type="text/event-stream", events=[ping] * 20, gap=0.1))
    if client == "anthropic":
        async with ant(inst, "k").messages.stream(model="claude-sonnet-4-5", max_tokens=50,
                                                  messages=[{"role": "user", "content": "x"}]) as stream:
            final = await stream.get_final_message()
        assert final.content[0].type == "text" and final.content[0].text
    else:
        chunks = await oai(inst, "k").chat.completions.create(model="claude-sonnet-4-5", stream=True,
                                                              messages=[{"role": "user", "content": "x"}])
        assert "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
    assert (upstream.hits(), second.hits()) == (1, 1)


@pytest.mark.parametrize("client", ["anthropic", "openai"])
async def test_a_stream_error_that_blames_the_request_leaves_the_channel_alone(
        upstream: FakeUpstream, second: FakeUpstream, start_apex: StartApex, client: str) -> None:
    """An error event that blames the request (a prompt over the context window, which some
    upstreams say only after the stream started) is the client's doing, as a 400 is: two in a
    row (failure_threshold 2) left the channel cooling, and every client went to the fallback."""
    cfg = two_channel_config(upstream, second, health={"failure_threshold": 2, "cooldown_ms": 60_000})
    for ch, fake in zip(cfg["channels"], (upstream, second), strict=True):
        ch.update(provider_type="anthropic", base_url=fake.url)
    cfg["routers"][0]["rules"][0]["match"] = {"model": "claude-*"}
    inst = await start_apex(cfg)
    start = {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
                                                  "content": [], "stop_reason": None, "usage": {"input_tokens": 1, "output_tokens": 0}}}
    refusal = {"type": "error", "error": {"type": "invalid_request_error",
                                          "message": "prompt is too long: 210000 tokens > 200000 maximum"}}
    for _ in range(2):
        upstream.push(Behaviour(content_type="text/event-stream", events=named_events([start, refusal])))
    for _ in range(2):
        with pytest.raises((anthropic.APIError, openai.APIError)):
            if client == "anthropic":
                async with ant(inst, "k").messages.stream(model="claude-sonnet-4-5", max_tokens=50,
                                                          messages=[{"role": "user", "content": "x"}]) as stream:
                    await stream.get_final_message()
            else:
                chunks = await oai(inst, "k").chat.completions.create(model="claude-sonnet-4-5", stream=True,
                                                                      messages=[{"role": "user", "content": "x"}])
                async for _ in chunks:
                    pass
    raw = await oai(inst, "k").chat.completions.with_raw_response.create(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "x"}])
    assert raw.headers["x-apex-channel"] == "a"
    assert inst.gateway.snapshot.health.is_available("a", inst.gateway.clock())


async def test_upstream_400_not_retried(upstream: FakeUpstream, second: FakeUpstream, start_apex: StartApex) -> None:
    """A 400 from the primary is returned once, and the fallback is never asked."""
    inst = await start_apex(two_channel_config(upstream, second, fallback=["b"]))
    upstream.push(error(400, "context too long"))
    with pytest.raises(openai.BadRequestError):
        await chat(inst)
    assert (upstream.hits(), second.hits()) == (1, 0)


async def test_cooldown_skips_dead_channel_then_probe_restores(upstream: FakeUpstream, second: FakeUpstream, start_apex: StartApex) -> None:
    """After N failures in a row a channel cools down and is skipped; after the window one probe restores it."""
    cfg = two_channel_config(upstream, second, strategy="priority", health={"failure_threshold": 2, "cooldown_ms": 400})
    fake = FakeTime()
    inst = await start_apex(cfg, time=fake)
    upstream.push(error(500), error(500))
    for _ in range(2):
        assert (await chat(inst)).headers["x-apex-channel"] == "b"
    hits_when_open = upstream.hits()
    for _ in range(3):
        assert (await chat(inst)).headers["x-apex-channel"] == "b"
    assert upstream.hits() == hits_when_open == 2  # cooling: skipped
    async with aiohttp.ClientSession() as s, s.get(f"{inst.url}/metrics") as r:
        text = await r.text()
    assert 'apex_channel_up{channel="a"} 0.0' in text and 'apex_channel_up{channel="b"} 1.0' in text
    fake.advance(0.399)
    assert (await chat(inst)).headers["x-apex-channel"] == "b"  # still cooling
    assert upstream.hits() == 2
    fake.advance(0.001)
    assert (await chat(inst)).headers["x-apex-channel"] == "a"  # half-open probe succeeds
    assert (await chat(inst)).headers["x-apex-channel"] == "a"


async def test_fallback_after_rule_channels_wraps(upstream: FakeUpstream, second: FakeUpstream, start_apex: StartApex) -> None:
    """Attempts go rule channels, then fallback, then wrap to the start."""
    cfg = two_channel_config(upstream, second, fallback=["b"], retries={"max_attempts": 3, "backoff_ms": 1, "max_backoff_ms": 2})
    inst = await start_apex(cfg)
    upstream.push(error(500))
    second.push(error(500))
    raw = await chat(inst)
    assert raw.headers["x-apex-channel"] == "a"
    assert raw.headers["x-apex-attempts"] == "3"
    assert Counter(r.path for r in upstream.requests)["/v1/chat/completions"] == 2


async def test_stream_headers_without_first_event_fail_over(upstream: FakeUpstream, second: FakeUpstream, start_apex: StartApex) -> None:
    """Response headers alone do not commit a stream: no first event within first_byte_ms moves on."""
    inst = await start_apex(two_channel_config(upstream, second, timeouts={"first_byte_ms": 300}))
    events = split_events(fixture_bytes("openai_chat_stream_text.sse"))
    upstream.push(Behaviour(content_type="text/event-stream", events=events, stall_after=0))
    stream = await oai(inst, "k").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "The capital of the UK is London."
    assert (upstream.hits(), second.hits()) == (1, 1)


async def test_a_failed_over_streams_ttft_counts_from_the_request(upstream: FakeUpstream, second: FakeUpstream,
                                                                 start_apex: StartApex) -> None:
    """The first channel stalls 0.4 s then fails; the second answers at once: TTFT is what the
    client waited (>= 0.4 s, it was the last attempt's 2 ms), and the stall is upstream time,
    not Apex's overhead."""
    inst = await start_apex(two_channel_config(upstream, second))
    upstream.push(Behaviour(stall=0.4, status=500, body=b'{"error":{"message":"boom","type":"server_error"}}'))
    raw = await oai(inst, "k").chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True)
    _ = [c async for c in raw.parse()]
    assert float(raw.headers["x-apex-overhead-ms"]) < 100
    await asyncio.sleep(0.05)
    samples = {s.name: s.value for fam in inst.gateway.metrics.registry.collect() for s in fam.samples
               if s.name.startswith("apex_ttft_ms_sum") or s.name.startswith("apex_overhead_ms_sum")}
    assert samples["apex_ttft_ms_sum"] >= 400, samples
    assert samples["apex_overhead_ms_sum"] < 100, samples


async def test_a_retry_after_wait_is_not_apex_overhead(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """The only channel answers 429 Retry-After: 1 and Apex waits it out before retrying: the
    second is nobody's work (the header said Apex added 1,000 ms)."""
    cfg = two_channel_config(upstream, upstream, retries={"max_attempts": 3, "backoff_ms": 1, "max_backoff_ms": 2000})
    cfg["routers"][0]["rules"][0]["channels"] = [{"name": "a"}]
    inst = await start_apex(cfg)
    upstream.push(error(429, "slow down", retry_after="1"))
    raw = await oai(inst, "k").chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert raw.http_response.status_code == 200
    assert float(raw.headers["x-apex-overhead-ms"]) < 100, raw.headers["x-apex-overhead-ms"]
