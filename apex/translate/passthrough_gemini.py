"""What a Gemini stream or body tells Apex when a Gemini client gets it as it is.

The bytes go through untouched (``PassthroughStream`` with family ``"gemini"`` calls
``observe_gemini_chunk`` for each event): Gemini streams name no model alias to rewrite
(the model is in the URL; ``modelVersion`` is the upstream's own). A chunk sets
``finished`` on a ``finishReason`` or a blocked prompt (Gemini has no terminator, so that
is a clean end), ``errored`` on an ``{"error": ...}`` chunk, and ``usage`` from
``usageMetadata`` (cumulative: the last one wins, read as in 8.6). Only chunks that can
carry those are decoded, and only through a view that skips the parts.
"""

from __future__ import annotations

from typing import Final, Protocol

import msgspec

from apex.translate.neutral.signatures import FOREIGN_SIGNATURE
from apex.translate.neutral.usage import usage_from_gemini
from apex.types import Usage
from apex.wire.gemini import decode_chunk_view

__all__ = ["StreamFlags", "gemini_body_usage", "observe_gemini_chunk", "without_apex_signatures"]

# Every thoughtSignature Apex mints (Claude's signature, or a turn's thinking carried on a call:
# apex.translate.request.gemini_conversation) is base64 of bytes that begin "apex-anthrop".
_APEX_SIGNATURE: Final = "YXBleC1hbnRocm9w"
_APEX_SIGNATURE_JSON: Final = b'"' + _APEX_SIGNATURE.encode()


def without_apex_signatures(body: bytes) -> bytes:
    """A Gemini client's request for a Gemini upstream without the signatures Apex minted
    when another upstream (Claude) answered earlier in the session: a call gets Gemini's
    placeholder for calls it did not make (P5; Gemini 3 answered 400 "Corrupted thought
    signature", and the carried one held Claude's thinking text), and the empty thought part
    that carried Claude's signature is left out. One substring test when there is none."""
    if body.find(_APEX_SIGNATURE_JSON) < 0:
        return body
    try:
        req = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body  # not for Apex to judge: the upstream answers it
    contents = req.get("contents") if isinstance(req, dict) else None
    for content in contents if isinstance(contents, list) else ():
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list):
            continue
        kept = []
        for part in parts:
            key = "thoughtSignature" if isinstance(part, dict) and "thoughtSignature" in part else "thought_signature"
            sig = part.get(key) if isinstance(part, dict) else None
            if isinstance(sig, str) and sig.startswith(_APEX_SIGNATURE):
                if part.get("thought") and not part.get("text"):
                    continue
                part[key] = FOREIGN_SIGNATURE
            kept.append(part)
        content["parts"] = kept
    return msgspec.json.encode(req)

_MARKERS: Final = (b'"usageMetadata"', b'"finishReason"', b'"error"', b'"blockReason"')


class StreamFlags(Protocol):
    """What an observer records (``PassthroughStream``'s attributes)."""

    usage: Usage | None
    finished: bool
    errored: bool


def gemini_body_usage(body: bytes) -> Usage | None:
    """The usage of a non-stream generateContent answer (None when it reports none).

    Raises msgspec.DecodeError / ValidationError when the body is not a Gemini response (an
    error object with a 200, or neither candidates nor promptFeedback: no answer at all)."""
    resp = decode_chunk_view(body)
    if resp.error is not None or (not resp.candidates and resp.prompt_feedback is None):
        raise msgspec.ValidationError("not a generateContent answer (an error, or no candidates)")
    return usage_from_gemini(resp.usage_metadata) if resp.usage_metadata is not None else None


def observe_gemini_chunk(data: bytes, flags: StreamFlags) -> None:
    """Record what one Gemini stream chunk tells (usage, finish, error) on ``flags``."""
    if not any(marker in data for marker in _MARKERS):
        return
    try:
        chunk = decode_chunk_view(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return
    if chunk.error is not None:
        flags.errored = True
    if chunk.usage_metadata is not None:
        flags.usage = usage_from_gemini(chunk.usage_metadata)
    if any(c.finish_reason for c in chunk.candidates) or (
            chunk.prompt_feedback is not None and chunk.prompt_feedback.block_reason):
        flags.finished = True
