"""``apex config validate | show --effective | schema``: the config file as the gateway sees it.

``validate`` loads the file exactly as the gateway would and reports the first error;
``show --effective`` prints what the gateway would run with (file, ``APEX_*`` overrides and
defaults merged; secrets masked); ``schema`` prints the JSON Schema editors validate against.

Does not import aiohttp or the server, so it is fast enough for editors and CI hooks.
"""

from __future__ import annotations

import os
from pathlib import Path

import rich_click as click
from click.exceptions import Exit

from apex.cli.options import config_option, config_path, json_option, wants_json
from apex.cli.output import fail, print_json, say
from apex.cli.store import ConfigStore
from apex.config.load import check_host_paths, load_config_bytes
from apex.errors import ConfigError

__all__ = ["config_group"]


@click.group("config")
def config_group() -> None:
    """Check the config file, show it as the gateway sees it, print its JSON Schema."""


@config_group.command("schema")
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False), default=None,
              help="Write the schema to this file instead of standard output.")
def schema(output: str | None) -> None:
    """Print the JSON Schema of config.json (for editors: "$schema" or json.schemas settings)."""
    from apex.config.schema import config_schema_json

    text = config_schema_json()
    if output is None:
        click.echo(text, nl=False)
    else:
        Path(output).write_text(text)
        say(f"wrote {output}")


@config_group.command("show")
@click.option("--effective", is_flag=True, required=True,
              help="The merged result: the file, APEX_* environment overrides and every default.")
@click.option("--allow-missing-env", is_flag=True, help="Leave ${VAR} references to unset variables as they are.")
@config_option
def show(effective: bool, allow_missing_env: bool, config_file: str | None) -> None:
    """Print the config the gateway would run with, as JSON, secrets masked."""
    from apex.config.schema import effective_config

    path = config_path(config_file)
    try:
        config = load_config_bytes(ConfigStore(path).read_bytes(), strict_env=not allow_missing_env)
    except ConfigError as exc:
        fail(f"{os.fspath(path)}: {exc}")
    print_json(effective_config(config))


@config_group.command("validate")
@click.option("--allow-missing-env", is_flag=True,
              help="Accept ${VAR} references to variables unset here (the gateway's environment may differ).")
@config_option
@json_option
def validate(allow_missing_env: bool, config_file: str | None, as_json: bool) -> None:
    """Exit 0 when the config is valid; otherwise print the error with its key path and exit 1."""
    path = config_path(config_file)
    try:
        config = load_config_bytes(ConfigStore(path).read_bytes(), strict_env=not allow_missing_env)
        check_host_paths(config)
        from apex.upstream.channel import check_egress  # only here: the upstream modules load for this check alone

        check_egress(config)  # proxy URLs, TLS files: what `gateway start` would refuse
    except ConfigError as exc:
        if wants_json(as_json):
            print_json({"valid": False, "config": os.fspath(path), "path": exc.path, "error": exc.detail})
            raise Exit(1) from exc
        fail(f"{os.fspath(path)}: {exc}")
    counts = {"channels": len(config.channels), "routers": len(config.routers), "teams": len(config.teams)}
    if wants_json(as_json):
        print_json({"valid": True, "config": os.fspath(path), **counts})
    else:
        say(f"{os.fspath(path)} is valid: "
            f"{counts['channels']} channels, {counts['routers']} routers, {counts['teams']} teams")
