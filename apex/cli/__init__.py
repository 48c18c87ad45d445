"""The ``apex`` command line: one rich-click group per noun, edits through ``apex.cli.store``.

Nothing imported here loads aiohttp or the server: ``apex --help`` and ``apex config
validate`` stay fast, and only ``apex gateway start`` imports ``apex.server`` (lazily).
A ConfigError escaping any command is printed with its key path and exits 1. With
``--json`` anywhere on the command line, every error (usage errors too) is one JSON object
on stderr: ``{"error": {"message", "exit_code", "path"?}}``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import rich_click as click
from click.exceptions import Abort

from apex import __version__
from apex.cli.channel import channel_group
from apex.cli.config import config_group
from apex.cli.gateway import gateway_group
from apex.cli.init import init_command
from apex.cli.options import config_option
from apex.cli.output import CliFailure, show_json_error
from apex.cli.route_explain import route_group
from apex.cli.router import router_group
from apex.cli.status import status_command
from apex.cli.team import team_group
from apex.cli.usage import requests_group, usage_command
from apex.errors import ConfigError

__all__ = ["cli", "main"]


class _ApexGroup(click.RichGroup):
    """Root group: a CliFailure or ConfigError from any command prints ``error: ...`` and exits."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        as_json = "--json" in argv
        try:
            rv = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            if not standalone_mode:
                raise
            if as_json:
                show_json_error(exc.format_message(), exc.exit_code, getattr(exc, "config_path", None))
            else:
                exc.show()
            sys.exit(exc.exit_code)
        except Abort:
            if not standalone_mode:
                raise
            if as_json:
                show_json_error("aborted", 1, None)
            else:
                click.echo("Aborted!", err=True)
            sys.exit(1)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context) -> object:
        # Plain "error: ..." lines (not rich-click's panel) so scripts and greps see one line.
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise CliFailure(str(exc), config_path=exc.path) from exc


@click.group(cls=_ApexGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="apex")
@config_option
def cli(config_file: str | None) -> None:
    """Apex: an AI gateway for OpenAI, Anthropic, Gemini and OpenAI-compatible providers."""


for _command in (init_command, gateway_group, status_command, channel_group, router_group, team_group,
                 config_group, route_group, usage_command, requests_group):
    cli.add_command(_command)


def main() -> None:
    """Entry point of the ``apex`` script and ``python -m apex``."""
    cli(prog_name="apex")
