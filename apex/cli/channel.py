"""``apex channel add|update|delete|list|show``: edit ``channels[]`` in the config file.

Every change goes through ``ConfigStore.edit`` (lock, validate, atomic write). A channel a
router still uses (default channels, a rule's channels or fallback) cannot be deleted: the
refusal names the router and rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import rich_click as click

from apex.cli.key_flags import apply_key_flags, key_flags
from apex.cli.flags import find_named, parse_pairs
from apex.cli.options import config_option, config_path, json_option, wants_json
from apex.cli.output import fail, print_json, print_table, say
from apex.cli.store import ConfigStore, RawConfig
from apex.config.model import PROVIDER_TYPES
from apex.config.schema import mask_secrets

__all__ = ["channel_group", "masked_channel"]

F = TypeVar("F", bound=Callable[..., object])


def _channel_flags(*, add: bool) -> Callable[[F], F]:
    def decorate(f: F) -> F:
        for option in reversed(
            [
                click.option("--provider", type=click.Choice(PROVIDER_TYPES), required=add,
                             help="provider_type of the channel."),
                click.option("--base-url", help="The provider SDK's base URL (default: the provider's)."),
                click.option("--anthropic-base-url", help="Anthropic-compatible endpoint of a dual-protocol provider."),
                click.option("--api-key", help="Upstream key; prefer a ${VAR} reference."),
                click.option("--model", "models", multiple=True, metavar="M",
                             help="A model served (glob allowed); repeat for several."),
                click.option("--header", "headers", multiple=True, metavar="K=V",
                             help="Header injected upstream; repeat for several."),
                click.option("--map", "maps", multiple=True, metavar="FROM=TO",
                             help="model_map entry (FROM may be a glob); repeat for several."),
            ]
        ):
            f = option(f)
        return f

    return decorate


@click.group("channel")
def channel_group() -> None:
    """Manage channels: the upstream providers Apex forwards to."""


def _apply(
    ch: dict[str, Any],
    provider: str | None,
    base_url: str | None,
    anthropic_base_url: str | None,
    api_key: str | None,
    models: tuple[str, ...],
    headers: tuple[str, ...],
    maps: tuple[str, ...],
) -> None:
    # Omitted flags keep what is there; a given repeatable flag replaces the whole list; an
    # empty string removes the key (back to the provider's default URL, or no key; a list
    # flag given once as "" removes the list: no headers, no model map, every model).
    if provider is not None:
        ch["provider_type"] = provider
    for key, value in (("base_url", base_url), ("anthropic_base_url", anthropic_base_url), ("api_key", api_key)):
        if value == "":
            ch.pop(key, None)
        elif value is not None:
            ch[key] = value
    for key, given in (("headers", headers), ("model_map", maps), ("models", models)):
        if given == ("",):
            ch.pop(key, None)
        elif given:
            ch[key] = list(given) if key == "models" else parse_pairs(given, "--header" if key == "headers" else "--map")


@channel_group.command("add")
@click.argument("name")
@_channel_flags(add=True)
@key_flags
@config_option
@json_option
def add(name: str, provider: str, base_url: str | None, anthropic_base_url: str | None, api_key: str | None,
        models: tuple[str, ...], headers: tuple[str, ...], maps: tuple[str, ...],
        config_file: str | None, as_json: bool, **keys: Any) -> None:
    """Add channel NAME."""
    store = ConfigStore(config_path(config_file))
    with store.edit() as raw:
        channels = _channels(raw)
        if find_named(channels, "name", name) is not None:
            fail(f'channel "{name}" already exists (use "apex channel update")')
        ch: dict[str, Any] = {"name": name}
        _apply(ch, provider, base_url, anthropic_base_url, api_key, models, headers, maps)
        apply_key_flags(ch, keys)
        channels.append(ch)
    _done("added", ch, as_json)


@channel_group.command("update")
@click.argument("name")
@_channel_flags(add=False)
@key_flags
@config_option
@json_option
def update(name: str, provider: str | None, base_url: str | None, anthropic_base_url: str | None,
           api_key: str | None, models: tuple[str, ...], headers: tuple[str, ...], maps: tuple[str, ...],
           config_file: str | None, as_json: bool, **keys: Any) -> None:
    """Update channel NAME: omitted flags keep their value, a repeated flag replaces its list."""
    store = ConfigStore(config_path(config_file))
    with store.edit() as raw:
        ch = _channels(raw)[_index(raw, name)]
        _apply(ch, provider, base_url, anthropic_base_url, api_key, models, headers, maps)
        apply_key_flags(ch, keys)
    _done("updated", ch, as_json)


@channel_group.command("delete")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Accepted for scripts; delete never asks.")
@config_option
@json_option
def delete(name: str, yes: bool, config_file: str | None, as_json: bool) -> None:
    """Delete channel NAME; refused while a router uses it."""
    store = ConfigStore(config_path(config_file))
    with store.edit() as raw:
        index = _index(raw, name)
        users = channel_users(raw, name)
        if users:
            fail(f'channel "{name}" is used by {"; ".join(users)}: remove it there first')
        removed = _channels(raw).pop(index)
    _done("deleted", removed, as_json)


@channel_group.command("list")
@config_option
@json_option
def list_(config_file: str | None, as_json: bool) -> None:
    """List channels (secrets masked)."""
    raw = ConfigStore(config_path(config_file)).read_raw()
    channels = [masked_channel(c) for c in _channels(raw)]
    if wants_json(as_json):
        print_json(channels)
        return
    print_table(
        "Channels",
        ["name", "provider", "base_url", "api_key", "models", "model_map"],
        [
            [
                str(c.get("name", "")),
                str(c.get("provider_type", "")),
                str(c.get("base_url") or ""),
                str(c.get("api_key") or ""),
                ", ".join(c.get("models") or []),
                ", ".join(f"{k}→{v}" for k, v in (c.get("model_map") or {}).items()),
            ]
            for c in channels
        ],
    )


@channel_group.command("show")
@click.argument("name")
@config_option
@json_option
def show(name: str, config_file: str | None, as_json: bool) -> None:
    """Show channel NAME (secrets masked) and which routers use it."""
    raw = ConfigStore(config_path(config_file)).read_raw()
    ch = masked_channel(_channels(raw)[_index(raw, name)])
    users = channel_users(raw, name)
    if wants_json(as_json):
        print_json({**ch, "used_by": users})
        return
    rows = [[key, _cell(value)] for key, value in ch.items()]
    rows.append(["used by", "; ".join(users)])
    print_table(f"Channel {name}", ["field", "value"], rows)


def masked_channel(ch: dict[str, Any]) -> dict[str, Any]:
    """A copy of a raw channel with every credential masked, by the rules ``apex config show``
    uses (api_key, credential-like headers, cloud secrets, the password in a proxy URL)."""
    masked: dict[str, Any] = mask_secrets(ch)
    return masked


def channel_users(raw: RawConfig, name: str) -> list[str]:
    """Where routers refer to channel ``name``, as readable phrases naming each router."""
    users: list[str] = []
    for router in raw.get("routers") or []:
        if not isinstance(router, dict):
            continue
        rname = router.get("name")
        if any(isinstance(r, dict) and r.get("name") == name for r in router.get("channels") or []):
            users.append(f'router "{rname}" (default channels)')
        for i, rule in enumerate(router.get("rules") or []):
            if not isinstance(rule, dict):
                continue
            if any(isinstance(r, dict) and r.get("name") == name for r in rule.get("channels") or []):
                users.append(f'router "{rname}" (rule {i})')
            elif name in (rule.get("fallback") or []):
                users.append(f'router "{rname}" (rule {i} fallback)')
    return users


def _channels(raw: RawConfig) -> list[Any]:
    channels = raw.setdefault("channels", [])
    if not isinstance(channels, list):
        fail("channels: expected a list in the config file")
    return channels


def _index(raw: RawConfig, name: str) -> int:
    index = find_named(_channels(raw), "name", name)
    if index is None:
        fail(f'no channel named "{name}"')
    return index


def _cell(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _done(verb: str, ch: dict[str, Any], as_json: bool) -> None:
    if wants_json(as_json):
        print_json({"result": verb, "channel": masked_channel(ch)})
    else:
        say(f'channel "{ch.get("name")}" {verb}')
