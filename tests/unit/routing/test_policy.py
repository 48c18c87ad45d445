"""Retry policy: backoff, Retry-After parsing and the AttemptPlan state machine."""

from __future__ import annotations

import random

import pytest

from apex.config.model import Retries
from apex.errors import RateLimited
from apex.routing.balance import Priority
from apex.routing.health import HealthTracker
from apex.routing.policy import (
    Attempt,
    AttemptPlan,
    Outcome,
    backoff,
    parse_retry_after,
    parse_retry_after_ms,
)
from tests.fakeclock import ScriptedRandom

RETRIES = Retries(max_attempts=3, backoff_ms=200, max_backoff_ms=5000)


def plan_over(
    channels: list[str],
    *,
    max_attempts: int = 3,
    health: HealthTracker | None = None,
    rng: random.Random | None = None,
) -> AttemptPlan:
    """A plan over ``channels`` with 200 ms backoff capped at 5 s."""
    return AttemptPlan(
        channels,
        health=health or HealthTracker(failure_threshold=100, cooldown_s=30.0),
        retries=Retries(max_attempts=max_attempts, backoff_ms=200, max_backoff_ms=5000),
        rng=rng or random.Random(42),
    )


def run_failing(plan: AttemptPlan, now: float = 0.0) -> list[Attempt]:
    """Drive the plan with every attempt failing; returns the attempts handed out."""
    steps: list[Attempt] = []
    while (step := plan.next_attempt(now)) is not None:
        steps.append(step)
        now += step.wait
        plan.record(step.channel, Outcome.FAILED, now)
    return steps


class TestBackoff:
    @pytest.mark.parametrize(("attempt", "low", "high"), [(1, 0.1, 0.2), (2, 0.2, 0.4), (3, 0.4, 0.8), (5, 1.6, 3.2)])
    def test_equal_jitter_stays_in_the_upper_half(self, attempt: int, low: float, high: float) -> None:
        """Equal jitter waits between half and all of base * 2**(attempt-1): the lowest draw
        gives exactly the half, a middle one three quarters, the top of the range the ceiling."""
        rng = ScriptedRandom([0.0, 0.5, 1.0])
        waits = [backoff(attempt, 200, 5000, rng) for _ in range(3)]
        assert waits == pytest.approx([low, (low + high) / 2, high], abs=1e-12)

    def test_full_jitter_spans_zero_to_the_ceiling(self) -> None:
        """Full jitter waits anywhere from zero to the ceiling."""
        rng = ScriptedRandom([0.0, 0.25, 1.0])
        waits = [backoff(3, 200, 5000, rng, jitter="full") for _ in range(3)]
        assert waits == pytest.approx([0.0, 0.2, 0.8], abs=1e-12)

    def test_cap_bounds_every_attempt(self) -> None:
        """Past the cap the wait stays within max_backoff_ms, even for absurd attempt numbers."""
        for attempt in (6, 10, 100, 10_000):
            assert backoff(attempt, 200, 5000, ScriptedRandom([0.0])) == 2.5
            assert backoff(attempt, 200, 5000, ScriptedRandom([1.0])) == 5.0

    def test_zero_base_means_no_wait(self) -> None:
        """backoff_ms 0 (tests, or a config that wants none) never waits."""
        assert backoff(4, 0, 5000, random.Random(4)) == 0.0

    def test_attempt_below_one_is_refused(self) -> None:
        """Attempt numbers start at 1 (the first retry)."""
        with pytest.raises(ValueError, match="at least 1"):
            backoff(0, 200, 5000, random.Random(5))


class TestRetryAfterParsing:
    @pytest.mark.parametrize(("value", "seconds"), [("120", 120.0), (" 3 ", 3.0), ("0", 0.0), ("1.5", 1.5)])
    def test_delta_seconds(self, value: str, seconds: float) -> None:
        """Delta-seconds parse as seconds without touching the clock."""

        def no_clock() -> float:
            raise AssertionError("delta-seconds must not read the clock")

        assert parse_retry_after(value, no_clock) == seconds

    def test_http_date_is_measured_against_the_wall_clock(self) -> None:
        """An HTTP-date gives the seconds between the injected wall clock and that date."""
        date_epoch = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", lambda: date_epoch - 90) == 90.0

    def test_http_date_in_the_past_is_zero(self) -> None:
        """A date already gone means retry now, not a negative wait."""
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", lambda: 2e9) == 0.0

    @pytest.mark.parametrize("value", ["", "soon", "-5", "1e3", "Wed, 99 Foo 2015"])
    def test_malformed_values_are_none(self, value: str) -> None:
        """Anything that is neither delta-seconds nor an HTTP-date is ignored."""
        assert parse_retry_after(value, lambda: 0.0) is None

    def test_retry_after_ms(self) -> None:
        """retry-after-ms is milliseconds; garbage is None."""
        assert parse_retry_after_ms("1500") == 1.5
        assert parse_retry_after_ms("x") is None


class TestAttemptOrder:
    def test_rule_channels_then_fallback_then_wrap(self) -> None:
        """Attempts walk the rule's channels, then fallback, then start over from the top."""
        plan = AttemptPlan.for_rule(
            Priority([("a", 1), ("b", 1)]),
            ["c"],
            health=HealthTracker(failure_threshold=100),
            retries=Retries(max_attempts=5, backoff_ms=200, max_backoff_ms=5000),
            rng=random.Random(0),
            now=0.0,
        )
        assert [s.channel for s in run_failing(plan)] == ["a", "b", "c", "a", "b"]

    def test_moving_on_is_immediate_and_retrying_waits(self) -> None:
        """A new channel is tried at once; a channel tried before waits its backoff."""
        rng = ScriptedRandom([0.0, 1.0, 0.5])  # lowest, highest, middle jitter
        steps = run_failing(plan_over(["a", "b"], max_attempts=5, rng=rng))
        # first retries of a and b: 200 ms ceiling, equal jitter 0.1..0.2 s; second retry of a: 0.2..0.4 s
        assert [s.wait for s in steps] == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3], abs=1e-12)
        assert rng.used == 3  # moving on to a new channel draws nothing

    @pytest.mark.parametrize(("unfit", "after"), [("a", ["b", "c", "b", "c"]), ("b", ["a", "c", "a", "c"]),
                                                  ("c", ["a", "b", "a", "b"])])
    def test_an_unfit_channel_leaves_the_plan_and_uses_no_attempt(self, unfit: str, after: list[str]) -> None:
        """A channel whose API cannot carry the request (nothing sent) is not tried again, the
        walk goes on in order, and max_attempts still counts only the sends."""
        plan = plan_over(["a", "b", "c"], max_attempts=4)
        steps: list[str] = []
        now = 0.0
        while (step := plan.next_attempt(now)) is not None:
            now += step.wait
            if step.channel == unfit:
                plan.record(step.channel, Outcome.UNFIT, now)
                continue
            steps.append(step.channel)
            plan.record(step.channel, Outcome.FAILED, now)
        assert steps == after

    def test_a_plan_whose_every_channel_is_unfit_stops(self) -> None:
        plan = plan_over(["a", "b"])
        for name in ("a", "b"):
            step = plan.next_attempt(0.0)
            assert step is not None and step.channel == name
            plan.record(name, Outcome.UNFIT, 0.0)
        assert plan.next_attempt(0.0) is None

    def test_max_attempts_is_respected_exactly(self) -> None:
        """Exactly max_attempts attempts are handed out, then the plan stops for good."""
        for max_attempts in (1, 2, 3, 7):
            plan = plan_over(["a", "b", "c"], max_attempts=max_attempts)
            steps = run_failing(plan)
            assert len(steps) == max_attempts and plan.attempts == max_attempts
            assert [s.number for s in steps] == list(range(1, max_attempts + 1))
            assert plan.next_attempt(100.0) is None

    def test_previous_channel_is_reported_for_fallback_metrics(self) -> None:
        """Each attempt names the channel before it (None for the first)."""
        steps = run_failing(plan_over(["a", "b", "c"]))
        assert [s.previous for s in steps] == [None, "a", "b"]

    def test_fallback_already_in_the_rule_is_not_repeated(self) -> None:
        """A fallback channel that is also a rule channel keeps its first place only."""
        plan = plan_over(["a", "b", "a", "c"])
        assert plan.channels == ("a", "b", "c")

    @pytest.mark.parametrize("outcome", [Outcome.SUCCEEDED, Outcome.REJECTED, Outcome.ABANDONED])
    def test_a_final_outcome_ends_the_plan(self, outcome: Outcome) -> None:
        """Success, an unretried upstream error or a gone client all end the plan."""
        plan = plan_over(["a", "b"])
        step = plan.next_attempt(0.0)
        assert step is not None
        plan.record(step.channel, outcome, 0.0)
        assert plan.next_attempt(0.0) is None
        assert plan.rate_limited() is None

    def test_a_busy_channel_goes_on_to_the_next_without_a_failure(self) -> None:
        """BUSY (Apex's own connection cap stayed full) lets the plan go on, to the next
        channel, and counts nothing against the busy one: one failure would cool it here."""
        health = HealthTracker(failure_threshold=1, cooldown_s=30.0)
        plan = plan_over(["a", "b"], health=health)
        step = plan.next_attempt(0.0)
        assert step is not None and step.channel == "a"
        plan.record("a", Outcome.BUSY, 0.0)
        nxt = plan.next_attempt(0.0)
        assert nxt is not None and nxt.channel == "b"
        assert health.is_available("a", 0.0)

    def test_no_channels_means_no_attempts(self) -> None:
        """An empty plan stops at once (the caller answers 404 before it gets here)."""
        assert plan_over([]).next_attempt(0.0) is None


class TestHealthAndRetryAfter:
    def test_retry_after_keeps_the_channel_off_until_then(self) -> None:
        """After a Retry-After, later attempts and later requests skip the channel until it ends."""
        health = HealthTracker(failure_threshold=100)
        plan = plan_over(["a", "b"], max_attempts=4, health=health)
        first = plan.next_attempt(0.0)
        assert first is not None and first.channel == "a"
        plan.record("a", Outcome.FAILED, 0.0, retry_after=10.0)
        assert [s.channel for s in run_failing(plan, now=0.0)] == ["b", "b", "b"]
        later = AttemptPlan.for_rule(
            Priority([("a", 1), ("b", 1)]), [], health=health, retries=RETRIES, rng=random.Random(0), now=5.0
        )
        assert later.channels == ("b", "a")
        step = later.next_attempt(5.0)
        assert step is not None and step.channel == "b"
        fresh = plan_over(["a", "b"], health=health)
        step = fresh.next_attempt(10.0)
        assert step is not None and step.channel == "a"

    def test_only_channel_within_the_cap_is_waited_for(self) -> None:
        """When the one channel's Retry-After ends within max_backoff_ms, the plan waits for it."""
        plan = plan_over(["a"])
        step = plan.next_attempt(0.0)
        assert step is not None
        plan.record("a", Outcome.FAILED, 0.0, retry_after=2.0)
        step = plan.next_attempt(0.5)
        assert step is not None and step.channel == "a"
        assert step.wait == pytest.approx(1.5)
        assert not step.forced

    def test_only_channel_past_the_cap_gives_429_with_remaining_seconds(self) -> None:
        """A Retry-After beyond max_backoff_ms on the last channel stops the plan with a 429."""
        plan = plan_over(["a"])
        step = plan.next_attempt(0.0)
        assert step is not None
        plan.record("a", Outcome.FAILED, 0.0, retry_after=30.0)
        assert plan.next_attempt(1.2) is None
        assert plan.retry_after == pytest.approx(28.8)
        error = plan.rate_limited()
        assert isinstance(error, RateLimited) and error.status == 429
        assert error.retry_after == 29.0

    def test_every_channel_held_past_the_cap_refuses_a_new_request_at_once(self) -> None:
        """Holds last across requests: a new request with every channel held gets the soonest end."""
        health = HealthTracker()
        health.note_retry_after("a", 60.0, now=0.0)
        health.note_retry_after("b", 20.0, now=0.0)
        plan = plan_over(["a", "b"], health=health)
        assert plan.next_attempt(0.0) is None
        assert plan.attempts == 0
        assert plan.retry_after == 20.0

    def test_an_available_channel_beats_waiting(self) -> None:
        """A held channel is not waited for while another channel can be tried now."""
        health = HealthTracker()
        health.note_retry_after("a", 1.0, now=0.0)
        step = plan_over(["a", "b"], health=health).next_attempt(0.0)
        assert step is not None and step.channel == "b" and step.wait == 0.0

    def test_breaker_cooling_channels_are_a_forced_last_resort(self) -> None:
        """With every channel cooling on the breaker, the plan still tries them, marked forced."""
        health = HealthTracker(failure_threshold=1, cooldown_s=30.0)
        health.record_failure("a", 0.0)
        health.record_failure("b", 0.0)
        step = plan_over(["a", "b"], health=health).next_attempt(1.0)
        assert step is not None and step.channel == "a" and step.forced

    def test_cooling_channel_is_skipped_while_another_is_up(self) -> None:
        """A breaker-cooling channel is passed over for an available one."""
        health = HealthTracker(failure_threshold=1, cooldown_s=30.0)
        health.record_failure("a", 0.0)
        step = plan_over(["a", "b"], health=health).next_attempt(1.0)
        assert step is not None and step.channel == "b" and not step.forced

    def test_plan_claims_the_half_open_probe_and_reports_back(self) -> None:
        """A plan's attempt on a half-open channel is the probe; its success closes the breaker."""
        health = HealthTracker(failure_threshold=1, cooldown_s=30.0)
        health.record_failure("a", 0.0)
        plan = plan_over(["a", "b"], health=health)
        step = plan.next_attempt(30.0)
        assert step is not None and step.channel == "a" and not step.forced
        other = plan_over(["a", "b"], health=health).next_attempt(30.0)
        assert other is not None and other.channel == "b"  # the probe is taken
        plan.record("a", Outcome.SUCCEEDED, 31.0)
        assert health.is_available("a", 31.0)

    def test_failures_recorded_by_the_plan_open_the_breaker(self) -> None:
        """record(FAILED) counts against the channel in the shared tracker."""
        health = HealthTracker(failure_threshold=2, cooldown_s=30.0)
        run_failing(plan_over(["a"], max_attempts=2, health=health))
        assert not health.is_available("a", 1.0)
