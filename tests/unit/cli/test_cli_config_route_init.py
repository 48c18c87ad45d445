"""apex config validate, apex route explain and apex init through click's runner."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from apex.config.load import load_config_bytes
from tests.unit.cli.conftest import read

Run = Callable[..., Result]


def test_validate_ok_and_missing_env(cfg: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """validate fails on an unset ${VAR} naming it, passes with --allow-missing-env or the env set."""
    r = run("config", "validate")
    assert r.exit_code == 1 and "APEX_ADMIN_KEY" in r.stderr and "global.auth.keys[0]" in r.stderr
    assert run("config", "validate", "--allow-missing-env").exit_code == 0
    monkeypatch.setenv("APEX_ADMIN_KEY", "admin-key-1")
    monkeypatch.setenv("SECOND_VKEY", "second-key-1")
    r = run("config", "validate", "--json")
    assert r.exit_code == 0
    assert json.loads(r.stdout) == {"valid": True, "config": str(cfg), "channels": 2, "routers": 2, "teams": 1}


def test_whole_value_references_in_urls_and_listen_pass_without_the_env(cfg: Path, run: Run) -> None:
    """base_url, listen and region written as ${VAR} (the systemd EnvironmentFile setup): an
    admin's shell without the variables can validate with --allow-missing-env and edit (the
    URL and listen checks ran on the unresolved text and refused every edit)."""
    data = read(cfg)
    data["global"]["listen"] = "${APEX_BIND}"
    data["channels"][1]["base_url"] = "${OPENAI_BASE_URL}"
    cfg.write_text(json.dumps(data))
    r = run("config", "validate", "--allow-missing-env")
    assert r.exit_code == 0, r.stderr
    assert run("team", "add", "ml", "--api-key", "tk-ml-0123456789").exit_code == 0
    assert read(cfg)["channels"][1]["base_url"] == "${OPENAI_BASE_URL}"


def test_a_proxy_from_the_env_does_not_hide_a_missing_ca_file(cfg: Path, run: Run) -> None:
    """With the proxy written as ${VAR} (the README's pattern), validate --allow-missing-env
    skipped the whole channel: a missing tls.ca_file passed, and the start failed on it later."""
    data = read(cfg)
    data["channels"][1]["proxy"] = "${CORP_PROXY}"
    data["channels"][1]["tls"] = {"ca_file": "/nonexistent/corp-ca.pem"}
    cfg.write_text(json.dumps(data))
    r = run("config", "validate", "--allow-missing-env")
    assert r.exit_code == 1 and "channels[1].tls" in r.stderr, r.output


def test_validate_reports_key_path(cfg: Path, run: Run) -> None:
    """An unknown enum value is reported with its key path and exit 1, in text and JSON."""
    data = read(cfg)
    data["routers"][0]["rules"][0]["strategy"] = "fastest"
    cfg.write_text(json.dumps(data))
    r = run("config", "validate", "--allow-missing-env")
    assert r.exit_code == 1
    assert "config.json: routers[0].rules[0].strategy: Invalid enum value 'fastest'\n" in r.stderr
    r = run("config", "validate", "--allow-missing-env", "--json")
    assert r.exit_code == 1
    out = json.loads(r.stdout)
    assert (out["path"], out["error"]) == ("routers[0].rules[0].strategy", "Invalid enum value 'fastest'")


@pytest.mark.parametrize(("key", "value", "where", "why"), [
    ("proxy", "ftp://proxy.internal:21", "channels[1].proxy", "proxy must be an http://"),
    ("tls", {"ca_file": "/nonexistent/ca.pem"}, "channels[1].tls.ca_file", "no such file"),
])
def test_validate_checks_what_gateway_start_would_refuse(
    cfg: Path, run: Run, key: str, value: object, where: str, why: str
) -> None:
    """A channel's proxy URL and TLS files are checked as the gateway's load checks them: the
    same key path and reason, so validate never passes a config the gateway refuses."""
    data = read(cfg)
    data["channels"][1][key] = value  # the openai channel (a mock channel has no egress)
    cfg.write_text(json.dumps(data))
    r = run("config", "validate", "--allow-missing-env", "--json")
    assert r.exit_code == 1
    out = json.loads(r.stdout)
    assert out["path"] == where and why in out["error"], out


def test_validate_leaves_an_unset_proxy_variable_to_the_gateway(cfg: Path, run: Run) -> None:
    """With --allow-missing-env, a proxy still reading ${VAR} is not judged as a URL."""
    data = read(cfg)
    data["channels"][1]["proxy"] = "${CORP_PROXY_URL}"
    cfg.write_text(json.dumps(data))
    assert run("config", "validate", "--allow-missing-env").exit_code == 0


def test_explain_team_key(cfg: Path, run: Run) -> None:
    """A team key walks allowed_routers in order; the rule's channel and mapped upstream model show."""
    r = run("route", "explain", "--model", "gpt-4o", "--key", "tk-search-0123456789", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    # "second" has only default channels (demo), which route every model: it wins first.
    assert data["router"] == "second" and data["rule"] is None
    r = run("route", "explain", "--model", "gpt-4o", "--key", "tk-search-0123456789", "--router", "default", "--json")
    data = json.loads(r.stdout)
    assert data["router"] == "default" and data["rule"] == 0
    assert [(c["name"], c["upstream_model"], c["fallback"]) for c in data["channels"]] == [
        ("oa", "gpt-4o-2024-08-06", False), ("demo", "gpt-4o", True)]


def test_explain_vkey_glob_map_and_filter(cfg: Path, run: Run) -> None:
    """A vkey selects its router; a glob map applies; a channel whose models exclude the name is skipped."""
    data = json.loads(run("route", "explain", "--model", "gpt-4o-mini", "--key", "vk-default-0123456789",
                          "--json").stdout)
    assert data["channels"][0] == {"name": "oa", "weight": 2, "upstream_model": "gpt-generic", "fallback": False}
    data = json.loads(run("route", "explain", "--model", "gpt-3.5", "--key", "vk-default-0123456789",
                          "--json").stdout)
    assert data["filtered_out"] == ["oa"]
    assert [c["name"] for c in data["channels"]] == ["demo"]


def test_explain_refusals(cfg: Path, run: Run) -> None:
    """Unknown key is 401, a disallowed model 403, an unknown router 404; all exit 1."""
    r = run("route", "explain", "--model", "gpt-4o", "--key", "nope")
    assert r.exit_code == 1 and "401" in r.stderr
    r = run("route", "explain", "--model", "llama", "--key", "tk-search-0123456789", "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["status"] == 403
    r = run("route", "explain", "--model", "gpt-4o", "--router", "ghost")
    assert r.exit_code == 1 and "404" in r.stderr


def test_explain_unexpanded_reference_matches(cfg: Path, run: Run) -> None:
    """With its variable unset, a key given as the literal ${VAR} selects that router."""
    data = json.loads(run("route", "explain", "--model", "m", "--key", "${SECOND_VKEY}", "--json").stdout)
    assert data["router"] == "second"


def test_init_non_interactive_defaults(tmp_path: Path, run: Run) -> None:
    """init --non-interactive with no other flag writes a valid mock config with a generated vkey."""
    path = tmp_path / "config.json"
    r = run("init", "--non-interactive", "--config", str(path), "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    data = read(path)
    load_config_bytes(path.read_bytes())
    assert data["channels"] == [{"name": "demo", "provider_type": "mock", "models": ["*"]}]
    assert data["routers"][0]["vkey"] == out["vkey"] and len(out["vkey"]) > 20
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_init_never_overwrites_without_force(tmp_path: Path, run: Run) -> None:
    """A second init fails and keeps the file; --force overwrites and keeps a .bak."""
    path = tmp_path / "config.json"
    assert run("init", "--non-interactive", "--config", str(path)).exit_code == 0
    first = path.read_bytes()
    r = run("init", "--non-interactive", "--config", str(path))
    assert r.exit_code == 1 and "--force" in r.stderr
    assert path.read_bytes() == first
    assert run("init", "--non-interactive", "--force", "--config", str(path), "--listen", "::1:9000").exit_code == 0
    assert read(path)["global"]["listen"] == "[::1]:9000"
    assert path.with_name("config.json.bak").read_bytes() == first


def test_init_flags(tmp_path: Path, run: Run) -> None:
    """init flags set provider, key reference, models, router, vkey and team."""
    path = tmp_path / "c.json"
    r = run("init", "--non-interactive", "--config", str(path), "--provider", "openai", "--model", "gpt-4o",
            "--router", "main", "--vkey", "vk-main-0123456789", "--team", "web", "--team-key", "tk-web-0123456789")
    assert r.exit_code == 0, r.output
    data = read(path)
    assert data["channels"] == [{"name": "openai", "provider_type": "openai", "api_key": "${OPENAI_API_KEY}",
                                 "models": ["gpt-4o"]}]
    assert data["routers"] == [{"name": "main", "vkey": "vk-main-0123456789", "channels": [{"name": "openai"}]}]
    assert data["teams"] == [{"id": "web", "api_key": "tk-web-0123456789", "policy": {"allowed_routers": ["main"]}}]
    assert run("init", "--non-interactive", "--config", str(tmp_path / "d.json"), "--listen", "nope").exit_code == 2


def test_init_wizard(tmp_path: Path, run: Run) -> None:
    """The interactive wizard takes answers from stdin, including an optional team."""
    path = tmp_path / "w.json"
    answers = "\n".join(["[::1]:8181", "groq", "fast", "", "${GROQ_KEY}", "llama-*", "edge", "vk-edge-0123456789",
                         "y", "ops", "tk-ops-0123456789"]) + "\n"
    r = run("init", "--config", str(path), input=answers)
    assert r.exit_code == 0, r.output
    data = read(path)
    assert data["global"]["listen"] == "[::1]:8181"
    assert data["channels"] == [{"name": "fast", "provider_type": "groq", "api_key": "${GROQ_KEY}",
                                 "models": ["llama-*"]}]
    assert data["routers"][0]["name"] == "edge" and data["teams"][0]["id"] == "ops"
