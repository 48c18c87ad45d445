"""A reload says which settings need a restart, judged against what runs (issue: it compared
with the previous file, and never looked at tracing)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from tests.conftest import StartApex, basic_config
from tests.integration.fakes import FakeUpstream


def _restart_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "restart Apex" in r.getMessage()]


async def test_restart_warnings_follow_what_runs(upstream: FakeUpstream, start_apex: StartApex,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    cfg: dict[str, Any] = basic_config(upstream)
    inst = await start_apex(cfg)
    running = inst.gateway.snapshot.config.global_.listen
    moved = json.loads(json.dumps(cfg))
    moved["global"]["listen"] = "127.0.0.1:1"
    moved["global"]["tracing"] = {"otlp_endpoint": "http://127.0.0.1:4318"}
    with caplog.at_level(logging.WARNING, logger="apex"):
        assert inst.gateway.reload_bytes(json.dumps(moved).encode())
    assert sorted(_restart_lines(caplog)) == ["global.listen changed: restart Apex to apply it",
                                              "global.tracing changed: restart Apex to apply it"]
    caplog.clear()
    back = json.loads(json.dumps(cfg))
    back["global"]["listen"] = running
    with caplog.at_level(logging.WARNING, logger="apex"):
        assert inst.gateway.reload_bytes(json.dumps(back).encode())
    assert _restart_lines(caplog) == []  # back to what runs: nothing to restart for
