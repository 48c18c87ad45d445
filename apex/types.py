"""Shared vocabulary: wire dialects, the Clock seam, token usage. Imports nothing from apex."""

from __future__ import annotations

import enum
import time
from typing import Final, Literal, Protocol, cast, final, get_args

import msgspec

__all__ = ["Clock", "Dialect", "DialectFamily", "MonotonicClock", "ProviderFamily", "Usage"]

# Which error and usage body shapes a dialect uses.
DialectFamily = Literal["openai", "anthropic", "gemini"]
# What an upstream speaks: a dialect family, Apex's in-process mock, or "local" (Apex
# answers itself, e.g. a count_tokens estimate: nothing is sent).
ProviderFamily = Literal["openai", "anthropic", "gemini", "mock", "local"]


class Dialect(enum.Enum):
    """One wire protocol of one endpoint, on either side of Apex."""

    OPENAI_CHAT = "openai_chat"              # POST {base}/chat/completions
    OPENAI_RESPONSES = "openai_responses"    # POST {base}/responses
    OPENAI_EMBEDDINGS = "openai_embeddings"  # POST {base}/embeddings
    ANTHROPIC_MESSAGES = "anthropic_messages"  # POST {base}/v1/messages
    ANTHROPIC_COUNT_TOKENS = "anthropic_count_tokens"  # POST {base}/v1/messages/count_tokens
    GEMINI_GENERATE = "gemini_generate"      # POST {base}/v1beta/models/{m}:generateContent | :streamGenerateContent?alt=sse
    GEMINI_EMBED = "gemini_embed"            # POST {base}/v1beta/models/{m}:batchEmbedContents
    GEMINI_COUNT_TOKENS = "gemini_count_tokens"  # POST {base}/v1beta/models/{m}:countTokens

    # Members are singletons compared by identity: hash them so too, in C. Enum's own
    # __hash__ is a Python call, paid ~3 times per request (plans and sets keyed by dialect).
    __hash__ = object.__hash__

    @property
    def family(self) -> DialectFamily:
        """'openai', 'anthropic' or 'gemini': which error body shape the dialect uses."""
        return _FAMILY[self]

    @property
    def counts_tokens(self) -> bool:
        """A token count: nothing is generated, no token is used (the providers count for free)."""
        return self is Dialect.ANTHROPIC_COUNT_TOKENS or self is Dialect.GEMINI_COUNT_TOKENS

    @property
    def embeds(self) -> bool:
        """An embeddings request: its tokens are all input."""
        return self is Dialect.OPENAI_EMBEDDINGS or self is Dialect.GEMINI_EMBED


def _family_of(dialect: Dialect) -> DialectFamily:
    prefix = dialect.value.split("_", 1)[0]
    for family in get_args(DialectFamily):
        if family == prefix:
            return cast(DialectFamily, family)
    raise AssertionError(f"dialect {dialect.value} names no known family")  # at import: a new dialect's typo


# Every dialect's family, from its value's prefix (a new dialect needs no entry here).
_FAMILY: Final[dict[Dialect, DialectFamily]] = {d: _family_of(d) for d in Dialect}


class Clock(Protocol):
    """Monotonic seconds; injected so pure modules never read the real clock in tests."""

    def __call__(self) -> float: ...


@final
class MonotonicClock:
    """The real clock."""

    def __call__(self) -> float:
        return time.monotonic()


class Usage(msgspec.Struct, kw_only=True):
    """Token usage in one normalised form (OpenAI meaning: prompt includes cached).

    ``prompt_tokens`` includes ``cached_tokens`` (cache reads) and ``cache_write_tokens``
    (Anthropic's cache creation, of which ``cache_write_1h_tokens`` were written with the
    one-hour TTL, priced apart); ``completion_tokens`` includes ``reasoning_tokens``.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0  # the part of cache_write_tokens written for an hour (Anthropic's ttl "1h")
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens
