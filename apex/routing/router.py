"""One router's routing table, compiled from config: model name -> the route to take.

Rules are tried in order and the first whose globs match wins (each rule's globs are one
regex); a model no rule matches takes the router's default ``channels`` if it has them.
Channel ``models`` lists then filter the rule's channels and its ``fallback``: when none
is left the model has no route here (no fall-through to later rules). Resolution is
cached per model name in a bounded LRU, so the steady state is one dict look-up.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from apex.config.model import ChannelRef, Router, Rule
from apex.glob import globs_to_regex
from apex.routing.balance import Balancer, build_balancer
from apex.routing.match import PatternSet

__all__ = ["CompiledRouter", "CompiledRule", "Route", "ROUTE_CACHE_SIZE"]

ROUTE_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRule:
    """A rule (or the router default) ready to route: label, pattern, balancer, fallback."""

    label: str                      # "rules[0]" / "default": for logs, explain and metrics
    regex: re.Pattern[str] | None   # None for the default
    patterns: tuple[str, ...]
    channels: tuple[str, ...]
    weights: tuple[int, ...]
    strategy: str
    fallback: tuple[str, ...]
    balancer: Balancer


@dataclass(frozen=True, slots=True, eq=False)
class Route:
    """Where one model goes in one router: the rule, and which of its channels may serve it."""

    router: str
    rule: CompiledRule
    channels: frozenset[str]      # rule channels whose `models` admit the model
    fallback: tuple[str, ...]     # fallback channels whose `models` admit the model
    static: tuple[str, ...] | None = None  # the order when the strategy has nothing to choose

    def order(self, is_available: Callable[[str], bool]) -> list[str]:
        """The channels to try for one request: strategy order, then fallback."""
        if self.static is not None:
            return list(self.static)
        admitted = self.channels
        if len(admitted) < len(self.rule.channels):
            # Channels whose `models` leave this model out take no part in the pick: the
            # rotation advanced over them too, and their turns fell to the next one (b b c).
            inner = is_available
            is_available = lambda c: c in admitted and inner(c)  # noqa: E731
        picked = [c for c in self.rule.balancer.order(is_available) if c in admitted]
        seen = set(picked)
        for name in self.fallback:
            if name not in seen:
                picked.append(name)
                seen.add(name)
        return picked


class CompiledRouter:
    """A router compiled once per Snapshot; ``resolve(model)`` is cached."""

    def __init__(
        self,
        router: Router,
        channel_models: Mapping[str, PatternSet | None],
        previous: CompiledRouter | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = router.name
        self._rng = rng if rng is not None else random.Random()
        self.vkey = router.vkey
        old_rules = {r.label: r for r in previous.rules} if previous is not None else {}
        if previous is not None and previous.default is not None:
            old_rules["default"] = previous.default
        self.rules: tuple[CompiledRule, ...] = tuple(
            self._compile(f"rules[{i}]", rule, old_rules) for i, rule in enumerate(router.rules)
        )
        self.default: CompiledRule | None = None
        if router.channels:
            self.default = self._compile_refs(
                "default", None, (), router.channels, router.strategy, (), old_rules
            )
        self._channel_models = channel_models
        self.resolve: Callable[[str], Route | None] = functools.lru_cache(maxsize=ROUTE_CACHE_SIZE)(
            self._resolve
        )

    def _compile(self, label: str, rule: Rule, old: dict[str, CompiledRule]) -> CompiledRule:
        patterns = (rule.match.model,) if isinstance(rule.match.model, str) else tuple(rule.match.model)
        return self._compile_refs(
            label, globs_to_regex(patterns), patterns, rule.channels, rule.strategy, rule.fallback, old
        )

    def _compile_refs(
        self,
        label: str,
        regex: re.Pattern[str] | None,
        patterns: tuple[str, ...],
        refs: tuple[ChannelRef, ...],
        strategy: str,
        fallback: tuple[str, ...],
        old: dict[str, CompiledRule],
    ) -> CompiledRule:
        names = tuple(r.name for r in refs)
        weights = tuple(r.weight for r in refs)
        prev = old.get(label)
        # Balancer state (smooth round-robin position) survives a reload when the rule's
        # channels, weights and strategy are unchanged: build_balancer checks that.
        balancer = build_balancer(
            strategy,  # type: ignore[arg-type]  # validated Strategy literal from the config
            list(zip(names, weights, strict=True)),
            rng=self._rng,
            previous=prev.balancer if prev is not None else None,
        )
        return CompiledRule(label, regex, patterns, names, weights, strategy, fallback, balancer)

    def _admits(self, channel: str, model: str) -> bool:
        models = self._channel_models.get(channel)
        return models is None or models.matches(model)

    def _resolve(self, model: str) -> Route | None:
        rule: CompiledRule | None = None
        for r in self.rules:
            assert r.regex is not None
            if r.regex.match(model) is not None:
                rule = r
                break
        if rule is None:
            rule = self.default
        if rule is None:
            return None
        channels = frozenset(c for c in rule.channels if self._admits(c, model))
        fallback = tuple(c for c in rule.fallback if self._admits(c, model))
        static = None
        if len(rule.channels) == 1:  # one channel: no balancing to do per request
            static = tuple(dict.fromkeys((*channels, *fallback)))
        return Route(self.name, rule, channels, fallback, static)

    def exact_models(self) -> set[str]:
        """Model names without wildcards that rules of this router name."""
        out: set[str] = set()
        for r in self.rules:
            out.update(PatternSet(r.patterns).exact_names)
        return out
