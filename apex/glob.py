"""Model-name globs (``*``, ``?``, ``[...]``, ``[!...]``) compiled to anchored regexes.

Pure and import-free so both config validation and routing can use it. Unlike
``fnmatch.translate`` an unclosed ``[`` is an error, not a literal, so a typo in a config
file is reported at load time instead of silently never matching.
"""

from __future__ import annotations

import re

__all__ = ["GlobError", "compile_glob", "glob_to_posix_regex", "globs_to_regex", "is_glob"]


class GlobError(ValueError):
    """A pattern is not a valid glob."""


def is_glob(pattern: str) -> bool:
    """True when ``pattern`` has a wildcard; otherwise it is matched as an exact name."""
    return any(c in pattern for c in "*?[")


def _translate(pattern: str) -> str:
    if not pattern:
        raise GlobError("empty pattern")
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if not out or out[-1] != ".*":
                out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                raise GlobError(f"unclosed '[' in {pattern!r}")
            body = pattern[i:j]
            i = j + 1
            negate = body[:1] in ("!", "^")
            if negate:
                body = body[1:]
            if not body:
                raise GlobError(f"empty character class in {pattern!r}")
            body = body.replace("\\", "\\\\")
            out.append("[" + ("^" if negate else "") + body + "]")
        elif c == "]":
            raise GlobError(f"unmatched ']' in {pattern!r}")
        else:
            out.append(re.escape(c))
    return "".join(out)


def compile_glob(pattern: str) -> re.Pattern[str]:
    """Compile one glob to a regex matching the whole name; raise GlobError when invalid
    (including a reversed character range such as ``[z-a]``, which only ``re`` notices)."""
    try:
        return re.compile("(?s:" + _translate(pattern) + r")\Z")
    except re.error as exc:
        raise GlobError(f"{exc.msg} in {pattern!r}") from exc


def globs_to_regex(patterns: list[str] | tuple[str, ...]) -> re.Pattern[str]:
    """One regex matching any of ``patterns`` (so a rule costs one match call)."""
    return re.compile("(?s:" + "|".join("(?:" + _translate(p) + ")" for p in patterns) + r")\Z")


def glob_to_posix_regex(pattern: str) -> str:
    """The glob as an anchored regex a SQL engine's POSIX matcher takes (PostgreSQL's ``~``)."""
    return "^" + _translate(pattern) + "$"
