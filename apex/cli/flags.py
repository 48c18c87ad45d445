"""Parse the CLI's compound flag values (``K=V``, ``NAME[:WEIGHT]``) into raw config JSON pieces.

Pure string work: bad values raise ``click.BadParameter`` so click reports them as usage
errors (exit 2) naming the flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import rich_click as click

__all__ = ["find_named", "parse_channel_refs", "parse_pairs", "format_refs"]


def parse_pairs(values: Sequence[str], flag: str) -> dict[str, str]:
    """``["A=1", "B=2"]`` -> ``{"A": "1", "B": "2"}`` in order; the value may contain ``=``."""
    out: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {value!r}", param_hint=flag)
        out[key] = rest
    return out


def parse_channel_refs(values: Sequence[str], flag: str = "--channel") -> list[dict[str, Any]]:
    """``["a", "b:3"]`` -> ``[{"name": "a"}, {"name": "b", "weight": 3}]``."""
    refs: list[dict[str, Any]] = []
    for value in values:
        name, sep, weight = value.rpartition(":")
        if not sep:
            name, weight = value, ""
        if not name:
            raise click.BadParameter(f"expected NAME[:WEIGHT], got {value!r}", param_hint=flag)
        ref: dict[str, Any] = {"name": name}
        if weight:
            if not weight.isdigit() or int(weight) < 1:
                raise click.BadParameter(f"weight must be a positive integer in {value!r}", param_hint=flag)
            ref["weight"] = int(weight)
        refs.append(ref)
    return refs


def format_refs(refs: Sequence[Any]) -> str:
    """Raw channel refs back to ``a, b:3`` for tables."""
    parts = []
    for ref in refs:
        if isinstance(ref, dict):
            weight = ref.get("weight", 1)
            parts.append(f"{ref.get('name')}" + (f":{weight}" if weight != 1 else ""))
    return ", ".join(parts)


def find_named(items: list[Any], key: str, name: str) -> int | None:
    """Index of the raw object whose ``key`` equals ``name``, or None."""
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get(key) == name:
            return i
    return None
