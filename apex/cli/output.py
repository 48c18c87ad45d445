"""How the CLI prints: rich tables for people, JSON for scripts, secrets masked, errors on stderr.

Nothing here decides *what* to show; commands build rows or JSON-ready objects and hand
them over. Masking keeps ``${VAR}`` references visible (they name a variable, not a secret).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Final, NoReturn

import rich_click as click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from apex.config.schema import is_secret_header, mask_value
from apex.errors import ConfigError, json_error_line

__all__ = [
    "CliFailure",
    "EXIT_FAILURE",
    "EXIT_NOT_RUNNING",
    "fail",
    "fail_config",
    "is_secret_header",
    "mask",
    "print_json",
    "print_table",
    "say",
    "table_console",
    "show_json_error",
]

EXIT_FAILURE: Final = 1
EXIT_NOT_RUNNING: Final = 3  # LSB "program is not running", as `apex status` promises


class CliFailure(click.ClickException):
    """A command failed: ``error: <message>`` on stderr and a non-zero exit code.
    ``config_path`` is the key path of a config error (for ``--json`` output)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE, *, config_path: str | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.config_path = config_path or None

    def show(self, file: object = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def show_json_error(message: str, exit_code: int, path: str | None) -> None:
    """An error as one JSON object on stderr (what ``--json`` promises scripts)."""
    click.echo(json_error_line(message, exit_code, path), err=True)


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Stop the command with ``message`` and exit ``code``."""
    raise CliFailure(message, code)


def fail_config(exc: ConfigError) -> NoReturn:
    """Stop the command with a config error, its key path first."""
    raise CliFailure(str(exc), config_path=exc.path) from exc


def mask(secret: str | None) -> str | None:
    """``sk-…wxyz`` for a literal secret; a ``${VAR}`` reference is shown as written."""
    return None if secret is None else mask_value(secret)


def print_json(value: object) -> None:
    """Print ``value`` as indented JSON on stdout."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def say(message: str) -> None:
    """Print a human message on stdout (rich markup allowed)."""
    Console(highlight=False, soft_wrap=True).print(message)


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Print a rich table; empty cells show as a dash."""
    table = Table(title=title, title_justify="left", show_header=any(columns))  # no empty header row
    for column in columns:
        table.add_column(column, overflow="fold")
    cells = [[cell if cell else "-" for cell in row] for row in rows]
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))  # as written: a glob's [a-z] is no markup
    table_console(columns, cells).print(table)


def table_console(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> Console:
    """A console wide enough for the table's longest cells: piped output (80 columns) or a
    narrow terminal cut request ids and sums to "…"; a wide line wraps on screen instead."""
    widths = [max([len(str(c)), *(len(r[i]) for r in rows if i < len(r))]) for i, c in enumerate(columns)]
    need = sum(widths) + 3 * len(widths) + 1
    console = Console(soft_wrap=False)
    return console if console.width >= need else Console(soft_wrap=False, width=need)
