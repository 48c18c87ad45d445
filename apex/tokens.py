"""Cheap prompt-token estimates for any request body Apex accepts; no tokenizer, no I/O.

Used where no upstream count exists: Anthropic ``count_tokens`` on non-Anthropic channels,
the up-front ``tpm`` charge of the rate limiter, and the ``input_tokens`` Apex puts into a
translated Anthropic ``message_start``. The rule, deliberately simple and fast (one msgspec
decode, one walk): text costs ``ceil(ascii_chars / 4 + other_chars * 2/3)`` tokens (about
right for English and code; CJK text runs near one token per character); every object
with a ``role`` (a message or turn) adds 4; an image or other inline binary adds a flat
``IMAGE_TOKENS``; tool definitions and schemas cost their compact JSON length / 4; ids,
model names, roles, signatures and other plumbing cost nothing; 3 tokens prime the reply.
Estimates are for budgeting, never billing. What this module must not do: import from
apex or read numbers as tokens (``max_tokens`` is the caller's business).
"""

from __future__ import annotations

import math
from typing import Final

import msgspec

__all__ = ["IMAGE_TOKENS", "estimate_tokens", "estimate_text_tokens"]

IMAGE_TOKENS: Final = 800      # between OpenAI's 765 (1024px tile) and Anthropic's ~1600 max
_MESSAGE_OVERHEAD: Final = 4
_REPLY_PRIMING: Final = 3

# Plumbing values that never reach the model as text.
_SKIP_KEYS: Final = frozenset({
    "model", "role", "type", "id", "tool_call_id", "tool_use_id", "call_id", "signature",
    "thoughtSignature", "thought_signature", "encoding_format", "media_type", "mime_type",
    "mimeType", "detail", "cache_control", "metadata", "user", "service_tier",
    "stream_options", "reasoning_effort", "previous_response_id", "format",
})
# Subtrees that are JSON schemas or definitions: charged by their serialized size.
_SCHEMA_KEYS: Final = frozenset({
    "tools", "functions", "response_format", "functionDeclarations", "tool_choice",
    "toolConfig", "responseJsonSchema", "responseSchema",
})
# Inline binary payloads (base64 images, audio, PDFs) and data URLs.
_BINARY_KEYS: Final = frozenset({"data", "inlineData", "inline_data", "file_data", "input_audio"})

_DECODER: Final = msgspec.json.Decoder()
_ENCODER: Final = msgspec.json.Encoder()


def estimate_text_tokens(text: str) -> int:
    """Estimated tokens of one piece of text (0 for the empty string)."""
    if not text:
        return 0
    if text.isascii():
        return -(-len(text) // 4)
    ascii_chars = len(text.encode("ascii", "ignore"))
    return math.ceil(ascii_chars / 4 + (len(text) - ascii_chars) * 2 / 3)


def estimate_tokens(body: bytes) -> int:
    """Estimated prompt tokens of a request body in any supported dialect.

    A body that is not JSON is estimated as plain text; never raises.
    """
    try:
        tree = _DECODER.decode(body)
    except (msgspec.DecodeError, RecursionError):  # msgspec refuses ~1,000 levels of nesting this way
        return estimate_text_tokens(body.decode("utf-8", "replace"))
    return _walk(tree) + _REPLY_PRIMING


def _walk(root: object) -> int:
    """The estimate for a decoded JSON tree, walked with a stack of its own: a body nested a
    thousand levels deep (hostile, or a fuzzer's) must not reach Python's recursion limit."""
    total = 0
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if node.startswith("data:") and ";base64," in node[:100]:
                total += IMAGE_TOKENS
            else:
                total += estimate_text_tokens(node)
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if "role" in node:
                total += _MESSAGE_OVERHEAD
            for key, value in node.items():
                if key in _SKIP_KEYS:
                    continue
                if key in _BINARY_KEYS:
                    total += IMAGE_TOKENS
                elif key in _SCHEMA_KEYS:
                    total += -(-len(_ENCODER.encode(value)) // 4)  # decodable, so not too deep to encode
                else:
                    stack.append(value)
        # numbers, booleans, null: parameters, not prompt
    return total
