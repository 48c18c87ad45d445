"""Field-shape mutation for the structural fuzz tests: one field per shape set to a wrong value."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any


def field_paths(doc: Any, seen: set[tuple[object, ...]] | None = None,
                prefix: tuple[object, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """One concrete path per field shape of ``doc`` (list indices folded), the first one met.

    Shapes already in ``seen`` (shared across documents, keyed with ``prefix``) are skipped."""
    known: set[tuple[object, ...]] = set() if seen is None else seen

    def walk(value: Any, at: tuple[str | int, ...]) -> Iterator[tuple[str | int, ...]]:
        shape = prefix + tuple("*" if isinstance(k, int) else k for k in at)
        if at and shape not in known:
            known.add(shape)
            yield at
        if isinstance(value, dict):
            for k, v in value.items():
                yield from walk(v, (*at, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from walk(v, (*at, i))

    yield from walk(doc, ())


def with_value(doc: Any, at: tuple[str | int, ...], value: Any) -> Any:
    """A deep copy of ``doc`` with the field at ``at`` set to (a copy of) ``value``."""
    out = copy.deepcopy(doc)
    parent = out
    for k in at[:-1]:
        parent = parent[k]
    parent[at[-1]] = copy.deepcopy(value)
    return out
