"""Liveness, readiness, draining and systemd's watchdog / notify-reload, on real gateway processes.

``/health`` says the process serves; ``/ready`` says it should get new requests: 503 while
draining after SIGTERM and while some router has every channel cooling down.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import StartApex
from tests.integration.fakes import FakeUpstream, error
from tests.integration.test_reload import base_config, free_port, wait_for, with_repo_on_path


def get(port: int, method: str, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except OSError:
        return 0, b""
    finally:
        conn.close()


class Notify:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.seen: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.seen.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return self.seen

    def wait_for(self, prefix: str, deadline_s: float = 10.0) -> None:
        end = time.monotonic() + deadline_s
        while not any(m.startswith(prefix) for m in self.drain()):
            assert time.monotonic() < end, f"no {prefix!r} notification in {self.seen}"


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[Notify]:
    n = Notify(tmp_path / "notify.sock")
    yield n
    n.sock.close()


def start(tmp_path: Path, config: dict[str, Any], env: dict[str, str]) -> subprocess.Popen[bytes]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    log = open(tmp_path / "gateway.log", "wb")  # noqa: SIM115  # the child owns it
    proc = subprocess.Popen([sys.executable, "-m", "apex", "gateway", "start", "--config", str(path)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=with_repo_on_path({**with_repo_on_path(None), **env}))
    log.close()
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


async def test_health_get_and_head_ready_get_and_head(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """GET and HEAD on /health and /ready, no key needed; ready says why it is ready or not."""
    from tests.conftest import basic_config

    inst = await start_apex(basic_config(upstream))
    async with aiohttp.ClientSession() as s:
        for path in ("/health", "/ready"):
            async with s.head(f"{inst.url}{path}") as r:
                assert r.status == 200 and await r.read() == b""
        async with s.get(f"{inst.url}/ready") as r:
            assert r.status == 200
            assert await r.json() == {"status": "ready", "reasons": []}


async def test_ready_503_when_every_channel_of_a_router_cools(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A router whose only channel trips its breaker makes the instance not ready, naming it."""
    from tests.conftest import basic_config, oai

    config = basic_config(upstream)
    config["global"]["health"] = {"failure_threshold": 1, "cooldown_ms": 60_000}
    config["global"]["retries"] = {"max_attempts": 1}
    config["routers"] = [{"name": "default", "vkey": "vk-default", "channels": [{"name": "oa"}]}]
    inst = await start_apex(config)
    upstream.push(error(500))
    with pytest.raises(Exception):  # noqa: B017  # any SDK error: the upstream answered 500
        await oai(inst).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{inst.url}/ready") as r:
            body = await r.json()
            assert r.status == 503 and body["status"] == "not_ready"
            assert "every channel is cooling down" in body["reasons"][0]
        async with s.get(f"{inst.url}/health") as r:
            assert r.status == 200  # alive all the same: no restart for an upstream's outage


def test_sigterm_turns_ready_503_at_once_while_serving_through_drain_delay(tmp_path: Path) -> None:
    """After SIGTERM /ready is 503 at once; during drain_delay_ms Apex still serves; then it exits 0."""
    port = free_port()
    config = base_config(port)
    config["global"]["drain_delay_ms"] = 1500
    config["global"]["shutdown_grace_ms"] = 1000
    proc = start(tmp_path, config, {})
    try:
        wait_for(lambda: get(port, "GET", "/ready")[0] == 200, 20)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: get(port, "GET", "/ready")[0] == 503, 1.0)
        status, body = get(port, "GET", "/ready")
        assert status == 503 and b"draining" in body
        assert get(port, "GET", "/health")[0] == 200
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/v1/chat/completions", body=json.dumps({"model": "m", "messages": [
            {"role": "user", "content": "hi"}]}), headers={"Authorization": "Bearer k", "Content-Type": "application/json"})
        assert conn.getresponse().status == 200  # new requests are still served while the LB catches up
        conn.close()
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - sent >= 1.4  # it kept serving for the drain delay
    finally:
        stop(proc)


def test_watchdog_pings_and_notify_reload(tmp_path: Path, notify: Notify) -> None:
    """With WATCHDOG_USEC set, WATCHDOG=1 arrives repeatedly; SIGHUP sends RELOADING=1 then READY=1."""
    port = free_port()
    proc = start(tmp_path, base_config(port), {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"})
    try:
        notify.wait_for("READY=1")
        time.sleep(0.7)  # pings every 0.2 s
        assert sum(m == "WATCHDOG=1" for m in notify.drain()) >= 3
        notify.seen.clear()
        proc.send_signal(signal.SIGHUP)
        notify.wait_for("READY=1")
        seen = [m.split("\n")[0] for m in notify.seen if m != "WATCHDOG=1"]
        assert seen[:2] == ["RELOADING=1", "READY=1"], seen
    finally:
        stop(proc)
    notify.wait_for("STOPPING=1")


def test_no_watchdog_env_no_pings(tmp_path: Path, notify: Notify) -> None:
    """Without WATCHDOG_USEC (watchdog off) Apex sends no WATCHDOG=1."""
    port = free_port()
    proc = start(tmp_path, base_config(port), {"NOTIFY_SOCKET": str(notify.path)})
    try:
        notify.wait_for("READY=1")
        time.sleep(0.5)
        assert "WATCHDOG=1" not in notify.drain()
    finally:
        stop(proc)
