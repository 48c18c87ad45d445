"""The ``apex`` command line: one rich-click group per noun, edits through ``apex.cli.store``.

Nothing imported here loads aiohttp or the server: ``apex --help`` and ``apex config
validate`` stay fast, and only ``apex gateway start`` imports ``apex.server`` (lazily).
A ConfigError escaping any command is printed with its key path and exits 1.
"""

from __future__ import annotations

import rich_click as click
from click.exceptions import Exit

from apex import __version__
from apex.cli.channel import channel_group
from apex.cli.config import config_group
from apex.cli.gateway import gateway_group
from apex.cli.init import init_command
from apex.cli.options import config_option
from apex.cli.output import CliFailure
from apex.cli.route_explain import route_group
from apex.cli.router import router_group
from apex.cli.status import status_command
from apex.cli.team import team_group
from apex.cli.usage import requests_group, usage_command
from apex.errors import ConfigError

__all__ = ["cli", "main"]


class _ApexGroup(click.RichGroup):
    """Root group: a CliFailure or ConfigError from any command prints ``error: ...`` and exits."""

    def invoke(self, ctx: click.Context) -> object:
        # Plain "error: ..." lines (not rich-click's panel) so scripts and greps see one line.
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            failure = CliFailure(str(exc))
        except CliFailure as exc:
            failure = exc
        failure.show()
        raise Exit(failure.exit_code)


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
