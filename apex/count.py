"""Token counts Apex answers itself: for a channel without a count endpoint, and as the mock
provider's own answer. The body is checked as the providers check it (Anthropic wants
``messages``, a list of messages; Gemini ``contents``, a list of contents, or a
``generateContentRequest``; both want UTF-8: an estimate answered 200 to anything), then
answered in the dialect's shape with the estimate."""

from __future__ import annotations

from typing import Final

import msgspec

from apex.errors import InvalidRequest
from apex.types import Dialect
from apex.wire.request import CountContent, CountGenerateRequest, CountMessage

__all__ = ["count_answer"]

_REQUIRED: Final = {Dialect.ANTHROPIC_COUNT_TOKENS: ("messages",),
                    Dialect.GEMINI_COUNT_TOKENS: ("contents", "generateContentRequest", "generate_content_request")}
_TOP: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
# The shape each field must have, checked only where the estimate answers (a provider's own
# count endpoint checks for itself); the rest of the body is the provider's to refuse.
_SHAPES: Final[dict[str, msgspec.json.Decoder[object]]] = {
    "messages": msgspec.json.Decoder(list[CountMessage]),
    "contents": msgspec.json.Decoder(list[CountContent]),
    "generateContentRequest": msgspec.json.Decoder(CountGenerateRequest),
    "generate_content_request": msgspec.json.Decoder(CountGenerateRequest),
}


def count_answer(dialect: Dialect, body: bytes, tokens: int) -> dict[str, int]:
    """``{"input_tokens": n}`` (Anthropic) or ``{"totalTokens": n}`` (Gemini) for a count
    request of ``dialect``; InvalidRequest when the body lacks what the provider requires."""
    try:
        top = _TOP.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"request body is not a JSON object: {exc}") from exc
    fields = _REQUIRED.get(dialect, ())
    if fields and not any(f in top for f in fields):
        raise InvalidRequest(f"{fields[0]}: Field required", param=fields[0])
    try:  # msgspec skips what the decodes above did not read without checking its UTF-8
        body.decode()
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"request body is not valid UTF-8 (byte {exc.start})") from exc
    for field in fields:
        if field in top:
            try:
                _SHAPES[field].decode(top[field])
            except msgspec.ValidationError as exc:
                raise InvalidRequest(f"{field}: {exc}", param=field) from exc
    return {"totalTokens": tokens} if dialect is Dialect.GEMINI_COUNT_TOKENS else {"input_tokens": tokens}
