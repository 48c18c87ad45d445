"""Neutral parts -> Gemini ``GenerateContentResponse`` chunks for a Gemini client (6.3, 6.4).

Each text or reasoning delta is one chunk whose only part is the new text (``thought:
true`` for reasoning); an Anthropic thinking signature rides on an empty thought part as
``thoughtSignature`` (``gemini_request.encode_thought_signature``). Gemini sends every
function call whole, so argument fragments are buffered and the call goes out as one
``functionCall`` part (with the upstream's id as ``id``) when it ends, when other content
starts, or at the finish; one the output limit cut short (arguments not whole JSON) is left
out, as Gemini never sends part of a call. The end is one chunk with an empty text part,
``finishReason`` (8.5 backwards: tool calls end with STOP) and ``usageMetadata`` (8.6
backwards: candidates exclude thoughts). A failure is a chunk ``{"error": {code, message, status}}``,
which the Gemini SDKs raise. The writer always writes SSE; ``GeminiFraming`` re-frames
chunks as Google's incremental JSON array for clients that did not ask for ``alt=sse``
(the pipeline applies it to translated and passed-through streams alike). Token log
probabilities (only there when the client set ``responseLogprobs``) go out as the text
chunk's ``logprobsResult``; a whole answer also gets their mean as ``avgLogprobs``.
What this module must not do: read upstream formats.
"""

from __future__ import annotations

from typing import Final, final

import msgspec

from apex.translate.base import TranslateContext
from apex.translate.neutral.clientids import id_stem
from apex.translate.neutral.errortypes import gemini_rpc_status, gemini_status_of_kind
from apex.translate.neutral.logprobs import average_logprob, gemini_logprobs_result
from apex.translate.request.gemini_conversation import encode_carried_thinking, encode_thought_signature
from apex.translate.neutral.parts import (
    Ended,
    Failed,
    Finished,
    Part,
    ReasoningDelta,
    ReasoningSignature,
    Reply,
    ReplyReasoning,
    ReplyText,
    ReplyToolCall,
    Started,
    TextDelta,
    ToolArgsDelta,
    ToolCallEnded,
    ToolCallStarted,
    UsageUpdated,
)
from apex.translate.neutral.reasons import Finish, gemini_finish_reason
from apex.translate.neutral.toolids import arguments_object, is_complete_json
from apex.types import Usage

__all__ = [
    "GeminiFraming",
    "GeminiWriter",
    "gemini_body",
    "gemini_error_object",
    "usage_metadata",
]

_ENCODER: Final = msgspec.json.Encoder()
_FINAL_PART: Final = b'[{"text":""}]'


def usage_metadata(usage: Usage) -> dict[str, object]:
    """Usage -> Gemini ``usageMetadata`` (candidates exclude thoughts; zero extras left out)."""
    meta: dict[str, object] = {
        "promptTokenCount": usage.prompt_tokens,
        "candidatesTokenCount": max(usage.completion_tokens - usage.reasoning_tokens, 0),
        "totalTokenCount": usage.total_tokens,
    }
    if usage.reasoning_tokens:
        meta["thoughtsTokenCount"] = usage.reasoning_tokens
    if usage.cached_tokens:
        meta["cachedContentTokenCount"] = usage.cached_tokens
    return meta


def gemini_error_object(status: int, message: str, rpc_status: str | None = None) -> dict[str, object]:
    """``{"error": {code, message, status}}`` as Gemini writes it."""
    return {"error": {"code": status, "message": message, "status": rpc_status or gemini_rpc_status(status)}}


@final
class GeminiFraming:
    """Chunk bytes -> the client's stream framing: SSE events or one incremental JSON array."""

    __slots__ = ("_array", "_opened")

    def __init__(self, array: bool) -> None:
        self._array = array
        self._opened = False

    def chunk(self, data: bytes) -> bytes:
        """One chunk (a JSON object) framed."""
        if not self._array:
            return b"data: " + data + b"\r\n\r\n"
        if self._opened:
            return b",\r\n" + data
        self._opened = True
        return b"[" + data

    def close(self) -> bytes:
        """What ends the stream (the array's ``]``; nothing for SSE)."""
        if not self._array:
            return b""
        if self._opened:
            return b"]"
        self._opened = True
        return b"[]"


# ctx.extras key: the client did not ask for thoughts (thinkingConfig.includeThoughts absent or
# false), so none are written, as Gemini writes none; signed thinking still rides on the call.
HIDE_THOUGHTS: Final = "gemini_hide_thoughts"


def _sse(data: bytes) -> bytes:
    # Gemini frames its events with CRLF (docs/protocols.md 1.1); clients accept either.
    return b"data: " + data + b"\r\n\r\n"


def _signature_part(signature: str) -> dict[str, object]:
    return {"text": "", "thought": True, "thoughtSignature": encode_thought_signature(signature)}


def _call_part(call_id: str, name: str, arguments: str) -> dict[str, object]:
    return {"functionCall": {"name": name, "args": arguments_object(arguments), "id": call_id}}


@final
class GeminiWriter:
    """One Gemini client stream's writer state."""

    __slots__ = ("_calls", "_carry", "_ctx", "_done", "_finish", "_shown", "_started", "_suffix", "_thought", "_usage")

    def __init__(self, ctx: TranslateContext) -> None:
        self._ctx = ctx
        self._started = False
        self._done = False
        self._suffix = b""
        self._calls: dict[int, tuple[str, str, list[str]]] = {}  # key -> (id, name, fragments), unsent
        self._finish: Finish | None = None
        self._usage = ctx.usage
        self._thought: list[str] = []  # thinking text since the last signature
        self._carry: str | None = None  # signed thinking for the next call part (encode_carried_thinking)
        self._shown = not ctx.extras.get(HIDE_THOUGHTS)  # thought parts written (includeThoughts)

    @property
    def done(self) -> bool:
        """True after the final chunk or an error chunk."""
        return self._done

    def write(self, part: Part) -> list[bytes]:
        """Client chunks for one part."""
        if self._done:
            return []
        if isinstance(part, Failed):
            self._done = True
            status = gemini_status_of_kind(part.kind)
            body = gemini_error_object(status, part.message)
            return [_sse(_ENCODER.encode(body))]
        if not self._started:
            self._start(part.upstream_id if isinstance(part, Started) else "")
        out: list[bytes] = []
        if isinstance(part, TextDelta):
            if part.text and self._finish is None:
                self._flush_calls(out)
                logprobs = (b',"logprobsResult":' + _ENCODER.encode(gemini_logprobs_result(part.logprobs))
                            if part.logprobs else b"")
                out.append(self._chunk(b'[{"text":' + _ENCODER.encode(part.text) + b"}]", logprobs))
        elif isinstance(part, ReasoningDelta):
            if part.text and self._finish is None:
                self._thought.append(part.text)
                if self._shown:
                    self._flush_calls(out)
                    out.append(self._chunk(b'[{"text":' + _ENCODER.encode(part.text) + b',"thought":true}]'))
        elif isinstance(part, ReasoningSignature):
            if part.signature and self._finish is None:
                self._carry = encode_carried_thinking("".join(self._thought), part.signature)
                self._thought = []
                if self._shown:
                    out.append(self._chunk(_ENCODER.encode([_signature_part(part.signature)])))
        elif isinstance(part, ToolCallStarted):
            if self._finish is None and part.key not in self._calls:
                if part.arguments is not None:
                    self._flush_calls(out)
                    name = self._ctx.client_tool_name(part.name)
                    out.append(self._chunk(_ENCODER.encode([self._carrying(_call_part(part.call_id, name, part.arguments))])))
                else:
                    self._calls[part.key] = (part.call_id, self._ctx.client_tool_name(part.name), [])
        elif isinstance(part, ToolArgsDelta):
            call = self._calls.get(part.key)
            if call is not None and part.fragment:
                call[2].append(part.fragment)
        elif isinstance(part, ToolCallEnded):
            self._flush_calls(out, part.key)
        elif isinstance(part, UsageUpdated):
            self._usage = part.usage
            self._ctx.usage = part.usage
        elif isinstance(part, Finished):
            if self._finish is None:
                if part.reason is Finish.LENGTH:
                    # A call the limit cut short is left out, as for Responses clients: Gemini
                    # sends every call whole, and Gemini CLI runs each one it gets (here with
                    # {"_raw": half its arguments}). MAX_TOKENS says the answer was cut.
                    self._calls = {key: call for key, call in self._calls.items()
                                   if is_complete_json("".join(call[2]))}
                self._flush_calls(out)
                self._finish = part.reason
        elif isinstance(part, Ended):
            self._flush_calls(out)
            out.append(self._final_chunk())
            self._done = True
        return out

    def _start(self, upstream_id: str) -> None:
        self._started = True
        self._suffix = (b',"index":0}],"modelVersion":' + _ENCODER.encode(self._ctx.client_model)
                        + b',"responseId":' + _ENCODER.encode(id_stem(upstream_id, self._ctx)) + b"}")

    def _chunk(self, parts: bytes, candidate_fields: bytes = b"") -> bytes:
        """A chunk of ``parts``; ``candidate_fields`` (``,"name":value...``) go on its candidate."""
        return _sse(b'{"candidates":[{"content":{"parts":' + parts + b',"role":"model"}' + candidate_fields
                    + self._suffix)

    def _final_chunk(self) -> bytes:
        finish = gemini_finish_reason(self._finish or Finish.STOP)
        usage = self._usage or Usage(prompt_tokens=self._ctx.estimated_input_tokens, estimated=True)
        tail = (b',"role":"model"},"finishReason":' + _ENCODER.encode(finish) + b',"index":0}],"usageMetadata":'
                + _ENCODER.encode(usage_metadata(usage)) + self._suffix[self._suffix.index(b',"modelVersion"'):])
        return _sse(b'{"candidates":[{"content":{"parts":' + _FINAL_PART + tail)

    def _carrying(self, part: dict[str, object]) -> dict[str, object]:
        """The first call part after thinking carries it (``encode_carried_thinking``): signed
        (Anthropic), or the reasoning text alone (``reasoning_content`` upstreams)."""
        if self._carry is None and self._thought:
            self._carry = encode_carried_thinking("".join(self._thought), "")
            self._thought = []
        if self._carry is not None:
            part["thoughtSignature"] = self._carry
            self._carry = None
        return part

    def _flush_calls(self, out: list[bytes], only: int | None = None) -> None:
        if not self._calls:
            return
        keys = [only] if only is not None else list(self._calls)
        parts = []
        for key in keys:
            call = self._calls.pop(key, None)
            if call is not None:
                parts.append(self._carrying(_call_part(call[0], call[1], "".join(call[2]))))
        if parts:
            out.append(self._chunk(_ENCODER.encode(parts)))


def gemini_body(reply: Reply, ctx: TranslateContext) -> dict[str, object]:
    """Reply -> a Gemini ``GenerateContentResponse`` object."""
    parts: list[dict[str, object]] = []
    carry: str | None = None  # signed thinking for the next call part, as in streams
    shown = not ctx.extras.get(HIDE_THOUGHTS)
    calls = [p for p in reply.parts if isinstance(p, ReplyToolCall)]
    cut = calls[-1] if calls and reply.finish is Finish.LENGTH and not is_complete_json(calls[-1].arguments) else None
    for item in reply.parts:
        if item is cut:
            continue  # the limit cut it short: left out, as in streams (Gemini CLI would run it)
        if isinstance(item, ReplyReasoning):
            if item.text and shown:
                parts.append({"text": item.text, "thought": True})
            if item.signature and shown:
                parts.append(_signature_part(item.signature))
            if item.text or item.signature:
                carry = encode_carried_thinking(item.text, item.signature or "")
        elif isinstance(item, ReplyText):
            if item.text:
                parts.append({"text": item.text})
        elif isinstance(item, ReplyToolCall):
            call = _call_part(item.call_id, ctx.client_tool_name(item.name), item.arguments)
            if carry is not None:
                call["thoughtSignature"], carry = carry, None
            parts.append(call)
    if reply.refusal and not any("text" in p and not p.get("thought") for p in parts):
        parts.append({"text": reply.refusal})
    usage = reply.usage or Usage(prompt_tokens=ctx.estimated_input_tokens, estimated=True)
    candidate: dict[str, object] = {"content": {"parts": parts, "role": "model"},
                                    "finishReason": gemini_finish_reason(reply.finish), "index": 0}
    if reply.logprobs is not None:
        candidate["logprobsResult"] = gemini_logprobs_result(reply.logprobs)
        average = average_logprob(reply.logprobs)
        if average is not None:
            candidate["avgLogprobs"] = average
    return {
        "candidates": [candidate],
        "usageMetadata": usage_metadata(usage),
        "modelVersion": ctx.client_model,
        "responseId": id_stem(reply.upstream_id, ctx),
    }
