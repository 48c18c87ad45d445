"""Tests for apex.tokens: cheap prompt-token estimates."""

from __future__ import annotations

import json

import pytest

from apex.tokens import IMAGE_TOKENS, estimate_text_tokens, estimate_tokens


def test_text_estimate_is_a_quarter_of_ascii_characters() -> None:
    """ASCII text costs one token per four characters, rounded up."""
    assert estimate_text_tokens("") == 0
    assert estimate_text_tokens("abcd") == 1
    assert estimate_text_tokens("abcde") == 2


def test_cjk_text_costs_more_per_character() -> None:
    """Non-ASCII characters cost more than ASCII ones, so CJK prompts are not underestimated."""
    assert estimate_text_tokens("你好世界你好") >= 4
    assert estimate_text_tokens("你好世界你好") > estimate_text_tokens("abcdef")


def test_openai_chat_body_counts_text_and_message_overhead() -> None:
    """An OpenAI body costs its message text plus per-message overhead, not the model name."""
    text = "hello world " * 10
    one = estimate_tokens(json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}).encode())
    two = estimate_tokens(json.dumps({"model": "x" * 400, "messages": [
        {"role": "user", "content": text}, {"role": "assistant", "content": text}]}).encode())
    assert one == estimate_text_tokens(text) + 4 + 3
    assert two == 2 * (estimate_text_tokens(text) + 4) + 3


def test_images_cost_a_flat_amount_whatever_their_size() -> None:
    """A base64 image is charged IMAGE_TOKENS, not its base64 length / 4."""
    url = "data:image/png;base64," + "A" * 100_000
    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}
    anth = {"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 100_000}}]}]}
    assert estimate_tokens(json.dumps(body).encode()) == IMAGE_TOKENS + 4 + 3
    assert estimate_tokens(json.dumps(anth).encode()) == IMAGE_TOKENS + 4 + 3


def test_tools_are_charged_by_schema_size() -> None:
    """Tool definitions add roughly their JSON length / 4."""
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "description": "x" * 400}}}}}]
    base = {"messages": [{"role": "user", "content": "hi"}]}
    assert estimate_tokens(json.dumps({**base, "tools": tools}).encode()) - estimate_tokens(
        json.dumps(base).encode()) >= 100


def test_non_json_body_is_estimated_as_text() -> None:
    """A body that is not JSON is estimated as plain text instead of raising."""
    assert estimate_tokens(b"abcdefgh{") == 3


def test_a_large_body_is_estimated() -> None:
    """A 1 MB conversation is estimated (its speed is a benchmark's business, not a test's:
    a time limit here failed on a loaded machine)."""
    msgs = [{"role": "user", "content": "word " * 200} for _ in range(1000)]
    body = json.dumps({"messages": msgs}).encode()
    assert estimate_tokens(body) > 200_000


@pytest.mark.parametrize("depth", [600, 950, 5_000])
def test_deep_nesting_is_estimated_without_recursion(depth: int) -> None:
    """Nesting deeper than a recursive walk survives (~500 levels), up to msgspec's own limit
    (~1,000, past which the body is estimated as plain text): an estimate, never an exception."""
    body = b'{"model":"m","messages":' + b"[" * depth + b'"hello world"' + b"]" * depth + b"}"
    assert estimate_tokens(body) > 0
