"""Team budgets: admit a request while the team's spend in the period is below its cap.

Like the TPM bucket, a request reserves its estimated cost up front (prompt estimate plus
its ``max_tokens``, priced on the model it was routed to) and the reservation is settled
to the real cost when the request is over. Because the check and the reservation are one
atomic step in the store, concurrent requests (on one host or many) cannot all slip under
the cap: the spend can pass the budget by at most the last admitted request's estimate
(plus whatever real costs exceed their estimates). Spend is kept in integer nano-USD so
that many small settlements add up exactly.

The store is ``MemoryBudgetStore`` (this process) or ``RedisBudgetStore`` (every host,
kept across restarts) chosen by ``global.rate_limit_store``. This module does no I/O and
reads no clock: the facade takes a clock that returns the current UTC time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Final, Protocol, final
from zoneinfo import ZoneInfo

import msgspec

from apex.budget.period import Period, period_bounds
from apex.config.model import Budget
from apex.errors import BudgetExceeded, RateLimited

__all__ = [
    "NANO",
    "BudgetGrant",
    "BudgetLedger",
    "BudgetPolicy",
    "BudgetStore",
    "MemoryBudgetStore",
    "Reservation",
]

NANO: Final = 1_000_000_000  # store units per USD


class BudgetPolicy(msgspec.Struct, frozen=True, gc=False):
    """A team's ``policy.budget``, compiled once per config (the zone resolved)."""

    usd: float
    period: Period
    tz_name: str
    tz: ZoneInfo

    @classmethod
    def from_config(cls, b: Budget) -> BudgetPolicy:
        return cls(b.usd, b.period, b.timezone, ZoneInfo(b.timezone))

    @property
    def limit_nano(self) -> int:
        return round(self.usd * NANO)


class Reservation(msgspec.Struct, frozen=True, gc=False):
    """A store's answer to ``reserve``: admitted or not, and the spend after it (nano-USD).

    ``spent`` is None when the store could not be asked (its fail mode decided)."""

    allowed: bool
    spent: int | None


class BudgetStore(Protocol):
    """Where spend lives, per team and period key. Operations are atomic and never raise for I/O."""

    async def reserve(self, team_id: str, period_key: str, limit: int, amount: int, expire_at: int) -> Reservation:
        """Add ``amount`` when the spend is below ``limit``; else change nothing."""
        ...

    async def settle(self, team_id: str, period_key: str, delta: int, expire_at: int) -> int | None:
        """Add ``delta`` (negative refunds); the new spend, None when the store is down."""
        ...

    async def close(self) -> None: ...


@final
class MemoryBudgetStore:
    """Spend in this process's memory; a team's previous period is dropped when a new one starts."""

    __slots__ = ("_spent",)

    def __init__(self) -> None:
        self._spent: dict[str, tuple[str, int]] = {}

    def _current(self, team_id: str, period_key: str) -> int:
        held = self._spent.get(team_id)
        return held[1] if held is not None and held[0] == period_key else 0

    async def reserve(self, team_id: str, period_key: str, limit: int, amount: int, expire_at: int) -> Reservation:
        spent = self._current(team_id, period_key)
        if spent >= limit:
            return Reservation(False, spent)
        spent += amount
        self._spent[team_id] = (period_key, spent)
        return Reservation(True, spent)

    async def settle(self, team_id: str, period_key: str, delta: int, expire_at: int) -> int | None:
        held = self._spent.get(team_id)
        if held is None or held[0] != period_key:
            return self._current(team_id, period_key)  # the period turned over: its spend is gone
        spent = held[1] + delta
        self._spent[team_id] = (period_key, spent)
        return spent

    def forget(self, keep: set[str]) -> None:
        """Drop the spend of teams not in ``keep`` (teams a reload removed)."""
        for team_id in [t for t in self._spent if t not in keep]:
            del self._spent[team_id]

    async def close(self) -> None:
        self._spent.clear()


@final
class BudgetGrant:
    """What an admitted request reserved, to settle against its real cost."""

    __slots__ = ("team_id", "policy", "period_key", "expire_at", "reserved")

    def __init__(self, team_id: str, policy: BudgetPolicy, period_key: str, expire_at: int, reserved: int) -> None:
        self.team_id = team_id
        self.policy = policy
        self.period_key = period_key
        self.expire_at = expire_at
        self.reserved = reserved


def _iso_utc(dt: datetime) -> str:
    return dt.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ")


@final
class BudgetLedger:
    """The facade the gateway talks to: ``reserve`` before the attempts, ``settle`` after."""

    __slots__ = ("_store", "_now", "on_remaining")

    def __init__(self, store: BudgetStore, now: Callable[[], datetime],
                 on_remaining: Callable[[str, float], None] | None = None) -> None:
        self._store = store
        self._now = now
        self.on_remaining = on_remaining  # (team_id, remaining USD) after each answer from the store

    @property
    def store(self) -> BudgetStore:
        return self._store

    async def reserve(self, team_id: str, policy: BudgetPolicy, estimate_usd: float) -> tuple[BudgetGrant, float | None]:
        """Reserve ``estimate_usd``; the grant and the USD left after it (None: store down, fail-open).

        Raises BudgetExceeded (429) naming the budget and when it resets."""
        now = self._now()
        start, end = period_bounds(policy.period, policy.tz, now)
        key = start.date().isoformat()
        expire_at = math.ceil(end.timestamp()) + 86_400  # kept a day past the end, then Redis drops it
        amount = max(0, math.ceil(estimate_usd * NANO))
        r = await self._store.reserve(team_id, key, policy.limit_nano, amount, expire_at)
        remaining = None if r.spent is None else max(0.0, (policy.limit_nano - r.spent) / NANO)
        if remaining is not None and self.on_remaining is not None:
            self.on_remaining(team_id, remaining)
        if not r.allowed:
            if r.spent is None:
                # The store's outage, not the team's money: a retryable rate limit, as the rate
                # limiter's own closed mode answers (agents treat insufficient_quota as final).
                raise RateLimited("budget store unavailable; retry later", retry_after=1, code="rate_limit_exceeded")
            exceeded = BudgetExceeded(
                f"team '{team_id}' has spent its budget of ${_dollars(policy.usd)} per {policy.period} "
                f"({policy.tz_name}): ${r.spent / NANO:.4f} so far; it resets at {_iso_utc(end)}",
                retry_after=max(1.0, (end - now).total_seconds()),
                code="insufficient_quota",
            )
            exceeded.remaining_usd = remaining
            raise exceeded
        # Admitted with the store down (fail-open): nothing was reserved, so the settlement adds
        # the whole cost (subtracting an estimate never added drove the spend negative).
        return BudgetGrant(team_id, policy, key, expire_at, amount if r.spent is not None else 0), remaining

    async def settle(self, grant: BudgetGrant, cost_usd: float) -> None:
        """Replace the reservation by the request's real cost."""
        delta = max(0, math.ceil(cost_usd * NANO)) - grant.reserved
        if delta == 0:
            return
        spent = await self._store.settle(grant.team_id, grant.period_key, delta, grant.expire_at)
        if spent is not None and self.on_remaining is not None:
            self.on_remaining(grant.team_id, max(0.0, (grant.policy.limit_nano - spent) / NANO))

    async def close(self) -> None:
        await self._store.close()


def _dollars(usd: float) -> str:
    """``5.00``, ``12.50``; a budget under a cent keeps its digits (``0.004``, not ``0.00``)."""
    cents = f"{usd:.2f}"
    return cents if abs(float(cents) - usd) < 1e-12 else f"{usd:.6f}".rstrip("0")
