"""One immutable Snapshot of everything the request path reads, built from a Config.

A request reads the current Snapshot once and uses it to the end, so a hot reload (which
builds a new Snapshot and swaps one reference) never changes a request mid-flight.
State that must outlive a reload (smooth round-robin positions, channel health) is
carried over from the previous Snapshot for routers and channels that did not change.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from apex.auth import KeyIndex, Principal
from apex.config.model import Config
from apex.errors import PermissionDenied
from apex.upstream.channel import CompiledChannel, compile_channel
from apex.upstream.http import UpstreamPool
from apex.routing.health import HealthTracker, StateChangeHook
from apex.routing.match import PatternSet
from apex.routing.router import CompiledRouter, Route
from apex.routing.select import select_route

__all__ = ["Snapshot", "build_snapshot", "RouteChoice"]


@dataclass(frozen=True, slots=True)
class RouteChoice:
    """The outcome of routing one request: the route and the model as the client named it."""

    route: Route
    model: str


@dataclass(eq=False)
class Snapshot:
    config: Config
    channels: dict[str, CompiledChannel]
    routers: dict[str, CompiledRouter]
    keys: KeyIndex
    health: HealthTracker
    rng: random.Random = field(default_factory=random.Random)
    retry_on_status: frozenset[int] = frozenset()

    @property
    def max_body_bytes(self) -> int:
        return self.config.global_.max_body_bytes

    def pick_route(self, principal: Principal, model: str, router_header: str | None) -> Route:
        """The route for ``model``: policy first (403), then routing (404)."""
        team = principal.team
        if team is not None and not team.allows_model(model):
            raise PermissionDenied(f"model '{model}' is not allowed for this key")
        return select_route(self.routers, principal.routers, model, router_header)[0]

    def models_for(self, principal: Principal) -> list[str]:
        """Model names (no wildcards) this principal may use, for /v1/models."""
        names: set[str] = set()
        for rname in principal.routers:
            router = self.routers[rname]
            names.update(router.exact_models())
            rules = list(router.rules) + ([router.default] if router.default is not None else [])
            for rule in rules:
                for cname in (*rule.channels, *rule.fallback):
                    ch = self.channels[cname]
                    if ch.models is not None:
                        names.update(ch.models.exact_names)
        if principal.team is not None:
            names = {n for n in names if principal.team.allows_model(n)}
        # Keep only names some router really routes to a channel that admits them.
        return sorted(n for n in names if self._routable(principal, n))

    def _routable(self, principal: Principal, model: str) -> bool:
        for rname in principal.routers:
            route = self.routers[rname].resolve(model)
            if route is not None:
                return bool(route.channels or route.fallback)
        return False


def build_snapshot(
    config: Config,
    previous: Snapshot | None = None,
    on_health_change: StateChangeHook | None = None,
    *,
    rng: random.Random | None = None,
    pool: UpstreamPool | None = None,
) -> Snapshot:
    """Compile ``config``; raise ConfigError when a channel cannot be compiled. Channels reach
    their upstreams through ``pool`` (the Gateway's; a throwaway one when only validating)."""
    g = config.global_
    channels = {ch.name: compile_channel(ch, g, i, pool) for i, ch in enumerate(config.channels)}
    channel_models: dict[str, PatternSet | None] = {name: ch.models for name, ch in channels.items()}
    if previous is not None:
        rng = previous.rng
    elif rng is None:
        rng = random.Random()
    routers: dict[str, CompiledRouter] = {}
    for r in config.routers:
        prev = previous.routers.get(r.name) if previous is not None else None
        routers[r.name] = CompiledRouter(r, channel_models, previous=prev, rng=rng)
    health = HealthTracker.from_config(g.health, on_health_change)
    if previous is not None:
        unchanged = [
            name for name, ch in channels.items()
            if name in previous.channels and previous.channels[name].config == ch.config
        ]
        health.adopt(previous.health, unchanged)
    return Snapshot(
        config, channels, routers, KeyIndex(config), health, rng, frozenset(g.retries.retry_on_status)
    )
