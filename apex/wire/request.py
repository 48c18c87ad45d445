"""Views of a client request body that hold for every dialect (the names the APIs share).

``RequestView`` is what the pipeline reads of every request (model, stream, token caps);
everything else is forwarded untouched or read by the direction that translates it (the
per-dialect request views live in ``wire.openai`` and ``wire.anthropic``). What this module
must not do: translate or import from apex.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = [
    "CountContent",
    "CountGenerateRequest",
    "CountMessage",
    "LooseGeminiBatchEmbed",
    "LooseGeminiContent",
    "LooseGeminiEmbed",
    "LooseGeminiGeneration",
    "LooseGeminiPart",
    "LooseGeminiRequest",
    "LooseMessage",
    "LooseRequest",
    "RequestView",
    "StreamOptions",
    "TokenLimit",
]

# An output limit as Apex reads it for the rate limit and budgets: a negative one charged a
# team's bucket minus a trillion tokens (then 19 years of 429s once settled), and a
# 400-digit one overflowed the cost estimate into a 500. Real APIs refuse both with a 400.
TokenLimit = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]


class StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class RequestView(msgspec.Struct):
    """The only fields Apex reads from a request body; the rest is forwarded untouched."""

    model: str | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    encoding_format: str | None = None
    max_tokens: TokenLimit | None = None
    max_completion_tokens: TokenLimit | None = None
    max_output_tokens: TokenLimit | None = None


class LooseMessage(msgspec.Struct):
    """One message of any dialect, content left as decoded JSON."""

    role: str = ""
    content: object = None


class LooseRequest(msgspec.Struct):
    """Any dialect's request read loosely, for the in-process mock upstream that answers from it."""

    model: str = ""
    stream: bool = False
    messages: list[LooseMessage] = []
    input: object = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    max_output_tokens: int | None = None
    encoding_format: str | None = None
    dimensions: int | None = None
    stream_options: dict[str, object] | None = None


# --- Gemini requests read loosely, for the mock upstream ---


class LooseGeminiPart(msgspec.Struct):
    text: str | None = None


class LooseGeminiContent(msgspec.Struct):
    parts: list[LooseGeminiPart] = []
    role: str = "user"


class LooseGeminiGeneration(msgspec.Struct, rename="camel"):
    max_output_tokens: int | float | None = None  # 1024.0 is 1024 to Gemini (proto3 JSON)


class LooseGeminiRequest(msgspec.Struct, rename="camel"):
    contents: list[LooseGeminiContent] = []
    generation_config: LooseGeminiGeneration | None = None


class LooseGeminiEmbed(msgspec.Struct, rename="camel"):
    content: LooseGeminiContent
    output_dimensionality: int | None = None


class LooseGeminiBatchEmbed(msgspec.Struct):
    requests: list[LooseGeminiEmbed]


# --- Token-count requests: the shapes Anthropic and Gemini check before they count ---


class CountMessage(msgspec.Struct):
    role: str  # not only user/assistant: Claude Code sends a mid-conversation system message
    content: str | list[dict[str, object]]


class CountContent(msgspec.Struct):
    parts: list[dict[str, object]] = []
    role: str | None = None


class CountGenerateRequest(msgspec.Struct):
    contents: list[CountContent] = []
