"""``apex team add|update|delete|list|show``: edit ``teams[]`` (key, allowed routers/models, limits)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import rich_click as click

from apex.cli.flags import find_named
from apex.cli.options import config_option, config_path, json_option, wants_json
from apex.cli.output import fail, mask, print_json, print_table, say
from apex.cli.store import ConfigStore, RawConfig

__all__ = ["team_group", "masked_team"]

F = TypeVar("F", bound=Callable[..., object])


def _team_flags(*, add: bool) -> Callable[[F], F]:
    def decorate(f: F) -> F:
        for option in reversed(
            [
                click.option("--api-key", required=add, help="The team's client key; prefer a ${VAR} reference."),
                click.option("--router", "routers", multiple=True, metavar="R",
                             help="An allowed router, in order of preference; repeat for several."),
                click.option("--model", "models", multiple=True, metavar="GLOB",
                             help="An allowed model pattern; repeat for several."),
                click.option("--rpm", type=click.IntRange(min=0), help="Requests per minute (0: no limit)."),
                click.option("--tpm", type=click.IntRange(min=0), help="Tokens per minute (0: no limit)."),
            ]
        ):
            f = option(f)
        return f

    return decorate


@click.group("team")
def team_group() -> None:
    """Manage teams: client keys with allowed routers, models and rate limits."""


def _apply(team: dict[str, Any], api_key: str | None, routers: tuple[str, ...], models: tuple[str, ...],
           rpm: int | None, tpm: int | None) -> None:
    if api_key is not None:
        team["api_key"] = api_key
    policy = team.get("policy")
    if not isinstance(policy, dict):
        policy = {}
    # A list flag given once as "" removes the list (every router or model allowed), and a
    # limit of 0 removes that limit: the README's "on update an empty value removes a key".
    for key, given in (("allowed_routers", routers), ("allowed_models", models)):
        if given == ("",):
            policy.pop(key, None)
        elif given:
            policy[key] = list(given)
    if rpm is not None or tpm is not None:
        limit = policy.get("rate_limit")
        if not isinstance(limit, dict):
            limit = {}
        for key, value in (("rpm", rpm), ("tpm", tpm)):
            if value == 0:
                limit.pop(key, None)
            elif value is not None:
                limit[key] = value
        if limit:
            policy["rate_limit"] = limit
        else:
            policy.pop("rate_limit", None)
    if policy:
        team["policy"] = policy
    else:
        team.pop("policy", None)


@team_group.command("add")
@click.argument("team_id", metavar="ID")
@_team_flags(add=True)
@config_option
@json_option
def add(team_id: str, api_key: str, routers: tuple[str, ...], models: tuple[str, ...], rpm: int | None,
        tpm: int | None, config_file: str | None, as_json: bool) -> None:
    """Add team ID."""
    store = ConfigStore(config_path(config_file))
    with store.edit() as raw:
        teams = _teams(raw)
        if find_named(teams, "id", team_id) is not None:
            fail(f'team "{team_id}" already exists (use "apex team update")')
        team: dict[str, Any] = {"id": team_id}
        _apply(team, api_key, routers, models, rpm, tpm)
        teams.append(team)
    _done("added", team, as_json)


@team_group.command("update")
@click.argument("team_id", metavar="ID")
@_team_flags(add=False)
@config_option
@json_option
def update(team_id: str, api_key: str | None, routers: tuple[str, ...], models: tuple[str, ...],
           rpm: int | None, tpm: int | None, config_file: str | None, as_json: bool) -> None:
    """Update team ID: omitted flags keep their value, a repeated flag replaces its list."""
    store = ConfigStore(config_path(config_file))
    with store.edit() as raw:
        team = _teams(raw)[_index(raw, team_id)]
        _apply(team, api_key, routers, models, rpm, tpm)
    _done("updated", team, as_json)


@team_group.command("delete")
@click.argument("team_id", metavar="ID")
@click.option("--yes", "-y", is_flag=True, help="Accepted for scripts; delete never asks.")
@config_option
@json_option
def delete(team_id: str, yes: bool, config_file: str | None, as_json: bool) -> None:
    """Delete team ID."""
    store = ConfigStore(config_path(config_file))
    with store.edit() as raw:
        removed = _teams(raw).pop(_index(raw, team_id))
    _done("deleted", removed, as_json)


@team_group.command("list")
@config_option
@json_option
def list_(config_file: str | None, as_json: bool) -> None:
    """List teams (keys masked)."""
    teams = [masked_team(t) for t in _teams(ConfigStore(config_path(config_file)).read_raw())]
    if wants_json(as_json):
        print_json(teams)
        return
    print_table("Teams", ["id", "api_key", "routers", "models", "rpm", "tpm"], [_row(t) for t in teams])


@team_group.command("show")
@click.argument("team_id", metavar="ID")
@config_option
@json_option
def show(team_id: str, config_file: str | None, as_json: bool) -> None:
    """Show team ID (key masked)."""
    raw = ConfigStore(config_path(config_file)).read_raw()
    team = masked_team(_teams(raw)[_index(raw, team_id)])
    if wants_json(as_json):
        print_json(team)
        return
    print_table(f"Team {team_id}", ["field", "value"],
                list(zip(["id", "api_key", "routers", "models", "rpm", "tpm"], _row(team), strict=True)))


def masked_team(team: dict[str, Any]) -> dict[str, Any]:
    """A copy of a raw team with its api_key masked."""
    out = dict(team)
    if isinstance(out.get("api_key"), str):
        out["api_key"] = mask(out["api_key"])
    return out


def _row(team: dict[str, Any]) -> list[str]:
    policy = team.get("policy") or {}
    limit = policy.get("rate_limit") or {}
    return [
        str(team.get("id", "")),
        str(team.get("api_key") or ""),
        ", ".join(policy.get("allowed_routers") or []) or "(all)",
        ", ".join(policy.get("allowed_models") or []) or "(all)",
        str(limit.get("rpm") or ""),
        str(limit.get("tpm") or ""),
    ]


def _teams(raw: RawConfig) -> list[Any]:
    teams = raw.setdefault("teams", [])
    if not isinstance(teams, list):
        fail("teams: expected a list in the config file")
    return teams


def _index(raw: RawConfig, team_id: str) -> int:
    index = find_named(_teams(raw), "id", team_id)
    if index is None:
        fail(f'no team with id "{team_id}"')
    return index


def _done(verb: str, team: dict[str, Any], as_json: bool) -> None:
    if wants_json(as_json):
        print_json({"result": verb, "team": masked_team(team)})
    else:
        say(f'team "{team.get("id")}" {verb}')
