"""One finished request as a row of the request log: the columns, in order, shared by every store.

A row is a plain tuple (cheapest to build on the request path and what both sqlite3's
``executemany`` and asyncpg's ``copy_records_to_table`` take). It holds metadata only:
names, numbers, a fingerprint of the key (never the key), and, only when
``capture_content`` is on, the request body and a non-stream answer cut to a size cap.
"""

from __future__ import annotations

from typing import Final

__all__ = ["COLUMNS", "Row", "capture"]

COLUMNS: Final = (
    "ts", "request_id", "dialect", "team", "key_fingerprint", "router", "rule", "model", "upstream_model",
    "channel", "channels_tried", "attempts", "status", "error_type", "stream", "latency_ms", "ttft_ms",
    "overhead_ms", "upstream_ms", "prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens",
    "reasoning_tokens", "estimated", "cost_usd", "request_body", "response_body",
)

Row = tuple[
    float, str, str, str | None, str | None, str | None, str | None, str | None, str | None,
    str | None, str, int, int, str | None, bool, float, float | None,
    float, float, int | None, int | None, int | None, int | None,
    int | None, bool | None, float | None, str | None, str | None,
]


def capture(body: bytes | None, cap: int) -> str | None:
    """``body`` as text, cut to ``cap`` bytes (marked when cut); None when there is none."""
    if body is None:
        return None
    if len(body) <= cap:
        text = body.decode("utf-8", "replace")
    else:
        text = body[:cap].decode("utf-8", "ignore") + f"…[{len(body) - cap} more bytes]"
    # PostgreSQL text cannot hold NUL: one such body failed its whole batch (every row lost).
    return text.replace("\x00", "\ufffd") if "\x00" in text else text
