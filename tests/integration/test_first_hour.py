"""The first hour with real processes: the demo from the package, the daemon from any
directory, start-up failures, --listen / APEX_LISTEN, and `apex status` finding the gateway.

Gateways run as subprocesses on free loopback ports and are stopped by their own pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from apex.gateway_state import http_get, pid_alive
from apex.share import DEMO_CONFIG, share_path
from tests.conftest import StartApex
from tests.integration.test_reload import base_config, busy_port_config, free_port, with_repo_on_path

LIMIT_S = 60


def apex(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``apex ARGS`` as the installed script runs it: the working directory is not on sys.path (-P)."""
    return subprocess.run([sys.executable, "-P", "-m", "apex", *args], capture_output=True, text=True,
                          timeout=LIMIT_S, cwd=cwd, env=with_repo_on_path(env))


@pytest.fixture
def pids() -> Iterator[list[int]]:
    """Gateway pids a test started; any still alive at the end are killed."""
    started: list[int] = []
    yield started
    for pid in started:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def shipped_files() -> set[Path]:
    return {p for p in share_path(DEMO_CONFIG).parent.rglob("*") if "__pycache__" not in p.parts}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("APEX_CONFIG", "APEX_STATE_DIR", "APEX_LISTEN", "APEX_LOG_LEVEL")}
    env.update(extra)
    return env


def test_daemon_starts_the_installed_package_from_a_directory_holding_apex(tmp_path: Path, pids: list[int]) -> None:
    """(1) Started from a directory with a folder named apex (think /etc with /etc/apex), the
    daemon still runs the real package, not that folder."""
    decoy = tmp_path / "apex"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise SystemExit('imported the wrong apex')\n")
    port = free_port()
    config = decoy / "config.json"
    config.write_text(json.dumps(base_config(port)))
    r = apex("gateway", "start", "--daemon", "--json", "--config", "apex/config.json", cwd=tmp_path, env=clean_env())
    assert r.returncode == 0, r.stderr
    pids.append(int(json.loads(r.stdout)["pid"]))
    assert http_get(f"http://127.0.0.1:{port}/health") is not None
    assert apex("gateway", "stop", "--config", "apex/config.json", cwd=tmp_path, env=clean_env()).returncode == 0
    assert not pid_alive(pids[0])


def test_busy_port_is_one_line_with_the_fix(tmp_path: Path) -> None:
    """(2) Port in use: exit 1 and one line naming the address, the cause and --listen."""
    with busy_port_config(tmp_path) as (port, config):
        r = apex("gateway", "start", "--config", str(config), env=clean_env())
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert f"error: cannot listen on 127.0.0.1:{port}: the address is already in use" in r.stderr
    assert "--listen HOST:PORT" in r.stderr and "Traceback" not in r.stderr


def test_busy_port_under_daemon_names_the_cause(tmp_path: Path) -> None:
    with busy_port_config(tmp_path) as (_, config):
        r = apex("gateway", "start", "--daemon", "--wait", "10", "--config", str(config), env=clean_env())
    assert r.returncode == 1
    assert "already in use" in r.stderr and "--listen HOST:PORT" in r.stderr  # found before any child starts


def test_unopenable_log_file_is_one_line(tmp_path: Path) -> None:
    """(2) A log file that cannot be opened (here: the path is a directory) is one line."""
    port = free_port()
    cfg: dict[str, Any] = base_config(port)
    cfg["logging"] = {"file": str(tmp_path)}
    config = tmp_path / "config.json"
    config.write_text(json.dumps(cfg))
    r = apex("gateway", "start", "--config", str(config), env=clean_env())
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert f"logging.file: cannot open log file {tmp_path}: Is a directory" in r.stderr


def test_listen_flag_and_env_override_the_file(tmp_path: Path, pids: list[int]) -> None:
    """(3) --listen beats $APEX_LISTEN, which beats global.listen; status reports the real address."""
    file_port, env_port, flag_port = free_port(), free_port(), free_port()
    config = tmp_path / "config.json"
    config.write_text(json.dumps(base_config(file_port)))
    env = clean_env(APEX_LISTEN=f"127.0.0.1:{env_port}")
    r = apex("gateway", "start", "--daemon", "--json", "--config", str(config), env=env)
    assert r.returncode == 0, r.stderr
    pids.append(int(json.loads(r.stdout)["pid"]))
    assert json.loads(r.stdout)["listen"] == f"127.0.0.1:{env_port}"
    assert http_get(f"http://127.0.0.1:{env_port}/health") is not None
    assert http_get(f"http://127.0.0.1:{file_port}/health") is None
    status = json.loads(apex("status", "--json", "--config", str(config), env=clean_env()).stdout)
    assert status["running"] and status["listen"] == f"127.0.0.1:{env_port}"
    assert apex("gateway", "stop", "--config", str(config), env=clean_env()).returncode == 0

    r = apex("gateway", "start", "--daemon", "--json", "--listen", f"127.0.0.1:{flag_port}", "--config", str(config), env=env)
    assert r.returncode == 0, r.stderr
    pids.append(int(json.loads(r.stdout)["pid"]))
    assert http_get(f"http://127.0.0.1:{flag_port}/health") is not None
    assert config.read_text() == json.dumps(base_config(file_port))  # nothing written into the file
    assert apex("gateway", "stop", "--config", str(config), env=clean_env()).returncode == 0


def test_demo_from_the_package_and_status_finds_it_from_anywhere(tmp_path: Path, pids: list[int]) -> None:
    """`--demo` needs no file of the user's; `apex status` / `stop` from another directory,
    without --config, find the gateway this user started last (5)."""
    before = shipped_files()
    port = free_port()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = clean_env()
    r = apex("gateway", "start", "--demo", "--daemon", "--json", "--listen", f"127.0.0.1:{port}", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    started = json.loads(r.stdout)
    pids.append(int(started["pid"]))
    assert started["config"] == str(share_path(DEMO_CONFIG))
    assert not Path(started["pid_file"]).is_relative_to(share_path(DEMO_CONFIG).parent)  # the package stays untouched
    status = apex("status", "--json", cwd=elsewhere, env=env)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["running"] and data["pid"] == pids[0] and data["config"] == str(share_path(DEMO_CONFIG))
    assert data["config_source"] == "the config you started last"
    answer = http_get(f"http://127.0.0.1:{port}/health")
    assert answer is not None and json.loads(answer)["status"] == "healthy"
    assert apex("gateway", "stop", cwd=elsewhere, env=env).returncode == 0
    assert not pid_alive(pids[0])
    assert shipped_files() == before  # nothing was written into the package
    gone = apex("status", cwd=elsewhere, env=env)
    assert gone.returncode == 3 and "(default ./config.json)" in gone.stderr


def test_demo_is_addressed_by_demo_on_stop_reload_and_status(tmp_path: Path, pids: list[int]) -> None:
    """`apex gateway stop|reload --demo` and `apex status --demo` act on the demo gateway, as
    `start --demo` started it, whichever config was started last; --demo with --config is refused."""
    port = free_port()
    env = clean_env()
    r = apex("gateway", "start", "--demo", "--daemon", "--json", "--listen", f"127.0.0.1:{port}", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    pids.append(int(json.loads(r.stdout)["pid"]))
    other = tmp_path / "config.json"  # another config named in the directory: --demo still means the demo
    assert apex("init", "--non-interactive", "--config", str(other), cwd=tmp_path, env=env).returncode == 0
    status = apex("status", "--demo", "--json", cwd=tmp_path, env=env)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["running"] and data["pid"] == pids[0] and data["config_source"] == "--demo"
    assert apex("gateway", "reload", "--demo", cwd=tmp_path, env=env).returncode == 0
    refused = apex("gateway", "stop", "--demo", "--config", str(other), cwd=tmp_path, env=env)
    assert refused.returncode == 2 and "leave out --config" in refused.stderr
    assert apex("gateway", "stop", "--demo", cwd=tmp_path, env=env).returncode == 0
    assert not pid_alive(pids[0])
    assert apex("status", "--demo", cwd=tmp_path, env=env).returncode == 3


async def test_demo_models_lists_real_names(start_apex: StartApex) -> None:
    """(10) /v1/models on the demo lists names a client can use, over HTTP with the OpenAI SDK."""
    demo = json.loads(share_path(DEMO_CONFIG).read_text())
    inst = await start_apex(demo)
    client = openai.AsyncOpenAI(base_url=inst.openai_url, api_key="apex-demo-key", max_retries=0)
    try:
        ids = [m.id async for m in client.models.list()]
        assert {"demo-1", "demo-2", "gpt-4o-mini", "claude-sonnet-4-5"} <= set(ids)
        assert not any("*" in i or "[" in i for i in ids)
        reply = await client.chat.completions.create(model="demo-1", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content
    finally:
        await client.close()
