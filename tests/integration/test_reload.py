"""Hot reload of a real gateway process (``apex gateway start``) driven by the CLI and by hand.

Each test runs ``python -m apex gateway start`` in the foreground as a subprocess on a free
loopback port with the built-in mock provider, and stops it by its own pid.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apex.gateway_state import read_state, state_path

START_TIMEOUT_S = 20.0
RELOAD_DEADLINE_S = 2.0


REPO = Path(__file__).resolve().parents[2]


def with_repo_on_path(env: dict[str, str] | None) -> dict[str, str]:
    """``env`` (default: ours) with this checkout first on PYTHONPATH, so ``-m apex`` works from any cwd."""
    out = dict(os.environ if env is None else env)
    out["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), out.get("PYTHONPATH", "")) if p)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def base_config(port: int) -> dict[str, Any]:
    return {
        "channels": [{"name": "demo", "provider_type": "mock", "models": ["*"]},
                     {"name": "slow", "provider_type": "mock", "models": ["slow-*"], "tokens_per_s": 20,
                      "response_text": " ".join(f"w{i}" for i in range(30))}],
        "routers": [{"name": "default", "channels": [{"name": "demo"}],
                     "rules": [{"match": {"model": "slow-*"}, "channels": [{"name": "slow"}]}]}],
        "global": {"listen": f"127.0.0.1:{port}", "auth": {"keys": ["k"]}},
        "logging": {"format": "json"},
    }


@contextlib.contextmanager
def busy_port_config(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """``(port, config)``: a config listening on a port another socket holds while inside."""
    port = free_port()
    config = tmp_path / "config.json"
    config.write_text(json.dumps(base_config(port)))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        yield port, config


def apex_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``apex ARGS --config CONFIG`` as a real subprocess."""
    return subprocess.run([sys.executable, "-m", "apex", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=60, env=with_repo_on_path(None))


class GatewayProcess:
    """A foreground gateway subprocess and small HTTP helpers against it."""

    def __init__(self, config: Path, port: int) -> None:
        self.config = config
        self.port = port
        self.log = config.with_name("gateway.log")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "apex", "gateway", "start", "--config", str(config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=with_repo_on_path(None),
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.get("/health")[0] != 200:
            assert self.proc.poll() is None, f"gateway exited: {self.log.read_text()}"
            assert time.monotonic() < deadline, "gateway did not become healthy"
            time.sleep(0.05)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                key: str | None = None) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        return conn.getresponse()

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            resp = self.request("GET", path)
            return resp.status, resp.read()
        except OSError:
            return 0, b""

    def chat_status(self, key: str, model: str = "m") -> int:
        resp = self.request("POST", "/v1/chat/completions",
                            {"model": model, "messages": [{"role": "user", "content": "hi"}]}, key)
        resp.read()
        return resp.status

    def reload_count(self, result: str) -> float:
        status, body = self.get("/metrics")
        assert status == 200, "the gateway serves no /metrics"
        m = re.search(rf'^apex_config_reloads_total\{{[^}}]*result="{result}"[^}}]*\}} (\S+)$', body.decode(), re.M)
        return float(m.group(1)) if m else 0.0

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    port = free_port()
    config = tmp_path / "config.json"
    config.write_text(json.dumps(base_config(port), indent=2))
    gw = GatewayProcess(config, port)
    try:
        yield gw
    finally:
        gw.stop()


def wait_for(predicate: Any, deadline_s: float) -> float:
    """Poll ``predicate`` until true; return the seconds it took or fail after ``deadline_s``."""
    start = time.monotonic()
    while not predicate():
        elapsed = time.monotonic() - start
        assert elapsed < deadline_s, f"not true within {deadline_s}s"
        time.sleep(0.05)
    return time.monotonic() - start


def test_foreground_start_writes_and_removes_state_file(gateway: GatewayProcess) -> None:
    """A foreground gateway writes the state file status reads; a clean stop removes it."""
    state = read_state(state_path(gateway.config))
    assert state is not None and state.pid == gateway.proc.pid
    assert state.listen == f"127.0.0.1:{gateway.port}"
    r = apex_cli(gateway.config, "status", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["running"] is True and data["pid"] == gateway.proc.pid and data["healthy"] is True
    assert gateway.stop() == 0
    assert not state_path(gateway.config).exists()
    assert apex_cli(gateway.config, "status").returncode == 3


def test_cli_change_is_served_within_2s(gateway: GatewayProcess) -> None:
    """A team added by the CLI can call the running gateway within 2 s."""
    assert gateway.chat_status("team-key-0001") == 401
    r = apex_cli(gateway.config, "team", "add", "t1", "--api-key", "team-key-0001")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: gateway.chat_status("team-key-0001") == 200, RELOAD_DEADLINE_S)


def test_invalid_edit_keeps_old_config_and_counts_failure(gateway: GatewayProcess) -> None:
    """A hand-made invalid edit is rejected: the old config keeps serving, the failure is counted and logged."""
    failures = gateway.reload_count("failure")
    data = json.loads(gateway.config.read_text())
    data["routers"][0]["strategy"] = "fastest"
    data["global"]["auth"]["keys"] = ["k", "new-key"]
    gateway.config.write_text(json.dumps(data))
    wait_for(lambda: gateway.reload_count("failure") > failures, RELOAD_DEADLINE_S)
    assert gateway.chat_status("k") == 200
    assert gateway.chat_status("new-key") == 401
    assert "routers[0].strategy" in gateway.log.read_text()


def test_in_flight_stream_survives_reload(gateway: GatewayProcess) -> None:
    """A stream started before a reload finishes intact while the new config serves new requests."""
    resp = gateway.request("POST", "/v1/chat/completions",
                           {"model": "slow-1", "stream": True, "messages": [{"role": "user", "content": "hi"}]}, "k")
    assert resp.status == 200
    first = resp.readline()
    assert first.startswith(b"data: ")
    r = apex_cli(gateway.config, "team", "add", "t1", "--api-key", "team-key-0002")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: gateway.chat_status("team-key-0002") == 200, RELOAD_DEADLINE_S)
    rest = resp.read().decode()
    text = "".join(
        (json.loads(line[6:])["choices"][0]["delta"].get("content") or "")
        for line in (first.decode() + rest).splitlines()
        if line.startswith("data: {") and json.loads(line[6:]).get("choices")
    )
    assert "data: [DONE]" in rest
    assert text.split() == [f"w{i}" for i in range(30)]


def test_sighup_reloads(gateway: GatewayProcess) -> None:
    """`apex gateway reload` (SIGHUP) reloads the file even when the watcher saw nothing new."""
    successes = gateway.reload_count("success")
    r = apex_cli(gateway.config, "gateway", "reload")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: gateway.reload_count("success") > successes, RELOAD_DEADLINE_S)
    assert "SIGHUP" in gateway.log.read_text()


def test_reload_refuses_invalid_config(gateway: GatewayProcess) -> None:
    """`apex gateway reload` validates first and exits 1 with the key path without signalling."""
    data = json.loads(gateway.config.read_text())
    data["channels"][0]["provider_type"] = "nope"
    gateway.config.write_text(json.dumps(data))  # the watcher rejects it too; the old config stays
    r = apex_cli(gateway.config, "gateway", "reload")
    assert r.returncode == 1 and "channels[0].provider_type" in r.stderr
    assert gateway.chat_status("k") == 200
