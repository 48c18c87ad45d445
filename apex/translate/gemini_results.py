"""Reading Gemini answers in a client-neutral form, shared by every Gemini->client direction.

``PartReader`` turns the parts of one response or stream chunk into ``TextItem`` and
``CallItem`` values: empty text is skipped, ``thought: true`` text is reasoning, each
function call gets a fresh client id (``call_...`` / ``toolu_...``; Gemini has none) and
is remembered in the SignatureStore with its thoughtSignature (8.7.4, P5). The reader
tracks whether any call was seen, because a function-call turn ends with ``STOP``,
possibly in a later chunk (P1): ``finish_kind`` maps the finish at the END only.
``usage_of`` applies 8.6 (completion = candidates + thoughts). What this module must not
do: produce client wire bytes.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable
from typing import Final, NamedTuple

from msgspec import UnsetType

from apex.translate.signatures import SignatureStore
from apex.types import Usage
from apex.wire.gemini import Candidate, GenerateContentResponse, Part, UsageMetadata

__all__ = [
    "ANTHROPIC_STOP",
    "BROKEN_FINISHES",
    "OPENAI_FINISH",
    "CallItem",
    "FinishKind",
    "IdFactory",
    "PartReader",
    "TextItem",
    "finish_kind",
    "first_candidate",
    "random_call_id",
    "usage_of",
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


OPENAI_FINISH: Final[dict[FinishKind, str]] = {
    FinishKind.STOP: "stop",
    FinishKind.LENGTH: "length",
    FinishKind.TOOL_CALLS: "tool_calls",
    FinishKind.FILTER: "content_filter",
}
ANTHROPIC_STOP: Final[dict[FinishKind, str]] = {
    FinishKind.STOP: "end_turn",
    FinishKind.LENGTH: "max_tokens",
    FinishKind.TOOL_CALLS: "tool_use",
    FinishKind.FILTER: "refusal",
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


def usage_of(meta: UsageMetadata | None, estimated_prompt: int = 0) -> Usage:
    """Gemini usageMetadata -> Usage; without metadata, the prompt estimate, marked estimated."""
    if meta is None:
        return Usage(prompt_tokens=estimated_prompt, estimated=True)
    return Usage(
        prompt_tokens=meta.prompt_token_count + meta.tool_use_prompt_token_count,
        completion_tokens=meta.candidates_token_count + meta.thoughts_token_count,
        cached_tokens=meta.cached_content_token_count,
        reasoning_tokens=meta.thoughts_token_count,
    )


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


class PartReader:
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

