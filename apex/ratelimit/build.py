"""``build_limiter``: the RateLimiter ``global.rate_limit_store`` asks for, with its store.

Kept apart from ``limiter`` so the seam imports no store and the stores import only the
seam (no import cycle); redis-py is imported only when a Redis store is configured.
"""

from __future__ import annotations

from collections.abc import Callable

from apex.config.model import RateLimitStore
from apex.errors import ConfigError
from apex.ratelimit.limiter import RateLimiter
from apex.types import Clock

__all__ = ["build_limiter"]


def build_limiter(
    config: RateLimitStore,
    clock: Clock,
    *,
    on_store_error: Callable[[], None] | None = None,
) -> RateLimiter:
    """The limiter ``global.rate_limit_store`` asks for; ``close()`` it on shutdown.

    ``on_store_error`` is called once per operation the shared store could not serve
    (point it at a counter). Raises ConfigError for a Redis store without a URL.
    """
    if config.type == "memory":
        from apex.ratelimit.memory import MemoryStore

        return RateLimiter(MemoryStore(clock))
    if not config.url:
        raise ConfigError("a redis store needs a url", path="global.rate_limit_store.url")
    from apex.ratelimit.redis import RedisStore  # imports redis-py only when it is used

    return RateLimiter(
        RedisStore.from_url(
            config.url,
            key_prefix=config.key_prefix,
            fail_open=config.fail_mode == "open",
            clock=clock,
            on_store_error=on_store_error,
        )
    )
