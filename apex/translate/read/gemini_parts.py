"""Reading Gemini answers in a client-neutral form, shared by every Gemini->client direction.

``GeminiPartMapper`` turns the parts of one response or stream chunk into ``TextItem`` and
``CallItem`` values: empty text is skipped, ``thought: true`` text is reasoning, each
function call gets a fresh client id (``call_...`` / ``toolu_...``; Gemini has none) and
is remembered in the SignatureStore with its thoughtSignature (8.7.4, P5). The reader
tracks whether any call was seen, because a function-call turn ends with ``STOP``,
possibly in a later chunk (P1): ``finish_kind`` maps the finish at the END only, and
``gemini_finish`` gives it as the neutral ``Finish``. Usage is read by
``neutral.usage.usage_from_gemini``. ``reply_from_gemini`` reads a whole non-stream
answer into the neutral ``Reply`` the body writers of ``neutral/reply.py`` consume. What this
module must not do: produce client wire bytes.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable
from typing import Final, NamedTuple

import msgspec
from msgspec import UnsetType

from apex.errors import UpstreamMalformed
from apex.translate.neutral.logprobs import logprobs_from_gemini
from apex.translate.neutral.parts import Reply, ReplyReasoning, ReplyText, ReplyToolCall
from apex.translate.neutral.reasons import Finish
from apex.translate.neutral.signatures import SignatureStore
from apex.translate.neutral.usage import usage_from_gemini
from apex.wire.gemini import (
    Candidate,
    GenerateContentResponse,
    Part,
    decode_response,
)

__all__ = [
    "BROKEN_FINISHES",
    "CallItem",
    "FinishKind",
    "IdFactory",
    "GeminiPartMapper",
    "TextItem",
    "finish_kind",
    "first_candidate",
    "gemini_finish",
    "random_call_id",
    "reply_from_gemini",
]

IdFactory = Callable[[str], str]
"""Makes a tool-call id from a prefix ("call_" or "toolu_"); injectable for tests."""


def random_call_id(prefix: str) -> str:
    """``prefix`` + 24 random hex digits: unique across requests, Anthropic-id safe."""
    return prefix + secrets.token_hex(12)


class FinishKind(enum.Enum):
    """Why a Gemini turn ended, in the terms both client dialects share."""

    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    FILTER = "filter"


_NEUTRAL: Final[dict[FinishKind, Finish]] = {
    FinishKind.STOP: Finish.STOP,
    FinishKind.LENGTH: Finish.LENGTH,
    FinishKind.TOOL_CALLS: Finish.TOOL_CALLS,
    FinishKind.FILTER: Finish.CONTENT_FILTER,
}

_FILTERED: Final = frozenset({
    "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION",
})
# Gemini failed to produce a usable turn: with no output these become an upstream error.
BROKEN_FINISHES: Final = frozenset({
    "MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS",
    "MISSING_THOUGHT_SIGNATURE", "MALFORMED_RESPONSE",
})


def finish_kind(reason: str | None, saw_call: bool, blocked: bool = False) -> FinishKind:
    """Map a Gemini finishReason (8.5); a seen function call turns STOP into TOOL_CALLS."""
    if blocked or reason in _FILTERED:
        return FinishKind.FILTER
    if reason == "MAX_TOKENS":
        return FinishKind.LENGTH
    if saw_call and reason in (None, "STOP", "FINISH_REASON_UNSPECIFIED"):
        return FinishKind.TOOL_CALLS
    return FinishKind.STOP  # STOP, LANGUAGE, OTHER and values Gemini adds later


def gemini_finish(reason: str | None, saw_call: bool, blocked: bool = False) -> Finish:
    """``finish_kind`` as the neutral Finish the writers consume."""
    return _NEUTRAL[finish_kind(reason, saw_call, blocked)]


def first_candidate(response: GenerateContentResponse) -> Candidate | None:
    """The candidate with index 0 (Apex asks for one); None when the prompt was blocked."""
    for cand in response.candidates:
        if cand.index == 0:
            return cand
    return response.candidates[0] if response.candidates else None


class TextItem(NamedTuple):
    text: str
    thought: bool


class CallItem(NamedTuple):
    call_id: str
    name: str
    arguments: bytes    # a JSON object, as Gemini sent it


Item = TextItem | CallItem


class GeminiPartMapper:
    """Turns Gemini parts into items, generating and remembering tool-call ids."""

    __slots__ = ("_new_id", "_prefix", "_signatures", "saw_call")

    def __init__(self, prefix: str, signatures: SignatureStore, new_id: IdFactory = random_call_id) -> None:
        self._prefix = prefix
        self._signatures = signatures
        self._new_id = new_id
        self.saw_call = False

    def read(self, parts: list[Part]) -> list[Item]:
        """The items of ``parts`` in order; empty text parts are dropped."""
        items: list[Item] = []
        for part in parts:
            call = part.function_call
            if not isinstance(call, UnsetType):
                call_id = self._new_id(self._prefix)
                signature = part.thought_signature if isinstance(part.thought_signature, str) else None
                self._signatures.remember(call_id, call.name, signature)
                args = b"{}" if isinstance(call.args, UnsetType) else bytes(call.args)
                items.append(CallItem(call_id, call.name, args.strip() or b"{}"))
                self.saw_call = True
            elif isinstance(part.text, str) and part.text:
                items.append(TextItem(part.text, part.thought))
        return items



def reply_from_gemini(
    body: bytes, prefix: str, signatures: SignatureStore, new_id: IdFactory, estimated_prompt: int = 0
) -> Reply:
    """A generateContent body -> Reply (usage always set: the estimate when Gemini gave none).

    Raises UpstreamMalformed for a body that is not a Gemini response, or when Gemini
    reports a broken turn (e.g. MALFORMED_FUNCTION_CALL) and produced nothing."""
    try:
        resp = decode_response(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UpstreamMalformed(f"Gemini response is not valid: {exc}") from exc
    reader = GeminiPartMapper(prefix, signatures, new_id)
    cand = first_candidate(resp)
    if cand is None and resp.prompt_feedback is None:
        raise UpstreamMalformed("Gemini response has neither candidates nor promptFeedback")
    items = reader.read(cand.content.parts) if cand is not None and cand.content is not None else []
    reason = cand.finish_reason if cand is not None else None
    blocked = cand is None and resp.prompt_feedback is not None and resp.prompt_feedback.block_reason is not None
    if not items and reason in BROKEN_FINISHES:
        raise UpstreamMalformed(f"Gemini produced no usable output (finishReason {reason})")
    reply = Reply(resp.response_id, finish=gemini_finish(reason, reader.saw_call, blocked),
                  usage=usage_from_gemini(resp.usage_metadata, estimated_prompt))
    if cand is not None and cand.logprobs_result is not None:
        reply.logprobs = list(logprobs_from_gemini(cand.logprobs_result))
    for item in items:
        if isinstance(item, CallItem):
            reply.parts.append(ReplyToolCall(item.call_id, item.name, item.arguments.decode()))
        elif item.thought:
            reply.parts.append(ReplyReasoning(item.text))
        else:
            reply.parts.append(ReplyText(item.text))
    return reply
