"""Cost of one request: the usage the upstream reported, priced on the model the channel served.

``PriceBook`` is built once per Snapshot from the config's ``prices`` (model glob -> price,
overriding the built-in table), each channel's own ``prices`` (negotiated, checked first)
and the built-in table. Look-ups are cached per (channel, upstream model), so the request
path pays one dict hit. ``Usage`` is normalised (prompt includes cache reads and writes,
completion includes reasoning), which is what makes cached tokens price right for every
family: Anthropic's ``input_tokens`` excludes cache reads/writes and OpenAI's
``prompt_tokens`` includes cached tokens, and both readers fold that into ``Usage``.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, final

import msgspec

from apex.config.model import Config, Price
from apex.cost.prices import BUILTIN_PRICES, LOCAL_PROVIDERS
from apex.routing.match import ModelMap
from apex.types import Usage

__all__ = ["PriceBook", "UnitPrice", "cost_of"]

_PER_TOKEN: Final = 1e-6
# Anthropic sells one-hour cache writes at 2x input and five-minute ones at 1.25x: a price
# that names only ``cache_write`` gets its one-hour writes at this multiple of it.
ONE_HOUR_WRITE: Final = 1.6
_CACHE_CAP: Final = 4096  # distinct (channel, model) look-ups remembered per Snapshot
# A dated or versioned suffix the providers add to a base name.
# Bedrock model ids: an optional cross-region prefix, the vendor, and a version suffix.
_CLOUD_VENDOR: Final = re.compile(r"^(?:(?:us|eu|apac|global|us-gov|jp|au|ca)\.)?(?:anthropic|meta|mistral|amazon|cohere|ai21|deepseek|openai|qwen|writer)\.")
_CLOUD_VERSION: Final = re.compile(r"-v\d+(?::\d+)?$")
# Anthropic's aliases end in "-0" (claude-sonnet-4-0, claude-opus-4-0: the 4 models).
_SUFFIX: Final = re.compile(r"(?:-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{4}|-latest|-preview(?:-[\w.-]*)?|-exp(?:-[\w.-]*)?|-\d{3}|-0)$")


class UnitPrice(msgspec.Struct, frozen=True, gc=False):
    """USD per token of each kind (already divided by a million)."""

    input: float
    output: float
    cache_read: float
    cache_write: float
    reasoning: float
    cache_write_1h: float

    @classmethod
    def per_million(cls, input: float, output: float, cache_read: float | None = None,
                    cache_write: float | None = None, reasoning: float | None = None,
                    cache_write_1h: float | None = None) -> UnitPrice:
        write = input if cache_write is None else cache_write
        return cls(
            input * _PER_TOKEN,
            output * _PER_TOKEN,
            (input if cache_read is None else cache_read) * _PER_TOKEN,
            write * _PER_TOKEN,
            (output if reasoning is None else reasoning) * _PER_TOKEN,
            (write * ONE_HOUR_WRITE if cache_write_1h is None else cache_write_1h) * _PER_TOKEN,
        )

    @classmethod
    def from_config(cls, p: Price) -> UnitPrice:
        cached = p.cached_input if p.cached_input is not None else p.cache_read
        return cls.per_million(p.input, p.output, cached, p.cache_write, p.reasoning, p.cache_write_1h)


_FREE: Final = UnitPrice(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
_BUILTIN: Final = {name: UnitPrice.per_million(*row) for name, row in BUILTIN_PRICES.items()}


def cost_of(usage: Usage, price: UnitPrice) -> float:
    """USD for ``usage`` at ``price``: uncached input, cache reads, cache writes (five-minute
    and one-hour apart), output and reasoning each at their own rate (reasoning is part of
    completion in ``Usage``)."""
    cached = usage.cached_tokens
    written = usage.cache_write_tokens
    uncached = usage.prompt_tokens - cached - written
    uncached = max(uncached, 0)
    hour = usage.cache_write_1h_tokens
    reasoning = usage.reasoning_tokens
    output = usage.completion_tokens - reasoning
    output = max(output, 0)
    return (uncached * price.input + cached * price.cache_read + (written - hour) * price.cache_write
            + hour * price.cache_write_1h + output * price.output + reasoning * price.reasoning)


def _builtin(model: str) -> UnitPrice | None:
    """The built-in price of ``model``, its vendor-prefix-free name, or a base name of it."""
    name = model.rsplit("/", 1)[-1]  # openrouter's "openai/gpt-4o", "models/gemini-2.0-flash", an ARN's profile
    name, variant = _split_variant(name)
    if variant == "free":
        return _FREE  # OpenRouter's free variants cost nothing
    name = name.split("@", 1)[0]  # Vertex: claude-sonnet-4@20250514
    name = _CLOUD_VENDOR.sub("", name)
    if name.startswith("claude-") and "." in name:  # OpenRouter: anthropic/claude-sonnet-4.5, claude-3.7-sonnet
        name = name.replace(".", "-")
    if name in _BUILTIN:  # a name that ends in a version of its own: jina-embeddings-v3
        return _BUILTIN[name]
    name = _CLOUD_VERSION.sub("", name)  # Bedrock: us.anthropic.claude-sonnet-4-20250514-v1:0
    for _ in range(3):
        hit = _BUILTIN.get(name)
        if hit is not None:
            return hit
        base = _SUFFIX.sub("", name)
        if base == name:
            break
        name = base
    return None


def _split_variant(name: str) -> tuple[str, str | None]:
    """OpenRouter's ``model:variant`` (``:free``, ``:nitro``, ``:online``, ``:thinking``...) ->
    (model, variant); a name without one as it is (Bedrock's ``-v1:0`` is a version, kept)."""
    base, sep, variant = name.rpartition(":")
    if sep and base and variant.isalpha():
        return base, variant
    return name, None


def _compile(prices: Mapping[str, Price]) -> ModelMap | None:
    # ModelMap: an exact name wins over globs, then globs in file order.
    if not prices:
        return None
    return ModelMap({pattern: pattern for pattern in prices})


@final
class PriceBook:
    """Every price the config and the built-in table know, looked up per (channel, model)."""

    __slots__ = ("_cache", "_channels", "_global", "_global_map", "_local")

    def __init__(self, config: Config) -> None:
        self._global = {k: UnitPrice.from_config(v) for k, v in config.prices.items()}
        self._global_map = _compile(config.prices)
        self._channels: dict[str, tuple[ModelMap, dict[str, UnitPrice]]] = {}
        self._local: frozenset[str] = frozenset(
            ch.name for ch in config.channels if ch.provider_type in LOCAL_PROVIDERS
        )
        for ch in config.channels:
            m = _compile(ch.prices)
            if m is not None:
                self._channels[ch.name] = (m, {k: UnitPrice.from_config(v) for k, v in ch.prices.items()})
        self._cache: dict[tuple[str | None, str], UnitPrice | None] = {}

    def price(self, channel: str | None, model: str, also: str | None = None) -> UnitPrice | None:
        """The price of ``model`` served by ``channel``; None when nobody knows it. ``also``, the
        name the client asked for, is priced when ``model`` has no price: an Azure deployment
        or a model_map alias (they were unpriced, so budgets never applied)."""
        found = self._cached(channel, model)
        if found is None and also is not None and also != model:
            return self._cached(channel, also)
        return found

    def _cached(self, channel: str | None, model: str) -> UnitPrice | None:
        key = (channel, model)
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = self._find(channel, model)
        if len(self._cache) < _CACHE_CAP:
            self._cache[key] = found
        return found

    def _find(self, channel: str | None, model: str) -> UnitPrice | None:
        if channel is not None:
            per = self._channels.get(channel)
            if per is not None:
                pattern = per[0].map(model)
                hit = per[1].get(pattern)
                if hit is not None:
                    return hit
        if self._global_map is not None:
            hit = self._global.get(self._global_map.map(model))
            if hit is not None:
                return hit
        if channel in self._local:
            return _FREE
        return _builtin(model)

    def cost(self, channel: str | None, model: str | None, usage: Usage, also: str | None = None) -> float | None:
        """USD for one request's usage; None when the model has no known price (``also``: see price)."""
        if model is None:
            return None
        price = self.price(channel, model, also)
        return None if price is None else cost_of(usage, price)
