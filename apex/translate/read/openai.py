"""OpenAI Chat (and compatible providers') stream -> neutral parts (2.4, 8.7.2, P3, P9, P20).

Only choice 0 is read. Reasoning comes as ``reasoning_content`` (DeepSeek, Moonshot) or
``reasoning`` (OpenRouter, Groq). Tool-call fragments are grouped by ``index`` (position
in the array when absent); a fragment carrying a NEW id for an index that already has one
starts a new call (Ollama reuses index 0). The first ``finish_reason`` is kept, repeats
are ignored, and so is content after it. Usage may arrive on a ``choices: []`` chunk, on
the finish chunk (DeepSeek) or under ``x_groq.usage``. Errors after HTTP 200 arrive as
``data: {"error": ...}``, with or without ``event: error``, or as a normal chunk with a
top-level ``error`` (OpenRouter): all become ``Failed``. EOF without ``[DONE]`` is a
normal end when a finish_reason was seen (some providers omit ``[DONE]``), else a failure.
A choice's ``logprobs`` (asked for by the client) ride on the last text delta of the chunk;
when the think-tag splitter held that text back, they wait for the text that comes next.
What this module must not do: write client bytes.
"""

from __future__ import annotations

from typing import final

import msgspec

from apex.errors import CONTEXT_LENGTH_EXCEEDED
from apex.sse import SseEvent
from apex.translate.neutral.errortypes import context_overflow, kind_from_upstream
from apex.translate.neutral.logprobs import logprobs_from_openai
from apex.translate.neutral.parts import (
    attach_logprobs,
    Ended,
    Failed,
    Finished,
    Part,
    ReasoningDelta,
    Started,
    RefusalDelta,
    TextDelta,
    TokenLogprob,
    ToolArgsDelta,
    ToolCallStarted,
    UsageUpdated,
)
from apex.translate.neutral.reasons import Finish, finish_from_openai, with_tools
from apex.translate.neutral.usage import usage_from_openai
from apex.translate.read.think_tags import Piece, ThinkTagSplitter
from apex.wire.openai import ChatChunk, ChatUsage, ErrorView, ToolCallDelta, decode_chunk

__all__ = ["OpenAIChatReader"]


@final
class OpenAIChatReader:
    """One OpenAI-compatible stream's reader state."""

    __slots__ = ("_bound", "_ended", "_finished", "_held_logprobs", "_next_key", "_refused", "_started", "_texted",
                 "_think")

    def __init__(self) -> None:
        self._think = ThinkTagSplitter()  # reasoning inline as <think>...</think> (MiniMax /v1)
        self._started = False
        self._finished = False
        self._ended = False
        self._bound: dict[int, tuple[int, str]] = {}  # upstream index -> (key, id)
        self._next_key = 0
        self._refused = False  # a refusal delta came, and no content: the finish is a content filter,
        self._texted = False   # as in a non-stream reply (apex.translate.neutral.reply)
        self._held_logprobs: tuple[TokenLogprob, ...] = ()  # of text the think-tag splitter holds

    def feed(self, event: SseEvent) -> list[Part]:
        """Parts for one upstream event."""
        if self._ended:
            return []
        if event.data.strip() == b"[DONE]":
            self._ended = True
            return [Ended()]
        try:
            chunk = decode_chunk(event.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._ended = True
            return [Failed(f"upstream sent a malformed stream chunk: {exc}", "api_error")]
        if chunk.error is not None or event.event == "error":
            self._ended = True
            # An error chunk may still report what was consumed (OpenRouter): count it.
            usage = chunk.usage or (chunk.x_groq.usage if chunk.x_groq else None)
            failed = _failure(chunk.error)
            return [UsageUpdated(usage_from_openai(usage)), failed] if usage is not None else [failed]
        return self._chunk(chunk)

    def finish(self) -> list[Part]:
        """EOF: normal after ``[DONE]`` or a finish_reason, a failure otherwise."""
        if self._ended:
            return []
        self._ended = True
        if self._finished:
            return [Ended()]
        return [Failed("upstream stream ended before it finished", "api_error")]

    def _pieces(self, pieces: list[Piece], out: list[Part]) -> None:
        for kind, text in pieces:
            if kind == "reasoning":
                out.append(ReasoningDelta(text))
            else:
                self._texted = True
                out.append(TextDelta(text))

    def _chunk(self, chunk: ChatChunk) -> list[Part]:
        out: list[Part] = []
        if not self._started:
            self._started = True
            out.append(Started(chunk.id))
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            delta = choice.delta
            first = len(out)
            if delta is not None and not self._finished:
                reasoning = delta.reasoning_content or delta.reasoning
                if reasoning:
                    out.append(ReasoningDelta(reasoning))
                if delta.content:
                    self._pieces(self._think.feed(delta.content), out)
                if delta.refusal:
                    self._refused = True
                    out.append(RefusalDelta(delta.refusal))
                if delta.tool_calls:
                    for position, call in enumerate(delta.tool_calls):
                        self._tool_call(position, call, out)
            if choice.finish_reason is not None and not self._finished:
                self._finished = True
                self._pieces(self._think.flush(), out)
                finish = with_tools(finish_from_openai(choice.finish_reason), bool(self._bound))
                if self._refused and not self._texted and choice.finish_reason == "stop":
                    finish = Finish.CONTENT_FILTER
                out.append(Finished(finish))
            if choice.logprobs is not None or self._held_logprobs:
                self._attach(out, first, logprobs_from_openai(choice.logprobs) if choice.logprobs is not None else ())
        usage = chunk.usage or (chunk.x_groq.usage if chunk.x_groq else None) or _choice_usage(chunk)
        if usage is not None:
            out.append(UsageUpdated(usage_from_openai(usage)))
        return out

    def _attach(self, out: list[Part], first: int, tokens: tuple[TokenLogprob, ...]) -> None:
        """Give ``tokens`` (and any held ones) to the last text part from ``out[first]`` on."""
        tokens = self._held_logprobs + tokens
        self._held_logprobs = () if attach_logprobs(out, first, tokens) else tokens

    def _tool_call(self, position: int, call: ToolCallDelta, out: list[Part]) -> None:
        index = call.index if call.index is not None else position
        fn = call.function
        bound = self._bound.get(index)
        if bound is None and not call.id and not (fn is not None and (fn.name or fn.arguments)):
            return  # an index alone (its id and name come in the next delta): nothing to start yet
        if bound is None or (call.id and call.id != bound[1]):
            key = self._next_key
            self._next_key += 1
            call_id = call.id or f"call_{key}"
            self._bound[index] = (key, call_id)
            out.append(ToolCallStarted(key, call_id, (fn.name if fn else None) or ""))
        else:
            key = bound[0]
        if fn is not None and fn.arguments:
            out.append(ToolArgsDelta(key, fn.arguments))


def _failure(error: ErrorView | None) -> Failed:
    if error is None:
        return Failed("upstream stream error", "api_error", upstream_event=True)
    status = error.status_code if error.status_code is not None else (
        error.code if isinstance(error.code, int) else None)
    code = error.code if isinstance(error.code, str) and not error.code.isdigit() else None
    message = error.message or "upstream stream error"
    kind = kind_from_upstream(error.type, status)
    if context_overflow(kind, message, code, error.type):  # a vLLM-style server's words
        code = CONTEXT_LENGTH_EXCEEDED
    return Failed(message, kind, code, upstream_event=True)


def _choice_usage(chunk: ChatChunk) -> ChatUsage | None:
    """Moonshot's stream usage, on the finishing choice instead of the chunk."""
    for choice in chunk.choices:
        if choice.usage is not None:
            return choice.usage
    return None
