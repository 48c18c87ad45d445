"""Gemini ``streamGenerateContent?alt=sse`` -> neutral parts (8.7.4, P1, P2, P5).

Each Gemini chunk holds NEW parts: text becomes ``TextDelta``, ``thought: true`` text
``ReasoningDelta`` (empty text parts are skipped), and each function call one whole
``ToolCallStarted`` carrying its complete JSON arguments, with an id Apex generates
(``call_...`` or ``toolu_...``, from the injected factory) and remembers in the
SignatureStore with its thoughtSignature. Gemini has no terminator, and its finishReason
may come in a chunk after the function call: ``finish()`` (end of body) emits
``Finished`` mapped with "a function call was seen" (STOP becomes TOOL_CALLS), then
``Ended``. Each ``usageMetadata`` is cumulative and becomes ``UsageUpdated`` at once (so
an aborted stream still accounts it); without any, the end carries the prompt estimate.
A chunk's ``logprobsResult`` (asked for with responseLogprobs) rides on its last text delta;
a chunk without answer text has no place for it in the other dialects. An ``{"error": ...}`` chunk, a malformed chunk, a body that ends before a
finishReason (unless the prompt was blocked), or a broken finish with no output becomes
``Failed``. What this module must not do: write client bytes.
"""

from __future__ import annotations

from typing import final

import msgspec

from apex.errors import CONTEXT_LENGTH_EXCEEDED, ErrorKind
from apex.sse import SseEvent
from apex.translate.neutral.errortypes import context_overflow
from apex.translate.read.gemini_errors import gemini_error
from apex.translate.read.gemini_parts import (
    BROKEN_FINISHES,
    CallItem,
    IdFactory,
    GeminiPartMapper,
    first_candidate,
    gemini_finish,
    random_call_id,
)
from apex.translate.neutral.logprobs import logprobs_from_gemini
from apex.translate.neutral.usage import usage_from_gemini
from apex.translate.neutral.parts import (
    attach_logprobs,
    Ended,
    Failed,
    Finished,
    Part,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolCallStarted,
    UsageUpdated,
)
from apex.translate.neutral.signatures import SignatureStore
from apex.wire.gemini import GenerateContentResponse, UsageMetadata, decode_response

__all__ = ["GeminiReader"]


@final
class GeminiReader:
    """One Gemini stream's reader state."""

    __slots__ = ("_blocked", "_emitted", "_ended", "_estimate", "_finish", "_items", "_meta",
                 "_next_key", "_started")

    def __init__(self, prefix: str, signatures: SignatureStore, new_id: IdFactory = random_call_id,
                 estimated_prompt: int = 0) -> None:
        """``prefix`` starts generated tool-call ids (``call_`` / ``toolu_``)."""
        self._items = GeminiPartMapper(prefix, signatures, new_id)
        self._estimate = estimated_prompt
        self._started = False
        self._ended = False
        self._emitted = False
        self._blocked = False
        self._finish: str | None = None
        self._meta: UsageMetadata | None = None
        self._next_key = 0

    def feed(self, event: SseEvent) -> list[Part]:
        """Parts for one Gemini chunk."""
        if self._ended:
            return []
        try:
            chunk = decode_response(event.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return self._fail("Gemini sent a malformed stream event", "api_error")
        if chunk.error is not None:
            err = gemini_error(200, event.data)
            code = CONTEXT_LENGTH_EXCEEDED if context_overflow(err.kind, err.message) else err.rpc_status
            return self._fail(err.message, err.kind, code, upstream_event=True)
        out: list[Part] = []
        if not self._started:
            self._started = True
            out.append(Started(chunk.response_id))
        self._chunk(chunk, out)
        return out

    def finish(self) -> list[Part]:
        """End of body: the finish, the usage and ``Ended``, or ``Failed``."""
        if self._ended:
            return []
        if not self._started:
            return self._fail("Gemini ended the stream without sending anything", "api_error")
        if self._finish is None and not self._blocked:
            return self._fail("Gemini ended the stream before it finished the answer", "api_error")
        if not self._emitted and self._finish in BROKEN_FINISHES:
            return self._fail(f"Gemini produced no usable output (finishReason {self._finish})", "api_error")
        self._ended = True
        return [Finished(gemini_finish(self._finish, self._items.saw_call, self._blocked)),
                *self._estimated_usage(), Ended()]

    def _chunk(self, chunk: GenerateContentResponse, out: list[Part]) -> None:
        if chunk.usage_metadata is not None:
            self._meta = chunk.usage_metadata
            out.append(UsageUpdated(usage_from_gemini(self._meta)))
        if chunk.prompt_feedback is not None and chunk.prompt_feedback.block_reason is not None:
            self._blocked = True
        cand = first_candidate(chunk)
        if cand is None:
            return
        if cand.finish_reason is not None:
            self._finish = cand.finish_reason
        if cand.content is None:
            return
        first = len(out)
        for item in self._items.read(cand.content.parts):
            self._emitted = True
            if isinstance(item, CallItem):
                out.append(ToolCallStarted(self._next_key, item.call_id, item.name, item.arguments.decode()))
                self._next_key += 1
            elif item.thought:
                out.append(ReasoningDelta(item.text))
            else:
                out.append(TextDelta(item.text))
        if cand.logprobs_result is not None:
            attach_logprobs(out, first, logprobs_from_gemini(cand.logprobs_result))

    def _estimated_usage(self) -> list[Part]:
        # Gemini sent no usageMetadata: the prompt estimate, marked estimated. Never before
        # Started (it would open the client's stream); the gateway estimates in that case.
        if self._meta is not None or not self._started:
            return []
        return [UsageUpdated(usage_from_gemini(None, self._estimate))]

    def _fail(self, message: str, kind: ErrorKind, code: str | None = None, *, upstream_event: bool = False) -> list[Part]:
        self._ended = True
        return [*self._estimated_usage(), Failed(message, kind, code, upstream_event=upstream_event)]
