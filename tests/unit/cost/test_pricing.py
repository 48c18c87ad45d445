"""PriceBook and cost_of: built-in table, config and channel overrides, cached tokens per family."""

from __future__ import annotations

import json

import pytest

from apex.config.load import load_config_bytes
from apex.cost import BUILTIN_PRICES, PRICES_DATE, PriceBook, UnitPrice, cost_of
from apex.errors import ConfigError
from apex.translate.passthrough import body_usage
from apex.types import Dialect, Usage


def _book(**cfg: object) -> PriceBook:
    base: dict[str, object] = {"channels": [{"name": "c", "provider_type": "mock"}]}
    base.update(cfg)
    return PriceBook(load_config_bytes(json.dumps(base).encode()))


def test_table_has_a_date_and_every_family() -> None:
    """The built-in table says when it was taken and prices OpenAI, Anthropic, Gemini and DeepSeek models."""
    assert len(PRICES_DATE) == 10 and PRICES_DATE[4] == "-"
    for name in ("gpt-4o", "claude-sonnet-4", "gemini-2.5-flash", "deepseek-chat"):
        assert name in BUILTIN_PRICES


def test_dated_and_prefixed_names_find_their_base_price() -> None:
    """gpt-4o-2024-08-06, claude-sonnet-4-20250514 and openai/gpt-4o-mini price as their base model; unknown is None."""
    book = _book()
    assert book.price("c", "gpt-4o-2024-08-06") == book.price("c", "gpt-4o")
    assert book.price("c", "claude-sonnet-4-20250514") == UnitPrice.per_million(3.0, 15.0, 0.30, 3.75)
    assert book.price("c", "openai/gpt-4o-mini") == UnitPrice.per_million(0.15, 0.60, 0.075)
    assert book.price("c", "my-own-model") is None
    # A name whose own version looks like Bedrock's -v1:0 suffix keeps it (jina's was never priced).
    assert book.price("c", "jina-embeddings-v3") == UnitPrice.per_million(0.02, 0.0)
    assert book.price("c", "us.anthropic.claude-sonnet-4-20250514-v1:0") == book.price("c", "claude-sonnet-4")
    assert book.cost("c", "my-own-model", Usage(prompt_tokens=5)) is None


def test_openai_cached_tokens_are_part_of_prompt_tokens() -> None:
    """OpenAI's prompt_tokens includes cached tokens: those are priced at the cached rate, the rest at input."""
    body = json.dumps({"choices": [], "usage": {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000,
                                 "prompt_tokens_details": {"cached_tokens": 400_000}}}).encode()
    usage = body_usage(Dialect.OPENAI_CHAT, body)
    assert usage is not None
    cost = _book().cost("c", "gpt-4o", usage)
    assert cost == pytest.approx(0.6 * 2.50 + 0.4 * 1.25 + 10.0)


def test_anthropic_input_tokens_exclude_cache_reads_and_writes() -> None:
    """Anthropic's input_tokens excludes cache reads and writes: each of the three priced at its own rate."""
    body = json.dumps({"type": "message", "usage": {"input_tokens": 1_000_000, "cache_read_input_tokens": 2_000_000,
                                                    "cache_creation_input_tokens": 1_000_000,
                                                    "output_tokens": 1_000_000}}).encode()
    usage = body_usage(Dialect.ANTHROPIC_MESSAGES, body)
    assert usage is not None and usage.prompt_tokens == 4_000_000 and usage.cache_write_tokens == 1_000_000
    cost = _book().cost("c", "claude-sonnet-4-20250514", usage)
    assert cost == pytest.approx(3.0 + 2 * 0.30 + 3.75 + 15.0)


def test_one_hour_cache_writes_default_to_1_6x_the_cache_write_price() -> None:
    """A price naming only cache_write prices one-hour writes at 1.6x it (Anthropic's 2x vs 1.25x input)."""
    usage = Usage(prompt_tokens=3_000_000, cache_write_tokens=3_000_000, cache_write_1h_tokens=1_000_000)
    assert cost_of(usage, UnitPrice.per_million(3.0, 15.0, 0.30, 3.75)) == pytest.approx(2 * 3.75 + 6.0)
    assert cost_of(usage, UnitPrice.per_million(3.0, 15.0, 0.30, 3.75, cache_write_1h=5.0)) == pytest.approx(2 * 3.75 + 5.0)


def test_reasoning_priced_apart_only_when_configured() -> None:
    """Reasoning tokens are output tokens unless the price names a reasoning rate."""
    usage = Usage(prompt_tokens=0, completion_tokens=1_000_000, reasoning_tokens=600_000)
    assert cost_of(usage, UnitPrice.per_million(1.0, 10.0)) == pytest.approx(10.0)
    assert cost_of(usage, UnitPrice.per_million(1.0, 10.0, reasoning=20.0)) == pytest.approx(4.0 + 12.0)


def test_config_prices_override_and_channel_prices_win() -> None:
    """prices overrides the table by glob (exact first); a channel's own prices win over both."""
    book = _book(
        prices={"gpt-4o*": {"input": 1.0, "output": 2.0}, "gpt-4o-mini": {"input": 0.5, "output": 0.5},
                "local-*": {"input": 0, "output": 0}},
        channels=[{"name": "c", "provider_type": "mock"},
                  {"name": "neg", "provider_type": "mock", "prices": {"gpt-*": {"input": 0.1, "output": 0.1}}},
                  {"name": "ol", "provider_type": "ollama", "base_url": "http://127.0.0.1:11434"}],
    )
    assert book.price("c", "gpt-4o-2024-08-06") == UnitPrice.per_million(1.0, 2.0)
    assert book.price("c", "gpt-4o-mini") == UnitPrice.per_million(0.5, 0.5)
    assert book.price("neg", "gpt-4o") == UnitPrice.per_million(0.1, 0.1)
    assert book.price("neg", "claude-3-haiku") == book.price("c", "claude-3-haiku")
    assert book.price("c", "local-llama") == UnitPrice.per_million(0.0, 0.0)
    assert book.cost("ol", "llama3", Usage(prompt_tokens=10, completion_tokens=10)) == 0.0


def test_bad_prices_are_config_errors() -> None:
    """A negative price or a broken glob is rejected naming its key path."""
    with pytest.raises(ConfigError) as bad:
        load_config_bytes(b'{"prices": {"gpt-4o": {"input": -1}}}')
    assert bad.value.path == "prices.gpt-4o.input"
    with pytest.raises(ConfigError) as glob:
        load_config_bytes(b'{"prices": {"gpt-[4o": {"input": 1}}}')
    assert glob.value.path == "prices.gpt-[4o"


def test_the_specs_cached_input_key_prices_cached_tokens() -> None:
    """spec 7 pins ``cached_input``; ``cache_read`` (the earlier name) still works; both is refused."""
    usage = Usage(prompt_tokens=1_000_000, cached_tokens=400_000)
    for key in ("cached_input", "cache_read"):
        book = _book(prices={"house-*": {"input": 2.0, "output": 8.0, key: 0.5}})
        assert book.cost("c", "house-1", usage) == pytest.approx(0.6 * 2.0 + 0.4 * 0.5)
    with pytest.raises(ConfigError, match="cached_input and cache_read are the same price"):
        _book(prices={"house-*": {"input": 2.0, "cached_input": 0.5, "cache_read": 0.5}})


@pytest.mark.parametrize("cloud_id", ["us.anthropic.claude-sonnet-4-20250514-v1:0", "anthropic.claude-sonnet-4-20250514-v1:0",
                                      "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-20250514-v1:0",
                                      "claude-sonnet-4@20250514"])
def test_bedrock_and_vertex_ids_find_their_models_price(cloud_id: str) -> None:
    """Claude through Bedrock or Vertex is priced as Claude (it was unpriced: cost null and
    team budgets never applied on those channels)."""
    book = _book()
    assert book.price("c", cloud_id) == book.price("c", "claude-sonnet-4") is not None


@pytest.mark.parametrize(("name", "same_as"), [
    ("claude-sonnet-4-0", "claude-sonnet-4"),  # Anthropic's own aliases of the 4 models
    ("claude-opus-4-0", "claude-opus-4"),
    ("anthropic/claude-sonnet-4.5", "claude-sonnet-4-5"),  # OpenRouter's dotted Claude ids
    ("anthropic/claude-opus-4.1", "claude-opus-4-1"),
    ("anthropic/claude-3.7-sonnet", "claude-3-7-sonnet"),
])
def test_names_real_clients_send_are_priced(name: str, same_as: str) -> None:
    """These names were unpriced (cost null), so a team's budget never charged them."""
    book = _book()
    assert book.price("c", name) == book.price("c", same_as) is not None


@pytest.mark.parametrize(("name", "per_million"), [
    ("gpt-4o-2024-05-13", (5.0, 15.0)),   # was gpt-4o's 2.5 / 10
    ("gpt-4-1106-preview", (10.0, 30.0)),  # GPT-4 Turbo previews: were gpt-4's 30 / 60
    ("gpt-4-0125-preview", (10.0, 30.0)),
    ("gpt-4-0613", (30.0, 60.0)),
    ("gpt-4o-2024-08-06", (2.5, 10.0)),
])
def test_snapshots_with_their_own_price_are_not_priced_as_their_base(name: str, per_million: tuple[float, float]) -> None:
    price = _book().price("c", name)
    assert price is not None
    assert (round(price.input * 1e6, 6), round(price.output * 1e6, 6)) == per_million


@pytest.mark.parametrize(("name", "same_as"), [
    ("anthropic/claude-sonnet-4.5:nitro", "claude-sonnet-4-5"),  # OpenRouter's variants
    ("openai/gpt-4o:online", "gpt-4o"),
    ("anthropic/claude-3.7-sonnet:thinking", "claude-3-7-sonnet"),
])
def test_openrouter_variants_take_their_models_price(name: str, same_as: str) -> None:
    """They were unpriced (cost null, no budget charged)."""
    book = _book()
    assert book.price("c", name) == book.price("c", same_as) is not None


def test_openrouter_free_variants_cost_nothing() -> None:
    price = _book().price("c", "meta-llama/llama-3.3-70b-instruct:free")
    assert price is not None and price.input == price.output == 0
