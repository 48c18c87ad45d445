"""Tool-id sanitizing and argument normalization (P4, P11)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from apex.translate.neutral.toolids import anthropic_tool_id, arguments_object, arguments_text

VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


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
