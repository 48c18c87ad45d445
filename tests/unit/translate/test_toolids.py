"""Tool-id and tool-name fitting, and argument normalization (P4, P11)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apex.translate.neutral.toolids import (
    ANTHROPIC_NAMES,
    GEMINI_NAMES,
    OPENAI_NAMES,
    NameRule,
    anthropic_tool_id,
    arguments_object,
    arguments_text,
    fit_tool_name,
)

VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# The providers' documented rules, written out again here rather than taken from the code.
NAME_RULES = {
    "openai": (OPENAI_NAMES, re.compile(r"^[a-zA-Z0-9_-]{1,64}$")),
    "anthropic": (ANTHROPIC_NAMES, re.compile(r"^[a-zA-Z0-9_-]{1,128}$")),
    "gemini": (GEMINI_NAMES, re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}$")),
}
NAMES = st.text(max_size=200) | st.text(alphabet="abc.:-_19", max_size=140)


@given(st.text(max_size=200))
def test_any_id_becomes_valid_and_deterministic(tool_id: str) -> None:
    """Every id maps to a valid Anthropic id, the same one every time."""
    out = anthropic_tool_id(tool_id)
    assert VALID.match(out) and anthropic_tool_id(tool_id) == out


@given(st.text(max_size=80), st.text(max_size=80))
def test_different_ids_do_not_collide(a: str, b: str) -> None:
    """Two different ids give two different sanitized ids."""
    if a != b:
        assert anthropic_tool_id(a) != anthropic_tool_id(b)


def test_valid_ids_unchanged() -> None:
    """Ids Anthropic already accepts pass through untouched."""
    assert anthropic_tool_id("toolu_01ABC-x") == "toolu_01ABC-x"
    assert anthropic_tool_id("call_M26z19sncd7b4LBgzKRRbaUE") == "call_M26z19sncd7b4LBgzKRRbaUE"


def test_arguments_normalization() -> None:
    """Empty arguments become {}; non-object JSON and garbage are wrapped, never passed as strings."""
    assert arguments_object("") == {} and arguments_object("  ") == {}
    assert arguments_object('{"a": 1}') == {"a": 1}
    assert arguments_object("[1]") == {"_raw": "[1]"} and arguments_object("{bad") == {"_raw": "{bad"}
    assert arguments_text("") == "{}" and arguments_text(None) == "{}" and arguments_text('{"a":1}') == '{"a":1}'


@pytest.mark.parametrize("target", sorted(NAME_RULES))
@given(name=NAMES)
def test_any_tool_name_fits_the_target_deterministically(target: str, name: str) -> None:
    """Every name becomes one the target accepts, the same every time, and a valid one is kept."""
    rule, documented = NAME_RULES[target]
    out = fit_tool_name(name, rule)
    assert documented.match(out) and fit_tool_name(name, rule) == out
    assert fit_tool_name(out, rule) == out  # a fitted name sent back in the history stays as it is
    if documented.match(name):
        assert out == name


@pytest.mark.parametrize("target", sorted(NAME_RULES))
@given(a=NAMES, b=NAMES)
def test_distinct_tool_names_stay_distinct(target: str, a: str, b: str) -> None:
    """Two different names never fit to one (the answer must name the client's tool)."""
    rule = NAME_RULES[target][0]
    if a != b:
        assert fit_tool_name(a, rule) != fit_tool_name(b, rule)


@pytest.mark.parametrize(("name", "rule", "expected_start"), [
    ("mcp__" + "s" * 45 + "__" + "t" * 48, OPENAI_NAMES, "mcp__sss"),   # Claude Code MCP tool, 100 characters
    ("a.b:c", ANTHROPIC_NAMES, "a_b_c_"),                                # Gemini allows . and :
    ("a.b:c", OPENAI_NAMES, "a_b_c_"),
    ("1tool", GEMINI_NAMES, "_1tool_"),                                  # Gemini wants a letter or _ first
    ("-tool", GEMINI_NAMES, "_-tool_"),
])
def test_refused_names_keep_their_readable_start(name: str, rule: NameRule, expected_start: str) -> None:
    """A refused name keeps what it can of itself (the model reads it), then a hash of the original."""
    out = fit_tool_name(name, rule)
    assert out.startswith(expected_start) and len(out) <= rule.max_len and re.search(r"_[0-9a-f]{8}(_|$)", out)


def test_a_long_name_keeps_its_end() -> None:
    """The tool's own name ends an MCP name (mcp__<server>__<tool>): the model reads it to
    choose the tool, so a fitted long name keeps its start and its end, the hash between."""
    name = "mcp__plugin_chrome-devtools_chrome-devtools-mcp-server__" + "take_a_full_page_screenshot_of_the_tab" * 2
    out = fit_tool_name(name, OPENAI_NAMES)
    assert len(out) == 64 and out.startswith("mcp__plugin_chrome") and out.endswith("screenshot_of_the_tab")
    assert re.search(r"_[0-9a-f]{8}_", out)


def test_valid_tool_names_unchanged() -> None:
    """Names every target accepts, and Gemini's own names on Gemini, go as they are."""
    for rule in (OPENAI_NAMES, ANTHROPIC_NAMES, GEMINI_NAMES):
        assert fit_tool_name("Bash", rule) == "Bash" and fit_tool_name("mcp__github__create_issue", rule) == "mcp__github__create_issue"
    assert fit_tool_name("a.b:c", GEMINI_NAMES) == "a.b:c"
    assert fit_tool_name("x" * 128, ANTHROPIC_NAMES) == "x" * 128 and fit_tool_name("1tool", OPENAI_NAMES) == "1tool"
