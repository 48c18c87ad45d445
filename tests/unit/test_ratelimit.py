"""Token-bucket arithmetic of the in-memory store, driven through RateLimiter with a fake clock."""

from __future__ import annotations

import pytest

from apex.config.model import RateLimit, RateLimitStore
from apex.errors import ConfigError
from apex.ratelimit import (
    NO_LIMITS,
    UNLIMITED,
    Limits,
    MemoryStore,
    RateLimiter,
    build_limiter,
    rate_limited,
)


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> RateLimiter:
    return RateLimiter(MemoryStore(clock))


async def test_rpm_admits_n_then_refuses_with_retry_after(limiter: RateLimiter, clock: FakeClock) -> None:
    """rpm N admits N requests at once; the next is refused with the whole seconds until one refills."""
    limits = Limits(rpm=3)
    for _ in range(3):
        assert (await limiter.acquire("t", limits, 0)).allowed
    refused = await limiter.acquire("t", limits, 0)
    assert not refused.allowed
    assert refused.retry_after == 20  # 3 per minute: one request every 20 s
    assert "rate limit" in refused.reason
    clock.advance(19.9)
    assert not (await limiter.acquire("t", limits, 0)).allowed
    clock.advance(0.1)
    assert (await limiter.acquire("t", limits, 0)).allowed


async def test_waiting_exactly_retry_after_always_admits(limiter: RateLimiter, clock: FakeClock) -> None:
    """For awkward rates, a client that waits exactly Retry-After is admitted (no float shortfall)."""
    for rpm in (7, 13, 59, 61, 997):
        limits = Limits(rpm=rpm)
        team = f"team-{rpm}"
        for _ in range(rpm):
            assert (await limiter.acquire(team, limits, 0)).allowed
        refused = await limiter.acquire(team, limits, 0)
        assert refused.retry_after is not None and refused.retry_after >= 1
        clock.advance(refused.retry_after)
        assert (await limiter.acquire(team, limits, 0)).allowed, rpm


async def test_bucket_refills_to_capacity_only(limiter: RateLimiter, clock: FakeClock) -> None:
    """A long idle period refills the bucket to N, not beyond."""
    limits = Limits(rpm=2)
    await limiter.acquire("t", limits, 0)
    clock.advance(3600)
    assert [(await limiter.acquire("t", limits, 0)).allowed for _ in range(3)] == [True, True, False]


async def test_tpm_charges_estimate_up_front(limiter: RateLimiter, clock: FakeClock) -> None:
    """tpm refuses a request whose estimate exceeds what is left, with the seconds until it fits."""
    limits = Limits(tpm=600)  # 10 tokens per second
    assert (await limiter.acquire("t", limits, 500)).allowed
    refused = await limiter.acquire("t", limits, 200)
    assert not refused.allowed
    assert refused.retry_after == 10  # 100 tokens short at 10/s
    clock.advance(10)
    assert (await limiter.acquire("t", limits, 200)).allowed


async def test_estimate_over_whole_bucket_never_fits(limiter: RateLimiter) -> None:
    """An estimate larger than tpm is refused without Retry-After and with a message saying so."""
    decision = await limiter.acquire("t", Limits(rpm=10, tpm=1000), 1001)
    assert not decision.allowed
    assert decision.retry_after is None
    assert "1001" in decision.reason and "1000" in decision.reason and "never fit" in decision.reason
    # Nothing was consumed: the full budget is still there.
    assert (await limiter.acquire("t", Limits(rpm=10, tpm=1000), 1000)).allowed


async def test_refusal_consumes_neither_bucket(limiter: RateLimiter) -> None:
    """When tokens do not fit, the request slot is not taken either (and vice versa)."""
    limits = Limits(rpm=2, tpm=100)
    assert (await limiter.acquire("t", limits, 90)).allowed
    refused = await limiter.acquire("t", limits, 50)
    assert not refused.allowed
    assert refused.requests_remaining == 1  # the refused request took no slot
    ok = await limiter.acquire("t", limits, 10)
    assert ok.allowed and ok.requests_remaining == 0 and ok.tokens_remaining == 0
    refused = await limiter.acquire("t", limits, 0)
    assert not refused.allowed and refused.retry_after == 30


async def test_retry_after_is_the_longer_wait(limiter: RateLimiter) -> None:
    """When both buckets are short, Retry-After is the later of the two refills."""
    limits = Limits(rpm=1, tpm=60)  # 1 request / 60 s, 1 token / s
    assert (await limiter.acquire("t", limits, 60)).allowed
    refused = await limiter.acquire("t", limits, 30)
    assert refused.retry_after == 60


async def test_no_max_tokens_estimate_is_the_prompt(limiter: RateLimiter) -> None:
    """A zero or negative estimate charges nothing but still counts the request."""
    decision = await limiter.acquire("t", Limits(rpm=5, tpm=100), -3)
    assert decision.allowed and decision.tokens_remaining == 100 and decision.requests_remaining == 4


async def test_settle_refunds_over_estimate(limiter: RateLimiter) -> None:
    """Settling with less usage than charged returns the difference to the bucket."""
    limits = Limits(tpm=1000)
    assert (await limiter.acquire("t", limits, 900)).allowed
    await limiter.settle("t", limits, charged=900, actual=100)
    decision = await limiter.acquire("t", limits, 800)
    assert decision.allowed and decision.tokens_remaining == 100


async def test_settle_never_refunds_past_capacity(limiter: RateLimiter) -> None:
    """A refund larger than what was consumed leaves the bucket full, not above it."""
    limits = Limits(tpm=1000)
    await limiter.acquire("t", limits, 10)
    await limiter.settle("t", limits, charged=10_000, actual=0)
    assert (await limiter.acquire("t", limits, 0)).tokens_remaining == 1000


async def test_settle_under_estimate_goes_negative_and_delays(limiter: RateLimiter, clock: FakeClock) -> None:
    """Usage above the estimate is charged even below zero, delaying the next request."""
    limits = Limits(tpm=600)  # 10 tokens per second
    assert (await limiter.acquire("t", limits, 100)).allowed
    await limiter.settle("t", limits, charged=100, actual=1200)  # 600 over capacity
    refused = await limiter.acquire("t", limits, 0)
    assert not refused.allowed and refused.retry_after == 60  # 600 tokens of debt at 10/s
    assert refused.tokens_remaining == 0
    clock.advance(60)
    assert (await limiter.acquire("t", limits, 0)).allowed


async def test_settle_equal_usage_is_a_no_op(limiter: RateLimiter) -> None:
    """Settling exactly the charged amount changes nothing."""
    limits = Limits(tpm=100)
    await limiter.acquire("t", limits, 40)
    await limiter.settle("t", limits, charged=40, actual=40)
    assert (await limiter.acquire("t", limits, 0)).tokens_remaining == 60


async def test_limit_change_keeps_consumption(limiter: RateLimiter) -> None:
    """A raised or lowered limit keeps what the team already consumed."""
    for _ in range(8):
        await limiter.acquire("t", Limits(rpm=10), 0)
    raised = await limiter.acquire("t", Limits(rpm=20), 0)  # 8 consumed of 20, then this one
    assert raised.allowed and raised.requests_limit == 20 and raised.requests_remaining == 11
    lowered = await limiter.acquire("t", Limits(rpm=5), 0)  # 9 consumed of 5: level -4
    assert not lowered.allowed and lowered.requests_limit == 5
    assert lowered.retry_after == 60  # 5 requests short at 5 per minute


async def test_new_limit_kind_starts_full_and_removed_kind_is_dropped(limiter: RateLimiter) -> None:
    """Adding tpm to a team starts that bucket full; removing rpm stops counting requests."""
    await limiter.acquire("t", Limits(rpm=1), 0)
    both = await limiter.acquire("t", Limits(rpm=None, tpm=50), 10)
    assert both.allowed and both.requests_limit is None and both.tokens_remaining == 40
    again = await limiter.acquire("t", Limits(rpm=1, tpm=50), 0)
    assert again.allowed  # rpm came back as a new, full bucket


async def test_teams_are_independent(limiter: RateLimiter) -> None:
    """One team exhausting its bucket does not touch another's."""
    limits = Limits(rpm=1)
    assert (await limiter.acquire("a", limits, 0)).allowed
    assert not (await limiter.acquire("a", limits, 0)).allowed
    assert (await limiter.acquire("b", limits, 0)).allowed


async def test_unlimited_team_never_touches_the_store(clock: FakeClock) -> None:
    """A team without limits gets the shared UNLIMITED decision and leaves no state behind."""
    store = MemoryStore(clock)
    limiter = RateLimiter(store)
    assert await limiter.acquire("t", NO_LIMITS, 10**9) is UNLIMITED
    await limiter.settle("t", NO_LIMITS, 0, 10**9)
    assert store._teams == {}


async def test_reset_reports_time_to_full(limiter: RateLimiter, clock: FakeClock) -> None:
    """requests_reset/tokens_reset are the seconds until each bucket is full again."""
    d = await limiter.acquire("t", Limits(rpm=60, tpm=6000), 1500)
    assert d.requests_reset == pytest.approx(1.0)
    assert d.tokens_reset == pytest.approx(15.0)
    clock.advance(15)
    d = await limiter.acquire("t", Limits(rpm=60, tpm=6000), 0)
    assert d.tokens_reset == 0.0 and d.tokens_remaining == 6000


async def test_zero_limit_never_fits(limiter: RateLimiter) -> None:
    """A limit of zero refuses every request without Retry-After (the loader rejects it anyway)."""
    d = await limiter.acquire("t", Limits(rpm=0), 0)
    assert not d.allowed and d.retry_after is None and "no request can fit" in d.reason


async def test_forget_drops_removed_teams(clock: FakeClock) -> None:
    """forget() keeps only the named teams' buckets; a forgotten team starts full."""
    store = MemoryStore(clock)
    limiter = RateLimiter(store)
    await limiter.acquire("gone", Limits(rpm=1), 0)
    await limiter.acquire("kept", Limits(rpm=1), 0)
    store.forget({"kept"})
    assert not (await limiter.acquire("kept", Limits(rpm=1), 0)).allowed
    assert (await limiter.acquire("gone", Limits(rpm=1), 0)).allowed


def test_limits_from_config() -> None:
    """Limits mirror a team's policy.rate_limit, and no rate_limit means no limits."""
    assert Limits.from_config(RateLimit(rpm=5, tpm=100)) == Limits(5, 100)
    assert Limits.from_config(None) is NO_LIMITS and NO_LIMITS.unlimited


async def test_rate_limited_error_carries_retry_after(limiter: RateLimiter) -> None:
    """rate_limited() turns a refusal into a 429 RateLimited with the decision's Retry-After."""
    await limiter.acquire("t", Limits(rpm=1), 0)
    err = rate_limited(await limiter.acquire("t", Limits(rpm=1), 0))
    assert err.status == 429 and err.retry_after == 60
    assert err.code == "rate_limit_exceeded"


def test_build_limiter_memory_by_default(clock: FakeClock) -> None:
    """The default store config builds an in-memory limiter."""
    assert isinstance(build_limiter(RateLimitStore(), clock).store, MemoryStore)


def test_build_limiter_redis_needs_url(clock: FakeClock) -> None:
    """A Redis store without a URL is a ConfigError naming the key."""
    with pytest.raises(ConfigError, match="url"):
        build_limiter(RateLimitStore(type="redis"), clock)


async def test_settle_for_forgotten_team_charges_full_bucket(clock: FakeClock) -> None:
    """Settling a team with no buckets (forgotten) charges against a full bucket, like an expired Redis key."""
    store = MemoryStore(clock)
    limiter = RateLimiter(store)
    await limiter.settle("t", Limits(tpm=100), charged=0, actual=30)
    assert (await limiter.acquire("t", Limits(tpm=100), 0)).tokens_remaining == 70
