"""The first hour of a new user and admin, in-process: each bump found (issue 12) stays fixed.

Numbers refer to the issue's list of first-hour bumps; the ones that need a real gateway
process are in tests/integration/test_first_hour.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Callable
from fnmatch import fnmatch
from pathlib import Path

import pytest
from click.testing import Result

import apex
from prometheus_client.parser import text_string_to_metric_families

from apex.config.load import ENV_OVERRIDES, check_host_paths, load_config, load_config_bytes
from apex.errors import ConfigError
from apex.server.gateway import Gateway
from apex.share import DEMO_CONFIG, EXAMPLE_CONFIG, SHARE_DIR, SYSTEMD_UNIT, share_path
from tests.unit.cli.conftest import read
from tests.fixtures import REPO

Run = Callable[..., Result]
MINIMAL = {"channels": [{"name": "m", "provider_type": "mock"}], "routers": [{"name": "r", "channels": [{"name": "m"}]}]}


def config_bytes(**extra: object) -> bytes:
    return json.dumps({**MINIMAL, **extra}).encode()


# --- the wheel and --demo ----------------------------------------------------------


def test_shipped_files_are_package_data() -> None:
    """Every file under apex/share is matched by pyproject's package-data, so a wheel has it."""
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["apex"]
    shipped = [p.relative_to(SHARE_DIR.parent).as_posix() for p in SHARE_DIR.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".py"]
    assert {"share/demo.json", "share/example.json", "share/grafana/apex-dashboard.json",
            "share/systemd/apex.service", "share/systemd/apex.env.example"} <= set(shipped)
    assert [f for f in shipped if not any(fnmatch(f, g) for g in globs)] == []


def test_demo_resolves_to_the_packaged_config_and_needs_no_environment() -> None:
    """`--demo` reads apex/share/demo.json; it validates with an empty environment."""
    path = share_path(DEMO_CONFIG)
    assert path == Path(apex.__path__[0]).resolve() / "share" / "demo.json"
    config = load_config(path, env={})
    assert config.global_.listen == "127.0.0.1:8080"
    assert {c.provider_type for c in config.channels} == {"mock"}


def test_demo_with_config_is_a_usage_error(run: Run, tmp_path: Path) -> None:
    r = run("gateway", "start", "--demo", "--config", str(tmp_path / "x.json"))
    assert r.exit_code == 2 and "--demo runs the packaged demo config" in r.stderr


# --- (2) start-up failures: one line, cause and fix ----------------------------------


def test_validate_catches_a_log_directory_that_does_not_exist(run: Run, tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_bytes(config_bytes(logging={"file": str(tmp_path / "no-such-dir" / "apex.log")}))
    r = run("config", "validate", "--config", str(cfg))
    assert r.exit_code == 1
    assert r.stderr.count("\n") == 1
    assert "logging.file: the log file's directory" in r.stderr and "no-such-dir does not exist" in r.stderr


def test_log_path_under_a_file_is_caught_too(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    config = load_config_bytes(config_bytes(logging={"file": str(tmp_path / "afile" / "apex.log")}), env={})
    with pytest.raises(ConfigError, match="does not exist") as info:
        check_host_paths(config)
    assert info.value.path == "logging.file"


def test_missing_config_is_one_line_with_the_fix(run: Run, tmp_path: Path) -> None:
    r = run("gateway", "start", "--config", str(tmp_path / "nope.json"))
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "nope.json does not exist; create one with `apex init --config" in r.stderr
    assert "or try the offline demo: `apex gateway start --demo`" in r.stderr  # a first run without a config


def test_config_path_that_is_a_directory(run: Run, tmp_path: Path) -> None:
    r = run("gateway", "start", "--config", str(tmp_path))
    assert r.exit_code == 2 and "is a directory" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(ConfigError, match="is a directory; give the JSON file inside it"):
        load_config(tmp_path)


# --- (3) --listen and APEX_* overrides -----------------------------------------------


def test_env_overrides_replace_the_file_value() -> None:
    data = config_bytes(**{"global": {"listen": "127.0.0.1:8080"}, "logging": {"level": "info"}})
    config = load_config_bytes(data, env={"APEX_LISTEN": "127.0.0.1:9999", "APEX_LOG_LEVEL": "debug"})
    assert (config.global_.listen, config.logging.level) == ("127.0.0.1:9999", "debug")
    assert load_config_bytes(data, env={}).global_.listen == "127.0.0.1:8080"
    assert load_config_bytes(config_bytes(), env={"APEX_LISTEN": "0.0.0.0:81"}).global_.listen == "0.0.0.0:81"


def test_a_bad_override_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_bytes(config_bytes(), env={"APEX_LOG_LEVEL": "loud"})
    assert info.value.path == "logging.level" and "$APEX_LOG_LEVEL" in str(info.value)


def test_overrides_are_a_table_and_documented() -> None:
    """Each APEX_* override is one row; the README lists every one of them."""
    readme = (REPO / "README.md").read_text()
    assert [o.variable for o in ENV_OVERRIDES][:2] == ["APEX_LISTEN", "APEX_LOG_LEVEL"]
    for override in ENV_OVERRIDES:
        assert f"`{override.variable}`" in readme, override.variable


def test_cli_edits_do_not_write_overrides_into_the_file(run: Run, cfg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APEX_LISTEN", "127.0.0.1:9999")
    assert run("channel", "add", "extra", "--provider", "mock").exit_code == 0
    assert read(cfg)["global"]["listen"] == "127.0.0.1:8080"


def test_bad_listen_flag_is_a_usage_error(run: Run, cfg: Path) -> None:
    r = run("gateway", "start", "--listen", "nowhere")
    assert r.exit_code == 2 and "--listen" in r.stderr and "127.0.0.1:8080" in r.stderr


@pytest.mark.parametrize(("given", "written"), [("::1", "[::1]:8080"), ("::1:9000", "[::1]:9000"),
                                               ("[::1]:9000", "[::1]:9000"), ("127.0.0.1:8081", "127.0.0.1:8081")])
def test_init_writes_an_ipv6_listen_the_loader_can_bind(run: Run, tmp_path: Path, given: str, written: str) -> None:
    """`apex init --listen ::1` wrote "[:]:1", which validate accepted and start could not bind."""
    cfg = tmp_path / "config.json"
    r = run("init", "--non-interactive", "--listen", given, "--config", str(cfg))
    assert r.exit_code == 0, r.stderr
    assert read(cfg)["global"]["listen"] == written


def test_a_bracketed_listen_host_must_be_ipv6() -> None:
    from apex.config.load import parse_listen

    with pytest.raises(ValueError, match="not an IPv6 address"):
        parse_listen("[:]:1")


# --- (4) every missing ${VAR} at once -------------------------------------------------


def test_every_missing_variable_is_reported_at_once() -> None:
    """The packaged example config names all its unset variables in one error."""
    with pytest.raises(ConfigError) as info:
        load_config(share_path(EXAMPLE_CONFIG), env={})
    raw = share_path(EXAMPLE_CONFIG).read_text()
    variables = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", raw))
    assert len(variables) > 5
    message = str(info.value)
    assert f"{len(variables)} environment variables are not set" in message
    assert all(v in message for v in variables)
    assert "--allow-missing-env" in message


def test_one_variable_used_twice_lists_both_keys() -> None:
    data = config_bytes(**{"global": {"auth": {"keys": ["${K}", "${K}"]}}})
    with pytest.raises(ConfigError, match=r"K \(used by global.auth.keys\[0\], global.auth.keys\[1\]\)"):
        load_config_bytes(data, env={})


def test_allow_missing_env_is_in_the_readme() -> None:
    assert "--allow-missing-env" in (REPO / "README.md").read_text()


# --- (5) status says where it looked ---------------------------------------------------


def test_status_not_running_names_the_config_and_how_to_point(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APEX_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    r = run("status")
    assert r.exit_code == 3
    assert f"no gateway is running for {tmp_path / 'config.json'} (default ./config.json)" in r.stderr
    assert "--config FILE or $APEX_CONFIG" in r.stderr


# --- (6) systemd recipe ----------------------------------------------------------------


def test_init_systemd_keeps_secrets_in_a_private_env_file(run: Run, tmp_path: Path) -> None:
    cfg, env_file, unit = tmp_path / "etc" / "config.json", tmp_path / "etc" / "apex.env", tmp_path / "apex.service"
    r = run("init", "--non-interactive", "--systemd", "--provider", "openai", "--api-key", "sk-live-secret-0123456789",
            "--team", "web", "--config", str(cfg), "--unit-file", str(unit))
    assert r.exit_code == 0, r.stderr
    text = cfg.read_text()
    assert "sk-live-secret" not in text and "apex-vk-" not in text and "apex-tk-" not in text
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o644  # the DynamicUser reads it; it holds no secret
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line and not line.startswith("#"))
    assert env["OPENAI_API_KEY"] == "sk-live-secret-0123456789"
    assert env["APEX_VKEY_DEFAULT"].startswith("apex-vk-") and env["APEX_TEAM_WEB_KEY"].startswith("apex-tk-")
    config = load_config(cfg, env=env)  # what systemd hands the service
    assert config.channels[0].api_key == "sk-live-secret-0123456789"
    unit_text = unit.read_text()
    assert f"EnvironmentFile={env_file}" in unit_text and f"--config {cfg}" in unit_text
    assert "LogsDirectory=apex" in unit_text and "StateDirectory=apex" in unit_text and "DynamicUser=yes" in unit_text
    beside = Path(sys.executable).parent / "apex"  # the apex of this interpreter's install, not PATH's first
    if beside.exists():
        assert f"ExecStart={beside} gateway start" in unit_text


def test_packaged_unit_has_logs_and_state_directories() -> None:
    unit = share_path(SYSTEMD_UNIT).read_text()
    for line in ("LogsDirectory=apex", "StateDirectory=apex", "EnvironmentFile=/etc/apex/apex.env", "ProtectSystem=strict"):
        assert line in unit.splitlines(), line


def test_packaged_unit_runs_on_systemd_before_253() -> None:
    """Type=notify-reload is unknown before systemd 253 (Debian 12, Ubuntu 22.04): start did
    not wait for readiness and `systemctl reload` failed. Type=notify with an ExecReload that
    sends SIGHUP works on every systemd."""
    lines = share_path(SYSTEMD_UNIT).read_text().splitlines()
    assert "Type=notify" in lines and "ExecReload=/bin/kill -HUP $MAINPID" in lines
    assert not any(line.startswith("Type=notify-reload") for line in lines)


# --- (8) JSON syntax errors give line and column -----------------------------------------


def test_json_syntax_error_has_line_and_column(run: Run, tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text('{\n  "global": {\n    "listen": "127.0.0.1:8080",,\n  }\n}\n')
    r = run("config", "validate", "--config", str(cfg))
    assert r.exit_code == 1
    assert "invalid JSON at line 3, column 32" in r.stderr and "byte" not in r.stderr


def test_json_column_counts_characters_not_bytes() -> None:
    with pytest.raises(ConfigError, match="line 1, column 11:"):  # x is the 11th character, the 13th byte
        load_config_bytes('{"ä": "é" x}'.encode(), env={})


# --- (9) --json errors are JSON ---------------------------------------------------------


def test_json_errors_are_json_on_stderr(run: Run, cfg: Path) -> None:
    r = run("channel", "show", "nope", "--json")
    assert r.exit_code == 1 and r.stdout == ""
    assert json.loads(r.stderr) == {"error": {"message": 'no channel named "nope"', "exit_code": 1}}
    usage = run("channel", "add", "--json")
    assert usage.exit_code == 2 and json.loads(usage.stderr)["error"]["exit_code"] == 2


def test_json_config_errors_carry_the_key_path(run: Run, tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_bytes(config_bytes(routers=[{"name": "r", "channels": [{"name": "ghost"}]}]))
    r = run("router", "list", "--config", str(cfg), "--json")
    assert r.exit_code == 0  # listing reads raw JSON; validation happens on edits
    r = run("status", "--config", str(cfg), "--json")
    assert json.loads(r.stdout)["config_error"] == 'routers[0].channels[0].name: unknown channel "ghost"'
    r = run("gateway", "start", "--config", str(cfg), "--json")
    assert r.exit_code == 1
    assert json.loads(r.stderr)["error"]["path"] == "routers[0].channels[0].name"


# --- (11) router delete, the status table, ignored files --------------------------------


def test_deleting_the_last_routable_router_warns(run: Run, tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_bytes(config_bytes())
    r = run("router", "delete", "r", "--config", str(cfg))
    assert r.exit_code == 0 and 'router "r" deleted' in r.stdout
    assert "warning: no router can route any request now" in r.stderr
    keep = tmp_path / "two.json"
    keep.write_bytes(config_bytes(routers=[{"name": "r", "channels": [{"name": "m"}]}, {"name": "s", "channels": [{"name": "m"}]}]))
    r = run("router", "delete", "r", "--config", str(keep))
    assert r.exit_code == 0 and r.stderr == ""


def test_status_table_has_no_empty_header_row(run: Run, cfg: Path) -> None:
    r = run("status")
    assert r.exit_code == 3
    assert "┃" not in r.stdout  # rich draws header cells with heavy bars; none without a header
    assert "│ state " in r.stdout


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs a git checkout")
@pytest.mark.parametrize("name", ["config.json.state", "config.json.pid", "config.json.log", "config.json.bak",
                                  ".config.json.lock", "config/x.json.bak", "config.json", "apex.env"])
def test_files_left_beside_a_config_are_git_ignored(name: str) -> None:
    r = subprocess.run(["git", "check-ignore", "-q", "--no-index", name], cwd=REPO, timeout=30)
    assert r.returncode == 0, name


# --- (12) a bad glob is a config error with its key path ---------------------------------


def test_reversed_range_glob_in_validate_and_channel_add(run: Run, tmp_path: Path, cfg: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(config_bytes(routers=[{"name": "r", "rules": [{"match": {"model": "gpt-[z-a]"}, "channels": [{"name": "m"}]}]}]))
    r = run("config", "validate", "--config", str(bad))
    assert r.exit_code == 1 and "Traceback" not in r.stderr
    assert "routers[0].rules[0].match.model: bad glob: bad character range z-a" in r.stderr
    r = run("channel", "add", "x", "--provider", "mock", "--model", "gpt-[z-a]")
    assert r.exit_code == 1 and "channels[2].models[0]: bad glob" in r.stderr


def test_reversed_range_glob_on_hot_reload_counts_as_failed() -> None:
    gateway = Gateway(load_config_bytes(config_bytes(), env={}))
    bad = config_bytes(channels=[{"name": "m", "provider_type": "mock", "models": ["gpt-[z-a]"]}])
    assert gateway.reload_bytes(bad) is False

    def reloads(result: str) -> float:
        text = gateway.metrics.render()[0].decode()
        return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
                   if s.name == "apex_config_reloads_total" and s.labels.get("result") == result)

    assert reloads("failure") == 1.0 and reloads("success") == 0.0
    assert gateway.reload_bytes(config_bytes()) is True and reloads("success") == 1.0


def test_env_does_not_leak_between_tests() -> None:
    """Guard for the tests above: they set APEX_* only through monkeypatch."""
    assert "APEX_LISTEN" not in os.environ
