"""Explain where a request would go: principal, router, rule, channels in order, upstream model names.

Built on the gateway's own pure routing pieces (``KeyIndex`` for keys, ``CompiledRouter``
for rule matching and channel ``models`` filtering, ``ModelMap`` for upstream names), so it
answers what the server does without importing aiohttp; the router walk is the gateway's own
``apex.routing.select.select_route``. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from apex.auth import KeyIndex, Principal
from apex.config.model import Config
from apex.errors import AuthenticationFailed, PermissionDenied
from apex.routing.match import ModelMap, PatternSet
from apex.routing.router import CompiledRouter
from apex.routing.select import select_route

__all__ = ["ChannelStep", "Explanation", "explain_route"]


@dataclass(frozen=True, slots=True)
class ChannelStep:
    """One channel a request may be sent to: its weight, role and the model name sent upstream."""

    name: str
    weight: int
    upstream_model: str
    fallback: bool


@dataclass(frozen=True, slots=True)
class Explanation:
    """The routing decision for one model and key. ``rule`` is None for default channels."""

    model: str
    principal: str
    routers_considered: tuple[str, ...]
    router: str
    rule: int | None
    strategy: str
    channels: tuple[ChannelStep, ...]
    filtered_out: tuple[str, ...]


def _principal(config: Config, keys: KeyIndex, key: str | None) -> Principal:
    principal = keys.principal_for_key(key)
    if principal is not None:
        return principal
    if key is None:
        # Without a key, show what a global key (every router, file order) would get.
        return Principal("global", "no key given (as a global key)", tuple(r.name for r in config.routers))
    raise AuthenticationFailed("the key is not a router vkey, team key or global key")


def explain_route(config: Config, model: str, key: str | None = None, router: str | None = None) -> Explanation:
    """Explain routing ``model`` for ``key`` (optionally naming ``router`` like ``x-apex-router``).

    Raises AuthenticationFailed (401), PermissionDenied (403) or NotFound (404) where the
    gateway would refuse the request.
    """
    channel_models = {c.name: PatternSet(c.models) if c.models is not None else None for c in config.channels}
    routers = {r.name: CompiledRouter(r, channel_models) for r in config.routers}
    principal = _principal(config, KeyIndex(config), key)
    if principal.team is not None and not principal.team.allows_model(model):
        raise PermissionDenied(f"model '{model}' is not allowed for this key")
    route, considered = select_route(routers, principal.routers, model, router)
    maps = {c.name: ModelMap(c.model_map) for c in config.channels}
    rule = route.rule
    steps = [
        ChannelStep(name, weight, maps[name].map(model), False)
        for name, weight in zip(rule.channels, rule.weights, strict=True)
        if name in route.channels
    ]
    steps.extend(ChannelStep(name, 1, maps[name].map(model), True) for name in route.fallback)
    dropped = [n for n in rule.channels if n not in route.channels]
    dropped.extend(n for n in rule.fallback if n not in route.fallback)
    index = int(rule.label[len("rules["):-1]) if rule.label.startswith("rules[") else None
    return Explanation(model, principal.label, considered, route.router, index, rule.strategy,
                       tuple(steps), tuple(dropped))
