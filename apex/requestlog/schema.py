"""The request log's table, for SQLite and PostgreSQL (the same columns; ``ts`` is Unix seconds).

Two indexes only (time, for reports and retention; request id, for ``apex requests show``):
each index is paid on every insert.
"""

from __future__ import annotations

from typing import Final

__all__ = ["POSTGRES_SCHEMA", "SQLITE_SCHEMA", "TABLE"]

TABLE: Final = "apex_requests"

_COLUMNS: Final = """
    ts {real} NOT NULL,
    request_id TEXT NOT NULL,
    dialect TEXT NOT NULL,
    team TEXT,
    key_fingerprint TEXT,
    router TEXT,
    rule TEXT,
    model TEXT,
    upstream_model TEXT,
    channel TEXT,
    channels_tried TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    status INTEGER NOT NULL,
    error_type TEXT,
    stream BOOLEAN NOT NULL,
    latency_ms {real} NOT NULL,
    ttft_ms {real},
    overhead_ms {real} NOT NULL,
    upstream_ms {real} NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cached_tokens INTEGER,
    cache_write_tokens INTEGER,
    reasoning_tokens INTEGER,
    estimated BOOLEAN,
    cost_usd {real},
    request_body TEXT,
    response_body TEXT
"""


def _schema(real: str) -> tuple[str, ...]:
    return (
        f"CREATE TABLE IF NOT EXISTS {TABLE} ({_COLUMNS.format(real=real)})",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_ts ON {TABLE} (ts)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_request_id ON {TABLE} (request_id)",
    )


SQLITE_SCHEMA: Final = _schema("REAL")
POSTGRES_SCHEMA: Final = _schema("DOUBLE PRECISION")
