"""``apex router add|update|delete|list|show`` and ``apex router rule add|delete``: edit ``routers[]``.

A router a team still names in ``allowed_routers`` cannot be deleted: the refusal names the
team. Rules are appended unless ``--position N`` (0-based) says where.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar, get_args

import rich_click as click

from apex.cli.flags import find_named, format_refs, parse_channel_refs
from apex.cli.options import config_option, config_path, json_option, wants_json
from apex.cli.output import fail, mask, print_json, print_table, say
from apex.cli.store import ConfigStore, RawConfig
from apex.config.model import Strategy

__all__ = ["router_group", "masked_router"]

STRATEGIES = get_args(Strategy)
F = TypeVar("F", bound=Callable[..., object])


def _router_flags(f: F) -> F:
    for option in reversed(
        [
            click.option("--vkey", help="Client key selecting this router; prefer a ${VAR} reference."),
            click.option("--channel", "channels", multiple=True, metavar="NAME[:WEIGHT]",
                         help="Default channel (used when no rule matches); repeat for several."),
            click.option("--strategy", type=click.Choice(STRATEGIES), help="Strategy for the default channels."),
        ]
    ):
        f = option(f)
    return f


@click.group("router")
def router_group() -> None:
    """Manage routers: which channels serve which models for a key."""


def _apply(router: dict[str, Any], vkey: str | None, channels: tuple[str, ...], strategy: str | None) -> None:
    if vkey is not None:
        router["vkey"] = vkey
    if channels:
        router["channels"] = parse_channel_refs(channels)
    if strategy is not None:
        router["strategy"] = strategy


@router_group.command("add")
@click.argument("name")
@_router_flags
@config_option
@json_option
def add(name: str, vkey: str | None, channels: tuple[str, ...], strategy: str | None,
        config_file: str | None, as_json: bool) -> None:
    """Add router NAME."""
    store = ConfigStore(config_path(config_file))
    with store.edit() as raw:
        routers = _routers(raw)
        if find_named(routers, "name", name) is not None:
            fail(f'router "{name}" already exists (use "apex router update")')
        router: dict[str, Any] = {"name": name}
        _apply(router, vkey, channels, strategy)
        routers.append(router)
    _done("added", router, as_json)


@router_group.command("update")
@click.argument("name")
@_router_flags
@config_option
@json_option
def update(name: str, vkey: str | None, channels: tuple[str, ...], strategy: str | None,
           config_file: str | None, as_json: bool) -> None:
    """Update router NAME: omitted flags keep their value, a repeated flag replaces its list."""
    store = ConfigStore(config_path(config_file))
    with store.edit() as raw:
        router = _routers(raw)[_index(raw, name)]
        _apply(router, vkey, channels, strategy)
    _done("updated", router, as_json)


@router_group.command("delete")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Accepted for scripts; delete never asks.")
@config_option
@json_option
def delete(name: str, yes: bool, config_file: str | None, as_json: bool) -> None:
    """Delete router NAME; refused while a team names it."""
    store = ConfigStore(config_path(config_file))
    with store.edit() as raw:
        index = _index(raw, name)
        users = router_users(raw, name)
        if users:
            fail(f'router "{name}" is used by {"; ".join(users)}: remove it there first')
        removed = _routers(raw).pop(index)
    _done("deleted", removed, as_json)
    _warn_if_nothing_routable(raw, as_json)


@router_group.command("list")
@config_option
@json_option
def list_(config_file: str | None, as_json: bool) -> None:
    """List routers (vkeys masked)."""
    routers = [masked_router(r) for r in _routers(ConfigStore(config_path(config_file)).read_raw())]
    if wants_json(as_json):
        print_json(routers)
        return
    print_table(
        "Routers",
        ["name", "vkey", "rules", "default channels", "strategy"],
        [
            [
                str(r.get("name", "")),
                str(r.get("vkey") or ""),
                str(len(r.get("rules") or [])),
                format_refs(r.get("channels") or []),
                str(r.get("strategy", "round_robin")),
            ]
            for r in routers
        ],
    )


@router_group.command("show")
@click.argument("name")
@config_option
@json_option
def show(name: str, config_file: str | None, as_json: bool) -> None:
    """Show router NAME with its rules in order (vkey masked)."""
    raw = ConfigStore(config_path(config_file)).read_raw()
    router = masked_router(_routers(raw)[_index(raw, name)])
    if wants_json(as_json):
        print_json({**router, "used_by": router_users(raw, name)})
        return
    say(f"[bold]router {name}[/bold]  vkey: {router.get('vkey') or '-'}")
    rows = [
        [
            str(i),
            _patterns(rule),
            format_refs(rule.get("channels") or []),
            str(rule.get("strategy", "round_robin")),
            ", ".join(rule.get("fallback") or []),
        ]
        for i, rule in enumerate(router.get("rules") or [])
        if isinstance(rule, dict)
    ]
    rows.append(["default", "*", format_refs(router.get("channels") or []),
                 str(router.get("strategy", "round_robin")), ""])
    print_table("Rules (first match wins)", ["#", "model", "channels", "strategy", "fallback"], rows)


@router_group.group("rule")
def rule_group() -> None:
    """Manage a router's ordered rules."""


@rule_group.command("add")
@click.argument("router_name", metavar="ROUTER")
@click.option("--model", "models", multiple=True, metavar="GLOB", help="Model pattern matched; repeat for several.")
@click.option("--channel", "channels", multiple=True, metavar="NAME[:WEIGHT]", help="Channel; repeat for several.")
@click.option("--strategy", type=click.Choice(STRATEGIES), help="How the rule's channels are chosen.")
@click.option("--fallback", "fallbacks", multiple=True, metavar="NAME", help="Fallback channel; repeat for several.")
@click.option("--position", type=click.IntRange(min=0), help="0-based index to insert at (default: append).")
@config_option
@json_option
def rule_add(router_name: str, models: tuple[str, ...], channels: tuple[str, ...], strategy: str | None,
             fallbacks: tuple[str, ...], position: int | None, config_file: str | None, as_json: bool) -> None:
    """Add a rule to ROUTER."""
    if not models:
        raise click.UsageError("a rule needs at least one --model")
    if not channels:
        raise click.UsageError("a rule needs at least one --channel")
    rule: dict[str, Any] = {"match": {"model": models[0] if len(models) == 1 else list(models)},
                            "channels": parse_channel_refs(channels)}
    if strategy is not None:
        rule["strategy"] = strategy
    if fallbacks:
        rule["fallback"] = list(fallbacks)
    store = ConfigStore(config_path(config_file))
    with store.edit() as raw:
        router = _routers(raw)[_index(raw, router_name)]
        rules = router.setdefault("rules", [])
        index = len(rules) if position is None else min(position, len(rules))
        rules.insert(index, rule)
    if wants_json(as_json):
        print_json({"result": "added", "router": router_name, "position": index, "rule": rule})
    else:
        say(f'rule added to router "{router_name}" at position {index}')


@rule_group.command("delete")
@click.argument("router_name", metavar="ROUTER")
@click.argument("position", type=click.IntRange(min=0))
@click.option("--yes", "-y", is_flag=True, help="Accepted for scripts; delete never asks.")
@config_option
@json_option
def rule_delete(router_name: str, position: int, yes: bool, config_file: str | None, as_json: bool) -> None:
    """Delete the rule at POSITION (0-based) from ROUTER."""
    store = ConfigStore(config_path(config_file))
    with store.edit() as raw:
        rules = _routers(raw)[_index(raw, router_name)].get("rules") or []
        if position >= len(rules):
            fail(f'router "{router_name}" has no rule {position} ({len(rules)} rules)')
        removed = rules.pop(position)
    if wants_json(as_json):
        print_json({"result": "deleted", "router": router_name, "position": position, "rule": removed})
    else:
        say(f'rule {position} deleted from router "{router_name}"')
    _warn_if_nothing_routable(raw, as_json)


def _routable(router: dict[str, Any]) -> bool:
    """A router can send some model somewhere: default channels, or a rule with channels."""
    if router.get("channels"):
        return True
    return any(isinstance(rule, dict) and (rule.get("channels") or rule.get("fallback")) for rule in router.get("rules") or [])


def _warn_if_nothing_routable(raw: RawConfig, as_json: bool) -> None:
    """Deleting asks nothing (the contract), so say it on stderr when no request can be routed now."""
    if any(_routable(r) for r in _routers(raw) if isinstance(r, dict)):
        return
    message = ("no router can route any request now: the gateway answers every API request with 404 "
               "until you add one (apex router add NAME --channel CHANNEL)")
    if wants_json(as_json):
        click.echo(json.dumps({"warning": message}), err=True)
    else:
        click.echo(f"warning: {message}", err=True)


def masked_router(router: dict[str, Any]) -> dict[str, Any]:
    """A copy of a raw router with its vkey masked."""
    out = dict(router)
    if isinstance(out.get("vkey"), str):
        out["vkey"] = mask(out["vkey"])
    return out


def router_users(raw: RawConfig, name: str) -> list[str]:
    """Teams whose allowed_routers name router ``name``, as readable phrases."""
    return [
        f'team "{team.get("id")}"'
        for team in raw.get("teams") or []
        if isinstance(team, dict) and name in ((team.get("policy") or {}).get("allowed_routers") or [])
    ]


def _patterns(rule: dict[str, Any]) -> str:
    model = (rule.get("match") or {}).get("model")
    return ", ".join(model) if isinstance(model, list) else str(model)


def _routers(raw: RawConfig) -> list[Any]:
    routers = raw.setdefault("routers", [])
    if not isinstance(routers, list):
        fail("routers: expected a list in the config file")
    return routers


def _index(raw: RawConfig, name: str) -> int:
    index = find_named(_routers(raw), "name", name)
    if index is None:
        fail(f'no router named "{name}"')
    return index


def _done(verb: str, router: dict[str, Any], as_json: bool) -> None:
    if wants_json(as_json):
        print_json({"result": verb, "router": masked_router(router)})
    else:
        say(f'router "{router.get("name")}" {verb}')
