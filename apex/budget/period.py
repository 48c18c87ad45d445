"""Calendar-aligned budget periods: the day, ISO week (Monday first) or month that holds an instant.

Periods start at local midnight in the budget's time zone, so a "day" in Europe/Paris is
the Paris day, 23 or 25 hours long across a DST change. Pure: callers pass the instant.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

__all__ = ["Period", "period_bounds"]

Period = Literal["day", "week", "month"]


def _midnight(d: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(d, time.min, tzinfo=tz)


def period_bounds(period: Period, tz: ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    """The (start, end) of the period holding ``now`` (an aware datetime), both aware in ``tz``."""
    today = now.astimezone(tz).date()
    if period == "day":
        first = today
        after = today + timedelta(days=1)
    elif period == "week":
        first = today - timedelta(days=today.weekday())
        after = first + timedelta(days=7)
    else:
        first = today.replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
    return _midnight(first, tz), _midnight(after, tz)
