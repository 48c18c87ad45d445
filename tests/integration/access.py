"""Reading the access lines a test wrote (the ``log_file`` fixture is in this folder's conftest)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


from apex.server.logs import flush_logs

__all__ = ["access_lines"]


def access_lines(path: Path) -> list[dict[str, Any]]:
    flush_logs()  # lines are buffered for up to 0.25 s; the server flushes them on a timer
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [line for line in lines if line["logger"] == "apex.access"]
