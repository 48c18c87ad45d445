"""Which router serves a request: the ``x-apex-router`` header, else the key's routers in order.

Shared by the gateway and ``apex route explain`` so both decide identically. The team's
allowed-models check (403) comes before this, in the caller; this module only routes.
"""

from __future__ import annotations

from collections.abc import Mapping

from apex.errors import NotFound, PermissionDenied
from apex.routing.router import CompiledRouter, Route

__all__ = ["select_route"]


def select_route(
    routers: Mapping[str, CompiledRouter],
    allowed: tuple[str, ...],
    model: str,
    router_header: str | None,
) -> tuple[Route, tuple[str, ...]]:
    """The route for ``model`` and the routers considered to find it.

    ``allowed`` is the key's routers in the order to try them. Raises NotFound when the
    header names no router or no router routes the model (or the matched rule has no
    channel serving it), PermissionDenied when the key may not use the named router.
    """
    if router_header is not None:
        if router_header not in routers:
            raise NotFound(f"router '{router_header}' does not exist")
        if router_header not in allowed:
            raise PermissionDenied(f"this key may not use router '{router_header}'")
        candidates: tuple[str, ...] = (router_header,)
    else:
        candidates = allowed
    for i, name in enumerate(candidates):
        route = routers[name].resolve(model)
        if route is not None:
            if not route.channels and not route.fallback:
                raise NotFound(f"no channel of router '{name}' serves model '{model}'")
            return route, candidates[: i + 1]
    raise NotFound(f"no route for model '{model}'")
