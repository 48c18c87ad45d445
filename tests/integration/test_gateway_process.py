"""`apex gateway start` becomes the gateway by exec: the same pid serves, without the CLI's
modules, and startup errors after the exec still read as the CLI's (plain or --json).

Gateways run as subprocesses on free loopback ports and are stopped by their own pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from apex.gateway_state import http_get, read_state, state_path
from tests.integration.test_first_hour import LIMIT_S, apex, clean_env
from tests.integration.test_reload import base_config, busy_port_config, free_port, with_repo_on_path


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")


def test_foreground_start_execs_the_server_module_in_the_same_process(tmp_path: Path) -> None:
    """The pid `gateway start` was started as serves, now as `python -m apex.server`; the state
    file names that pid; SIGTERM ends it with 0 and removes the state file."""
    port = free_port()
    config = tmp_path / "config.json"
    config.write_text(json.dumps(base_config(port)))
    proc = subprocess.Popen([sys.executable, "-P", "-m", "apex", "gateway", "start", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=with_repo_on_path(clean_env()))
    try:
        deadline = time.monotonic() + LIMIT_S
        while http_get(f"http://127.0.0.1:{port}/health", timeout=0.5) is None:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        argv = _cmdline(proc.pid)
        assert argv[1:] == ["-P", "-m", "apex.server", "--config", str(config)], argv
        state = read_state(state_path(config))
        assert state is not None and state.pid == proc.pid
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(LIMIT_S) == 0
        assert read_state(state_path(config)) is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_startup_error_after_the_exec_is_one_json_object_with_json(tmp_path: Path) -> None:
    """A busy port is found by the exec'd server; with --json it still reads as the CLI's JSON
    error object, exit code 1 (the plain one-line form: test_first_hour's busy-port test)."""
    with busy_port_config(tmp_path) as (port, config):
        r = apex("gateway", "start", "--json", "--config", str(config), env=clean_env())
    assert r.returncode == 1
    error = json.loads(r.stderr)["error"]
    assert error["exit_code"] == 1 and f"cannot listen on 127.0.0.1:{port}" in error["message"]


def test_server_module_reports_a_config_error_with_its_key_path(tmp_path: Path) -> None:
    """`python -m apex.server` (what the CLI execs; usable directly) checks the config itself."""
    config = tmp_path / "config.json"
    cfg = base_config(free_port())
    cfg["global"]["retries"] = {"max_attempts": 0}
    config.write_text(json.dumps(cfg))
    run = [sys.executable, "-P", "-m", "apex.server", "--config", str(config)]
    plain = subprocess.run(run, capture_output=True, text=True, timeout=LIMIT_S, env=with_repo_on_path(clean_env()))
    as_json = subprocess.run([*run, "--json"], capture_output=True, text=True, timeout=LIMIT_S,
                             env=with_repo_on_path(clean_env()))
    assert plain.returncode == 1 and plain.stderr.startswith("error: global.retries.max_attempts:"), plain.stderr
    error = json.loads(as_json.stderr)["error"]
    assert error["path"] == "global.retries.max_attempts" and error["exit_code"] == 1


def test_server_module_reads_its_config_once_so_a_pipe_can_feed_it(tmp_path: Path) -> None:
    """`--config <(generate-config)` hands the gateway a pipe, which can be read once: the
    server module must load the config a single time (it read it twice, and the second read
    waited forever for a writer that had gone). The state file names the piped listen address."""
    port = free_port()
    fifo = tmp_path / "config.pipe"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "w") as pipe:  # blocks until the gateway opens the pipe, once
            pipe.write(json.dumps(base_config(port)))

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    proc = subprocess.Popen([sys.executable, "-P", "-m", "apex.server", "--config", str(fifo)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=with_repo_on_path(clean_env()))
    try:
        deadline = time.monotonic() + LIMIT_S
        while http_get(f"http://127.0.0.1:{port}/health", timeout=0.5) is None:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the gateway never started serving"
            time.sleep(0.05)
        state = read_state(state_path(fifo))
        assert state is not None and state.pid == proc.pid and state.listen == f"127.0.0.1:{port}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(LIMIT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
