"""``apex init``: write a first config (listen address, one channel, a router with a generated vkey, optional team).

Interactive by default; ``--non-interactive`` takes flags and needs none (a mock channel
``demo`` behind router ``default`` on 127.0.0.1:8080). It never overwrites an existing file
without ``--force``, and the result is validated and written like every other edit.

``--systemd`` writes it for the packaged unit: every secret (upstream key, vkey, team key) goes
into an ``EnvironmentFile`` (mode 0600, read by systemd as root before it drops privileges)
and the config, which then holds only ``${VAR}`` references, is 0644 so the unit's
``DynamicUser`` can read it. ``--unit-file`` also writes the unit, pointing at these files.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

import rich_click as click

from apex.cli.options import config_option, config_path, json_option, wants_json
from apex.cli.output import fail, print_json, say
from apex.cli.store import ConfigStore
from apex.config.load import KEYLESS_PROVIDERS, parse_listen
from apex.config.model import PROVIDER_TYPES
from apex.share import SYSTEMD_UNIT, share_path

__all__ = ["init_command", "normalize_listen", "generate_key"]


def generate_key(prefix: str) -> str:
    """A fresh random client key such as ``apex-vk-…`` (192 bits)."""
    return f"{prefix}{secrets.token_urlsafe(24)}"


_DEFAULT_PORT: Final = 8080


def _ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


def normalize_listen(value: str) -> str:
    """``host:port`` as the config wants it: IPv6 hosts in brackets (``[::1]:8080``)."""
    value = value.strip()
    if ":" in value and not value.startswith("[") and not _ipv6(value.rpartition(":")[0]) and _ipv6(value):
        value = f"[{value}]:{_DEFAULT_PORT}"  # "::1" is a host alone (it was written "[:]:1"); "::1:9000" is host:port
    if not value.startswith("["):
        host, sep, port = value.rpartition(":")
        if sep and ":" in host:
            value = f"[{host}]:{port}"
    try:
        parse_listen(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: {exc}", param_hint="--listen") from exc
    return value


def _default_key_ref(provider: str) -> str | None:
    return None if provider in KEYLESS_PROVIDERS else "${" + provider.upper() + "_API_KEY}"


@click.command("init")
@click.option("--non-interactive", is_flag=True, help="Ask nothing; use flags and defaults.")
@click.option("--force", is_flag=True, help="Overwrite an existing config file (its old content goes to .bak).")
@click.option("--listen", default="127.0.0.1:8080", show_default=True, help="Address to listen on (host:port).")
@click.option("--provider", type=click.Choice(PROVIDER_TYPES), default="mock", show_default=True,
              help="Provider of the first channel.")
@click.option("--channel", "channel_name", help="Name of the first channel (default: demo for mock, else the provider).")
@click.option("--base-url", help="Base URL of the first channel (default: the provider's).")
@click.option("--api-key", help="Upstream key of the first channel (default: ${<PROVIDER>_API_KEY}).")
@click.option("--model", "models", multiple=True, metavar="M", help="Model the channel serves; repeat for several.")
@click.option("--router", "router_name", default="default", show_default=True, help="Name of the router.")
@click.option("--vkey", help="Client key selecting the router (default: generated).")
@click.option("--team", "team_id", help="Also create a team with this id.")
@click.option("--team-key", help="The team's client key (default: generated).")
@click.option("--systemd", is_flag=True,
              help="Secrets into an EnvironmentFile (0600), the config (0644) only references them.")
@click.option("--env-file", type=click.Path(dir_okay=False),
              help="EnvironmentFile for --systemd (default: apex.env beside the config).")
@click.option("--unit-file", type=click.Path(dir_okay=False),
              help="With --systemd, also write the unit here (e.g. /etc/systemd/system/apex.service).")
@config_option
@json_option
def init_command(non_interactive: bool, force: bool, listen: str, provider: str, channel_name: str | None,
                 base_url: str | None, api_key: str | None, models: tuple[str, ...], router_name: str,
                 vkey: str | None, team_id: str | None, team_key: str | None, systemd: bool,
                 env_file: str | None, unit_file: str | None, config_file: str | None, as_json: bool) -> None:
    """Create a config file, by wizard or (--non-interactive) from flags."""
    path = config_path(config_file)
    store = ConfigStore(path)
    if store.exists() and not force:
        fail(f"{path} already exists; use --force to overwrite it")
    if (env_file or unit_file) and not systemd:
        raise click.UsageError("--env-file and --unit-file go with --systemd")
    env_path = Path(os.path.abspath(env_file)) if env_file else path.with_name("apex.env")
    if systemd and env_path.exists() and not force:
        fail(f"{env_path} already exists; use --force to overwrite it")
    model_list = list(models)
    if non_interactive:
        listen = normalize_listen(listen)
    else:
        say(f"[bold]Apex setup[/bold]: writing {path}")
        listen = click.prompt("Listen address (host:port)", default=listen, value_proc=normalize_listen)
        provider = click.prompt("Provider of the first channel", default=provider,
                                type=click.Choice(PROVIDER_TYPES), show_choices=True)
        channel_name = click.prompt("Channel name", default=channel_name or _default_channel(provider))
        base_url = click.prompt("Base URL (empty: the provider's default)", default=base_url or "",
                                show_default=False) or None
        if provider not in KEYLESS_PROVIDERS:
            api_key = click.prompt("Upstream API key (a ${VAR} reference keeps it out of the file)",
                                   default=api_key or _default_key_ref(provider))
        default_models = ",".join(model_list) or ("*" if provider == "mock" else "")
        answer = click.prompt("Models served, comma-separated (empty: any)", default=default_models,
                              show_default=bool(default_models))
        model_list = [m.strip() for m in answer.split(",") if m.strip()]
        router_name = click.prompt("Router name", default=router_name)
        vkey = click.prompt("Router vkey (client key)", default=vkey or generate_key("apex-vk-"))
        if team_id or click.confirm("Add a team?", default=False):
            team_id = click.prompt("Team id", default=team_id or "team-1")
            team_key = click.prompt("Team API key", default=team_key or generate_key("apex-tk-"))

    name = channel_name or _default_channel(provider)
    channel: dict[str, Any] = {"name": name, "provider_type": provider}
    if base_url:
        channel["base_url"] = base_url
    key = api_key if api_key is not None else _default_key_ref(provider)
    if key:
        channel["api_key"] = key
    if not model_list and provider == "mock":
        model_list = ["*"]
    if model_list:
        channel["models"] = model_list
    vkey = vkey or generate_key("apex-vk-")
    raw: dict[str, Any] = {
        "global": {"listen": listen},
        "channels": [channel],
        "routers": [{"name": router_name, "vkey": vkey, "channels": [{"name": name}]}],
    }
    if team_id:
        team_key = team_key or generate_key("apex-tk-")
        raw["teams"] = [{"id": team_id, "api_key": team_key, "policy": {"allowed_routers": [router_name]}}]
    if systemd:
        secrets_env = _move_secrets(raw)
        store.create(raw, force=force, mode=0o644)  # only ${VAR} references: the service user must read it
        _write_private(env_path, _env_text(path, secrets_env))
        if unit_file:
            _write_unit(Path(os.path.abspath(unit_file)), path, env_path)
    else:
        store.create(raw, force=force)

    if wants_json(as_json):
        out: dict[str, Any] = {"result": "created", "config": os.fspath(path), "listen": listen, "channel": name,
                               "router": router_name, "vkey": vkey, "team": team_id, "team_key": team_key}
        if systemd:
            out.update(env_file=os.fspath(env_path), unit_file=unit_file and os.path.abspath(unit_file))
        print_json(out)
        return
    say(f"wrote {path}")
    if systemd:
        say(f"wrote {env_path} (mode 0600): the secrets; the config references them as ${{VAR}}")
        if unit_file:
            say(f"wrote {os.path.abspath(unit_file)}: next `sudo systemctl daemon-reload && sudo systemctl enable --now apex`")
        else:
            say(f"unit: install {share_path(SYSTEMD_UNIT)} as /etc/systemd/system/apex.service "
                f"(or rerun with --unit-file)")
    say(f"router [bold]{router_name}[/bold] vkey: {vkey}")
    if team_id:
        say(f"team [bold]{team_id}[/bold] key: {team_key}")
    if not systemd:
        say(f"next: apex gateway start --config {path}")


def _default_channel(provider: str) -> str:
    return "demo" if provider == "mock" else provider


def _env_name(*parts: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", "_".join(parts).upper()).strip("_")


def _move_secrets(raw: dict[str, Any]) -> dict[str, str]:
    """Replace literal secrets in ``raw`` by ``${VAR}`` references; returns {VAR: value}.
    An existing reference gets a placeholder line so the admin sees what to fill in."""
    env: dict[str, str] = {}

    def take(holder: dict[str, Any], key: str, var: str) -> None:
        value = holder.get(key)
        if not isinstance(value, str) or not value:
            return
        ref = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", value)
        if ref is not None:
            env.setdefault(ref.group(1), "replace-me")
            return
        env[var] = value
        holder[key] = "${" + var + "}"

    for channel in raw.get("channels", []):
        take(channel, "api_key", _env_name(channel["provider_type"], "api_key"))
    for router in raw.get("routers", []):
        take(router, "vkey", _env_name("apex_vkey", router["name"]))
    for team in raw.get("teams", []):
        take(team, "api_key", _env_name("apex_team", team["id"], "key"))
    return env


def _env_text(config: Path, env: dict[str, str]) -> str:
    lines = [f"# Secrets for the Apex service, referenced from {config} as ${{NAME}}.",
             "# Read by systemd (EnvironmentFile=) as root; keep this file mode 0600, owned by root.", ""]
    lines += [f"{name}={value}" for name, value in env.items()]
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Atomically write ``text`` readable by its owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _write_unit(target: Path, config: Path, env_file: Path) -> None:
    """The packaged unit with this install's apex executable, config and env file in it."""
    unit = share_path(SYSTEMD_UNIT).read_text()
    # The apex beside this interpreter (the venv it is installed in), not whatever PATH finds first.
    beside = os.path.join(os.path.dirname(sys.executable), "apex")
    exe = beside if os.access(beside, os.X_OK) else (shutil.which("apex") or beside)
    unit = unit.replace("/usr/local/bin/apex", exe)
    unit = unit.replace("/etc/apex/config.json", os.fspath(config))
    unit = unit.replace("EnvironmentFile=/etc/apex/apex.env", f"EnvironmentFile={env_file}")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(unit)
    os.chmod(target, 0o644)
