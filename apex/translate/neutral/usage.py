"""Token usage between dialects (docs/protocols.md 8.6), always via ``apex.types.Usage``.

``Usage`` has OpenAI meaning: ``prompt_tokens`` INCLUDES cached tokens. Anthropic's
``input_tokens`` excludes cache reads and cache writes, so reading Anthropic sums them and
writing Anthropic subtracts the cached part (cache writes are unknown on non-Anthropic
upstreams: reported as 0). Readers accept null/absent fields as 0. What this module must
not do: decide whether a client gets usage (that is the writers' business).
"""

from __future__ import annotations

from apex.types import Usage
from apex.wire.anthropic import UsageView
from apex.wire.openai import ChatUsage

__all__ = [
    "anthropic_usage_body",
    "openai_usage_body",
    "responses_usage_body",
    "usage_from_anthropic",
    "usage_from_openai",
]


def usage_from_anthropic(view: UsageView, previous: Usage | None = None) -> Usage:
    """Anthropic usage -> Usage; fields absent in ``view`` keep ``previous`` values
    (message_delta may carry only ``output_tokens``; values are cumulative, never added)."""
    prev = previous or Usage()
    read = view.cache_read_input_tokens
    write = view.cache_creation_input_tokens
    if view.input_tokens is None and read is None and write is None:
        prompt, cached, written = prev.prompt_tokens, prev.cached_tokens, prev.cache_write_tokens
    else:
        cached = read if read is not None else prev.cached_tokens
        written = write if write is not None else prev.cache_write_tokens
        prompt = (view.input_tokens or 0) + (read or 0) + (write or 0)
    completion = view.output_tokens if view.output_tokens is not None else prev.completion_tokens
    return Usage(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached,
                 reasoning_tokens=prev.reasoning_tokens, cache_write_tokens=written)


def usage_from_openai(view: ChatUsage) -> Usage:
    """OpenAI Chat usage (with DeepSeek's cache-hit field as a fallback) -> Usage."""
    cached = view.prompt_tokens_details.cached_tokens if view.prompt_tokens_details else None
    if cached is None:
        cached = view.prompt_cache_hit_tokens
    details = view.completion_tokens_details
    return Usage(
        prompt_tokens=view.prompt_tokens or 0,
        completion_tokens=view.completion_tokens or 0,
        cached_tokens=cached or 0,
        reasoning_tokens=(details.reasoning_tokens if details else None) or 0,
    )


def openai_usage_body(usage: Usage) -> dict[str, object]:
    """Usage -> OpenAI Chat ``usage`` object."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def anthropic_usage_body(usage: Usage) -> dict[str, object]:
    """Usage -> Anthropic ``usage`` object (input excludes cache reads)."""
    return {
        "input_tokens": max(usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens, 0),
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "output_tokens": usage.completion_tokens,
    }


def responses_usage_body(usage: Usage) -> dict[str, object]:
    """Usage -> OpenAI Responses ``usage`` object."""
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }
