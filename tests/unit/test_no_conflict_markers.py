"""No merge-conflict markers anywhere in the repository's text files (a half-finished merge
must not land: it would fail at import, or worse, only in a file no test imports)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MARKER = re.compile(rb"^(<{7}|>{7}) ", re.M)


def test_no_conflict_markers() -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    bad = []
    for name in filter(None, files):
        path = REPO / name.decode()
        text_file = path.suffix in {".py", ".md", ".toml", ".json", ".yml", ".yaml", ".service", ".sh", ""}
        if text_file and path.is_file() and MARKER.search(path.read_bytes()):
            bad.append(name.decode())
    assert bad == []
