"""Guard: the repository stands on its own.

No source, test, script, config or doc may point at a path outside the repository (a
``shared`` folder beside the checkout, a build machine's work or home directory): a fresh
clone with nothing beside it must pass. Captured wire data under tests/fixtures is exempt
(a recorded client request may mention the client's own paths), its SOURCES.md is not.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHECKED = ["apex", "tests", "bench", "config", "systemd", "docs", ".ci", "README.md", "pyproject.toml"]
SKIP_DIRS = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "results"}
CAPTURES = (REPO / "tests" / "fixtures" / "real", REPO / "tests" / "fixtures" / "clients")

# Spelled in pieces so this file does not match itself.
OUTSIDE = re.compile(
    "|".join([
        r"\.\./+" + "shared",                      # the sibling folder the project grew up beside
        r"(?<![\w.])" + "shared/" + r"(?:docs|fixtures)/",
        r"(?<![\w.])/" + "work/",                     # build machine checkouts
        r"(?<![\w.])/" + r"home/[A-Za-z0-9_.-]+/",
        r"(?<![\w.])/" + "Users/",
        r"(?<![\w.])/" + "root/",
        r"\.\./\.\./\.\./",                            # climbing out of the tree
    ])
)


def _files() -> list[Path]:
    out: list[Path] = []
    for name in CHECKED:
        top = REPO / name
        if top.is_file():
            out.append(top)
            continue
        for path in top.rglob("*"):
            if not path.is_file() or SKIP_DIRS.intersection(path.relative_to(REPO).parts):
                continue
            if any(path.is_relative_to(c) for c in CAPTURES) and path.name != "SOURCES.md":
                continue
            out.append(path)
    return out


def test_no_file_refers_to_a_path_outside_the_repository() -> None:
    files = _files()
    assert len(files) > 100  # the walk really looked at the tree
    hits = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{path.relative_to(REPO)}:{lineno}: {line.strip()[:120]}")
    assert hits == []


def test_the_guard_catches_what_it_should() -> None:
    """The pattern itself is not vacuous."""
    for bad in ["../" + "sha" + "red/fixtures/real", "/" + "work/main/tests", "/" + "home/dev/apex/x.py", "see " + "sha" + "red/docs/protocols.md"]:
        assert OUTSIDE.search(bad), bad
    for fine in ["docs/protocols.md", "tests/fixtures/real/x.json", "/etc/apex/config.json", "/var/lib/apex/", "shared_key"]:
        assert not OUTSIDE.search(fine), fine


REF = re.compile(r"docs/protocols\.md((?:[ ,]+(?:§?\d+(?:\.\d+)*|P\d+)\b)*)")


def _protocol_anchors() -> set[str]:
    """Section numbers (``8.7.4``) and pitfall ids (``P5``) that docs/protocols.md defines."""
    text = (REPO / "docs/protocols.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^#{2,4} (\d+(?:\.\d+)*)\.? ", text, re.MULTILINE))
    pitfalls = set(re.findall(r"^- \*\*(P\d+)\*\*", text, re.MULTILINE))
    return sections | pitfalls


def test_protocols_references_point_at_sections_that_exist() -> None:
    """Every `docs/protocols.md 8.3, P5` in the code names a heading or pitfall of that file."""
    anchors = _protocol_anchors()
    assert {"1.1", "8.7.4", "P1", "P25"} <= anchors
    refs: list[tuple[str, str]] = []
    for path in _files():
        if path.suffix != ".py":
            continue
        for match in REF.finditer(path.read_text(encoding="utf-8")):
            refs += [(str(path.relative_to(REPO)), tok.lstrip("§")) for tok in re.findall(r"§?\d+(?:\.\d+)*|P\d+", match.group(1))]
    assert len(refs) > 20  # the code does cite the document
    assert [r for r in refs if r[1] not in anchors] == []
    assert not [p for p in _files() if p.suffix == ".py" and re.search(r"(?<![/\w])protocols\.md", p.read_text(encoding="utf-8"))]
