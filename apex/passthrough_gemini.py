"""Watching a Gemini stream that a Gemini client gets as it is (the same-dialect case).

The bytes go through untouched: Gemini streams name no model alias to rewrite (the model
is in the URL; ``modelVersion`` is the upstream's own). ``GeminiPassthroughStream`` has the
attributes the pipeline reads from ``PassthroughStream``: ``first_event_seen`` (the
stream may commit), ``finished`` (a ``finishReason`` or a blocked prompt was seen: Gemini
has no terminator, so that is a clean end), ``errored`` (an ``{"error": ...}`` chunk) and
``usage`` (``usageMetadata`` is cumulative: the last one wins, read as in 8.6). Only
chunks that can carry those are decoded, and only their top level with the fields needed.
"""

from __future__ import annotations

from typing import Final

import msgspec

from apex.sse import SseParser
from apex.translate.gemini_results import usage_of
from apex.types import Usage
from apex.wire.gemini import decode_chunk_view

__all__ = ["GeminiPassthroughStream", "gemini_body_usage"]

_USAGE_KEY: Final = b'"usageMetadata"'


def gemini_body_usage(body: bytes) -> Usage | None:
    """The usage of a non-stream generateContent answer (None when it reports none).

    Raises msgspec.DecodeError / ValidationError when the body is not a Gemini response."""
    resp = decode_chunk_view(body)
    return usage_of(resp.usage_metadata) if resp.usage_metadata is not None else None


class GeminiPassthroughStream:
    """Observe a forwarded Gemini SSE stream; ``feed`` returns the bytes to forward."""

    __slots__ = ("_parser", "errored", "finished", "first_event_seen", "terminated", "usage")

    def __init__(self) -> None:
        self._parser = SseParser()
        self.usage: Usage | None = None
        self.first_event_seen = False
        self.terminated = False  # Gemini streams have no terminator of their own
        self.finished = False
        self.errored = False

    def feed(self, chunk: bytes) -> bytes:
        for event in self._parser.feed(chunk):
            self._observe(event.data)
        return chunk

    def flush(self) -> bytes:
        for event in self._parser.flush():
            self._observe(event.data)
        return b""

    def _observe(self, data: bytes) -> None:
        self.first_event_seen = True
        if _USAGE_KEY not in data and b'"finishReason"' not in data and b'"error"' not in data \
                and b'"blockReason"' not in data:
            return
        try:
            chunk = decode_chunk_view(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        if chunk.error is not None:
            self.errored = True
        if chunk.usage_metadata is not None:
            self.usage = usage_of(chunk.usage_metadata)
        if any(c.finish_reason for c in chunk.candidates) or (
                chunk.prompt_feedback is not None and chunk.prompt_feedback.block_reason):
            self.finished = True
