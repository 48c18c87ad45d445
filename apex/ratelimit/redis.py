"""Token buckets in Redis, shared by every Apex host: one atomic Lua script per check.

The script mirrors ``apex.ratelimit.memory`` exactly (refill, adopt changed capacities,
check both buckets, charge both or neither) and reads Redis's own ``TIME``, so the hosts'
clocks never matter. Each team is one hash that expires when its buckets would be full,
which is the state an absent key means, so idle teams cost nothing. The script runs with
EVALSHA, loading it again when the server lost its cache (a restart).

When Redis cannot answer, Apex keeps serving: fail-open admits the request, fail-closed
refuses it; either way one log line per state change, ``on_store_error`` per operation not
served, and Redis is left alone for a short, growing backoff so that requests do not each
pay the socket timeout. redis-py reconnects by itself on the next try.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Final, final

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from apex.ratelimit.limiter import Decision, Limits, _never_fits
from apex.types import Clock

__all__ = ["RedisStore"]

log = logging.getLogger("apex.ratelimit")

# A store on the same network answers in well under a millisecond; past this it is down.
SOCKET_TIMEOUT_S: Final = 0.25
FIRST_BACKOFF_S: Final = 0.5
MAX_BACKOFF_S: Final = 5.0

# KEYS[1] the team's hash. ARGV: op ('a' acquire | 's' settle), rpm, tpm ('' = no limit),
# amount (estimate | delta), now in seconds ('' = Redis TIME; tests drive a fake clock).
# Fields: rl/rc request level/capacity, tl/tc token level/capacity, t last refill (s).
# The float operations are those of MemoryStore, in the same order, so both stores
# reach bit-identical levels (levels and times are stored with %.17g, which round-trips).
# Returns {code (1 allowed, 0 refused, 2 never fits), retry_after_s, requests remaining,
# requests reset ms, tokens remaining, tokens reset ms}; -1 where the team has no limit.
_SCRIPT: Final = """
local EPS = 1e-6
local op, amount = ARGV[1], tonumber(ARGV[4])
local rpm, tpm, now = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local s = redis.call('HMGET', KEYS[1], 'rl', 'rc', 'tl', 'tc', 't')
local rl, rc, tl, tc, last = tonumber(s[1]), tonumber(s[2]), tonumber(s[3]), tonumber(s[4]), tonumber(s[5])
local elapsed = 0
if last then
  if now > last then elapsed = now - last else now = last end
end
local function adopt(level, cap, new)
  if not level or not cap then
    if new then return new, new end
    return nil, nil
  end
  if cap > 0 and elapsed > 0 then level = math.min(cap, level + elapsed * cap / 60) end
  if not new then return nil, nil end
  return level + (new - cap), new
end
rl, rc = adopt(rl, rc, rpm)
tl, tc = adopt(tl, tc, tpm)
local code, retry = 1, -1
if op == 'a' then
  if (rc and rc < 1) or (tc and (tc < 1 or amount > tc)) then
    code = 2
  else
    local wait = 0
    if rc and rl < 1 - EPS then wait = (1 - rl) * 60 / rc end
    if tc and tl < amount - EPS then wait = math.max(wait, (amount - tl) * 60 / tc) end
    if wait > 0 then
      code, retry = 0, math.max(1, math.ceil(wait - EPS))
    else
      if rc then rl = rl - 1 end
      if tc then tl = tl - amount end
    end
  end
elseif tc then
  tl = math.min(tc, tl - amount)
end
local function reset(level, cap)
  if not cap or level >= cap then return 0 end
  return (cap - level) * 60 / cap
end
local ttl = math.max(reset(rl, rc), reset(tl, tc))
if ttl <= 0 then
  redis.call('DEL', KEYS[1])
else
  local function f(x) if x then return string.format('%.17g', x) end return '' end
  redis.call('HSET', KEYS[1], 'rl', f(rl), 'rc', f(rc), 'tl', f(tl), 'tc', f(tc), 't', f(now))
  redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000) + 1000)
end
local function remaining(level)
  if not level then return -1 end
  if level <= 0 then return 0 end
  return math.floor(level)
end
local function ms(x) return math.ceil(x * 1000 - EPS) end
return {code, retry, remaining(rl), ms(reset(rl, rc)), remaining(tl), ms(reset(tl, tc))}
"""


def _arg(limit: int | None) -> str | int:
    return "" if limit is None else limit


@final
class RedisStore:
    """Buckets shared through one Redis; ``clock`` times the backoff after a failure.

    ``bucket_clock`` replaces Redis ``TIME`` as the buckets' time source; only tests set it.
    """

    remote = True  # every operation is a round trip to Redis

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        key_prefix: str = "apex:rl:",
        fail_open: bool = True,
        clock: Clock,
        on_store_error: Callable[[], None] | None = None,
        bucket_clock: Clock | None = None,
        first_backoff: float = FIRST_BACKOFF_S,
        max_backoff: float = MAX_BACKOFF_S,
    ) -> None:
        self._client = client
        self._script = client.register_script(_SCRIPT)
        self._prefix = key_prefix
        self._fail_open = fail_open
        self._clock = clock
        self._on_error = on_store_error
        self._bucket_clock = bucket_clock
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._backoff = 0.0  # 0 while healthy
        self._retry_at = 0.0

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        key_prefix: str = "apex:rl:",
        fail_open: bool = True,
        clock: Clock,
        on_store_error: Callable[[], None] | None = None,
        bucket_clock: Clock | None = None,
        first_backoff: float = FIRST_BACKOFF_S,
        max_backoff: float = MAX_BACKOFF_S,
    ) -> RedisStore:
        """A store on a new client for ``url`` with short timeouts and a single quick retry.

        The one retry lets a command that found a pooled connection dead (Redis restarted)
        reconnect at once instead of failing a request.
        """
        client = aioredis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
            retry=Retry(NoBackoff(), 1),
        )
        return cls(
            client,
            key_prefix=key_prefix,
            fail_open=fail_open,
            clock=clock,
            on_store_error=on_store_error,
            bucket_clock=bucket_clock,
            first_backoff=first_backoff,
            max_backoff=max_backoff,
        )

    @property
    def healthy(self) -> bool:
        """False from a failure until Redis answers again."""
        return self._backoff == 0.0

    async def acquire(self, team_id: str, limits: Limits, estimate: int) -> Decision:
        reply = await self._run(team_id, "a", limits, estimate)
        if reply is None:
            return self._unavailable(limits)
        code, retry, r_rem, r_reset, t_rem, t_reset = (int(x) for x in reply)
        if code == 1:
            reason = ""
        elif code == 0:
            reason = f"rate limit exceeded; retry in {retry}s"
        else:
            reason = _never_fits(limits, estimate)
        return Decision(
            code == 1,
            retry if code == 0 else None,
            reason,
            limits.rpm,
            max(r_rem, 0),
            max(r_reset, 0) / 1000.0,
            limits.tpm,
            max(t_rem, 0),
            max(t_reset, 0) / 1000.0,
        )

    async def settle(self, team_id: str, limits: Limits, delta: int) -> None:
        await self._run(team_id, "s", limits, delta)

    async def close(self) -> None:
        await self._client.aclose()

    async def _run(self, team_id: str, op: str, limits: Limits, amount: int) -> list[int] | None:
        """The script's reply, or None when Redis is down or backing off (already counted)."""
        if self._backoff and self._clock() < self._retry_at:
            self._count()
            return None
        now = "" if self._bucket_clock is None else repr(self._bucket_clock())
        try:
            reply: list[int] = await self._script(
                keys=[self._prefix + team_id],
                args=[op, _arg(limits.rpm), _arg(limits.tpm), amount, now],
            )
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None
        if self._backoff:
            self._backoff = 0.0
            log.info("rate limit store reachable again; limits are shared once more")
        return reply

    def _failed(self, exc: BaseException) -> None:
        self._count()
        now = self._clock()
        if not self._backoff:
            mode = "admitting requests unlimited" if self._fail_open else "refusing rate-limited requests"
            log.warning("rate limit store unreachable (%s: %s); %s until it returns", type(exc).__name__, exc, mode)
            self._backoff = self._first_backoff
        elif now < self._retry_at:
            return  # a concurrent request's failure already scheduled the next try
        else:
            self._backoff = min(self._backoff * 2, self._max_backoff)
        self._retry_at = now + self._backoff

    def _count(self) -> None:
        if self._on_error is not None:
            self._on_error()

    def _unavailable(self, limits: Limits) -> Decision:
        if self._fail_open:
            return Decision(True, None, "", limits.rpm, 0, 0.0, limits.tpm, 0, 0.0, True)
        retry = max(1, math.ceil(self._retry_at - self._clock()))
        return Decision(
            False,
            retry,
            "rate limit store unavailable; retry later",
            limits.rpm,
            0,
            0.0,
            limits.tpm,
            0,
            0.0,
            True,
        )
