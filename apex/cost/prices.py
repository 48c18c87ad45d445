"""Apex's built-in price table: list prices in USD per million tokens, taken on ``PRICES_DATE``.

Keys are the base model names the providers publish; ``apex.cost.pricing`` also finds a
dated or prefixed variant (``gpt-4o-2024-08-06``, ``claude-sonnet-4-20250514``,
``openai/gpt-4o`` on OpenRouter) under its base name. Prices change: the config's
``prices`` section (and ``channels[].prices`` for negotiated ones) overrides or extends
this table. Each row is ``(input, output, cache_read, cache_write)``; ``None`` for a cache
price the provider does not sell apart (it then costs what input costs). Reasoning tokens
are billed as output by every provider listed here. This module holds data only.
"""

from __future__ import annotations

from typing import Final

__all__ = ["BUILTIN_PRICES", "LOCAL_PROVIDERS", "PRICES_DATE"]

PRICES_DATE: Final = "2025-11-01"

# Providers that run on the operator's own hardware: their tokens cost nothing per token.
LOCAL_PROVIDERS: Final = frozenset({"ollama"})

_Row = tuple[float, float, float | None, float | None]

BUILTIN_PRICES: Final[dict[str, _Row]] = {
    # OpenAI (cached input is a read discount; no cache-write surcharge)
    "gpt-5": (1.25, 10.0, 0.125, None),
    "gpt-5-mini": (0.25, 2.0, 0.025, None),
    "gpt-5-nano": (0.05, 0.40, 0.005, None),
    "gpt-4.1": (2.0, 8.0, 0.50, None),
    "gpt-4.1-mini": (0.40, 1.60, 0.10, None),
    "gpt-4.1-nano": (0.10, 0.40, 0.025, None),
    "gpt-4o": (2.50, 10.0, 1.25, None),
    "gpt-4o-2024-05-13": (5.0, 15.0, None, None),  # the first gpt-4o snapshot kept its launch price
    "chatgpt-4o": (5.0, 15.0, None, None),  # chatgpt-4o-latest
    "gpt-4o-mini": (0.15, 0.60, 0.075, None),
    "gpt-4-turbo": (10.0, 30.0, None, None),
    # The GPT-4 Turbo previews are GPT-4 Turbo, not GPT-4 (which the suffix rules would make them).
    "gpt-4-turbo-preview": (10.0, 30.0, None, None),
    "gpt-4-1106-preview": (10.0, 30.0, None, None),
    "gpt-4-0125-preview": (10.0, 30.0, None, None),
    "gpt-4-vision-preview": (10.0, 30.0, None, None),
    "gpt-4": (30.0, 60.0, None, None),
    "gpt-3.5-turbo": (0.50, 1.50, None, None),
    "o1": (15.0, 60.0, 7.50, None),
    "o1-mini": (1.10, 4.40, 0.55, None),
    "o3": (2.0, 8.0, 0.50, None),
    "o3-mini": (1.10, 4.40, 0.55, None),
    "o4-mini": (1.10, 4.40, 0.275, None),
    "text-embedding-3-small": (0.02, 0.0, None, None),
    "text-embedding-3-large": (0.13, 0.0, None, None),
    "text-embedding-ada-002": (0.10, 0.0, None, None),
    # Anthropic (5-minute cache writes at 1.25x input, cache reads at 0.1x)
    "claude-opus-4-5": (5.0, 25.0, 0.50, 6.25),
    "claude-opus-4-1": (15.0, 75.0, 1.50, 18.75),
    "claude-opus-4": (15.0, 75.0, 1.50, 18.75),
    "claude-sonnet-4-5": (3.0, 15.0, 0.30, 3.75),
    "claude-sonnet-4": (3.0, 15.0, 0.30, 3.75),
    "claude-haiku-4-5": (1.0, 5.0, 0.10, 1.25),
    "claude-3-7-sonnet": (3.0, 15.0, 0.30, 3.75),
    "claude-3-5-sonnet": (3.0, 15.0, 0.30, 3.75),
    "claude-3-5-haiku": (0.80, 4.0, 0.08, 1.0),
    "claude-3-opus": (15.0, 75.0, 1.50, 18.75),
    "claude-3-haiku": (0.25, 1.25, 0.03, 0.30),
    # Google Gemini (prompts up to 200k tokens; cached content read price)
    "gemini-2.5-pro": (1.25, 10.0, 0.31, None),
    "gemini-2.5-flash": (0.30, 2.50, 0.075, None),
    "gemini-2.5-flash-lite": (0.10, 0.40, 0.025, None),
    "gemini-2.0-flash": (0.10, 0.40, 0.025, None),
    "gemini-2.0-flash-lite": (0.075, 0.30, None, None),
    "gemini-1.5-pro": (1.25, 5.0, None, None),
    "gemini-1.5-flash": (0.075, 0.30, None, None),
    "gemini-embedding-001": (0.15, 0.0, None, None),
    "text-embedding-004": (0.0, 0.0, None, None),
    # DeepSeek (cache hit = read price; cache miss = input)
    "deepseek-chat": (0.28, 0.42, 0.028, None),  # V3.2 list since 2025-09-29, both models
    "deepseek-reasoner": (0.28, 0.42, 0.028, None),
    # Moonshot, MiniMax
    "kimi-k2": (0.60, 2.50, 0.15, None),
    "moonshot-v1-8k": (0.20, 2.0, None, None),
    "MiniMax-M2": (0.30, 1.20, 0.03, None),
    "MiniMax-M1": (0.40, 2.20, None, None),
    # Groq
    "llama-3.3-70b-versatile": (0.59, 0.79, None, None),
    "llama-3.1-8b-instant": (0.05, 0.08, None, None),
    # Jina
    "jina-embeddings-v3": (0.02, 0.0, None, None),
}
