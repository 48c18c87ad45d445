"""Property: translated stream output does not depend on how upstream bytes were chunked."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apex.translate.directions.anthropic_to_openai import AnthropicToOpenAI
from apex.translate.base import Translator
from apex.translate.directions.openai_to_anthropic import OpenAIToAnthropic
from apex.translate.directions.responses_to_anthropic import ResponsesToAnthropic
from apex.translate.directions.responses_to_openai import ResponsesToOpenAI
from tests.chunking import split_at
from tests.golden.transcript import capture, feed_bytes, make_ctx

CASES: list[tuple[Translator, str]] = [
    (OpenAIToAnthropic(), "anthropic_messages_stream_tool_use.sse"),
    (OpenAIToAnthropic(), "anthropic_messages_stream_thinking.sse"),
    (ResponsesToAnthropic(), "anthropic_messages_stream_tool_use.sse"),
    (AnthropicToOpenAI(), "openai_chat_stream_tool_calls.sse"),
    (AnthropicToOpenAI(), "openrouter_chat_stream_error_chunk.sse"),
    (AnthropicToOpenAI(), "groq_chat_stream_midstream_error.sse"),
    (ResponsesToOpenAI(), "openai_chat_stream_tool_calls.sse"),
]


@pytest.mark.parametrize(("translator", "name"), CASES, ids=[f"{t.client.value}<-{n}" for t, n in CASES])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=40))
def test_rechunking_keeps_output(translator: Translator, name: str, cuts: list[int]) -> None:
    """Any split of the upstream bytes gives byte-identical client output."""
    data = capture(name)
    whole = feed_bytes(translator.stream(make_ctx(include_usage=True)), [data])
    pieces = feed_bytes(translator.stream(make_ctx(include_usage=True)), split_at(data, cuts))
    assert pieces == whole


@pytest.mark.parametrize(("translator", "name"), CASES[:1] + CASES[3:4])
def test_byte_by_byte(translator: Translator, name: str) -> None:
    """Feeding one byte at a time gives the same output as one piece."""
    data = capture(name)
    whole = feed_bytes(translator.stream(make_ctx()), [data])
    assert feed_bytes(translator.stream(make_ctx()), [data[i:i + 1] for i in range(len(data))]) == whole
