"""Load-balancing strategies behind one ``Balancer`` Protocol, chosen when the table is built.

A balancer is built once per rule from ``[(channel, weight), ...]`` and answers, per
request, the full order in which to try the rule's channels: the strategy's pick first,
then the other channels in strategy order, with channels that are not available at the
back (so a request still has somewhere to go when every channel is cooling). It keeps
only its own small state (smooth round-robin's current weights) and never reads a clock
or the global random generator: randomness comes from an injected ``random.Random``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Final, Protocol, assert_never, final

from apex.config.model import Strategy
from apex.errors import ConfigError

__all__ = [
    "Availability",
    "Balancer",
    "Priority",
    "SmoothWeightedRoundRobin",
    "WeightedRandom",
    "build_balancer",
]

Availability = Callable[[str], bool]
"""Whether a channel may be tried now (``HealthTracker.is_available`` bound to ``now``)."""

# Bounds the look-ahead that orders the channels after smooth round-robin's pick: with
# extreme weights (1000:1) a light channel may be that many steps away.
_MAX_LOOKAHEAD: Final = 1024


class Balancer(Protocol):
    """Orders a rule's channels for one request."""

    @property
    def channels(self) -> tuple[tuple[str, int], ...]:
        """The ``(name, weight)`` pairs it was built from, in rule order."""
        ...

    def order(self, is_available: Availability) -> list[str]:
        """Every channel once: the pick first, then the rest in strategy order, unavailable last."""
        ...


def _checked(channels: Sequence[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    if not channels:
        raise ConfigError("a balancer needs at least one channel")
    seen: set[str] = set()
    for name, weight in channels:
        if name in seen:
            raise ConfigError(f'channel "{name}" appears twice in one rule')
        if weight < 1:
            raise ConfigError(f'channel "{name}" has weight {weight}; weights must be at least 1')
        seen.add(name)
    return tuple(channels)


@final
class SmoothWeightedRoundRobin:
    """nginx's smooth weighted round robin: weights 5:1:1 give a a b a c a a, not bursts.

    Each pick adds every eligible channel's weight to its current weight, takes the
    highest (first in rule order on a tie, as nginx does) and subtracts the eligible total
    from it. Only available channels take part, so the spread stays smooth among them.
    The state advances exactly once per ``order`` call.
    """

    def __init__(
        self,
        channels: Sequence[tuple[str, int]],
        *,
        previous: SmoothWeightedRoundRobin | None = None,
    ) -> None:
        """Build over ``channels``; keeps ``previous``'s position when its channels are identical."""
        self._channels = _checked(channels)
        self._names = tuple(name for name, _ in self._channels)
        self._weights = tuple(weight for _, weight in self._channels)
        self._current = [0] * len(self._channels)
        if previous is not None and previous.channels == self._channels:
            self._current = list(previous.state())

    @property
    def channels(self) -> tuple[tuple[str, int], ...]:
        return self._channels

    def state(self) -> tuple[int, ...]:
        """The current weights, in rule order (for carrying across a reload)."""
        return tuple(self._current)

    def order(self, is_available: Availability) -> list[str]:
        up = [i for i, name in enumerate(self._names) if is_available(name)]
        down = [i for i in range(len(self._names)) if i not in up]
        # With nothing available the rotation still moves on, over every channel.
        eligible = up or down
        first = self._step(self._current, eligible)
        rest = self._lookahead(first, eligible)
        tail = down if up else []
        return [self._names[i] for i in (first, *rest, *tail)]

    def _step(self, current: list[int], eligible: list[int]) -> int:
        total = 0
        best = eligible[0]
        for i in eligible:
            current[i] += self._weights[i]
            total += self._weights[i]
            if current[i] > current[best]:
                best = i
        current[best] -= total
        return best

    def _lookahead(self, first: int, eligible: list[int]) -> list[int]:
        """The other eligible channels in the order the sequence would next reach them.

        Runs on a copy, so the real state moves once per request.
        """
        unseen = [i for i in eligible if i != first]
        if len(unseen) <= 1:
            return unseen
        current = list(self._current)
        rest: list[int] = []
        for _ in range(_MAX_LOOKAHEAD):
            i = self._step(current, eligible)
            if i in unseen:
                rest.append(i)
                unseen.remove(i)
                if len(unseen) == 1:
                    break
        # Beyond the bound (or the last one left): the most overdue first.
        unseen.sort(key=lambda i: -current[i])
        return rest + unseen


@final
class WeightedRandom:
    """Weighted random pick; the rest follow in weighted random order without replacement."""

    def __init__(self, channels: Sequence[tuple[str, int]], *, rng: random.Random) -> None:
        self._channels = _checked(channels)
        self._rng = rng

    @property
    def channels(self) -> tuple[tuple[str, int], ...]:
        return self._channels

    def order(self, is_available: Availability) -> list[str]:
        up: list[tuple[str, int]] = []
        down: list[tuple[str, int]] = []
        for name, weight in self._channels:
            (up if is_available(name) else down).append((name, weight))
        return self._shuffle(up) + self._shuffle(down)

    def _shuffle(self, pool: list[tuple[str, int]]) -> list[str]:
        out: list[str] = []
        total = sum(weight for _, weight in pool)
        while pool:
            point = self._rng.random() * total
            for k, (name, weight) in enumerate(pool):
                point -= weight
                # The last entry catches float rounding at the very top of the range.
                if point < 0 or k == len(pool) - 1:
                    out.append(name)
                    total -= weight
                    del pool[k]
                    break
        return out


@final
class Priority:
    """Rule order: later channels only when earlier ones fail or are unavailable."""

    def __init__(self, channels: Sequence[tuple[str, int]]) -> None:
        self._channels = _checked(channels)

    @property
    def channels(self) -> tuple[tuple[str, int], ...]:
        return self._channels

    def order(self, is_available: Availability) -> list[str]:
        up = [name for name, _ in self._channels if is_available(name)]
        down = [name for name, _ in self._channels if name not in up]
        return up + down


def build_balancer(
    strategy: Strategy,
    channels: Sequence[tuple[str, int]],
    *,
    rng: random.Random,
    previous: Balancer | None = None,
) -> Balancer:
    """The balancer for one rule; a smooth round robin keeps ``previous``'s position.

    ``previous`` is the same rule's balancer from the config being replaced; its state is
    used only when it has the same strategy and exactly the same channels and weights.
    Raises ``ConfigError`` for an empty channel list, a duplicate channel or a weight < 1.
    """
    match strategy:
        case "round_robin":
            prior = previous if isinstance(previous, SmoothWeightedRoundRobin) else None
            return SmoothWeightedRoundRobin(channels, previous=prior)
        case "random":
            return WeightedRandom(channels, rng=rng)
        case "priority":
            return Priority(channels)
        case _:
            assert_never(strategy)
