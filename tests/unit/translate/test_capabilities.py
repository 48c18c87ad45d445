"""The model capability table: built-in rows, channel overrides, and the config that declares them."""

from __future__ import annotations

import json

import pytest

from apex.config.load import load_config_bytes
from apex.errors import ConfigError
from apex.translate.capabilities import NO_CAPS, CapabilityTable, override_row


@pytest.mark.parametrize(("family", "model", "reasons", "field", "knobs"), [
    ("openai", "gpt-5-mini", True, "max_completion_tokens", {"effort"}),
    ("openai", "gpt-5.1-codex", True, "max_completion_tokens", {"effort"}),
    ("openai", "o4-mini", True, "max_completion_tokens", {"effort"}),
    ("openai", "gpt-5-chat-latest", False, "max_tokens", set()),
    ("openai", "gpt-4.1", False, "max_tokens", set()),
    ("openai", "gpt-4o-2024-08-06", False, "max_tokens", set()),
    ("openai", "deepseek-reasoner", True, "max_tokens", set()),
    ("openai", "openai/gpt-oss-120b", True, "max_tokens", {"effort"}),  # Groq's and OpenRouter's name
    ("anthropic", "claude-opus-4-8", True, "max_tokens", {"budget", "adaptive"}),
    ("anthropic", "claude-sonnet-4-5-20250929", True, "max_tokens", {"budget"}),
    ("anthropic", "claude-3-5-haiku-latest", False, "max_tokens", set()),
    ("gemini", "gemini-2.5-flash", True, "max_tokens", {"budget"}),
    ("gemini", "gemini-2.0-flash", False, "max_tokens", set()),
])
def test_builtin_rows(family: str, model: str, reasons: bool, field: str, knobs: set[str]) -> None:
    """Each provider family's models get the reasoning, max-tokens field and knobs the real API takes."""
    caps = CapabilityTable(family).lookup(model)
    assert (caps.reasons, caps.max_tokens_field, set(caps.knobs)) == (reasons, field, knobs)


def test_unknown_model_is_unknown_and_efforts_snap() -> None:
    """No row: NO_CAPS (nothing mapped); an effort the model lacks snaps to the nearest it has."""
    assert CapabilityTable("openai").lookup("llama-3-70b") is NO_CAPS and not NO_CAPS.known
    gpt5 = CapabilityTable("openai").lookup("gpt-5")
    assert gpt5.effort("xhigh") == "high" and gpt5.effort("none") == "minimal" and gpt5.effort("low") == "low"
    assert CapabilityTable("anthropic").lookup("claude-opus-4-8").effort("xhigh") in ("high", "max")


def test_override_rows_come_first() -> None:
    """A channel row wins over the built-in one; omitted knobs default by family."""
    row = override_row("openai", "gpt-4.1*", reasons=True, max_tokens_field="max_completion_tokens",
                       knobs=None, efforts=None, json_schema=False)
    caps = CapabilityTable("openai", [row]).lookup("gpt-4.1-mini")
    assert caps.reasons and caps.max_tokens_field == "max_completion_tokens" and caps.knobs == {"effort"}
    off = override_row("anthropic", "claude-*", reasons=False, max_tokens_field=None, knobs=None, efforts=None,
                       json_schema=False)
    assert not CapabilityTable("anthropic", [off]).lookup("claude-opus-4-8").reasons


def test_config_capabilities_are_checked() -> None:
    """Unknown knobs, fields and bad globs in channels[].capabilities name their key path."""
    def cfg(row: dict[str, object]) -> bytes:
        return json.dumps({"channels": [{"name": "c", "provider_type": "mock", "capabilities": [row]}],
                           "routers": [{"name": "r", "channels": [{"name": "c"}]}]}).encode()
    ok = load_config_bytes(cfg({"model": "m-*", "reasons": True, "reasoning": ["adaptive"]}), {})
    assert ok.channels[0].capabilities[0].reasoning == ("adaptive",)
    cases: list[tuple[dict[str, object], str]] = [
        ({"model": "m[", "reasons": True}, "capabilities[0].model"),
        ({"model": "m", "reasoning": ["turbo"]}, "reasoning"),
        ({"model": "m", "max_tokens_field": "max_output"}, "max_tokens_field"),
        ({"model": "m", "speed": 1}, "speed")]
    for bad, where in cases:
        with pytest.raises(ConfigError) as caught:
            load_config_bytes(cfg(bad), {})
        assert where in str(caught.value)
