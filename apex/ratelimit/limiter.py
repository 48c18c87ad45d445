"""The rate-limit seam: per-team limits, the decision a store returns, and the facade.

``RateLimiter`` is what the request pipeline talks to: ``acquire`` before routing (one
request and the token estimate, both or neither), ``settle`` once the upstream reported
usage, ``headers`` for the OpenAI-shaped ``x-ratelimit-*`` headers of every response. The
bucket arithmetic lives in a ``Store``: ``MemoryStore`` (one process, the default) or
``RedisStore`` (shared by every Apex host). This module does no I/O, reads no clock and
imports no store: ``apex.ratelimit.build`` picks one (the Redis one only when configured).
"""

from __future__ import annotations

import math
from typing import Final, Protocol, final

import msgspec

from apex.config.model import RateLimit
from apex.errors import RateLimited

__all__ = [
    "NO_LIMITS",
    "UNLIMITED",
    "Decision",
    "Limits",
    "RateLimiter",
    "Store",
    "format_duration",
    "headers",
    "rate_limited",
]


class Limits(msgspec.Struct, frozen=True, gc=False):
    """A team's limits, built once per Snapshot; ``None`` means no limit of that kind."""

    rpm: int | None = None
    tpm: int | None = None

    @classmethod
    def from_config(cls, rate_limit: RateLimit | None) -> Limits:
        """The limits a team's ``policy.rate_limit`` asks for (none when it is absent)."""
        if rate_limit is None:
            return NO_LIMITS
        return cls(rate_limit.rpm, rate_limit.tpm)

    @property
    def unlimited(self) -> bool:
        return self.rpm is None and self.tpm is None


NO_LIMITS: Final = Limits()


class Decision(msgspec.Struct, frozen=True, gc=False):
    """The answer to one ``acquire``, plus what the ``x-ratelimit-*`` headers report.

    ``retry_after`` is whole seconds until the request would fit; ``None`` when allowed or
    when it can never fit (its estimate exceeds the whole bucket). ``*_limit`` is ``None``
    for a kind the team has no limit of; ``*_remaining`` is what is left after this request
    (floored, never negative); ``*_reset`` is seconds until that bucket is full again.
    ``store_unavailable`` says the shared store could not be asked (fail-open or -closed).
    """

    allowed: bool
    retry_after: int | None = None
    reason: str = ""
    requests_limit: int | None = None
    requests_remaining: int = 0
    requests_reset: float = 0.0
    tokens_limit: int | None = None
    tokens_remaining: int = 0
    tokens_reset: float = 0.0
    store_unavailable: bool = False


UNLIMITED: Final = Decision(True)


class Store(Protocol):
    """Where buckets live. Both operations are atomic per team and never raise for I/O.

    ``remote`` says an operation is a network round trip (Redis), not work in this process."""

    remote: bool

    async def acquire(self, team_id: str, limits: Limits, estimate: int) -> Decision:
        """Take one request and ``estimate`` tokens, or nothing when either does not fit."""
        ...

    async def settle(self, team_id: str, limits: Limits, delta: int) -> None:
        """Charge ``delta`` more tokens (refund when negative); the bucket may go below zero."""
        ...

    async def close(self) -> None: ...


@final
class RateLimiter:
    """Per-team token buckets behind one small API; keep one across config reloads.

    Buckets are keyed by team id only, so a reload that keeps a team keeps its consumption,
    and a reload that changes its numbers applies them at once (the store carries the
    consumed amount over to the new capacity).
    """

    __slots__ = ("_store",)

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def store(self) -> Store:
        return self._store

    @property
    def remote(self) -> bool:
        """Settling is a network round trip: worth doing after the answer, not before it."""
        return self._store.remote

    async def acquire(self, team_id: str, limits: Limits, estimate_tokens: int) -> Decision:
        """Admit one request costing ``estimate_tokens`` (prompt plus requested max tokens)."""
        if limits.rpm is None and limits.tpm is None:
            return UNLIMITED
        return await self._store.acquire(team_id, limits, estimate_tokens if estimate_tokens > 0 else 0)

    async def settle(self, team_id: str, limits: Limits, charged: int, actual: int) -> None:
        """Correct an admitted request's token charge to the usage the upstream reported."""
        if limits.tpm is None or actual == charged:
            return
        await self._store.settle(team_id, limits, actual - charged)

    async def close(self) -> None:
        await self._store.close()


def rate_limited(decision: Decision) -> RateLimited:
    """The 429 to raise for a refused decision (``Retry-After`` only when it can ever fit)."""
    return RateLimited(decision.reason, retry_after=decision.retry_after, code="rate_limit_exceeded")


def _never_fits(limits: Limits, estimate: int) -> str:
    """The refusal message for a request that no amount of waiting would admit (one wording for every store)."""
    if limits.rpm is not None and limits.rpm < 1:
        return f"the team's request limit is {limits.rpm} per minute; no request can fit"
    return (
        f"this request needs an estimated {estimate} tokens, more than the team's whole "
        f"limit of {limits.tpm} tokens per minute; it can never fit"
    )


def headers(decision: Decision) -> list[tuple[str, str]]:
    """OpenAI's ``x-ratelimit-*`` headers for a decision: limit, remaining and reset per kind.

    Nothing for a team without limits; only the limits when the store could not be asked.
    """
    out: list[tuple[str, str]] = []
    if decision.requests_limit is not None:
        out.append(("x-ratelimit-limit-requests", str(decision.requests_limit)))
        if not decision.store_unavailable:
            out.append(("x-ratelimit-remaining-requests", str(decision.requests_remaining)))
            out.append(("x-ratelimit-reset-requests", format_duration(decision.requests_reset)))
    if decision.tokens_limit is not None:
        out.append(("x-ratelimit-limit-tokens", str(decision.tokens_limit)))
        if not decision.store_unavailable:
            out.append(("x-ratelimit-remaining-tokens", str(decision.tokens_remaining)))
            out.append(("x-ratelimit-reset-tokens", format_duration(decision.tokens_reset)))
    return out


def format_duration(seconds: float) -> str:
    """A duration the way OpenAI (Go's ``time.Duration``) writes it: '0s', '120ms', '1.5s', '6m0s'.

    Rounded up to the millisecond so a client that waits exactly this long is not early.
    """
    ms = math.ceil(seconds * 1000 - 1e-6)
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    whole, frac = divmod(ms, 1000)
    secs = f"{whole}.{frac:03d}".rstrip("0") if frac else str(whole)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
