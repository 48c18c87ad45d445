"""Per-team rate limits (spec section 2): token buckets for requests and tokens per minute.

The pipeline needs only what is re-exported here: ``build_limiter`` once per process,
``Limits.from_config`` once per team per Snapshot, then ``RateLimiter.acquire`` /
``settle`` and ``headers`` per request. ``MemoryStore`` is pure; ``RedisStore`` lives in
``apex.ratelimit.redis`` and is imported only when a Redis store is configured.
"""

from apex.ratelimit.build import build_limiter
from apex.ratelimit.limiter import (
    NO_LIMITS,
    UNLIMITED,
    Decision,
    Limits,
    RateLimiter,
    Store,
    format_duration,
    headers,
    rate_limited,
)
from apex.ratelimit.memory import MemoryStore

__all__ = [
    "NO_LIMITS",
    "UNLIMITED",
    "Decision",
    "Limits",
    "MemoryStore",
    "RateLimiter",
    "Store",
    "build_limiter",
    "format_duration",
    "headers",
    "rate_limited",
]
