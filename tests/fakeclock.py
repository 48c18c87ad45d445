"""Deterministic time and chance for tests: a clock that only moves when told, a sleep
that advances it instead of waiting, and a random generator that plays back a script."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable


class FakeTime:
    """``clock()`` reads the fake time; ``await sleep(s)`` records ``s`` and moves time on."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # still a suspension point, like the real one


class ScriptedRandom(random.Random):
    """``random()`` returns the scripted values in turn (``uniform`` builds on it)."""

    def __init__(self, values: Iterable[float]) -> None:
        super().__init__(0)
        self._values = list(values)
        self._next = 0

    def random(self) -> float:
        value = self._values[self._next]
        self._next += 1
        return value

    @property
    def used(self) -> int:
        return self._next
