"""Team spend in Redis, shared by every Apex host and kept across restarts.

One integer key per team and period (``<prefix>budget:<team>:<period start>``) holding
nano-USD; a Lua script checks the cap and reserves in one step, settlements are INCRBY.
Keys expire a day after their period ends. Fail mode follows ``global.rate_limit_store``:
when Redis cannot answer, fail-open admits (spend is not tracked meanwhile), fail-closed
refuses; one log line per state change, and a short backoff so requests do not each pay
the socket timeout.
"""

from __future__ import annotations

import logging
from typing import Final, final

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from apex.budget.ledger import Reservation
from apex.types import Clock

__all__ = ["RedisBudgetStore"]

log = logging.getLogger("apex.budget")

SOCKET_TIMEOUT_S: Final = 0.25
BACKOFF_S: Final = 1.0

# KEYS[1] the team's key for the period. ARGV: limit, amount, expire-at (unix s).
_RESERVE: Final = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
if spent >= tonumber(ARGV[1]) then return {0, spent} end
spent = redis.call('INCRBY', KEYS[1], ARGV[2])
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return {1, spent}
"""
# KEYS[1] the key. ARGV: delta, expire-at.
_SETTLE: Final = """
local spent = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIREAT', KEYS[1], ARGV[2])
return spent
"""


@final
class RedisBudgetStore:
    """Budgets through one Redis; ``clock`` (monotonic) times the backoff after a failure."""

    def __init__(self, client: aioredis.Redis, *, key_prefix: str, fail_open: bool, clock: Clock) -> None:
        self._client = client
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)
        self._prefix = key_prefix + "budget:"
        self._fail_open = fail_open
        self._clock = clock
        self._down_until = 0.0
        self._down = False

    @classmethod
    def from_url(cls, url: str, *, key_prefix: str, fail_open: bool, clock: Clock) -> RedisBudgetStore:
        client = aioredis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S, retry=Retry(NoBackoff(), 1)
        )
        return cls(client, key_prefix=key_prefix, fail_open=fail_open, clock=clock)

    def key(self, team_id: str, period_key: str) -> str:
        return f"{self._prefix}{team_id}:{period_key}"

    async def reserve(self, team_id: str, period_key: str, limit: int, amount: int, expire_at: int) -> Reservation:
        if self._down and self._clock() < self._down_until:
            return Reservation(self._fail_open, None)
        try:
            allowed, spent = await self._reserve(keys=[self.key(team_id, period_key)], args=[limit, amount, expire_at])
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return Reservation(self._fail_open, None)
        self._ok()
        return Reservation(bool(allowed), int(spent))

    async def settle(self, team_id: str, period_key: str, delta: int, expire_at: int) -> int | None:
        try:
            spent = await self._settle(keys=[self.key(team_id, period_key)], args=[delta, expire_at])
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None
        self._ok()
        return int(spent)

    async def close(self) -> None:
        await self._client.aclose()

    def _failed(self, exc: BaseException) -> None:
        if not self._down:
            mode = "admitting budgeted requests untracked" if self._fail_open else "refusing budgeted requests"
            log.warning("budget store unreachable (%s: %s); %s until it returns", type(exc).__name__, exc, mode)
            self._down = True
        self._down_until = self._clock() + BACKOFF_S

    def _ok(self) -> None:
        if self._down:
            self._down = False
            log.info("budget store reachable again")
