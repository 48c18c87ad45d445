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
    """A daemon whose port another server holds is refused at once, naming the cause."""
    with busy_port_config(tmp_path) as (port, config):
        start = time.monotonic()
        r = apex_cli(config, "gateway", "start", "--daemon", "--wait", "10")
        assert r.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}: the address is already in use" in r.stderr
        assert not (tmp_path / "config.json.pid").exists()
        assert time.monotonic() - start < 15


def test_a_second_gateway_on_a_taken_port_is_not_reported_started(tmp_path: Path) -> None:
    """Two configs, one port: the second --daemon start fails (it said "started", its /health
    poll answered by the first gateway, and left a pid file naming a dead process)."""
    port = free_port()
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    for path in (first, second):
        path.write_text(json.dumps(base_config(port)))
    r = apex_cli(first, "gateway", "start", "--daemon", "--json")
    assert r.returncode == 0, r.stderr
    pid = int(json.loads(r.stdout)["pid"])
    try:
        again = apex_cli(second, "gateway", "start", "--daemon")
        assert again.returncode == 1 and "already in use" in again.stderr, (again.stdout, again.stderr)
        assert "started" not in again.stdout
        assert not (tmp_path / "b.json.pid").exists()
        assert apex_cli(second, "status").returncode == 3
    finally:
        apex_cli(first, "gateway", "stop")
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_failed_second_start_leaves_the_running_gateways_state(tmp_path: Path) -> None:
    """`python -m apex.server` on the same config while a gateway serves it: it fails on the
    busy port and the running gateway stays visible to status, reload and stop (the failed
    start wrote the state file with its own pid, then removed it: status said not running and
    stop said "not running" with the gateway still up). Status also reads a daemon's pid file."""
    import subprocess
    import sys

    port = free_port()
    config = tmp_path / "config.json"
    config.write_text(json.dumps(base_config(port)))
    r = apex_cli(config, "gateway", "start", "--daemon", "--json")
    assert r.returncode == 0, r.stderr
    pid = int(json.loads(r.stdout)["pid"])
    try:
        second = subprocess.run([sys.executable, "-m", "apex.server", "--config", str(config)], capture_output=True,
                                text=True, timeout=60, env={**os.environ, "PYTHONPATH": os.getcwd()})
        assert second.returncode != 0 and "already in use" in second.stderr
        status = apex_cli(config, "status", "--json")
        assert status.returncode == 0 and json.loads(status.stdout)["pid"] == pid, status.stdout
        from apex.gateway_state import state_path

        state_path(config).unlink()  # even without its state file: the daemon's pid file
        assert apex_cli(config, "status").returncode == 0
        stop = apex_cli(config, "gateway", "stop")
        assert stop.returncode == 0 and not pid_alive(pid), stop.stdout
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
