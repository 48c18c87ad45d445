"""Neutral parts -> Anthropic Messages events for an Anthropic client (8.7.2, P2, P8, P12).

``message_start`` carries ``ctx.estimated_input_tokens`` (0 breaks Claude Code's context
meter); the authoritative, cumulative numbers go into ``message_delta``. Block discipline:
one open block at a time, deltas of its own kind only, ``content_block_stop`` before the
next index, indices strictly increasing, no empty text blocks. Thinking blocks start with
``signature: ""`` and get a ``signature_delta`` only when the upstream sent a genuine one.
Tool calls stream live: each argument fragment is an ``input_json_delta`` on the call's
own block; a call with no arguments gets ``"{}"``; a whole call (Gemini) is one
``input_json_delta`` and its stop. Interleaved calls (a new call starts
while the open call's arguments are not yet valid JSON) are the one case that buffers: the
new call waits, whole, until the open one is complete, then streams; a no-argument call
followed by another call is indistinguishable from that, so the next call waits too. Tool ids are made
Anthropic-safe with ``toolids.anthropic_tool_id``. ``message_delta`` waits for the
upstream's end because usage may still come after the finish reason. A failure closes the
open block and emits ``event: error`` with no ``message_stop``.
What this module must not do: read upstream formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, final

import msgspec

from apex.errors import ErrorKind
from apex.sse import encode_event
from apex.translate.base import TranslateContext
from apex.translate.neutral.clientids import id_stem
from apex.translate.neutral.errortypes import anthropic_error_message, anthropic_error_type
from apex.translate.neutral.parts import (
    Ended,
    Failed,
    Finished,
    Part,
    ReasoningDelta,
    ReasoningSignature,
    Started,
    TextDelta,
    ToolArgsDelta,
    ToolCallEnded,
    ToolCallStarted,
    UsageUpdated,
)
from apex.translate.neutral.reasons import Finish, anthropic_stop_reason, with_tools
from apex.translate.neutral.toolids import anthropic_tool_id, is_complete_json
from apex.translate.neutral.usage import anthropic_usage_body

__all__ = ["AnthropicWriter", "anthropic_error_event"]

_ENCODER: Final = msgspec.json.Encoder()


def anthropic_error_event(message: str, kind: ErrorKind, code: str | None = None) -> bytes:
    """One ``event: error`` in Anthropic's shape (an overflow in Anthropic's words)."""
    body = {"type": "error", "error": {"type": anthropic_error_type(kind), "message": anthropic_error_message(message, code)}}
    return encode_event(_ENCODER.encode(body), "error")


def _event(name: str, body: dict[str, object]) -> bytes:
    return encode_event(_ENCODER.encode(body), name)


@dataclass(slots=True)
class _Call:
    call_id: str
    name: str
    args: list[str] = field(default_factory=list)
    block: int | None = None   # block index once streamed
    closed: bool = False


@final
class AnthropicWriter:
    """One Anthropic client stream's writer state."""

    __slots__ = ("_calls", "_ctx", "_done", "_finish", "_next_index", "_open", "_open_kind",
                 "_started", "_stop_sequence", "_usage", "_waiting")

    def __init__(self, ctx: TranslateContext) -> None:
        self._ctx = ctx
        self._started = False
        self._done = False
        self._next_index = 0
        self._open: int | None = None          # open block index
        self._open_kind = ""                   # "text" | "thinking" | "tool"
        self._calls: dict[int, _Call] = {}     # part key -> call
        self._waiting: list[int] = []          # keys of buffered (interleaved) calls
        self._finish: Finish | None = None
        self._stop_sequence: str | None = None
        self._usage = ctx.usage

    @property
    def done(self) -> bool:
        """True after ``message_stop`` or an error event."""
        return self._done

    def write(self, part: Part) -> list[bytes]:
        """Client events for one part."""
        if self._done:
            return []
        out: list[bytes] = []
        if isinstance(part, Failed):
            # A tool_use block the failure cut short stays open, as Anthropic itself leaves it:
            # closed, a client runs the call with half its input (Claude Code did).
            if self._open_kind != "tool":
                self._close(out)
            out.append(anthropic_error_event(part.message, part.kind, part.code))
            self._done = True
            return out
        if not self._started:
            self._start(part.upstream_id if isinstance(part, Started) else "", out)
        if isinstance(part, TextDelta):
            if part.text and self._finish is None:
                self._flush_all(out)
                self._ensure_open("text", {"type": "text", "text": ""}, out)
                out.append(self._delta({"type": "text_delta", "text": part.text}))
        elif isinstance(part, ReasoningDelta):
            if part.text and self._finish is None:
                self._flush_all(out)
                self._ensure_open("thinking", {"type": "thinking", "thinking": "", "signature": ""}, out)
                out.append(self._delta({"type": "thinking_delta", "thinking": part.text}))
        elif isinstance(part, ReasoningSignature):
            if self._open_kind == "thinking" and part.signature:
                out.append(self._delta({"type": "signature_delta", "signature": part.signature}))
        elif isinstance(part, ToolCallStarted):
            if self._finish is None and part.key not in self._calls:
                self._tool_started(part, out)
                if part.arguments is not None:  # a whole call: one input_json_delta, then stop
                    self._tool_args(part.key, part.arguments or "{}", out)
                    self._tool_ended(part.key, out)
        elif isinstance(part, ToolArgsDelta):
            if part.fragment and self._finish is None:
                self._tool_args(part.key, part.fragment, out)
        elif isinstance(part, ToolCallEnded):
            self._tool_ended(part.key, out)
        elif isinstance(part, UsageUpdated):
            self._usage = part.usage
            self._ctx.usage = part.usage
        elif isinstance(part, Finished):
            if self._finish is None:
                self._finish = part.reason
                self._stop_sequence = part.stop_sequence
                self._flush_all(out)
                self._close(out)
        elif isinstance(part, Ended):
            self._flush_all(out)
            self._close(out)
            self._end(out)
        return out

    def _start(self, upstream_id: str, out: list[bytes]) -> None:
        self._started = True
        usage = {"input_tokens": self._ctx.estimated_input_tokens, "output_tokens": 1,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        message: dict[str, object] = {"id": "msg_" + id_stem(upstream_id, self._ctx), "type": "message",
                   "role": "assistant", "model": self._ctx.client_model, "content": [],
                   "stop_reason": None, "stop_sequence": None, "usage": usage}
        out.append(_event("message_start", {"type": "message_start", "message": message}))

    def _end(self, out: list[bytes]) -> None:
        finish = with_tools(self._finish or Finish.STOP, bool(self._calls))
        if self._usage is not None:
            usage = anthropic_usage_body(self._usage)
        else:
            usage = {"input_tokens": self._ctx.estimated_input_tokens, "output_tokens": 0}
        delta = {"stop_reason": anthropic_stop_reason(finish),
                 "stop_sequence": self._stop_sequence if finish is Finish.STOP_SEQUENCE else None}
        out.append(_event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        out.append(_event("message_stop", {"type": "message_stop"}))
        self._done = True

    def _ensure_open(self, kind: str, block: dict[str, object], out: list[bytes]) -> int:
        if self._open is not None and self._open_kind == kind and kind != "tool":
            return self._open
        self._close(out)
        index = self._next_index
        self._next_index += 1
        self._open, self._open_kind = index, kind
        out.append(_event("content_block_start",
                          {"type": "content_block_start", "index": index, "content_block": block}))
        return index

    def _close(self, out: list[bytes]) -> None:
        if self._open is None:
            return
        if self._open_kind == "tool":
            for call in self._calls.values():
                if call.block == self._open:
                    if not call.args:
                        out.append(self._delta({"type": "input_json_delta", "partial_json": "{}"}))
                    call.closed = True
        out.append(_event("content_block_stop", {"type": "content_block_stop", "index": self._open}))
        self._open, self._open_kind = None, ""

    def _delta(self, delta: dict[str, object]) -> bytes:
        return _event("content_block_delta", {"type": "content_block_delta", "index": self._open, "delta": delta})

    def _open_call(self) -> _Call | None:
        if self._open_kind != "tool":
            return None
        for call in self._calls.values():
            if call.block == self._open:
                return call
        return None

    def _tool_started(self, part: ToolCallStarted, out: list[bytes]) -> None:
        call = _Call(anthropic_tool_id(part.call_id), self._ctx.client_tool_name(part.name))
        self._calls[part.key] = call
        live = self._open_call()
        # An open call without complete JSON arguments may still be receiving fragments.
        if live is not None and not is_complete_json("".join(live.args)):
            self._waiting.append(part.key)  # interleaved: the open call is not finished yet
            return
        self._stream_call(call, out)

    def _stream_call(self, call: _Call, out: list[bytes]) -> None:
        block: dict[str, object] = {"type": "tool_use", "id": call.call_id, "name": call.name, "input": {}}
        call.block = self._ensure_open("tool", block, out)
        if call.args:
            out.append(self._delta({"type": "input_json_delta", "partial_json": "".join(call.args)}))

    def _tool_args(self, key: int, fragment: str, out: list[bytes]) -> None:
        call = self._calls.get(key)
        if call is None or call.closed:
            return  # no deltas after a block's stop (P12); a late fragment cannot be placed
        call.args.append(fragment)
        if call.block is not None and call.block == self._open:
            out.append(self._delta({"type": "input_json_delta", "partial_json": fragment}))
            if self._waiting and is_complete_json("".join(call.args)):
                self._close(out)
                self._promote(out)

    def _tool_ended(self, key: int, out: list[bytes]) -> None:
        call = self._calls.get(key)
        if call is not None and call.block is not None and call.block == self._open:
            self._close(out)
            self._promote(out)

    def _promote(self, out: list[bytes]) -> None:
        """Stream waiting calls, the first of them live until it too is complete."""
        while self._waiting:
            call = self._calls[self._waiting.pop(0)]
            self._stream_call(call, out)
            if self._waiting and not is_complete_json("".join(call.args)):
                return
            if self._waiting:
                self._close(out)

    def _flush_all(self, out: list[bytes]) -> None:
        if self._waiting:
            self._close(out)
            while self._waiting:
                self._stream_call(self._calls[self._waiting.pop(0)], out)
                self._close(out)
