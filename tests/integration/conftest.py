"""Fixtures for the integration tests: ``log_file`` points Apex's logging at a JSON file."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from apex.config.model import LoggingConfig
from apex.server.logs import configure_logging


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
