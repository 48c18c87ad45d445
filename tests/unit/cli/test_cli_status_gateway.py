"""status, gateway stop/reload without a running gateway; state file handling; import guard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any
from pathlib import Path

import pytest
from click.testing import Result

from apex.gateway_state import GatewayState, base_url, pid_alive, read_state, state_path, write_state
from apex.cli.status import parse_channel_up

Run = Callable[..., Result]


def test_status_not_running_exits_3(cfg: Path, run: Run) -> None:
    """status without a gateway exits 3 and still reports the config's counts."""
    r = run("status", "--json")
    assert r.exit_code == 3
    data = json.loads(r.stdout)
    assert data["running"] is False
    assert data["counts"] == {"channels": 2, "routers": 2, "teams": 1}
    assert run("status").exit_code == 3


def test_stale_state_file_is_not_running(cfg: Path, run: Run) -> None:
    """A state file whose pid is dead (or not apex) means not running; stop cleans it up."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    path = state_path(cfg)
    write_state(path, GatewayState(proc.pid, "127.0.0.1:1", str(cfg), time.time(), "0"))
    assert read_state(path) is not None
    assert run("status").exit_code == 3
    # pid 1 is alive but is not apex: never trusted.
    write_state(path, GatewayState(1, "127.0.0.1:1", str(cfg), time.time(), "0"))
    assert not pid_alive(1) or b"apex" in Path("/proc/1/cmdline").read_bytes()
    r = run("gateway", "stop")
    assert r.exit_code == 0 and "not running" in r.stdout
    assert not path.exists()


def test_reload_not_running_exits_3(cfg: Path, run: Run) -> None:
    """gateway reload with no gateway exits 3."""
    assert run("gateway", "reload").exit_code == 3


def test_start_invalid_config_fails_with_key_path(cfg: Path, run: Run) -> None:
    """gateway start refuses an invalid config (here an unset variable) naming the key path."""
    r = run("gateway", "start")
    assert r.exit_code == 1 and "global.auth.keys[0]" in r.stderr
    assert run("gateway", "start", "--daemon", "--foreground").exit_code == 2


def test_state_dir_override(cfg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$APEX_STATE_DIR moves the state file out of the config directory."""
    monkeypatch.setenv("APEX_STATE_DIR", str(tmp_path / "run"))
    assert state_path(cfg) == tmp_path / "run" / "config.json.state"


def test_base_url_and_channel_up_parsing() -> None:
    """Probe URLs bracket IPv6 and map wildcard hosts to loopback; apex_channel_up is parsed."""
    assert base_url("0.0.0.0:80") == "http://127.0.0.1:80"
    assert base_url("[::]:8080") == "http://[::1]:8080"
    text = ('# TYPE apex_channel_up gauge\napex_channel_up{channel="a"} 1.0\n'
            'apex_channel_up{channel="b",provider="x"} 0.0\nother{channel="c"} 1\n')
    assert parse_channel_up(text) == {"a": "up", "b": "down"}


def test_help_and_validate_do_not_import_server(cfg: Path) -> None:
    """`apex --help` and `apex config validate` load neither aiohttp nor apex.server."""
    code = (
        "import sys\n"
        "from apex.cli import cli\n"
        "for args in (['--help'], ['config', 'validate', '--allow-missing-env']):\n"
        "    try:\n"
        "        cli.main(args, prog_name='apex')\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (args, e.code)\n"
        "bad = sorted(m for m in sys.modules if m == 'aiohttp' or m.startswith(('aiohttp.', 'apex.server')))\n"
        "print('LOADED', bad)\n"
    )
    env = {**os.environ, "APEX_CONFIG": str(cfg)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "LOADED []" in out.stdout


def test_usage_and_requests_read_the_demo_gateways_log(run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo gateway logs to the user's state directory; `apex usage` and `apex requests`
    had no --demo and, pointed at the demo config, looked beside the package and found nothing."""
    import time as _time

    from apex.requestlog.record import COLUMNS
    from apex.requestlog.sqlite import _insert_rows, connect_sqlite

    monkeypatch.delenv("APEX_STATE_DIR", raising=False)  # the demo's own default: $XDG_STATE_HOME/apex
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    conn = connect_sqlite(tmp_path / "apex" / "requests.db")
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(ts=_time.time(), request_id="req_demo1", dialect="openai_chat", router="default", model="demo",
               channels_tried="demo", attempts=1, status=200, stream=False, latency_ms=1.0, overhead_ms=0.1,
               upstream_ms=0.9, prompt_tokens=5, completion_tokens=7)
    _insert_rows(conn, [tuple(row[c] for c in COLUMNS)])
    conn.close()
    usage = run("usage", "--demo", "--json")
    assert usage.exit_code == 0, usage.stderr
    assert json.loads(usage.stdout)[0]["requests"] == 1
    shown = run("requests", "--demo", "--json", "show", "req_demo1")
    assert shown.exit_code == 0, shown.stderr
    # Piped output (80 columns) keeps whole cells: ids cut to "…" could not be copied into `show`.
    assert "req_demo1" in run("requests", "--demo").stdout and "…" not in run("usage", "--demo", "--by", "model").stdout
    assert json.loads(shown.stdout)["request_id"] == "req_demo1"
    from apex.share import DEMO_CONFIG, share_path

    os.environ.pop("APEX_STATE_DIR", None)  # set by --demo above (monkeypatch restores it)
    named = run("usage", "--config", str(share_path(DEMO_CONFIG)), "--json")  # the demo's config named: its log too
    assert named.exit_code == 0, named.stderr
    assert json.loads(named.stdout)[0]["requests"] == 1
