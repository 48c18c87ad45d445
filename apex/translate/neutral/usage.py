"""Token usage: one reader per upstream vocabulary, and the writers (docs/protocols.md 8.6).

Every path reads usage here, translated or passed through, so metrics, the access log and
TPM settlement never depend on which path a request took. ``Usage`` has OpenAI meaning:
``prompt_tokens`` INCLUDES cached tokens. Anthropic's ``input_tokens`` excludes cache reads
and cache writes, so reading Anthropic sums them and writing Anthropic subtracts the
cached part (cache writes are unknown on non-Anthropic upstreams: reported as 0). Readers
accept null/absent fields as 0. What this module must not do: decide whether a client gets
usage (that is the writers' business).
"""

from __future__ import annotations

from typing import final

from apex.types import Usage
from apex.wire.anthropic import UsageView
from apex.wire.gemini import UsageMetadata
from apex.wire.openai import ChatUsage, ResponsesUsage

__all__ = [
    "AnthropicUsageTally",
    "anthropic_usage_body",
    "openai_usage_body",
    "responses_usage_body",
    "usage_from_anthropic",
    "usage_from_gemini",
    "usage_from_openai",
    "usage_from_responses",
]


@final
class AnthropicUsageTally:
    """Anthropic usage over one stream: each count is cumulative and a field an event leaves
    out keeps its earlier value (message_delta may carry only ``output_tokens``, or only
    ``cache_creation_input_tokens``), so the four counts are kept apart and summed on read."""

    __slots__ = ("_input", "_output", "_read", "_write", "_write_1h")

    def __init__(self) -> None:
        self._input = self._output = self._read = self._write = self._write_1h = 0

    def add(self, view: UsageView) -> Usage:
        """Take ``view``'s counts (absent or null ones keep their value); the total so far."""
        if view.input_tokens is not None:
            self._input = view.input_tokens
        if view.output_tokens is not None:
            self._output = view.output_tokens
        if view.cache_read_input_tokens is not None:
            self._read = view.cache_read_input_tokens
        if view.cache_creation_input_tokens is not None:
            self._write = view.cache_creation_input_tokens
        by_ttl = view.cache_creation
        if by_ttl is not None and by_ttl.ephemeral_1h_input_tokens is not None:
            self._write_1h = by_ttl.ephemeral_1h_input_tokens
        return Usage(prompt_tokens=self._input + self._read + self._write,
                     completion_tokens=self._output, cached_tokens=self._read, cache_write_tokens=self._write,
                     cache_write_1h_tokens=min(self._write_1h, self._write))


def usage_from_anthropic(view: UsageView) -> Usage:
    """One Anthropic usage object (a whole body's) -> Usage."""
    return AnthropicUsageTally().add(view)


def usage_from_openai(view: ChatUsage) -> Usage:
    """OpenAI Chat usage -> Usage. DeepSeek reports cache hits as ``prompt_cache_hit_tokens``
    and may send ``cached_tokens: 0`` beside them: a zero there does not hide the hits."""
    cached = view.prompt_tokens_details.cached_tokens if view.prompt_tokens_details else None
    if not cached:
        cached = view.prompt_cache_hit_tokens or view.cached_tokens  # DeepSeek's, Moonshot's
    details = view.completion_tokens_details
    return Usage(
        prompt_tokens=view.prompt_tokens or 0,
        completion_tokens=view.completion_tokens or 0,
        cached_tokens=cached or 0,
        reasoning_tokens=(details.reasoning_tokens if details else None) or 0,
    )


def usage_from_responses(view: ResponsesUsage) -> Usage:
    """OpenAI Responses usage (``input``/``output`` names) -> Usage."""
    cached = view.input_tokens_details.cached_tokens if view.input_tokens_details else None
    reasoning = view.output_tokens_details.reasoning_tokens if view.output_tokens_details else None
    return Usage(
        prompt_tokens=view.input_tokens or 0,
        completion_tokens=view.output_tokens or 0,
        cached_tokens=cached or 0,
        reasoning_tokens=reasoning or 0,
    )


def usage_from_gemini(meta: UsageMetadata | None, estimated_prompt: int = 0) -> Usage:
    """Gemini usageMetadata -> Usage (completion = candidates + thoughts, 8.6); without
    metadata, the prompt estimate, marked estimated."""
    if meta is None:
        return Usage(prompt_tokens=estimated_prompt, estimated=True)
    return Usage(
        prompt_tokens=meta.prompt_token_count + meta.tool_use_prompt_token_count,
        completion_tokens=meta.candidates_token_count + meta.thoughts_token_count,
        cached_tokens=meta.cached_content_token_count,
        reasoning_tokens=meta.thoughts_token_count,
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
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": usage.cache_write_tokens},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }
