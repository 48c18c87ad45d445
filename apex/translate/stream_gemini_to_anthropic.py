"""Gemini ``streamGenerateContent?alt=sse`` -> Anthropic Messages stream events (8.7.4).

Event discipline (P12): ``message_start`` first, carrying the prompt ESTIMATE from
``ctx.estimated_input_tokens`` (0 breaks Claude Code's context meter, P8); then blocks
with strictly increasing indices, each started, fed deltas of its own kind only, and
stopped before the next opens. Thought text is a ``thinking`` block (no signature: Gemini
has no Anthropic signature to give), text a ``text`` block (never opened empty), and each
function call a complete ``tool_use`` block: start with ``input: {}``, ONE
``input_json_delta`` with the full JSON arguments (P2), stop. Gemini has no terminator:
``finish()`` closes the open block and emits ``message_delta`` (stop_reason mapped with
"a function call was seen", P1; cumulative usage from the last chunk) and
``message_stop``. Upstream error chunks, malformed chunks and a body that ends before a
finishReason become ``event: error`` with no ``message_stop``. What this module must not
do: I/O.
"""

from __future__ import annotations

from typing import Final, final

import msgspec

from apex.sse import SseEvent, encode_event
from apex.translate.base import TranslateContext
from apex.translate.errortypes import anthropic_error_type
from apex.translate.gemini_errors import gemini_error
from apex.translate.gemini_results import (
    ANTHROPIC_STOP,
    BROKEN_FINISHES,
    CallItem,
    IdFactory,
    PartReader,
    finish_kind,
    first_candidate,
    random_call_id,
    usage_of,
)
from apex.translate.signatures import SignatureStore
from apex.translate.usage import anthropic_usage_body
from apex.types import Usage
from apex.wire.gemini import UsageMetadata, decode_response

__all__ = ["GeminiToAnthropicStream"]

_ENCODER: Final = msgspec.json.Encoder()


@final
class GeminiToAnthropicStream:
    """One Gemini stream translated for an Anthropic Messages client."""

    __slots__ = (
        "_blocked", "_ctx", "_done", "_emitted", "_finish", "_index", "_meta", "_open",
        "_reader", "_started",
    )

    def __init__(self, ctx: TranslateContext, signatures: SignatureStore, new_id: IdFactory = random_call_id) -> None:
        self._ctx = ctx
        self._reader = PartReader("toolu_", signatures, new_id)
        self._started = False
        self._done = False
        self._emitted = False
        self._blocked = False
        self._finish: str | None = None
        self._meta: UsageMetadata | None = None
        self._index = -1           # index of the last block started
        self._open: str | None = None  # type of the open block: "text" | "thinking" | None

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, event: SseEvent) -> list[bytes]:
        if self._done:
            return []
        try:
            chunk = decode_response(event.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return self._error("Gemini sent a malformed stream event", "api_error")
        if chunk.error is not None:
            err = gemini_error(200, event.data)
            return self._error(err.message, err.kind)
        out: list[bytes] = []
        if not self._started:
            self._started = True
            out.append(self._message_start(chunk.response_id))
        if chunk.usage_metadata is not None:
            self._meta = chunk.usage_metadata
        if chunk.prompt_feedback is not None and chunk.prompt_feedback.block_reason is not None:
            self._blocked = True
        cand = first_candidate(chunk)
        if cand is None:
            return out
        if cand.finish_reason is not None:
            self._finish = cand.finish_reason
        if cand.content is None:
            return out
        for item in self._reader.read(cand.content.parts):
            self._emitted = True
            if isinstance(item, CallItem):
                out.extend(self._close())
                self._index += 1
                block = {"type": "tool_use", "id": item.call_id, "name": item.name, "input": {}}
                delta = {"type": "input_json_delta", "partial_json": item.arguments.decode()}
                out.append(self._event("content_block_start", {"index": self._index, "content_block": block}))
                out.append(self._event("content_block_delta", {"index": self._index, "delta": delta}))
                out.append(self._event("content_block_stop", {"index": self._index}))
            else:
                kind = "thinking" if item.thought else "text"
                if self._open != kind:
                    out.extend(self._close())
                    self._index += 1
                    self._open = kind
                    start = {"type": "thinking", "thinking": "", "signature": ""} if item.thought else {"type": "text", "text": ""}
                    out.append(self._event("content_block_start", {"index": self._index, "content_block": start}))
                delta = {"type": "thinking_delta", "thinking": item.text} if item.thought else {"type": "text_delta", "text": item.text}
                out.append(self._event("content_block_delta", {"index": self._index, "delta": delta}))
        return out

    def finish(self) -> list[bytes]:
        if self._done:
            return []
        if not self._started:
            return self._error("Gemini ended the stream without sending anything", "api_error")
        if self._finish is None and not self._blocked:
            return self._error("Gemini ended the stream before it finished the answer", "api_error")
        if not self._emitted and self._finish in BROKEN_FINISHES:
            return self._error(f"Gemini produced no usable output (finishReason {self._finish})", "api_error")
        usage = self._settle_usage()
        kind = finish_kind(self._finish, self._reader.saw_call, self._blocked)
        out = self._close()
        out.append(self._event("message_delta", {
            "delta": {"stop_reason": ANTHROPIC_STOP[kind], "stop_sequence": None},
            "usage": anthropic_usage_body(usage),
        }))
        out.append(self._event("message_stop", {}))
        self._done = True
        return out

    def fail(self, message: str, kind: str) -> list[bytes]:
        if self._done:
            return []
        return self._error(message, kind)

    def _message_start(self, response_id: str) -> bytes:
        message: dict[str, object] = {
            "id": "msg_" + (response_id or self._ctx.request_id),
            "type": "message",
            "role": "assistant",
            "model": self._ctx.client_model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._ctx.estimated_input_tokens, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": 1},
        }
        return self._event("message_start", {"message": message})

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        self._open = None
        return [self._event("content_block_stop", {"index": self._index})]

    def _settle_usage(self) -> Usage:
        usage = usage_of(self._meta, self._ctx.estimated_input_tokens)
        self._ctx.usage = usage
        return usage

    def _error(self, message: str, kind: str) -> list[bytes]:
        self._done = True
        self._settle_usage()
        out = self._close()
        out.append(self._event("error", {"error": {"type": anthropic_error_type(kind), "message": message}}))
        return out

    @staticmethod
    def _event(name: str, payload: dict[str, object]) -> bytes:
        return encode_event(_ENCODER.encode({"type": name, **payload}), name)
