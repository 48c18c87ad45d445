"""Fixtures for the integration tests: ``log_file`` points Apex's logging at a JSON file;
``ca`` and ``tls_upstream`` give a test CA (trustme) and a FakeUpstream serving TLS with it."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from apex.config.model import LoggingConfig
from apex.server.logs import configure_logging
from tests.integration.fakes import FakeUpstream


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


@pytest.fixture
def ca() -> Any:
    """A test certificate authority (trustme); the test is skipped without trustme."""
    trustme = pytest.importorskip("trustme", reason="trustme makes the test CA (pip install trustme)")
    return trustme.CA()


@pytest.fixture
async def tls_upstream(ca: Any) -> AsyncIterator[FakeUpstream]:
    """A FakeUpstream over TLS with a certificate for 127.0.0.1 and localhost from the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    fake = FakeUpstream()
    await fake.start(ssl_context=context)
    yield fake
    await fake.stop()
