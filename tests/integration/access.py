"""The access-log fixture and reader shared by tests that assert on access lines."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apex.config.model import LoggingConfig
from apex.server.logs import configure_logging, flush_logs

__all__ = ["access_lines", "log_file"]


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """Point Apex's logging at a JSON file for the test; restore the root logger afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("apex.access").disabled)
    path = tmp_path / "apex.log"
    configure_logging(LoggingConfig(level="info", format="json", file=str(path)))
    try:
        yield path
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
        logging.getLogger("apex.access").disabled = saved[2]


def access_lines(path: Path) -> list[dict[str, Any]]:
    flush_logs()  # lines are buffered for up to 0.25 s; the server flushes them on a timer
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [line for line in lines if line["logger"] == "apex.access"]
