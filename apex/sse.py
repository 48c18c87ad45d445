"""Incremental Server-Sent Events parsing and encoding; no I/O.

``SseParser.feed`` takes bytes exactly as they come off the socket (an event may be split
anywhere, several may share a chunk) and returns the events completed so far; ``flush``
returns a last event the stream ended without a blank line. Lines end in LF, CRLF or CR
(Gemini uses CRLF) and nothing else: U+2028 inside JSON is data, not a line break.
Comment lines (``: keep-alive``) are dropped, multi-line ``data:`` is joined with LF,
the single space after a colon is optional. What this module must not do: decode JSON.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

import msgspec

__all__ = ["SseEvent", "SseParser", "encode_event", "event_data_ok", "DONE_EVENT"]

_LINE_END: Final = re.compile(rb"\r\n|\r|\n")


class SseEvent(NamedTuple):
    """One dispatched event: its ``event:`` name (None when absent) and its joined data."""

    event: str | None
    data: bytes


class SseParser:
    """Feed bytes, get complete events. One instance per stream."""

    __slots__ = ("_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[bytes] = []
        self._event: str | None = None

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Consume ``chunk``; return every event it completed, in order."""
        buf = self._buf + chunk if self._buf else chunk
        events: list[SseEvent] = []
        if buf.find(b"\r") < 0 and not self._data and self._event is None:  # find, not in: no TypeError on 3.11
            # Fast path for LF-only streams fed from an event boundary (OpenAI, Anthropic):
            # split whole events with one C call. A partial event stays unparsed in _buf.
            *blocks, rest = buf.split(b"\n\n")
            line = self._line
            for block in blocks:
                # The two shapes nearly every event has, without the line machinery.
                nl = block.find(b"\n")
                if nl < 0:
                    if block.startswith(b"data: "):
                        events.append(SseEvent(None, block[6:]))
                        continue
                elif block.startswith(b"event: ") and block.startswith(b"data: ", nl + 1) and block.find(b"\n", nl + 1) < 0:
                    events.append(SseEvent(block[7:nl].decode("utf-8", "replace"), block[nl + 7 :]))
                    continue
                for part in block.split(b"\n"):
                    if part:
                        line(part, events)
                line(b"", events)
            self._buf = rest
            return events
        pos = 0
        end = len(buf)
        search = _LINE_END.search
        while True:
            m = search(buf, pos)
            if m is None:
                break
            start, stop = m.span()
            if stop == end and buf[start:stop] == b"\r":
                # A CR at the very end may be the first half of a CRLF split across reads.
                break
            self._line(buf[pos:start], events)
            pos = stop
        self._buf = buf[pos:]
        return events

    @property
    def between_events(self) -> bool:
        """Nothing of a next event is pending: the bytes fed so far ended on an event boundary."""
        return not self._buf and not self._data and self._event is None

    def flush(self) -> list[SseEvent]:
        """End of stream: dispatch what a missing final blank line left pending."""
        events: list[SseEvent] = []
        if self._buf:
            rest, self._buf = self._buf, b""
            for line in _LINE_END.split(rest):
                self._line(line, events)
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[SseEvent]) -> None:
        if not line:
            if self._data:
                events.append(SseEvent(self._event, b"\n".join(self._data)))
            self._data = []
            self._event = None
            return
        if line[0] == 0x3A:  # ':' comment / keep-alive
            return
        colon = line.find(b":")
        if colon < 0:
            field, value = line, b""
        else:
            field = line[:colon]
            value = line[colon + 1 :]
            if value[:1] == b" ":
                value = value[1:]
        if field == b"data":
            self._data.append(value)
        elif field == b"event":
            self._event = value.decode("utf-8", "replace")
        # `id` and `retry` mean nothing to a gateway relaying one response.


DONE_EVENT: Final = b"data: [DONE]\n\n"


def encode_event(data: bytes, event: str | None = None) -> bytes:
    """One SSE event: ``event:`` line when named, then ``data:``. Data that held several
    ``data:`` lines (joined with newlines by the parser; Vertex sends pretty-printed JSON)
    goes out as several again: a bare continuation line is no SSE field, and the client's
    JSON was cut at the first newline."""
    if data.find(b"\n") >= 0:
        data = data.replace(b"\n", b"\ndata: ")
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


def event_data_ok(data: bytes) -> bool:
    """True when an event's data is what every stream Apex reads sends: JSON, ``[DONE]``, or
    nothing. Checked on a stream's first event (before it is committed to the client, a
    bad one fails the attempt over) and on a last event that arrived without its blank line."""
    if not data or data == b"[DONE]":
        return True
    try:
        msgspec.json.decode(data, type=msgspec.Raw)  # validated, nothing built
    except msgspec.DecodeError:
        return False
    return True
