"""APEX_* environment overrides on a real gateway process, and `config show --effective` agreeing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.test_readiness import get, start, stop
from tests.integration.test_reload import base_config, free_port, wait_for, with_repo_on_path


def test_overrides_change_what_the_gateway_serves(tmp_path: Path) -> None:
    """Listen, metrics path, log format and the request log come from the environment, not the file."""
    port = free_port()
    config = base_config(free_port())  # the file's listen is not where the gateway will be
    env = {"APEX_LISTEN": f"127.0.0.1:{port}", "APEX_METRICS_PATH": "/internal/metrics", "APEX_LOG_FORMAT": "pretty",
           "APEX_REQUEST_LOG": "off", "APEX_LOG_LEVEL": "info"}
    proc = start(tmp_path, config, env)
    try:
        wait_for(lambda: get(port, "GET", "/health")[0] == 200, 20)
        status, body = get(port, "GET", "/internal/metrics")
        assert status == 200 and b"apex_build_info" in body
        assert get(port, "GET", "/metrics")[0] == 404
    finally:
        stop(proc)
    log = (tmp_path / "gateway.log").read_text()
    assert f"listening on 127.0.0.1:{port}" in log
    assert not log.lstrip().startswith("{")  # pretty, not the file's json

    r = subprocess.run([sys.executable, "-m", "apex", "config", "show", "--effective", "--config",
                        str(tmp_path / "config.json")], capture_output=True, text=True, timeout=60,
                       env=with_repo_on_path({**os.environ, **env}))
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["global"]["listen"] == f"127.0.0.1:{port}" and shown["metrics"]["path"] == "/internal/metrics"
    assert shown["logging"]["format"] == "pretty" and shown["global"]["request_log"]["type"] == "off"


def test_a_bad_override_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    proc = start(tmp_path, base_config(free_port()), {"APEX_METRICS_ENABLED": "perhaps"})
    assert proc.wait(timeout=30) != 0
    out = (tmp_path / "gateway.log").read_text()
    assert "metrics.enabled" in out and "$APEX_METRICS_ENABLED" in out
