"""Load-balancing strategies: smooth weighted round robin, weighted random, priority."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apex.config.model import Strategy
from apex.errors import ConfigError
from apex.routing.balance import (
    Availability,
    Balancer,
    Priority,
    SmoothWeightedRoundRobin,
    WeightedRandom,
    build_balancer,
)
from tests.fakeclock import ScriptedRandom


def everyone(_name: str) -> bool:
    """Every channel is available."""
    return True


def all_but(*names: str) -> Availability:
    """An availability predicate that refuses ``names``."""
    return lambda name: name not in names


def picks(balancer: Balancer, n: int, available: Availability = everyone) -> list[str]:
    """The first choice of ``n`` consecutive requests."""
    return [balancer.order(available)[0] for _ in range(n)]


class TestSmoothWeightedRoundRobin:
    def test_five_one_one_is_spread_like_nginx(self) -> None:
        """Weights 5:1:1 give nginx's smooth sequence a a b a c a a, cycle after cycle."""
        rr = SmoothWeightedRoundRobin([("a", 5), ("b", 1), ("c", 1)])
        assert picks(rr, 14) == list("aabacaa") * 2

    def test_three_to_one_over_400_picks_is_exact(self) -> None:
        """3:1 over 400 requests lands on exactly 300/100."""
        rr = SmoothWeightedRoundRobin([("a", 3), ("b", 1)])
        assert Counter(picks(rr, 400)) == {"a": 300, "b": 100}

    def test_order_lists_every_channel_once_and_advances_once(self) -> None:
        """order() returns a permutation whose tail follows the sequence without moving it twice."""
        rr = SmoothWeightedRoundRobin([("a", 5), ("b", 1), ("c", 1)])
        assert rr.order(everyone) == ["a", "b", "c"]
        assert rr.order(everyone) == ["a", "b", "c"]
        assert rr.order(everyone) == ["b", "a", "c"]
        assert rr.order(everyone) == ["a", "c", "b"]
        assert rr.order(everyone) == ["c", "a", "b"]

    def test_unavailable_channels_go_last_and_the_rest_stay_smooth(self) -> None:
        """A cooling channel is ordered last, and the others keep their weighted share."""
        rr = SmoothWeightedRoundRobin([("a", 5), ("b", 1), ("c", 1)])
        orders = [rr.order(all_but("c")) for _ in range(6)]
        assert all(order[-1] == "c" and sorted(order) == ["a", "b", "c"] for order in orders)
        assert Counter(order[0] for order in orders) == {"a": 5, "b": 1}

    def test_all_unavailable_still_gives_every_channel(self) -> None:
        """When every channel is cooling, the order still names all of them and rotates."""
        rr = SmoothWeightedRoundRobin([("a", 1), ("b", 1)])
        nobody = all_but("a", "b")
        assert rr.order(nobody) == ["a", "b"]
        assert rr.order(nobody) == ["b", "a"]

    def test_state_survives_a_reload_with_the_same_channels(self) -> None:
        """A rebuilt balancer over identical channels continues the sequence where it was."""
        rr = build_balancer("round_robin", [("a", 5), ("b", 1), ("c", 1)], rng=random.Random(0))
        first = picks(rr, 3)
        rebuilt = build_balancer("round_robin", [("a", 5), ("b", 1), ("c", 1)], rng=random.Random(0), previous=rr)
        assert first + picks(rebuilt, 4) == list("aabacaa")

    def test_state_restarts_when_the_channels_change(self) -> None:
        """A changed weight starts the new balancer from zero instead of inheriting state."""
        rr = build_balancer("round_robin", [("a", 5), ("b", 1), ("c", 1)], rng=random.Random(0))
        picks(rr, 3)
        rebuilt = build_balancer("round_robin", [("a", 5), ("b", 1), ("c", 2)], rng=random.Random(0), previous=rr)
        assert isinstance(rebuilt, SmoothWeightedRoundRobin)
        assert rebuilt.state() == (0, 0, 0)

    @settings(max_examples=200, deadline=None)
    @given(
        weights=st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=6),
        warmup=st.integers(min_value=0, max_value=100),
    )
    def test_any_full_cycle_gives_each_channel_its_weight(self, weights: list[int], warmup: int) -> None:
        """For any weights, any window of sum(weights) picks gives each channel exactly its weight."""
        channels = [(f"c{i}", w) for i, w in enumerate(weights)]
        rr = SmoothWeightedRoundRobin(channels)
        picks(rr, warmup)
        counts = Counter(picks(rr, sum(weights)))
        assert counts == {name: w for name, w in channels}


class TestWeightedRandom:
    def test_three_to_one_over_400_evenly_spread_draws_is_exactly_300_100(self) -> None:
        """3:1 maps the lower three quarters of [0, 1) to the heavy channel: 400 evenly
        spread draws give exactly 300/100 (each order() draws twice: first and second place)."""
        draws = [((i // 2) + 0.5) / 400 if i % 2 == 0 else 0.5 for i in range(800)]
        rng = ScriptedRandom(draws)
        wr = WeightedRandom([("a", 3), ("b", 1)], rng=rng)
        assert Counter(picks(wr, 400)) == {"a": 300, "b": 100}
        assert rng.used == 800

    def test_the_boundary_between_channels_is_at_the_weight(self) -> None:
        """Draws just below and at 3/4 of the range fall on either side of the 3:1 split."""
        wr = WeightedRandom([("a", 3), ("b", 1)], rng=ScriptedRandom([0.7499, 0.0, 0.75, 0.0]))
        assert wr.order(everyone) == ["a", "b"]
        assert wr.order(everyone) == ["b", "a"]

    def test_seeded_generator_gives_the_same_sequence(self) -> None:
        """The same seed replays the same picks: the gateway's choice is reproducible."""
        first = picks(WeightedRandom([("a", 3), ("b", 1)], rng=random.Random(1234)), 50)
        again = picks(WeightedRandom([("a", 3), ("b", 1)], rng=random.Random(1234)), 50)
        assert first == again and set(first) == {"a", "b"}

    def test_order_is_a_permutation_with_unavailable_last(self) -> None:
        """Every order names each channel once, cooling ones after the available ones."""
        wr = WeightedRandom([("a", 1), ("b", 5), ("c", 1), ("d", 2)], rng=random.Random(7))
        for _ in range(50):
            order = wr.order(all_but("b"))
            assert sorted(order) == ["a", "b", "c", "d"]
            assert order[-1] == "b"

    def test_second_place_is_weighted_too(self) -> None:
        """Without replacement: once "a" (1 of 10) is picked, the second draw spans b's 8 and c's 1."""
        # 0.05 * 10 = 0.5 -> a; then 0.85 * 9 = 7.65 < 8 -> b; 0.95 * 9 = 8.55 -> c.
        wr = WeightedRandom([("a", 1), ("b", 8), ("c", 1)], rng=ScriptedRandom([0.05, 0.85, 0.0, 0.05, 0.95, 0.0]))
        assert wr.order(everyone) == ["a", "b", "c"]
        assert wr.order(everyone) == ["a", "c", "b"]


class TestPriority:
    def test_first_channel_while_healthy(self) -> None:
        """Priority always picks the first channel while it is available."""
        pr = Priority([("a", 1), ("b", 9), ("c", 1)])
        assert picks(pr, 20) == ["a"] * 20
        assert pr.order(everyone) == ["a", "b", "c"]

    def test_first_healthy_channel_when_earlier_ones_cool(self) -> None:
        """A cooling first channel moves to the back; the next one in list order leads."""
        pr = Priority([("a", 1), ("b", 1), ("c", 1)])
        assert pr.order(all_but("a")) == ["b", "c", "a"]
        assert pr.order(all_but("a", "b")) == ["c", "a", "b"]


class TestBuild:
    @pytest.mark.parametrize(
        ("strategy", "kind"),
        [("round_robin", SmoothWeightedRoundRobin), ("random", WeightedRandom), ("priority", Priority)],
    )
    def test_strategy_picks_the_class(self, strategy: Strategy, kind: type) -> None:
        """Each config strategy name builds its balancer."""
        assert isinstance(build_balancer(strategy, [("a", 1)], rng=random.Random(0)), kind)

    @pytest.mark.parametrize(
        "channels",
        [[], [("a", 1), ("a", 2)], [("a", 0)]],
        ids=["empty", "duplicate", "zero-weight"],
    )
    def test_bad_channel_lists_are_config_errors(self, channels: list[tuple[str, int]]) -> None:
        """An empty list, a repeated channel or a weight below 1 is refused with ConfigError."""
        with pytest.raises(ConfigError):
            build_balancer("priority", channels, rng=random.Random(0))
