"""Retry and fallback policy: which channel each attempt of one request goes to, and when.

``AttemptPlan`` is a small state machine the request pipeline drives: it walks the rule's
channels in strategy order, then ``fallback``, wrapping round to the start, up to
``max_attempts`` attempts in all. Moving to another channel is immediate; trying a channel
again waits a jittered exponential ``backoff``. A channel's ``Retry-After`` (kept in the
shared ``HealthTracker``) keeps the plan off it until then; when such a hold is all that is
left, the plan waits for it if it ends within ``max_backoff_ms`` and otherwise stops with
the remaining seconds, for a 429. This module does no I/O, never sleeps and never reads a
clock: the pipeline passes ``now`` in and does the waiting.
"""

from __future__ import annotations

import email.utils
import enum
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Final, Literal, final

from apex.config.model import Retries
from apex.errors import RateLimited
from apex.routing.balance import Balancer
from apex.routing.health import HealthTracker

__all__ = [
    "Attempt",
    "AttemptPlan",
    "Jitter",
    "Outcome",
    "WallClock",
    "backoff",
    "parse_retry_after",
    "parse_retry_after_ms",
]

Jitter = Literal["full", "equal"]

WallClock = Callable[[], float]
"""Seconds since the Unix epoch (``time.time``); only HTTP-dates need it."""

_DELTA_SECONDS: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# 2**62 ms is far past any cap; bounding the exponent keeps the float finite.
_MAX_EXPONENT: Final = 62


def backoff(
    attempt: int,
    base_ms: float,
    max_ms: float,
    rng: random.Random,
    *,
    jitter: Jitter = "equal",
) -> float:
    """Seconds to wait before trying one channel again; ``attempt`` 1 is its first retry.

    The ceiling is ``base_ms * 2**(attempt-1)``, capped at ``max_ms``. Full jitter draws
    from ``[0, ceiling]``; equal jitter (the default, so a retry never fires at once)
    from ``[ceiling/2, ceiling]``. Raises ``ValueError`` for ``attempt < 1``.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be at least 1, got {attempt}")
    ceiling = min(max_ms, base_ms * 2.0 ** min(attempt - 1, _MAX_EXPONENT)) / 1000.0
    if jitter == "full":
        return rng.uniform(0.0, ceiling)
    half = ceiling / 2.0
    return half + rng.uniform(0.0, half)


def parse_retry_after(value: str, wall_clock: WallClock) -> float | None:
    """Seconds from now that a ``Retry-After`` value asks for, or None if it is malformed.

    Accepts delta-seconds (RFC 9110 says an integer; a decimal is tolerated, some
    upstreams send one) and an HTTP-date, which is measured against ``wall_clock``.
    A date in the past gives 0.
    """
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # RFC 9110 dates are always GMT; "-0000" parses as naive.
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - wall_clock())


def parse_retry_after_ms(value: str) -> float | None:
    """Seconds from a ``retry-after-ms`` header (OpenAI, Anthropic), or None if malformed."""
    text = value.strip()
    if not _DELTA_SECONDS.fullmatch(text):
        return None
    return float(text) / 1000.0


class Outcome(enum.Enum):
    """How one attempt ended, as far as routing and channel health care."""

    SUCCEEDED = "succeeded"  # the channel answered 2xx: the plan is done, the channel healthy
    FAILED = "failed"  # a failed attempt (connection, timeout, retryable status, 401/403, malformed)
    REJECTED = "rejected"  # an upstream error that goes back to the client unretried: done, no verdict
    ABANDONED = "abandoned"  # the client went away: done, no verdict
    BUSY = "busy"  # Apex's own connection cap for the channel stayed full: no verdict, the plan goes on
    UNFIT = "unfit"  # the channel's API cannot carry this request (nothing sent): no verdict, the plan goes on without it


@dataclass(frozen=True, slots=True)
class Attempt:
    """One step of a plan: sleep ``wait`` seconds, then send to ``channel``."""

    channel: str
    wait: float
    number: int  # 1-based, over the whole request
    previous: str | None  # the previous attempt's channel (for apex_fallback_total)
    forced: bool  # the breaker has this channel cooling; it is tried because nothing else is left


@final
class AttemptPlan:
    """Which channel each attempt of one request goes to; drive it like this::

        while (step := plan.next_attempt(clock())) is not None:
            await asyncio.sleep(step.wait)
            ...send to step.channel...
            plan.record(step.channel, outcome, clock(), retry_after=seconds_or_None)
        if (error := plan.rate_limited()) is not None:
            raise error  # every channel is held off by Retry-After past the cap

    Otherwise, when it stops, the client gets the last attempt's outcome.
    """

    def __init__(
        self,
        channels: Sequence[str],
        *,
        health: HealthTracker,
        retries: Retries,
        rng: random.Random,
        jitter: Jitter = "equal",
    ) -> None:
        """A plan over ``channels`` in the order given; a repeated name keeps its first place."""
        self._channels: tuple[str, ...] = tuple(dict.fromkeys(channels))
        self._health = health
        self._retries = retries
        self._rng = rng
        self._jitter: Jitter = jitter
        self._cursor = 0
        self._count = 0
        self._tries: dict[str, int] = {}
        self._previous: str | None = None
        self._before: str | None = None  # the previous attempt's previous (an unfit channel is undone)
        self._done = False
        self._retry_after: float | None = None

    @classmethod
    def for_rule(
        cls,
        balancer: Balancer,
        fallback: Sequence[str],
        *,
        health: HealthTracker,
        retries: Retries,
        rng: random.Random,
        now: float,
    ) -> AttemptPlan:
        """The plan for one request to a rule: its channels in strategy order, then ``fallback``."""
        order = balancer.order(lambda name: health.is_available(name, now))
        return cls([*order, *fallback], health=health, retries=retries, rng=rng)

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels in the order the plan walks them."""
        return self._channels

    @property
    def attempts(self) -> int:
        """How many attempts the plan has handed out."""
        return self._count

    @property
    def retry_after(self) -> float | None:
        """Seconds until a channel frees up, when the plan stopped on Retry-After holds."""
        return self._retry_after

    def rate_limited(self) -> RateLimited | None:
        """The 429 to answer when the plan stopped on Retry-After holds past the cap."""
        if self._retry_after is None:
            return None
        seconds = max(1, math.ceil(self._retry_after))
        return RateLimited(
            f"every upstream channel is rate limited; retry in {seconds} s",
            retry_after=float(seconds),
        )

    def next_attempt(self, now: float) -> Attempt | None:
        """The next attempt, or None when the plan is finished.

        Preference: the next channel in order that may be tried now; else the Retry-After
        hold that ends soonest, if within ``max_backoff_ms`` (wait for it); else the next
        channel the breaker has cooling (``forced``); else stop with ``retry_after`` set.
        """
        if self._done or self._count >= self._retries.max_attempts or not self._channels:
            return None
        n = len(self._channels)
        scan = [(self._cursor + i) % n for i in range(n)]
        for i in scan:
            if self._health.try_acquire(self._channels[i], now):
                return self._take(i, now, hold_until=None, forced=False)
        cap = self._retries.max_backoff_ms / 1000.0
        soonest: tuple[float, int] | None = None
        cooling: int | None = None
        for i in scan:
            until = self._health.held_until(self._channels[i], now)
            if until is None:
                cooling = i if cooling is None else cooling
            elif soonest is None or until < soonest[0]:
                soonest = (until, i)
        if soonest is not None and soonest[0] - now <= cap:
            until, i = soonest
            forced = self._health.breaker_open(self._channels[i], until)
            return self._take(i, now, hold_until=until, forced=forced)
        if cooling is not None:
            return self._take(cooling, now, hold_until=None, forced=True)
        assert soonest is not None  # every channel is held, all past the cap
        self._retry_after = soonest[0] - now
        self._done = True
        return None

    def record(self, channel: str, outcome: Outcome, now: float, *, retry_after: float | None = None) -> None:
        """Report how the attempt on ``channel`` ended; ``retry_after`` in seconds from now.

        Updates the shared channel health. ``retry_after`` is honoured with any outcome
        but is only expected with FAILED (a 429 or 503 that said when to come back).
        """
        if outcome is Outcome.SUCCEEDED:
            self._health.record_success(channel, now)
        elif outcome is Outcome.FAILED:
            self._health.record_failure(channel, now)
        else:
            self._health.release(channel, now)
        if retry_after is not None and retry_after > 0:
            self._health.note_retry_after(channel, now + retry_after, now)
        if outcome is Outcome.UNFIT:
            self._drop(channel)
        elif outcome is not Outcome.FAILED and outcome is not Outcome.BUSY:
            self._done = True

    def _drop(self, channel: str) -> None:
        """Leave ``channel`` out of the rest of this plan; nothing was sent, so it used no
        attempt, and the next channel is no fallback from it."""
        index = self._channels.index(channel)
        self._channels = self._channels[:index] + self._channels[index + 1:]
        self._count -= 1
        self._previous = self._before
        if self._cursor > index:
            self._cursor -= 1
        self._cursor = self._cursor % len(self._channels) if self._channels else 0

    def _take(self, index: int, now: float, *, hold_until: float | None, forced: bool) -> Attempt:
        channel = self._channels[index]
        tried = self._tries.get(channel, 0)
        wait = 0.0
        if tried:
            r = self._retries
            wait = backoff(tried, r.backoff_ms, r.max_backoff_ms, self._rng, jitter=self._jitter)
        if hold_until is not None:
            wait = max(wait, hold_until - now)
        self._tries[channel] = tried + 1
        self._count += 1
        self._cursor = (index + 1) % len(self._channels)
        attempt = Attempt(channel=channel, wait=wait, number=self._count, previous=self._previous, forced=forced)
        self._before, self._previous = self._previous, channel
        return attempt
