"""Model-name patterns: an exact-name dict first, then globs in config order.

Built once per Snapshot. ``PatternSet`` answers "does this name match any pattern" with
one set look-up plus at most one regex match; ``ModelMap`` answers "what does this name
map to" (an exact key wins over globs; among globs the first in file order wins).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from apex.glob import compile_glob, globs_to_regex, is_glob

__all__ = ["ModelMap", "PatternSet"]


class PatternSet:
    """Exact names and globs; ``matches(name)`` is True when any of them matches."""

    __slots__ = ("_exact", "_regex", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self._exact = frozenset(p for p in self.patterns if not is_glob(p))
        globs = [p for p in self.patterns if is_glob(p)]
        self._regex: re.Pattern[str] | None = globs_to_regex(globs) if globs else None

    def matches(self, name: str) -> bool:
        if name in self._exact:
            return True
        return self._regex is not None and self._regex.match(name) is not None

    @property
    def exact_names(self) -> frozenset[str]:
        """The patterns without wildcards (what /v1/models may list)."""
        return self._exact


class ModelMap:
    """``model_map`` compiled: ``map(name)`` is the upstream name (``name`` when unmapped)."""

    __slots__ = ("_exact", "_globs")

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self._exact = {k: v for k, v in mapping.items() if not is_glob(k)}
        self._globs = [(compile_glob(k), v) for k, v in mapping.items() if is_glob(k)]

    def __bool__(self) -> bool:
        return bool(self._exact or self._globs)

    def map(self, name: str) -> str:
        hit = self._exact.get(name)
        if hit is not None:
            return hit
        for regex, target in self._globs:
            if regex.match(name) is not None:
                return target
        return name
