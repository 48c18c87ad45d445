"""Options every command shares (``--config``, ``--json``) and how the config path is resolved.

Path order (spec section 5): ``--config`` on the command, else ``--config`` on ``apex``
itself, else ``$APEX_CONFIG``, else ``./config.json``. The path is made absolute but not
resolved, so a symlinked config stays the symlink the gateway watches.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar

import rich_click as click

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "addressed_config",
    "config_choice",
    "config_option",
    "config_path",
    "demo_config",
    "demo_option",
    "json_option",
    "resolve_config_path",
    "wants_json",
]

CONFIG_ENV: Final = "APEX_CONFIG"
DEFAULT_CONFIG: Final = "config.json"

F = TypeVar("F", bound=Callable[..., object])


def resolve_config_path(given: str | os.PathLike[str] | None, env: dict[str, str] | None = None) -> Path:
    """The config path from ``given``, else ``$APEX_CONFIG``, else ``./config.json``; absolute."""
    environ = os.environ if env is None else env
    chosen = given or environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    return Path(os.path.abspath(os.fspath(chosen)))


def config_option(f: F) -> F:
    """``--config F`` on a command (also accepted on ``apex`` itself)."""
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        default=None,
        help=f"Config file (default: ${CONFIG_ENV}, else ./{DEFAULT_CONFIG}).",
    )(f)


def json_option(f: F) -> F:
    """``--json`` on a command: machine-readable output."""
    return click.option("--json", "as_json", is_flag=True, default=False, help="Print JSON instead of tables.")(f)


def config_path(given: str | None) -> Path:
    """The config path for the current command: its own ``--config``, then the root's."""
    if given is None:
        ctx = click.get_current_context(silent=True)
        if ctx is not None:
            root = ctx.find_root()
            given = root.params.get("config_file")
    return resolve_config_path(given)


def config_choice(given: str | None) -> tuple[Path, str]:
    """The config path for the current command and how it was chosen (for messages):
    ``--config``, ``$APEX_CONFIG`` or ``default ./config.json``."""
    if given is None:
        ctx = click.get_current_context(silent=True)
        if ctx is not None:
            given = ctx.find_root().params.get("config_file")
    if given:
        return resolve_config_path(given), "--config"
    if os.environ.get(CONFIG_ENV):
        return resolve_config_path(None), f"${CONFIG_ENV}"
    return resolve_config_path(None), f"default ./{DEFAULT_CONFIG}"


def wants_json(given: bool) -> bool:
    """The command's ``--json``, or the root's."""
    if given:
        return True
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().params.get("as_json"))


def demo_option(f: F) -> F:
    """``--demo`` on the commands that start, stop, reload or report on a gateway."""
    return click.option("--demo", is_flag=True, default=False,
                        help="The offline demo gateway (the config shipped with Apex; `apex gateway start --demo`).")(f)


def demo_config() -> Path:
    """The demo config shipped in the package. Everything a demo gateway writes (state file,
    request log) goes to the user's state directory: the installed package may be read-only
    and must stay as shipped; stop, reload and status look there too."""
    from apex.gateway_state import STATE_DIR_ENV, user_state_dir
    from apex.share import DEMO_CONFIG, share_path

    os.environ.setdefault(STATE_DIR_ENV, os.fspath(user_state_dir()))
    return share_path(DEMO_CONFIG)


def addressed_config(given: str | None, demo: bool) -> tuple[Path, str]:
    """The config a command about a running gateway acts on, and how it was chosen: the demo
    with ``--demo``, else ``target_config`` (the one this user started last, when no config
    was named and ./config.json runs no gateway)."""
    from apex.gateway_state import target_config

    if demo:
        if config_choice(given)[1] == "--config":
            raise click.UsageError("--demo acts on the demo config shipped with Apex; leave out --config")
        return demo_config(), "--demo"
    return target_config(*config_choice(given))
