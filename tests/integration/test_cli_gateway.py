"""`apex gateway start --daemon` / `apex status` / `apex gateway stop` round trip in real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from apex.gateway_state import http_get, pid_alive
from tests.integration.test_reload import apex_cli, base_config, busy_port_config, free_port


def test_daemon_status_stop_round_trip(tmp_path: Path) -> None:
    """--daemon returns once healthy with a pid file; status sees it (exit 0); stop ends it (status 3)."""
    port = free_port()
    config = tmp_path / "config.json"
    config.write_text(json.dumps(base_config(port)))
    r = apex_cli(config, "gateway", "start", "--daemon", "--json")
    assert r.returncode == 0, r.stderr
    started = json.loads(r.stdout)
    pid = int(started["pid"])
    try:
        assert Path(started["pid_file"]).read_text().strip() == str(pid)
        assert http_get(f"http://127.0.0.1:{port}/health") is not None
        again = apex_cli(config, "gateway", "start", "--daemon")
        assert again.returncode == 1 and "already running" in again.stderr
        status = apex_cli(config, "status", "--json")
        assert status.returncode == 0, status.stderr
        data = json.loads(status.stdout)
        assert data["running"] is True and data["pid"] == pid
        assert data["listen"] == f"127.0.0.1:{port}"
        assert data["counts"] == {"channels": 2, "routers": 1, "teams": 0}
        assert data["uptime_seconds"] is not None and data["version"]
        assert set(data["channels"]) == {"demo", "slow"}
        stop = apex_cli(config, "gateway", "stop")
        assert stop.returncode == 0, stop.stderr
        assert not pid_alive(pid)
        assert not Path(started["pid_file"]).exists()
        assert apex_cli(config, "status").returncode == 3
        assert apex_cli(config, "gateway", "stop").returncode == 0
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_daemon_start_failure_is_reported(tmp_path: Path) -> None:
    """A daemon that cannot bind its port exits non-zero and says where the log is."""
    with busy_port_config(tmp_path) as (_, config):
        start = time.monotonic()
        r = apex_cli(config, "gateway", "start", "--daemon", "--wait", "10")
        assert r.returncode == 1
        assert "log" in r.stderr
        assert time.monotonic() - start < 15
