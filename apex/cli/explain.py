"""Explain where a request would go: principal, router, rule, channels in order, upstream model names.

TEMPORARY, to be replaced by the server's own routing: ``apex route explain`` must answer
exactly what the gateway does, so once ``apex.snapshot`` exists this module should become
a thin adapter over ``build_snapshot(config).explain(model, key, router=...)`` (signature
requested from the lead in the issue-7 report). Until then it re-implements spec
section 2 from the Config model: key -> principal -> candidate routers (vkey: its router;
team: ``allowed_routers`` in order; global key / no key: every router in file order) ->
first rule whose globs match, else the router's default channels -> channels filtered by
their ``models`` -> ``model_map`` (exact key first, then globs in file order). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from apex.config.model import Channel, ChannelRef, Config, Router
from apex.errors import AuthenticationFailed, NotFound, PermissionDenied
from apex.glob import compile_glob, is_glob

__all__ = ["ChannelStep", "Explanation", "explain_route", "upstream_model"]


@dataclass(frozen=True, slots=True)
class ChannelStep:
    """One channel a request may be sent to, in try order for its role."""

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


def _matches(pattern: str, model: str) -> bool:
    return compile_glob(pattern).match(model) is not None if is_glob(pattern) else pattern == model


def upstream_model(channel: Channel, model: str) -> str:
    """The name sent upstream: an exact ``model_map`` key wins, then globs in file order."""
    if model in channel.model_map:
        return channel.model_map[model]
    for pattern, target in channel.model_map.items():
        if is_glob(pattern) and _matches(pattern, model):
            return target
    return model


def _serves(channel: Channel, model: str) -> bool:
    return channel.models is None or any(_matches(p, model) for p in channel.models)


def _principal(config: Config, key: str | None) -> tuple[str, list[Router], list[str] | None]:
    """(description, candidate routers in order, allowed model globs or None)."""
    routers = list(config.routers)
    if key is None:
        if config.global_.auth.anonymous:
            return "anonymous (every router)", routers, None
        return "no key given: every router, as a global key", routers, None
    for router in routers:
        if router.vkey is not None and router.vkey == key:
            return f'vkey of router "{router.name}"', [router], None
    for team in config.teams:
        if team.api_key == key:
            allowed = team.policy.allowed_routers
            by_name = {r.name: r for r in routers}
            chosen = routers if allowed is None else [by_name[n] for n in allowed if n in by_name]
            models = None if team.policy.allowed_models is None else list(team.policy.allowed_models)
            return f'team "{team.id}"', chosen, models
    if key in config.global_.auth.keys:
        return "global key (every router)", routers, None
    raise AuthenticationFailed("the key is not a router vkey, team key or global key")


def explain_route(config: Config, model: str, key: str | None = None, router: str | None = None) -> Explanation:
    """Explain routing ``model`` for ``key`` (optionally naming ``router`` like ``x-apex-router``).

    Raises AuthenticationFailed (401), PermissionDenied (403) or NotFound (404) exactly where
    the gateway would refuse the request.
    """
    principal, candidates, allowed_models = _principal(config, key)
    if router is not None:
        if all(r.name != router for r in config.routers):
            raise NotFound(f'no router named "{router}"')
        if all(r.name != router for r in candidates):
            raise PermissionDenied(f'this key may not use router "{router}"')
        candidates = [r for r in candidates if r.name == router]
    if allowed_models is not None and not any(_matches(p, model) for p in allowed_models):
        raise PermissionDenied(f'model "{model}" is not allowed for {principal}')
    channels = {c.name: c for c in config.channels}
    considered: list[str] = []
    for candidate in candidates:
        considered.append(candidate.name)
        for index, rule in enumerate(candidate.rules):
            patterns = (rule.match.model,) if isinstance(rule.match.model, str) else rule.match.model
            if any(_matches(p, model) for p in patterns):
                # First match wins; an empty result after filtering is 404 (no fall-through).
                return _build(model, principal, considered, candidate.name, index, rule.strategy,
                              rule.channels, rule.fallback, channels)
        if candidate.channels:
            return _build(model, principal, considered, candidate.name, None, candidate.strategy,
                          candidate.channels, (), channels)
    raise NotFound(f'no router reachable by {principal} routes model "{model}"')


def _build(model: str, principal: str, considered: list[str], router: str, rule: int | None, strategy: str,
           refs: tuple[ChannelRef, ...], fallback: tuple[str, ...], channels: dict[str, Channel]) -> Explanation:
    steps: list[ChannelStep] = []
    dropped: list[str] = []
    for ref in refs:
        channel = channels[ref.name]
        if _serves(channel, model):
            steps.append(ChannelStep(ref.name, ref.weight, upstream_model(channel, model), False))
        else:
            dropped.append(ref.name)
    for name in fallback:
        channel = channels[name]
        if _serves(channel, model):
            steps.append(ChannelStep(name, 1, upstream_model(channel, model), True))
        else:
            dropped.append(name)
    where = f"rule {rule}" if rule is not None else "default channels"
    if not steps:
        raise NotFound(f'router "{router}" {where} matches "{model}" but none of its channels serve it')
    return Explanation(model, principal, tuple(considered), router, rule, strategy, tuple(steps), tuple(dropped))
