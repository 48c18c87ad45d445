"""Team budgets (``teams[].policy.budget``): USD caps per calendar day, week or month.

``build_ledger`` once per process (the store follows ``global.rate_limit_store``),
``BudgetPolicy.from_config`` once per team per config, then ``BudgetLedger.reserve`` /
``settle`` per budgeted request. The Redis store is imported only when configured.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from apex.budget.ledger import (
    NANO,
    BudgetGrant,
    BudgetLedger,
    BudgetPolicy,
    BudgetStore,
    MemoryBudgetStore,
)
from apex.budget.period import period_bounds
from apex.config.model import RateLimitStore
from apex.types import Clock

__all__ = [
    "NANO",
    "BudgetGrant",
    "BudgetLedger",
    "BudgetPolicy",
    "BudgetStore",
    "MemoryBudgetStore",
    "build_ledger",
    "period_bounds",
    "utc_now",
]


def utc_now() -> datetime:
    return datetime.now(UTC)


def build_ledger(config: RateLimitStore, clock: Clock, now: Callable[[], datetime] = utc_now) -> BudgetLedger:
    """The ledger for ``global.rate_limit_store``: memory, or the same Redis as the rate limits."""
    if config.type == "memory" or not config.url:
        return BudgetLedger(MemoryBudgetStore(), now)
    from apex.budget.redis import RedisBudgetStore

    store = RedisBudgetStore.from_url(config.url, key_prefix=config.key_prefix,
                                      fail_open=config.fail_mode == "open", clock=clock)
    return BudgetLedger(store, now)
