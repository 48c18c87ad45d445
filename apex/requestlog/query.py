"""Reading the request log for reports: ``apex usage`` aggregates and ``apex requests`` listings.

The same SQL runs on SQLite and PostgreSQL (``?`` placeholders, rewritten to ``$n`` for
asyncpg); only the day bucket and the model-glob match differ. Latency percentiles are
computed here from the ordered latencies of each group, so both stores give the same figures.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, Protocol

from apex.glob import glob_to_posix_regex
from apex.requestlog.record import COLUMNS
from apex.requestlog.schema import TABLE

__all__ = [
    "GROUPS",
    "Filters",
    "LogReader",
    "LogUnavailable",
    "PostgresReader",
    "SqliteReader",
    "latest_requests",
    "request_by_id",
    "status_range",
    "usage_report",
]

Backend = Literal["sqlite", "postgres"]
GROUPS: Final = ("team", "model", "channel", "router", "day")
_SUMS: Final = ("prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens")
_LIST_COLUMNS: Final = ("ts", "request_id", "team", "model", "upstream_model", "channel", "status", "error_type",
                        "stream", "latency_ms", "prompt_tokens", "completion_tokens", "cost_usd")


class LogUnavailable(Exception):
    """The log cannot be read now (the server is down, the table not created yet): one line
    for the CLI to show, never a traceback."""


_NO_TABLE: Final = "no request log yet (has the gateway served requests with request_log on?)"


class LogReader(Protocol):
    backend: Backend

    def fetch(self, sql: str, params: Sequence[object]) -> list[tuple[object, ...]]: ...


class SqliteReader:
    """Reads the SQLite log (read-only: the gateway may be writing)."""

    backend: Backend = "sqlite"

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise FileNotFoundError(f"no request log at {path} (has the gateway served requests with request_log on?)")
        self._conn = sqlite3.connect(f"file:{path.as_posix()}?mode=ro", uri=True, timeout=5.0)

    def fetch(self, sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
        try:
            return list(self._conn.execute(sql, tuple(params)).fetchall())
        except sqlite3.OperationalError as exc:
            raise LogUnavailable(_NO_TABLE if "no such table" in str(exc) else f"cannot read the request log: {exc}") from exc


class PostgresReader:
    """Reads the PostgreSQL log with asyncpg, one short connection per query."""

    backend: Backend = "postgres"

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn

    def fetch(self, sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
        parts = sql.split("?")
        numbered = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))

        async def run() -> list[tuple[object, ...]]:
            import asyncpg

            try:
                conn = await asyncpg.connect(self._dsn, timeout=10)
            except (OSError, TimeoutError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise LogUnavailable(f"cannot reach the request log's PostgreSQL server: {exc}") from exc
            try:
                return [tuple(r) for r in await conn.fetch(numbered, *params)]
            except asyncpg.UndefinedTableError as exc:
                raise LogUnavailable(_NO_TABLE) from exc
            finally:
                await conn.close()

        return asyncio.run(run())


@dataclass(frozen=True, slots=True)
class Filters:
    since: float | None = None  # Unix seconds, inclusive
    until: float | None = None  # exclusive
    team: str | None = None
    status: tuple[int, int] | None = None  # inclusive range
    model: str | None = None  # glob


def status_range(text: str) -> tuple[int, int]:
    """'5xx' -> (500, 599), '429' -> (429, 429); ValueError otherwise."""
    t = text.strip().lower()
    if len(t) == 3 and t.endswith("xx") and t[0] in "12345":
        base = int(t[0]) * 100
        return base, base + 99
    if len(t) == 3 and t.isdigit():
        return int(t), int(t)
    raise ValueError(f"not a status or class: {text!r} (use e.g. 429 or 5xx)")


def _where(reader: LogReader, f: Filters) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if f.since is not None:
        clauses.append("ts >= ?")
        params.append(f.since)
    if f.until is not None:
        clauses.append("ts < ?")
        params.append(f.until)
    if f.team is not None:
        clauses.append("team = ?")
        params.append(f.team)
    if f.status is not None:
        clauses.append("status BETWEEN ? AND ?")
        params.extend(f.status)
    if f.model is not None:
        if reader.backend == "sqlite":
            clauses.append("model GLOB ?")
            params.append(f.model)
        else:
            clauses.append("model ~ ?")
            params.append(glob_to_posix_regex(f.model))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _group_expr(reader: LogReader, key: str) -> str:
    if key == "day":
        if reader.backend == "sqlite":
            return "strftime('%Y-%m-%d', ts, 'unixepoch')"
        return "to_char(to_timestamp(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    if key not in GROUPS:
        raise ValueError(f"cannot group by {key!r}")
    return key


def _num(value: object) -> float:
    """A numeric SQL result (int, float, Decimal from PostgreSQL's SUM) as a float; NULL as 0."""
    if value is None:
        return 0.0
    if isinstance(value, (int, float)):
        return float(value)
    return float(str(value))


def _percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def usage_report(reader: LogReader, f: Filters, by: Sequence[str]) -> list[dict[str, object]]:
    """One row per group: requests, tokens by type, cost, error rate, p50/p95 latency (ms)."""
    exprs = [_group_expr(reader, k) for k in by]
    where, params = _where(reader, f)
    keys = ", ".join(exprs)
    select_keys = (keys + ", ") if exprs else ""
    group = f" GROUP BY {keys} ORDER BY {keys}" if exprs else ""
    sums = ", ".join(f"COALESCE(SUM({c}), 0)" for c in _SUMS)
    sql = (
        f"SELECT {select_keys}COUNT(*), {sums}, SUM(cost_usd), COUNT(prompt_tokens) - COUNT(cost_usd), "
        f"SUM(CASE WHEN status >= 400 OR error_type IS NOT NULL THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN estimated THEN 1 ELSE 0 END) FROM {TABLE}{where}{group}"
    )
    rows = reader.fetch(sql, params)
    latencies: dict[tuple[object, ...], list[float]] = {}
    order = (keys + ", ") if exprs else ""
    for r in reader.fetch(f"SELECT {select_keys}latency_ms FROM {TABLE}{where} ORDER BY {order}latency_ms", params):
        latencies.setdefault(tuple(r[: len(by)]), []).append(_num(r[len(by)]))
    out: list[dict[str, object]] = []
    n = len(by)
    for r in rows:
        requests = int(_num(r[n]))
        if requests == 0:
            continue
        item: dict[str, object] = {k: r[i] for i, k in enumerate(by)}
        item["requests"] = requests
        for j, c in enumerate(_SUMS):
            item[c] = int(_num(r[n + 1 + j]))
        cost, priced, errors, estimated = r[n + 1 + len(_SUMS):]
        n_errors = int(_num(errors))
        item["cost_usd"] = _num(cost) if cost is not None else None
        item["unpriced"] = int(_num(priced))  # requests with usage but no price
        item["estimated"] = int(_num(estimated))
        item["errors"] = n_errors
        item["error_rate"] = n_errors / requests
        lat = latencies.get(tuple(r[:n]), [])
        item["p50_ms"] = _percentile(lat, 0.50)
        item["p95_ms"] = _percentile(lat, 0.95)
        out.append(item)
    return out


def latest_requests(reader: LogReader, f: Filters, limit: int) -> list[dict[str, object]]:
    """The latest requests matching ``f``, newest first."""
    where, params = _where(reader, f)
    sql = f"SELECT {', '.join(_LIST_COLUMNS)} FROM {TABLE}{where} ORDER BY ts DESC LIMIT ?"
    return [_row(_LIST_COLUMNS, r) for r in reader.fetch(sql, [*params, limit])]


def request_by_id(reader: LogReader, request_id: str) -> dict[str, object] | None:
    """Every recorded column of one request (the latest, if an id was reused by a client)."""
    sql = f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE request_id = ? ORDER BY ts DESC LIMIT 1"
    rows = reader.fetch(sql, [request_id])
    return _row(COLUMNS, rows[0]) if rows else None


_BOOLEANS: Final = frozenset({"stream", "estimated"})


def _row(columns: Sequence[str], values: Sequence[object]) -> dict[str, object]:
    """One row as a dict; SQLite's 0/1 booleans as booleans, as PostgreSQL gives them (--json
    differed by store)."""
    row = dict(zip(columns, values, strict=True))
    for name in _BOOLEANS:
        value = row.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            row[name] = bool(value)
    return row
