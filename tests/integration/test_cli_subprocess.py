"""The real `apex` executable (python -m apex) end to end, and concurrent CLI writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from apex.config.load import load_config_bytes
from tests.integration.test_reload import with_repo_on_path


def apex(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "apex", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env=with_repo_on_path(env))


def test_script_flow(tmp_path: Path) -> None:
    """init, channel/router/team edits, validate and explain work as a script would use them."""
    import os

    env = {**os.environ, "APEX_CONFIG": str(tmp_path / "config.json")}
    env.pop("APEX_STATE_DIR", None)
    assert apex("init", "--non-interactive", env=env).returncode == 0
    steps = [
        ["channel", "add", "oa", "--provider", "openai", "--api-key", "sk-abcdefghijklmnopqrst", "--model", "gpt-*"],
        ["router", "rule", "add", "default", "--model", "gpt-*", "--channel", "oa", "--fallback", "demo"],
        ["team", "add", "web", "--api-key", "tk-web-abcdefghijkl", "--router", "default", "--rpm", "5"],
        ["config", "validate"],
    ]
    for step in steps:
        r = apex(*step, env=env)
        assert r.returncode == 0, (step, r.stderr)
    listed = json.loads(apex("channel", "list", "--json", env=env).stdout)
    assert listed[1]["api_key"] == "sk-…qrst"
    explained = json.loads(apex("route", "explain", "--model", "gpt-4o", "--key", "tk-web-abcdefghijkl", "--json",
                                env=env).stdout)
    assert [c["name"] for c in explained["channels"]] == ["oa", "demo"]
    bad = apex("channel", "add", "x", "--provider", "mock", "--map", "oops", env=env)
    assert bad.returncode == 2
    refused = apex("channel", "delete", "oa", env=env)
    assert refused.returncode == 1 and 'router "default"' in refused.stderr
    assert apex("--help", env=env).returncode == 0


def test_default_config_path_is_cwd(tmp_path: Path) -> None:
    """Without --config or $APEX_CONFIG the CLI uses ./config.json."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "APEX_CONFIG"}
    assert apex("init", "--non-interactive", cwd=tmp_path, env=env).returncode == 0
    assert (tmp_path / "config.json").exists()


def test_concurrent_cli_writes_do_not_corrupt(tmp_path: Path) -> None:
    """Several CLIs adding channels at once all succeed and the file stays valid with every channel."""
    config = tmp_path / "config.json"
    assert apex("init", "--non-interactive", "--config", str(config)).returncode == 0
    procs = [
        subprocess.Popen([sys.executable, "-m", "apex", "channel", "add", f"c{i}", "--provider", "mock",
                          "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=with_repo_on_path(None))
        for i in range(8)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    loaded = load_config_bytes(config.read_bytes())
    assert {c.name for c in loaded.channels} == {"demo"} | {f"c{i}" for i in range(8)}
