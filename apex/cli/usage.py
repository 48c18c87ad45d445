"""``apex usage`` and ``apex requests``: reports read from the request log (``global.request_log``).

Both read the store the config names (the SQLite file the gateway writes, or PostgreSQL)
directly, so they work whether or not the gateway runs. Times are UTC.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

import rich_click as click

from apex.cli.options import config_option, config_path, demo_config, demo_option, json_option, wants_json
from apex.cli.output import fail, print_json, say, table_console
from apex.cli.store import ConfigStore

__all__ = ["requests_group", "usage_command"]

_SPAN: Final = re.compile(r"^(\d+)\s*([mhdw])$")
_UNIT_S: Final = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

if TYPE_CHECKING:  # the readers import sqlite3 / asyncpg: only when a report runs
    from apex.requestlog.query import Backend, LogReader


def _packaged_demo() -> Path:
    from apex.share import DEMO_CONFIG, share_path

    return share_path(DEMO_CONFIG).resolve()


def _reader(config_file: str | None, demo: bool = False) -> LogReader:
    from apex.requestlog import sqlite_path
    from apex.requestlog.query import PostgresReader, SqliteReader

    if demo and config_file:
        raise click.UsageError("--demo reads the demo gateway's log; leave out --config")
    path = demo_config() if demo else config_path(config_file)
    if not demo and path.resolve() == _packaged_demo():
        path = demo_config()  # the demo logs to the user's state directory, not beside the package
    config = ConfigStore(path).load()
    rl = config.global_.request_log
    if rl.type == "off":
        fail("the request log is off (global.request_log.type is \"off\"): nothing to report")
    if rl.type == "postgres":
        assert rl.dsn is not None  # checked at config load
        return _OneLineErrors(PostgresReader(rl.dsn))
    db = sqlite_path(rl, path)
    if db is None:
        fail("cannot tell where the request log is: set global.request_log.path")
    try:
        return _OneLineErrors(SqliteReader(db))
    except FileNotFoundError as exc:
        fail(str(exc))


class _OneLineErrors:
    """A reader whose failures (the server down, no table yet) end the command with one line
    (a JSON object with --json), not a traceback."""

    def __init__(self, inner: LogReader) -> None:
        self.backend: Backend = inner.backend
        self._inner = inner

    def fetch(self, sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
        from apex.requestlog.query import LogUnavailable

        try:
            return self._inner.fetch(sql, params)
        except LogUnavailable as exc:
            fail(str(exc))


def _instant(text: str, what: str) -> float:
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{what}: not a date or time: {text!r} (use e.g. 2026-12-01 or 2026-12-01T08:00)")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _window(since: str | None, start: str | None, end: str | None) -> tuple[float | None, float | None]:
    if since is not None and (start is not None or end is not None):
        fail("use either --since or --from/--to")
    if start is not None or end is not None:
        lo = _instant(start, "--from") if start is not None else None
        hi = None
        if end is not None:
            hi = _instant(end, "--to")
            if "T" not in end and " " not in end:
                hi += 86400  # a date given as --to includes that whole day
        return lo, hi
    m = _SPAN.match((since or "7d").strip())
    if m is None:
        fail(f"--since: not a span: {since!r} (use e.g. 30m, 24h, 7d, 2w)")
    seconds = int(m.group(1)) * _UNIT_S[m.group(2)]
    return (datetime.now(UTC) - timedelta(seconds=seconds)).timestamp(), None


def _usd(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-"


def _ms(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, float) else "-"


def _ts(value: object) -> str:
    if not isinstance(value, float):
        return "-"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _table(title: str, columns: list[str], rows: list[list[str]], *, numeric_from: int = 0) -> None:
    """A rich table whose cells never wrap (numbers right-aligned from column ``numeric_from``)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, no_wrap=True, justify="right" if numeric_from and i >= numeric_from else "left")
    cells = [[cell if cell else "-" for cell in row] for row in rows]
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))
    table_console(columns, cells).print(table)


@click.command("usage")
@click.option("--since", default=None, help="How far back: 30m, 24h, 7d (default), 2w.")
@click.option("--from", "start", default=None, help="Start date/time (UTC), e.g. 2026-12-01.")
@click.option("--to", "end", default=None, help="End date/time (UTC); a date includes that whole day.")
@click.option("--by", "by", multiple=True, type=click.Choice(["team", "model", "channel", "router", "day"]),
              help="Group by (repeatable, in order). Default: one total.")
@click.option("--team", default=None, help="Only this team.")
@config_option
@demo_option
@json_option
def usage_command(since: str | None, start: str | None, end: str | None, by: tuple[str, ...], team: str | None,
                  config_file: str | None, demo: bool, as_json: bool) -> None:
    """Requests, tokens, cost, error rate and latency from the request log."""
    from apex.requestlog.query import Filters, usage_report

    lo, hi = _window(since, start, end)
    rows = usage_report(_reader(config_file, demo), Filters(since=lo, until=hi, team=team), list(by))
    if wants_json(as_json):
        print_json(rows)
        return
    if not rows:
        say("no requests in that window")
        return
    columns = [*by, "reqs", "in", "out", "cached", "cache wr", "reason", "USD", "unpriced", "err %", "p50 ms",
               "p95 ms"]
    _table(
        "Usage" + (f" by {', '.join(by)}" if by else ""),
        columns,
        [
            [*(str(r[k]) if r[k] is not None else "-" for k in by), str(r["requests"]), str(r["prompt_tokens"]),
             str(r["completion_tokens"]), str(r["cached_tokens"]), str(r["cache_write_tokens"]),
             str(r["reasoning_tokens"]), _usd(r["cost_usd"]), str(r["unpriced"]),
             f"{r['error_rate']:.1%}", _ms(r["p50_ms"]), _ms(r["p95_ms"])]
            for r in rows
        ],
        numeric_from=len(by),
    )


@click.group("requests", invoke_without_command=True)
@click.option("--team", default=None, help="Only this team.")
@click.option("--status", default=None, help="Only this status or class: 429, 5xx, 4xx...")
@click.option("--model", default=None, help="Only models matching this glob (gpt-4o*).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100_000), help="How many.")
@config_option
@demo_option
@json_option
@click.pass_context
def requests_group(ctx: click.Context, team: str | None, status: str | None, model: str | None, limit: int,
                   config_file: str | None, demo: bool, as_json: bool) -> None:
    """The latest requests from the request log; `apex requests show ID` for one."""
    if ctx.invoked_subcommand is not None:
        return
    from apex.glob import GlobError, compile_glob
    from apex.requestlog.query import Filters, latest_requests, status_range

    try:
        status_filter = status_range(status) if status is not None else None
        if model is not None:
            compile_glob(model)
    except (ValueError, GlobError) as exc:
        fail(str(exc))
    rows = latest_requests(_reader(config_file, demo), Filters(team=team, status=status_filter, model=model), limit)
    if wants_json(as_json):
        print_json(rows)
        return
    if not rows:
        say("no matching requests")
        return
    _table(
        "Latest requests",
        ["time (UTC)", "request id", "team", "model", "channel", "status", "error", "ms", "in/out", "USD"],
        [
            [_ts(r["ts"]), str(r["request_id"]), str(r["team"] or "-"), str(r["model"] or "-"),
             str(r["channel"] or "-"), str(r["status"]), str(r["error_type"] or ""), _ms(r["latency_ms"]),
             f"{r['prompt_tokens'] if r['prompt_tokens'] is not None else '-'}/"
             f"{r['completion_tokens'] if r['completion_tokens'] is not None else '-'}",
             _usd(r["cost_usd"])]
            for r in rows
        ],
    )


@requests_group.command("show")
@click.argument("request_id")
@config_option
@demo_option
@json_option
@click.pass_context
def show_command(ctx: click.Context, request_id: str, config_file: str | None, demo: bool, as_json: bool) -> None:
    """Everything recorded about one request."""
    from apex.requestlog.query import request_by_id

    group = ctx.parent.params if ctx.parent is not None else {}
    config_file = config_file or group.get("config_file")  # `apex requests --config F show ID` too
    as_json = as_json or bool(group.get("as_json"))

    row = request_by_id(_reader(config_file, demo or bool(group.get("demo"))), request_id)
    if row is None:
        fail(f"no request {request_id!r} in the request log")
    if wants_json(as_json):
        print_json(row)
        return
    shown = {k: (_ts(v) if k == "ts" else round(v, 3) if isinstance(v, float) and k != "cost_usd" else v)
             for k, v in row.items()}
    _table(f"Request {request_id}", ["field", "value"], [[k, "" if v is None else str(v)] for k, v in shown.items()])
