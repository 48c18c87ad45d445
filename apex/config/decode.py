"""The typed decode of a config: msgspec checks every value against ``apex.config.model``.

A failure is msgspec's own message with its location moved in front as the key path, the
form every config error takes (``global.retries.max_attempts: Expected `int` >= 1``).
msgspec ends a message with where it failed: `` - at `$.a.b[0]` ``, or
`` - at `key` in `$.a.headers` `` for a mapping's key, or nothing at the root. Only that
location is split off; the words before it are shown as msgspec wrote them, never parsed.

msgspec writes a mapping's entry as ``[...]`` (it does not say which key); a price table or a
header set may be long, so the failing key is found by decoding again with that mapping
reduced to one entry at a time. That runs only for a config already refused.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from apex.config.model import Config
from apex.errors import ConfigError

__all__ = ["decode_config"]

_AT: Final = " - at `"
_IN_KEY: Final = "` in `"
_ENTRY: Final = "[...]"
_STEP: Final = re.compile(r"\[(\d+)\]|([^.\[]+)")  # a key path's steps: .name or [index]


def decode_config(raw: dict[str, object]) -> Config:
    """``raw`` as a Config; ConfigError naming the key path of the first bad value."""
    try:
        return msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        raise _located(raw, exc) from exc


def _split(exc: msgspec.ValidationError) -> tuple[str, str, bool]:
    """(message, key path, whether a mapping's key is at fault)."""
    text = str(exc)
    message, sep, where = text.rpartition(_AT)
    if not sep:
        return text, "", False
    _, in_key, where = where.removesuffix("`").rpartition(_IN_KEY)
    return message, where.removeprefix("$").removeprefix("."), bool(in_key)


def _located(raw: dict[str, object], exc: msgspec.ValidationError) -> ConfigError:
    message, path, in_key = _split(exc)
    if in_key:  # a mapping's key: the path is the mapping's
        key = _failing_key(raw, path, str(exc))
        return ConfigError(f'{message} (the key "{key}")' if key is not None else f"{message} (a key)", path=path)
    head, entry, tail = path.partition(_ENTRY)
    if entry:
        key = _failing_key(raw, head, str(exc))
        if key is not None:
            path = f"{head}.{key}{tail}"
    return ConfigError(message, path=path)


def _failing_key(raw: dict[str, object], path: str, text: str) -> str | None:
    """The key of the mapping at ``path`` whose entry alone makes decoding fail with ``text``."""
    steps: list[str | int] = [int(i) if i else name for i, name in _STEP.findall(path)]
    mapping = _at(raw, steps)
    if not isinstance(mapping, dict):
        return None
    for key, value in mapping.items():
        try:
            msgspec.convert(_replaced(raw, steps, {key: value}), Config)
        except msgspec.ValidationError as exc:
            if str(exc) == text:
                return str(key)
    return None


def _at(node: object, steps: list[str | int]) -> object:
    for step in steps:
        if isinstance(node, dict) and isinstance(step, str):
            node = node.get(step)
        elif isinstance(node, list) and isinstance(step, int) and step < len(node):
            node = node[step]
        else:
            return None
    return node


def _replaced(node: object, steps: list[str | int], value: object) -> object:
    """A copy of ``node`` with ``value`` at ``steps`` (only the nodes on the way are copied)."""
    if not steps:
        return value
    step, rest = steps[0], steps[1:]
    if isinstance(node, dict) and isinstance(step, str):
        return {**node, step: _replaced(node[step], rest, value)}
    if isinstance(node, list) and isinstance(step, int):
        return [*node[:step], _replaced(node[step], rest, value), *node[step + 1 :]]
    return node
