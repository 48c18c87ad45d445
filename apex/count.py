"""Token counts Apex answers itself: for a channel without a count endpoint, and as the mock
provider's own answer. The body is checked as the providers check it (Anthropic wants
``messages``; Gemini ``contents`` or a ``generateContentRequest``: an estimate answered 200
to anything), then answered in the dialect's shape with the estimate."""

from __future__ import annotations

from typing import Final

import msgspec

from apex.errors import InvalidRequest
from apex.types import Dialect

__all__ = ["count_answer"]

_REQUIRED: Final = {Dialect.ANTHROPIC_COUNT_TOKENS: ("messages",),
                    Dialect.GEMINI_COUNT_TOKENS: ("contents", "generateContentRequest", "generate_content_request")}
_TOP: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])


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
    return {"totalTokens": tokens} if dialect is Dialect.GEMINI_COUNT_TOKENS else {"input_tokens": tokens}
