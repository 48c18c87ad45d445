"""Anthropic Messages stream -> neutral parts (docs/protocols.md 5.5, 8.7.1).

Content blocks are tracked by index: text deltas become ``TextDelta``, thinking deltas
``ReasoningDelta`` (+ ``ReasoningSignature``), tool_use blocks ``ToolCallStarted`` /
``ToolArgsDelta`` / ``ToolCallEnded`` keyed by block index. A pre-filled ``input`` on
``content_block_start`` (some Anthropic-compatible upstreams) becomes the first argument
fragment. ``message_delta`` usage is cumulative; ``event: error`` becomes ``Failed``, and
so does EOF before ``message_stop``. What this module must not do: write client bytes.
"""

from __future__ import annotations

from typing import Final, final

import msgspec

from apex.errors import CONTEXT_LENGTH_EXCEEDED
from apex.sse import SseEvent
from apex.translate.neutral.errortypes import context_overflow, kind_from_upstream
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
from apex.translate.neutral.reasons import finish_from_anthropic
from apex.wire.anthropic import StreamEvent, decode_stream_event
from apex.translate.neutral.usage import AnthropicUsageTally

__all__ = ["AnthropicReader"]

_EMPTY_INPUTS: Final = frozenset({b"", b"{}"})


@final
class AnthropicReader:
    """One Anthropic stream's reader state."""

    __slots__ = ("_ended", "_finished", "_held", "_started", "_tool_blocks", "_usage")

    def __init__(self) -> None:
        self._started = False
        self._finished = False
        self._ended = False
        self._tool_blocks: set[int] = set()
        self._usage = AnthropicUsageTally()
        # The last tool block's end, until the next event says whether max_tokens cut it:
        # Anthropic closes a cut block before it says why it stopped, and a cut call must
        # not read as done (a client runs a call once it is done).
        self._held: ToolCallEnded | None = None

    def feed(self, event: SseEvent) -> list[Part]:
        """Parts for one upstream event."""
        if self._ended:
            return []
        try:
            ev = decode_stream_event(event.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._ended = True
            return [Failed(f"upstream sent a malformed stream event: {exc}", "api_error")]
        return self._dispatch(ev)

    def finish(self) -> list[Part]:
        """EOF: fine after ``message_stop``, or after the stop reason (the answer is whole; a
        passed-through stream is taken as complete there too, as is an OpenAI one without
        ``[DONE]``); a failure otherwise."""
        if self._ended:
            return []
        self._ended = True
        if self._finished:
            return [*self._release(), Ended()]
        return [*self._release(), Failed("upstream stream ended before message_stop", "api_error")]

    def _release(self) -> list[Part]:
        held, self._held = self._held, None
        return [held] if held is not None else []

    def _dispatch(self, ev: StreamEvent) -> list[Part]:
        kind = ev.type
        if self._held is not None and kind not in ("content_block_stop", "message_delta", "ping"):
            return [*self._release(), *self._dispatch(ev)]
        if kind == "content_block_delta":
            return self._delta(ev)
        if kind == "message_start":
            self._started = True
            out: list[Part] = [Started(ev.message.id if ev.message else "")]
            if ev.message and ev.message.usage:
                out.append(UsageUpdated(self._usage.add(ev.message.usage)))
            return out
        if kind == "content_block_start":
            return self._block_start(ev)
        if kind == "content_block_stop":
            if ev.index in self._tool_blocks:
                released = self._release()
                self._held = ToolCallEnded(ev.index)
                return released
            return []
        if kind == "message_delta":
            out = []
            if ev.usage is not None:
                out.append(UsageUpdated(self._usage.add(ev.usage)))
            if ev.delta is not None and ev.delta.stop_reason is not None and not self._finished:
                self._finished = True
                if ev.delta.stop_reason == "max_tokens":
                    self._held = None  # the limit cut that call: it never ends
                out.extend(self._release())
                out.append(Finished(finish_from_anthropic(ev.delta.stop_reason), ev.delta.stop_sequence))
            return out
        if kind == "message_stop":
            self._ended = True
            return [Ended()]
        if kind == "error":
            self._ended = True
            err = ev.error
            err_type = err.type if err else None
            message = (err.message if err else "") or "upstream stream error"
            kind = kind_from_upstream(err_type)
            code = CONTEXT_LENGTH_EXCEEDED if context_overflow(kind, message, err_type) else err_type
            return [Failed(message, kind, code, upstream_event=True)]
        return []  # ping and event types Apex does not know yet

    def _block_start(self, ev: StreamEvent) -> list[Part]:
        block = ev.content_block
        if block is None:
            return []
        if block.type == "tool_use":
            self._tool_blocks.add(ev.index)
            out: list[Part] = [ToolCallStarted(ev.index, block.id or f"toolu_{ev.index}", block.name or "")]
            if bytes(block.input).strip() not in _EMPTY_INPUTS:
                out.append(ToolArgsDelta(ev.index, bytes(block.input).decode()))
            return out
        if block.type == "text" and block.text:
            return [TextDelta(block.text)]
        if block.type == "thinking" and block.thinking:
            return [ReasoningDelta(block.thinking)]
        return []

    def _delta(self, ev: StreamEvent) -> list[Part]:
        d = ev.delta
        if d is None:
            return []
        if d.type == "text_delta" and d.text:
            return [TextDelta(d.text)]
        if d.type == "input_json_delta" and d.partial_json:
            return [ToolArgsDelta(ev.index, d.partial_json)]
        if d.type == "thinking_delta" and d.thinking:
            return [ReasoningDelta(d.thinking)]
        if d.type == "signature_delta" and d.signature:
            return [ReasoningSignature(d.signature)]
        return []
