"""Token buckets in this process's memory: the default store, and the reference arithmetic.

Each team has a request bucket (capacity ``rpm``) and a token bucket (capacity ``tpm``),
both refilling their capacity per minute from one shared timestamp. ``acquire`` refills,
then takes one request and the estimate from both or from neither. ``settle`` may push the
token bucket below zero: an under-estimate delays the team's next requests. When a team's
capacity changes, its consumption (capacity minus level) carries over to the new capacity.
``apex.ratelimit.redis`` runs the same arithmetic in Lua; keep the two in step. Pure: the
time comes from the injected Clock, nothing here does I/O.
"""

from __future__ import annotations

import math
from typing import Final, final

from apex.ratelimit.limiter import Decision, Limits, _never_fits
from apex.types import Clock

__all__ = ["MemoryStore"]

# Float slack so that waiting exactly the advertised Retry-After always lets the request in.
_EPS: Final = 1e-6


@final
class _Buckets:
    """One team's two buckets; a ``None`` capacity means no limit of that kind."""

    __slots__ = ("r_cap", "r_level", "t_cap", "t_level", "last")

    def __init__(self, limits: Limits, now: float) -> None:
        self.r_cap = limits.rpm
        self.r_level = float(limits.rpm or 0)
        self.t_cap = limits.tpm
        self.t_level = float(limits.tpm or 0)
        self.last = now

    def refresh(self, limits: Limits, now: float) -> None:
        """Refill at the old rate for the time elapsed, then adopt the current capacities."""
        elapsed = now - self.last
        if elapsed > 0:
            self.last = now
            if self.r_cap:
                self.r_level = min(self.r_cap, self.r_level + elapsed * self.r_cap / 60.0)
            if self.t_cap:
                self.t_level = min(self.t_cap, self.t_level + elapsed * self.t_cap / 60.0)
        if limits.rpm != self.r_cap:
            self.r_level = _adopt(self.r_level, self.r_cap, limits.rpm)
            self.r_cap = limits.rpm
        if limits.tpm != self.t_cap:
            self.t_level = _adopt(self.t_level, self.t_cap, limits.tpm)
            self.t_cap = limits.tpm


def _adopt(level: float, old: int | None, new: int | None) -> float:
    """The level under a new capacity: same consumption, or full when newly limited."""
    if new is None:
        return 0.0
    if old is None:
        return float(new)
    return level + (new - old)


def _reset(level: float, cap: int) -> float:
    """Seconds until a bucket of ``cap`` at ``level`` is full again."""
    return (cap - level) * 60.0 / cap if level < cap else 0.0


@final
class MemoryStore:
    """Buckets for one process, keyed by team id; every call is synchronous underneath."""

    __slots__ = ("_clock", "_teams")
    remote = False  # the buckets are in this process: a settlement is a few attribute writes

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._teams: dict[str, _Buckets] = {}

    def decide(self, team_id: str, limits: Limits, estimate: int) -> Decision:
        """``acquire`` without the coroutine: the whole check and charge for one request."""
        now = self._clock()
        b = self._teams.get(team_id)
        if b is None:
            b = self._teams[team_id] = _Buckets(limits, now)
        else:
            b.refresh(limits, now)
        rpm = limits.rpm
        tpm = limits.tpm
        if (rpm is not None and rpm < 1) or (tpm is not None and (tpm < 1 or estimate > tpm)):
            return self._decision(b, False, None, _never_fits(limits, estimate))
        wait = 0.0
        if rpm is not None and b.r_level < 1.0 - _EPS:
            wait = (1.0 - b.r_level) * 60.0 / rpm
        if tpm is not None and b.t_level < estimate - _EPS:
            wait = max(wait, (estimate - b.t_level) * 60.0 / tpm)
        if wait > 0.0:
            retry = max(1, math.ceil(wait - _EPS))
            return self._decision(b, False, retry, f"rate limit exceeded; retry in {retry}s")
        if rpm is not None:
            b.r_level -= 1.0
        if tpm is not None:
            b.t_level -= estimate
        return self._decision(b, True, None, "")

    @staticmethod
    def _decision(b: _Buckets, allowed: bool, retry_after: int | None, reason: str) -> Decision:
        r_cap, t_cap = b.r_cap, b.t_cap
        return Decision(
            allowed,
            retry_after,
            reason,
            r_cap,
            int(b.r_level) if b.r_level > 0 else 0,
            _reset(b.r_level, r_cap) if r_cap else 0.0,
            t_cap,
            int(b.t_level) if b.t_level > 0 else 0,
            _reset(b.t_level, t_cap) if t_cap else 0.0,
        )

    async def acquire(self, team_id: str, limits: Limits, estimate: int) -> Decision:
        return self.decide(team_id, limits, estimate)

    async def settle(self, team_id: str, limits: Limits, delta: int) -> None:
        now = self._clock()
        b = self._teams.get(team_id)
        if b is None:  # forgotten since: settle against full buckets, as Redis does for an expired key
            b = self._teams[team_id] = _Buckets(limits, now)
        else:
            b.refresh(limits, now)
        if b.t_cap is not None:
            b.t_level = min(float(b.t_cap), b.t_level - delta)

    def forget(self, keep: set[str]) -> None:
        """Drop the buckets of teams not in ``keep`` (teams a reload removed)."""
        for team_id in [t for t in self._teams if t not in keep]:
            del self._teams[team_id]

    async def close(self) -> None:
        self._teams.clear()

