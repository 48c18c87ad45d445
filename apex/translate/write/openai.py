"""Neutral parts -> OpenAI Chat Completions chunks for an OpenAI client (8.7.1).

Emits ``delta.role`` first, ``delta.content`` for text, ``delta.reasoning_content`` for
reasoning (spec section 3), tool calls with client indices 0, 1, 2... (header fragment
with id and name, then argument fragments; a whole call (Gemini) is one chunk with its
arguments; a call that got no arguments gets ``"{}"``, P4; for a client that declared legacy
``functions``, the first call only, as ``delta.function_call``: name, then argument
fragments), one finish chunk (repeats are never re-emitted, P20), the ``choices: []`` usage
chunk only when the client asked (``ctx.include_usage``, P8), then ``[DONE]``. A failure emits
``data: {"error": {...}}`` and NO ``[DONE]``. ``model`` is always ``ctx.client_model``.
A text delta's token log probabilities (there only when the client asked) go on its chunk's
``choices[0].logprobs``.
What this module must not do: read upstream formats.
"""

from __future__ import annotations

from typing import Final, final

import msgspec

from apex.errors import ErrorKind
from apex.sse import DONE_EVENT, encode_event
from apex.translate.base import TranslateContext
from apex.translate.neutral.clientids import created_at, id_stem
from apex.translate.neutral.errortypes import openai_error_type
from apex.translate.neutral.logprobs import openai_logprobs
from apex.translate.neutral.parts import (
    Ended,
    Failed,
    Finished,
    Part,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolArgsDelta,
    ToolCallEnded,
    ToolCallStarted,
    UsageUpdated,
)
from apex.translate.neutral.reasons import Finish, openai_finish_reason, with_tools
from apex.translate.neutral.usage import openai_usage_body

__all__ = ["OpenAIChatWriter", "openai_error_event"]

_ENCODER: Final = msgspec.json.Encoder()


def openai_error_event(message: str, kind: ErrorKind, code: str | None = None) -> bytes:
    """One ``data: {"error": ...}`` event (the OpenAI SDK raises on it)."""
    body = {"error": {"message": message, "type": openai_error_type(kind), "param": None, "code": code}}
    return encode_event(_ENCODER.encode(body))


@final
class OpenAIChatWriter:
    """One OpenAI client stream's writer state."""

    __slots__ = ("_args_seen", "_created", "_ctx", "_done", "_finished", "_id",
                 "_started", "_tool_index", "_usage")

    def __init__(self, ctx: TranslateContext) -> None:
        self._ctx = ctx
        self._id = ""
        self._created = created_at(ctx)
        self._started = False
        self._done = False
        self._finished = False
        self._tool_index: dict[int, int] = {}  # part key -> client tool index
        self._args_seen: dict[int, bool] = {}
        self._usage = ctx.usage

    @property
    def done(self) -> bool:
        """True after ``[DONE]`` or an error event."""
        return self._done

    def write(self, part: Part) -> list[bytes]:
        """Client chunks for one part."""
        if self._done:
            return []
        if isinstance(part, Failed):
            self._done = True
            return [openai_error_event(part.message, part.kind, part.code)]
        out: list[bytes] = []
        if not self._started:
            self._started = True
            self._id = "chatcmpl-" + id_stem(part.upstream_id if isinstance(part, Started) else "", self._ctx)
            out.append(self._chunk({"role": "assistant", "content": ""}))
        if isinstance(part, TextDelta):
            if part.text and not self._finished:
                out.append(self._chunk({"content": part.text},
                                       logprobs=openai_logprobs(part.logprobs) if part.logprobs else None))
        elif isinstance(part, ReasoningDelta):
            if part.text and not self._finished:
                out.append(self._chunk({"reasoning_content": part.text}))
        elif isinstance(part, ToolCallStarted):
            # A legacy client (``functions``) takes one call per message: later ones are dropped.
            if not self._finished and part.key not in self._tool_index and not (
                    self._ctx.legacy_functions and self._tool_index):
                index = len(self._tool_index)
                self._tool_index[part.key] = index
                # A whole call (Gemini) goes out as one chunk, arguments in the header.
                self._args_seen[part.key] = part.arguments is not None
                function = {"name": self._ctx.client_tool_name(part.name), "arguments": part.arguments or ""}
                if self._ctx.legacy_functions:
                    out.append(self._chunk({"function_call": function}))
                else:
                    header = {"index": index, "id": part.call_id, "type": "function", "function": function}
                    out.append(self._chunk({"tool_calls": [header]}))
        elif isinstance(part, ToolArgsDelta):
            if part.fragment and not self._finished and part.key in self._tool_index:
                self._args_seen[part.key] = True
                out.append(self._args_chunk(part.key, part.fragment))
        elif isinstance(part, ToolCallEnded):
            out.extend(self._empty_args(part.key))
        elif isinstance(part, UsageUpdated):
            self._usage = part.usage
            self._ctx.usage = part.usage
        elif isinstance(part, Finished):
            out.extend(self._finish(part.reason))
        elif isinstance(part, Ended):
            out.extend(self._finish(Finish.STOP))
            if self._ctx.include_usage and self._usage is not None:
                out.append(self._usage_chunk())
            out.append(DONE_EVENT)
            self._done = True
        return out

    def _finish(self, reason: Finish) -> list[bytes]:
        if self._finished:
            return []
        out: list[bytes] = []
        for key in self._tool_index:
            out.extend(self._empty_args(key))
        self._finished = True
        finish = openai_finish_reason(with_tools(reason, bool(self._tool_index)),
                                      legacy_functions=self._ctx.legacy_functions)
        out.append(self._chunk({}, finish))
        return out

    def _empty_args(self, key: int) -> list[bytes]:
        if key in self._args_seen and not self._args_seen[key]:
            self._args_seen[key] = True
            return [self._args_chunk(key, "{}")]
        return []

    def _args_chunk(self, key: int, fragment: str) -> bytes:
        if self._ctx.legacy_functions:
            return self._chunk({"function_call": {"arguments": fragment}})
        call = {"index": self._tool_index[key], "function": {"arguments": fragment}}
        return self._chunk({"tool_calls": [call]})

    def _chunk(self, delta: dict[str, object], finish_reason: str | None = None,
               logprobs: dict[str, object] | None = None) -> bytes:
        body = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._ctx.client_model,
            "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}],
        }
        return encode_event(_ENCODER.encode(body))

    def _usage_chunk(self) -> bytes:
        assert self._usage is not None  # checked by the caller
        body = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._ctx.client_model,
            "choices": [],
            "usage": openai_usage_body(self._usage),
        }
        return encode_event(_ENCODER.encode(body))
