"""Ids and timestamps Apex shows clients of translated responses; deterministic per request.

Ids derive from the upstream's id when there is one, else from the request id, so the same
upstream answer always translates to the same bytes (tests and re-chunking properties rely
on it). ``created`` comes from ``ctx.extras["created"]`` (an int the pipeline may set)
and falls back to the wall clock: the only clock read in translation, at one place.
"""

from __future__ import annotations

import re
import time
from typing import Final

from apex.translate.base import TranslateContext

__all__ = ["created_at", "id_stem"]

_UNSAFE: Final = re.compile(r"[^a-zA-Z0-9]")
_KNOWN_PREFIXES: Final = ("chatcmpl-", "msg_", "resp_", "gen-")


def id_stem(upstream_id: str, ctx: TranslateContext) -> str:
    """An alphanumeric stem for client-facing ids (``msg_<stem>``, ``resp_<stem>``...)."""
    raw = upstream_id or ctx.request_id or "apex"
    for prefix in _KNOWN_PREFIXES:
        if raw.startswith(prefix):
            raw = raw[len(prefix):]
            break
    return _UNSAFE.sub("", raw)[:48] or "apex"


def created_at(ctx: TranslateContext) -> int:
    """Unix seconds for ``created`` / ``created_at`` fields."""
    value = ctx.extras.get("created")
    if isinstance(value, int):
        return value
    return int(time.time())
