"""Gemini ``streamGenerateContent?alt=sse`` -> OpenAI Chat Completions chunks (8.7.4).

Each Gemini chunk holds NEW parts: text becomes ``delta.content``, thought text
``delta.reasoning_content``, and each function call one complete ``delta.tool_calls``
entry with a generated ``call_...`` id and its full JSON arguments. Gemini has no
terminator: ``finish()`` (end of body) emits the finish chunk, mapped with "a function
call was seen" so STOP becomes ``tool_calls`` even when it came in a later chunk (P1),
then the usage chunk when the client asked for it, then ``[DONE]``. Usage is the last
chunk's ``usageMetadata`` (cumulative) and lands in ``ctx.usage``. An ``{"error":...}``
chunk, a malformed chunk, or an end of body without a finishReason becomes
``data: {"error":{...}}`` with no ``[DONE]``. What this module must not do: I/O.
"""

from __future__ import annotations

import time
from typing import Final, final

import msgspec

from apex.sse import DONE_EVENT, SseEvent, encode_event
from apex.translate.base import TranslateContext
from apex.translate.errortypes import openai_error_type
from apex.translate.gemini_errors import gemini_error
from apex.translate.gemini_results import (
    BROKEN_FINISHES,
    OPENAI_FINISH,
    CallItem,
    IdFactory,
    PartReader,
    finish_kind,
    first_candidate,
    random_call_id,
    usage_of,
)
from apex.translate.signatures import SignatureStore
from apex.translate.usage import openai_usage_body
from apex.types import Usage
from apex.wire.gemini import UsageMetadata, decode_response

__all__ = ["GeminiToOpenAIStream", "created_at"]

_ENCODER: Final = msgspec.json.Encoder()


def created_at(ctx: TranslateContext) -> int:
    """Unix seconds for ``created``: the pipeline's ``ctx.extras["created"]`` when set."""
    value = ctx.extras.get("created")
    # The wall-clock fallback keeps this direction usable until the pipeline sets it.
    return value if isinstance(value, int) else int(time.time())


@final
class GeminiToOpenAIStream:
    """One Gemini stream translated for an OpenAI Chat client."""

    __slots__ = (
        "_blocked", "_created", "_ctx", "_done", "_emitted", "_finish", "_id", "_meta",
        "_next_tool", "_reader", "_started",
    )

    def __init__(self, ctx: TranslateContext, signatures: SignatureStore, new_id: IdFactory = random_call_id) -> None:
        self._ctx = ctx
        self._reader = PartReader("call_", signatures, new_id)
        self._created = created_at(ctx)
        self._id = "chatcmpl-" + ctx.request_id
        self._started = False
        self._done = False
        self._emitted = False
        self._blocked = False
        self._finish: str | None = None
        self._meta: UsageMetadata | None = None
        self._next_tool = 0

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, event: SseEvent) -> list[bytes]:
        if self._done:
            return []
        try:
            chunk = decode_response(event.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return self._error("Gemini sent a malformed stream event", "api_error", None)
        if chunk.error is not None:
            err = gemini_error(200, event.data)
            return self._error(err.message, err.kind, err.rpc_status)
        out: list[bytes] = []
        if not self._started:
            self._started = True
            if chunk.response_id:
                self._id = "chatcmpl-" + chunk.response_id
            out.append(self._chunk({"role": "assistant", "content": ""}))
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
                call = {"index": self._next_tool, "id": item.call_id, "type": "function",
                        "function": {"name": item.name, "arguments": item.arguments.decode()}}
                self._next_tool += 1
                out.append(self._chunk({"tool_calls": [call]}))
            elif item.thought:
                out.append(self._chunk({"reasoning_content": item.text}))
            else:
                out.append(self._chunk({"content": item.text}))
        return out

    def finish(self) -> list[bytes]:
        if self._done:
            return []
        if not self._started:
            return self._error("Gemini ended the stream without sending anything", "api_error", None)
        if self._finish is None and not self._blocked:
            return self._error("Gemini ended the stream before it finished the answer", "api_error", None)
        if not self._emitted and self._finish in BROKEN_FINISHES:
            return self._error(f"Gemini produced no usable output (finishReason {self._finish})", "api_error", None)
        usage = self._settle_usage()
        kind = finish_kind(self._finish, self._reader.saw_call, self._blocked)
        out = [self._chunk({}, OPENAI_FINISH[kind])]
        if self._ctx.include_usage:
            out.append(self._encode({
                "id": self._id, "object": "chat.completion.chunk", "created": self._created,
                "model": self._ctx.client_model, "choices": [], "usage": openai_usage_body(usage),
            }))
        out.append(DONE_EVENT)
        self._done = True
        return out

    def fail(self, message: str, kind: str) -> list[bytes]:
        if self._done:
            return []
        return self._error(message, kind, None)

    def _settle_usage(self) -> Usage:
        usage = usage_of(self._meta, self._ctx.estimated_input_tokens)
        self._ctx.usage = usage
        return usage

    def _error(self, message: str, kind: str, code: str | None) -> list[bytes]:
        self._done = True
        self._settle_usage()
        body: dict[str, object] = {"error": {"message": message, "type": openai_error_type(kind), "code": code}}
        return [self._encode(body)]

    def _chunk(self, delta: dict[str, object], finish_reason: str | None = None) -> bytes:
        return self._encode({
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._ctx.client_model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        })

    @staticmethod
    def _encode(obj: dict[str, object]) -> bytes:
        return encode_event(_ENCODER.encode(obj))
