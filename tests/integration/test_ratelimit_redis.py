"""RedisStore against a real redis-server: same arithmetic as memory, shared budgets, outages."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from apex.config.model import RateLimitStore
from apex.ratelimit import Decision, Limits, MemoryStore, RateLimiter, build_limiter, format_duration
from apex.ratelimit.redis import RedisStore
from tests.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]  # the fixture, imported for pytest


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Counter:
    """Stands in for the Prometheus counter on_store_error will point at."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> None:
        self.n += 1


@pytest.fixture
async def closing() -> AsyncIterator[list[RateLimiter]]:
    """Limiters a test opens, closed at teardown."""
    opened: list[RateLimiter] = []
    yield opened
    for limiter in opened:
        await limiter.close()


def _redis(url: str, closing: list[RateLimiter], **kwargs: Any) -> RateLimiter:
    limiter = RateLimiter(RedisStore.from_url(url, **kwargs))
    closing.append(limiter)
    return limiter


def _comparable(d: Decision) -> tuple[object, ...]:
    """A decision with resets as the header strings (Redis reports them in whole milliseconds)."""
    return (
        d.allowed, d.retry_after, d.reason,
        d.requests_limit, d.requests_remaining, format_duration(d.requests_reset),
        d.tokens_limit, d.tokens_remaining, format_duration(d.tokens_reset),
        d.store_unavailable,
    )


async def test_lua_matches_memory_store(redis_server: RedisServer, closing: list[RateLimiter]) -> None:
    """Under one fake clock, the Lua script makes exactly the decisions MemoryStore makes."""
    bucket_clock = FakeClock()
    memory = RateLimiter(MemoryStore(bucket_clock))
    shared = _redis(redis_server.url, closing, clock=FakeClock(), bucket_clock=bucket_clock)
    rng = random.Random(5)
    limit_sets = [Limits(3, None), Limits(None, 500), Limits(4, 600), Limits(10, 200), Limits(2, 5000)]
    limits = limit_sets[2]
    seen = set()
    for step in range(600):
        roll = rng.random()
        if roll < 0.05:
            limits = rng.choice(limit_sets)
        elif roll < 0.35:
            bucket_clock.advance(rng.choice([0.001, 0.5, 3.0, 7.3, 20.0, 61.0]))
        elif roll < 0.5:
            delta = rng.randint(-300, 400)
            await memory.settle("t", limits, 100, 100 + delta)
            await shared.settle("t", limits, 100, 100 + delta)
        else:
            estimate = rng.choice([0, 1, 50, 150, 499, 700])
            want = await memory.acquire("t", limits, estimate)
            got = await shared.acquire("t", limits, estimate)
            assert _comparable(got) == _comparable(want), (step, limits, estimate)
            seen.add((want.allowed, want.retry_after is None))
    # The walk covered admitted, refused-with-Retry-After and never-fits decisions.
    assert seen == {(True, True), (False, False), (False, True)}


async def test_two_hosts_share_one_budget(redis_server: RedisServer, closing: list[RateLimiter]) -> None:
    """Two limiters (two Apex hosts) on one Redis admit rpm requests between them, not each."""
    clock = FakeClock()
    host_a = _redis(redis_server.url, closing, clock=clock)
    host_b = _redis(redis_server.url, closing, clock=clock)
    limits = Limits(rpm=5, tpm=1000)
    results = []
    for i in range(6):
        host = host_a if i % 2 == 0 else host_b
        results.append(await host.acquire("team", limits, 100))
    assert [d.allowed for d in results] == [True] * 5 + [False]
    assert results[4].requests_remaining == 0 and results[4].tokens_remaining == 500
    assert results[5].retry_after == 12  # 5 per minute: one every 12 s, on Redis's clock
    assert not results[5].store_unavailable
    await host_b.settle("team", limits, charged=100, actual=300)  # settled on the other host
    d = await host_a.acquire("other-team", limits, 0)
    assert d.allowed and d.requests_remaining == 4  # teams do not share


async def test_concurrent_acquires_never_oversell(redis_server: RedisServer, closing: list[RateLimiter]) -> None:
    """Many concurrent checks from two hosts admit exactly the bucket's capacity (the script is atomic)."""
    clock = FakeClock()
    hosts = [_redis(redis_server.url, closing, clock=clock) for _ in range(2)]
    limits = Limits(rpm=1000, tpm=10_000)
    decisions = await asyncio.gather(*(hosts[i % 2].acquire("team", limits, 300) for i in range(60)))
    assert sum(d.allowed for d in decisions) == 33  # 10_000 // 300 tokens


async def test_idle_team_key_expires_when_full(redis_server: RedisServer, closing: list[RateLimiter]) -> None:
    """A team's key lives until its buckets would be full again, and is deleted once they are."""
    limiter = _redis(redis_server.url, closing, clock=FakeClock(), key_prefix="test:")
    store = limiter.store
    assert isinstance(store, RedisStore)
    limits = Limits(tpm=600)  # 10 tokens per second
    await limiter.acquire("t", limits, 100)
    ttl = await store._client.pttl("test:t")
    assert 10_000 < ttl <= 11_000  # 10 s to refill 100 tokens, plus a second of slack
    await limiter.settle("t", limits, charged=100, actual=0)  # refunded: full again
    assert await store._client.exists("test:t") == 0


async def test_limit_change_keeps_consumption_across_hosts(
    redis_server: RedisServer, closing: list[RateLimiter]
) -> None:
    """A host that already runs the new limits sees the consumption made under the old ones."""
    clock = FakeClock()
    old_host = _redis(redis_server.url, closing, clock=clock)
    new_host = _redis(redis_server.url, closing, clock=clock)
    for _ in range(3):
        await old_host.acquire("t", Limits(rpm=4), 0)
    d = await new_host.acquire("t", Limits(rpm=10), 0)
    assert d.allowed and d.requests_remaining == 6  # 3 consumed of 10, then this one


async def test_fail_open_outage_and_recovery(
    redis_server: RedisServer, closing: list[RateLimiter], caplog: pytest.LogCaptureFixture
) -> None:
    """With Redis down, requests are admitted, counted, logged once; limits return with Redis."""
    clock = FakeClock()
    errors = Counter()
    limiter = _redis(redis_server.url, closing, clock=clock, on_store_error=errors)
    limits = Limits(rpm=1)
    assert (await limiter.acquire("t", limits, 0)).allowed
    assert not (await limiter.acquire("t", limits, 0)).allowed

    redis_server.stop()
    with caplog.at_level(logging.INFO, logger="apex.ratelimit"):
        for _ in range(3):
            started = time.monotonic()
            d = await limiter.acquire("t", limits, 0)
            assert time.monotonic() - started < 1.0
            assert d.allowed and d.store_unavailable and d.retry_after is None
        await limiter.settle("t", Limits(rpm=1, tpm=10), 0, 5)  # dropped, not raised
        assert errors.n == 4
        down_logs = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(down_logs) == 1 and "admitting" in down_logs[0].getMessage()

        redis_server.start()
        # Still inside the backoff window: Redis is not asked yet.
        assert (await limiter.acquire("t", limits, 0)).store_unavailable
        clock.advance(0.5)
        back = await limiter.acquire("t", limits, 0)  # reconnects, reloads the script
        assert back.allowed and not back.store_unavailable
        assert not (await limiter.acquire("t", limits, 0)).allowed
    assert len([r for r in caplog.records if "reachable again" in r.getMessage()]) == 1
    assert errors.n == 5


async def test_fail_closed_refuses_during_outage(redis_server: RedisServer, closing: list[RateLimiter]) -> None:
    """With fail_mode closed, a Redis outage refuses limited requests with a Retry-After."""
    clock = FakeClock()
    errors = Counter()
    limiter = _redis(redis_server.url, closing, clock=clock, fail_open=False, on_store_error=errors)
    limits = Limits(rpm=100)
    assert (await limiter.acquire("t", limits, 0)).allowed
    redis_server.stop()
    d = await limiter.acquire("t", limits, 0)
    assert not d.allowed and d.store_unavailable and d.retry_after == 1
    assert "unavailable" in d.reason
    assert errors.n == 1
    redis_server.start()
    clock.advance(1)
    d = await limiter.acquire("t", limits, 0)
    assert d.allowed and not d.store_unavailable


async def test_backoff_grows_while_redis_stays_down(redis_server: RedisServer, closing: list[RateLimiter]) -> None:
    """Each failed retry doubles the pause before Redis is asked again, up to the cap."""
    clock = FakeClock()
    errors = Counter()
    limiter = _redis(redis_server.url, closing, clock=clock, on_store_error=errors, max_backoff=2.0)
    redis_server.stop()
    limits = Limits(rpm=1)
    await limiter.acquire("t", limits, 0)  # fails: pause 0.5 s
    pauses = []
    for _ in range(4):
        store = limiter.store
        assert isinstance(store, RedisStore)
        pauses.append(store._retry_at - clock())
        clock.advance(pauses[-1])
        await limiter.acquire("t", limits, 0)
    assert pauses == [0.5, 1.0, 2.0, 2.0]


async def test_unresponsive_redis_costs_one_short_timeout(closing: list[RateLimiter]) -> None:
    """A Redis that accepts but never answers delays one request briefly; the next skip it at once."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)  # hold the connection open and never reply
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        limiter = _redis(f"redis://127.0.0.1:{port}/0", closing, clock=time.monotonic)
        started = time.monotonic()
        d = await limiter.acquire("t", Limits(rpm=1), 0)
        first = time.monotonic() - started
        assert d.allowed and d.store_unavailable
        assert first < 1.0  # two tries of a 0.25 s socket timeout
        started = time.monotonic()
        assert (await limiter.acquire("t", Limits(rpm=1), 0)).store_unavailable
        assert time.monotonic() - started < 0.05  # no network at all
    finally:
        server.close()
        await server.wait_closed()


async def test_build_limiter_for_redis(redis_server: RedisServer, closing: list[RateLimiter]) -> None:
    """build_limiter makes a Redis-backed limiter from global.rate_limit_store."""
    config = RateLimitStore(type="redis", url=redis_server.url, fail_mode="closed", key_prefix="x:")
    limiter = build_limiter(config, FakeClock())
    closing.append(limiter)
    assert isinstance(limiter.store, RedisStore)
    assert (await limiter.acquire("t", Limits(rpm=1), 0)).allowed
    store = limiter.store
    assert await store._client.exists("x:t") == 1


async def test_concurrent_failures_schedule_one_retry(redis_server: RedisServer, closing: list[RateLimiter]) -> None:
    """A burst of requests failing together logs once and pauses for the first backoff, not a doubled one."""
    clock = FakeClock()
    errors = Counter()
    limiter = _redis(redis_server.url, closing, clock=clock, on_store_error=errors)
    redis_server.stop()
    decisions = await asyncio.gather(*(limiter.acquire("t", Limits(rpm=1), 0) for _ in range(10)))
    assert all(d.allowed and d.store_unavailable for d in decisions)
    assert errors.n == 10
    store = limiter.store
    assert isinstance(store, RedisStore) and not store.healthy
    assert store._retry_at - clock() == 0.5
