"""Budget periods and the in-memory ledger: calendar alignment, reserve/settle, refusal message."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from apex.budget import BudgetLedger, BudgetPolicy, MemoryBudgetStore, period_bounds
from apex.config.model import Budget
from apex.errors import BudgetExceeded


def test_periods_are_calendar_aligned_in_the_budget_zone() -> None:
    """day = local midnight to midnight, week = Monday to Monday, month = 1st to 1st, in the given zone."""
    now = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # Sunday; 01:30 in Paris (DST starts at 02:00)
    paris = ZoneInfo("Europe/Paris")
    start, end = period_bounds("day", paris, now)
    assert (start.isoformat(), end.isoformat()) == ("2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00")
    assert end.timestamp() - start.timestamp() == 23 * 3600
    start, end = period_bounds("week", ZoneInfo("UTC"), now)
    assert (start.date().isoformat(), end.date().isoformat()) == ("2026-03-23", "2026-03-30")
    start, end = period_bounds("month", ZoneInfo("America/New_York"), datetime(2026, 1, 1, 3, 0, tzinfo=UTC))
    assert (start.date().isoformat(), end.date().isoformat()) == ("2025-12-01", "2026-01-01")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_reserve_settle_refuse_and_reset() -> None:
    """Admitted while spend < cap (reserving the estimate), settled to real cost, refused naming the budget
    and its reset time, and admitted again when the next period starts."""
    clock = Clock()
    remaining: list[float] = []
    ledger = BudgetLedger(MemoryBudgetStore(), clock, lambda team, usd: remaining.append(usd))
    policy = BudgetPolicy.from_config(Budget(usd=1.0, period="day", timezone="UTC"))
    g1, left = await ledger.reserve("t", policy, 0.6)
    assert left == pytest.approx(0.4)
    await ledger.settle(g1, 0.5)  # real cost below the estimate: the difference comes back
    assert remaining[-1] == pytest.approx(0.5)
    g2, left = await ledger.reserve("t", policy, 0.6)  # 0.5 < 1.0: admitted, may pass the cap by its estimate
    assert left == 0.0
    with pytest.raises(BudgetExceeded) as refused:
        await ledger.reserve("t", policy, 0.01)
    err = refused.value
    assert err.status == 429 and err.code == "insufficient_quota"
    assert "$1.00 per day (UTC)" in err.message and "resets at 2026-12-07T00:00:00Z" in err.message
    assert err.retry_after == pytest.approx(14 * 3600)
    await ledger.settle(g2, 0.0)  # the request failed: its reservation is refunded
    g3, left = await ledger.reserve("t", policy, 0.1)
    assert left == pytest.approx(0.4)
    clock.now = datetime(2026, 12, 7, 0, 0, 1, tzinfo=UTC)
    await ledger.settle(g3, 0.1)  # settles into a period that is over: nothing to do
    _, left = await ledger.reserve("t", policy, 0.25)
    assert left == pytest.approx(0.75)


class _StoreBackMidRequest:
    """A store down at reservation (fail-open admits: Reservation(True, None)), back at settlement."""

    def __init__(self) -> None:
        self.spent = 200
        self.down = True

    async def reserve(self, team_id: str, period_key: str, limit: int, amount: int, expire_at: int) -> object:
        from apex.budget.ledger import Reservation

        if self.down:
            return Reservation(True, None)
        self.spent += amount
        return Reservation(True, self.spent)

    async def settle(self, team_id: str, period_key: str, delta: int, expire_at: int) -> int | None:
        self.spent += delta
        return self.spent

    async def close(self) -> None:
        pass


async def test_a_request_admitted_while_the_store_was_down_adds_its_whole_cost() -> None:
    """Fail-open reserved nothing: settling must add the cost, not subtract an estimate never
    added (Redis spend went negative after an outage and the team could overspend its cap)."""
    store = _StoreBackMidRequest()
    ledger = BudgetLedger(store, Clock(), None)  # type: ignore[arg-type]
    policy = BudgetPolicy.from_config(Budget(usd=1.0, period="day", timezone="UTC"))
    grant, left = await ledger.reserve("t", policy, 0.5)
    assert left is None
    store.down = False
    await ledger.settle(grant, 0.25)
    assert store.spent == 200 + 250_000_000
