"""apex channel add|update|delete|list|show through click's runner."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from tests.unit.cli.conftest import read

Run = Callable[..., Result]


def test_add_writes_every_flag(cfg: Path, run: Run) -> None:
    """channel add stores provider, URLs, key, models, headers and map as given."""
    r = run("channel", "add", "ds", "--provider", "deepseek", "--base-url", "https://api.deepseek.com/v1",
            "--anthropic-base-url", "https://api.deepseek.com/anthropic", "--api-key", "${DEEPSEEK_KEY}",
            "--model", "deepseek-chat", "--model", "deepseek-*", "--header", "X-A=1", "--header", "X-B=a=b",
            "--map", "claude-*=deepseek-chat")
    assert r.exit_code == 0, r.output
    ch = read(cfg)["channels"][-1]
    assert ch == {
        "name": "ds", "provider_type": "deepseek", "base_url": "https://api.deepseek.com/v1",
        "anthropic_base_url": "https://api.deepseek.com/anthropic", "api_key": "${DEEPSEEK_KEY}",
        "headers": {"X-A": "1", "X-B": "a=b"}, "model_map": {"claude-*": "deepseek-chat"},
        "models": ["deepseek-chat", "deepseek-*"],
    }


def test_add_keeps_env_references_elsewhere(cfg: Path, run: Run) -> None:
    """An edit leaves other ${VAR} references in the file unexpanded and keeps a .bak."""
    before = cfg.read_text()
    assert run("channel", "add", "local", "--provider", "ollama").exit_code == 0
    data = read(cfg)
    assert data["global"]["auth"]["keys"] == ["${APEX_ADMIN_KEY}"]
    assert data["routers"][1]["vkey"] == "${SECOND_VKEY}"
    assert cfg.with_name("config.json.bak").read_text() == before


def test_add_duplicate_is_refused(cfg: Path, run: Run) -> None:
    """Adding an existing channel name fails and leaves the file alone."""
    before = cfg.read_bytes()
    r = run("channel", "add", "demo", "--provider", "mock")
    assert r.exit_code == 1
    assert 'channel "demo" already exists' in r.stderr
    assert cfg.read_bytes() == before


def test_add_invalid_is_refused_with_key_path(cfg: Path, run: Run) -> None:
    """A channel that fails validation (no api_key for openai) names the key path; file unchanged."""
    before = cfg.read_bytes()
    r = run("channel", "add", "bad", "--provider", "openai")
    assert r.exit_code == 1
    assert "channels[2].api_key" in r.stderr
    assert cfg.read_bytes() == before


def test_bad_flags_are_usage_errors(cfg: Path, run: Run) -> None:
    """Unknown provider, malformed --header and missing --provider exit 2."""
    assert run("channel", "add", "x", "--provider", "nope").exit_code == 2
    assert run("channel", "add", "x", "--provider", "mock", "--header", "novalue").exit_code == 2
    assert run("channel", "add", "x").exit_code == 2
    assert run("channel", "add", "x", "--provider", "mock", "--bogus").exit_code == 2


def test_update_keeps_omitted_and_replaces_lists(cfg: Path, run: Run) -> None:
    """update changes only given flags; a given repeatable flag replaces the whole list."""
    r = run("channel", "update", "oa", "--model", "gpt-4.1", "--base-url", "https://proxy.example/v1")
    assert r.exit_code == 0, r.output
    ch = read(cfg)["channels"][1]
    assert ch["models"] == ["gpt-4.1"]
    assert ch["base_url"] == "https://proxy.example/v1"
    assert ch["api_key"] == "sk-live-abcdefghijklmnop"
    assert ch["model_map"] == {"gpt-4o": "gpt-4o-2024-08-06", "gpt-*": "gpt-generic"}


def test_update_unknown_channel(cfg: Path, run: Run) -> None:
    """Updating a channel that does not exist fails naming it."""
    r = run("channel", "update", "ghost", "--api-key", "x")
    assert r.exit_code == 1 and 'no channel named "ghost"' in r.stderr


def test_delete_used_channel_names_the_router(cfg: Path, run: Run) -> None:
    """Deleting a channel a router uses is refused with the router's name; --yes changes nothing."""
    before = cfg.read_bytes()
    r = run("channel", "delete", "oa", "--yes")
    assert r.exit_code == 1
    assert 'router "default"' in r.stderr
    assert cfg.read_bytes() == before


def test_delete_unused_channel(cfg: Path, run: Run) -> None:
    """An unused channel is deleted without a prompt."""
    assert run("channel", "add", "spare", "--provider", "mock").exit_code == 0
    r = run("channel", "delete", "spare", "--json")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["result"] == "deleted"
    assert [c["name"] for c in read(cfg)["channels"]] == ["demo", "oa"]


def test_list_masks_secrets(cfg: Path, run: Run) -> None:
    """list shows neither the raw api_key nor a credential header, in table or JSON."""
    assert run("channel", "update", "oa", "--header", "Authorization=Bearer sk-header-secret-999").exit_code == 0
    table = run("channel", "list")
    assert table.exit_code == 0
    assert "sk-live-abcdefghijklmnop" not in table.stdout and "oa" in table.stdout
    listed = json.loads(run("channel", "list", "--json").stdout)
    assert [c["name"] for c in listed] == ["demo", "oa"]
    assert listed[1]["api_key"] == "sk-…mnop"
    assert "sk-header-secret-999" not in json.dumps(listed)


def test_show_json_includes_users(cfg: Path, run: Run) -> None:
    """show --json gives the masked channel and the routers that use it."""
    r = run("channel", "show", "demo", "--json")
    data = json.loads(r.stdout)
    assert data["provider_type"] == "mock"
    assert 'router "default" (default channels)' in data["used_by"]
    assert 'router "default" (rule 0 fallback)' in data["used_by"]
    assert 'router "second" (default channels)' in data["used_by"]
    assert run("channel", "show", "ghost").exit_code == 1


def test_config_flag_beats_environment(cfg: Path, tmp_path: Path, run: Run) -> None:
    """--config on the command (or on apex) wins over $APEX_CONFIG."""
    other = tmp_path / "other.json"
    other.write_text('{"channels": [{"name": "z", "provider_type": "mock"}]}')
    assert [c["name"] for c in json.loads(run("channel", "list", "--json", "--config", str(other)).stdout)] == ["z"]
    assert [c["name"] for c in json.loads(run("--config", str(other), "channel", "list", "--json").stdout)] == ["z"]


def test_missing_config_file(tmp_path: Path, run: Run) -> None:
    """A missing config file is a one-line error, exit 1."""
    r = run("channel", "list", "--config", str(tmp_path / "nope.json"))
    assert r.exit_code == 1 and "nope.json does not exist; create one with `apex init" in r.stderr


def test_egress_flags_write_update_and_remove_the_keys(cfg: Path, run: Run) -> None:
    """--proxy, --max-connections and the tls flags write the pinned keys (tls nested); on
    update an empty value (or --max-connections 0) removes a key, and an emptied tls with it."""
    r = run("channel", "add", "corp", "--provider", "openai", "--api-key", "${OPENAI_KEY}",
            "--proxy", "http://alice:s3cret-pw@proxy.corp:3128", "--max-connections", "20", "--no-verify")
    assert r.exit_code == 0, r.output
    assert "s3cret-pw" not in r.output
    ch = read(cfg)["channels"][-1]
    assert ch["proxy"] == "http://alice:s3cret-pw@proxy.corp:3128"
    assert ch["max_connections"] == 20 and ch["tls"] == {"verify": False}

    r = run("channel", "update", "corp", "--proxy", "direct", "--verify", "--max-connections", "0")
    assert r.exit_code == 0, r.output
    ch = read(cfg)["channels"][-1]
    assert ch["proxy"] == "direct" and ch["tls"] == {"verify": True} and "max_connections" not in ch

    r = run("channel", "update", "corp", "--proxy", "", "--verify", "")
    assert r.exit_code == 2  # --verify is a switch, not a value
    r = run("channel", "update", "corp", "--proxy", "")
    assert r.exit_code == 0, r.output
    ch = read(cfg)["channels"][-1]
    assert "proxy" not in ch


def test_bad_egress_flags_name_the_key(cfg: Path, run: Run) -> None:
    """A proxy or a TLS file the gateway would refuse is refused by the edit (the file is left
    alone): an edit never writes what `apex config validate` and the next reload reject."""
    before = cfg.read_bytes()
    r = run("channel", "add", "corp", "--provider", "openai", "--api-key", "k", "--ca-file", "/nonexistent/ca.pem")
    assert r.exit_code == 1 and "channels[2].tls.ca_file: no such file" in r.stderr, r.output
    r = run("channel", "add", "corp", "--provider", "openai", "--api-key", "k",
            "--cert-file", "/etc/hostname", "--key-file", "/etc/hostname")
    assert r.exit_code == 1 and "channels[2].tls: cannot load the certificates" in r.stderr, r.output
    r = run("channel", "add", "corp", "--provider", "openai", "--api-key", "k", "--proxy", "ftp://proxy.corp:21")
    assert r.exit_code == 1 and "channels[2].proxy" in r.stderr
    r = run("channel", "add", "corp", "--provider", "openai", "--api-key", "k", "--proxy", "socks4://h:1080")
    assert r.exit_code == 1 and "channels[2].proxy" in r.stderr
    assert run("channel", "add", "corp", "--provider", "openai", "--max-connections", "-1").exit_code == 2
    assert cfg.read_bytes() == before


def test_show_and_list_mask_the_proxy_password(cfg: Path, run: Run) -> None:
    """The proxy URL's password is masked like an api_key, with or without a scheme."""
    assert run("channel", "add", "corp", "--provider", "openai", "--api-key", "${OPENAI_KEY}",
               "--proxy", "alice:s3cret-pw@proxy.corp:3128").exit_code == 0
    for args in (("channel", "show", "corp", "--json"), ("channel", "list", "--json"), ("channel", "show", "corp")):
        r = run(*args)
        assert r.exit_code == 0, r.output
        assert "s3cret-pw" not in r.output
    shown = json.loads(run("channel", "show", "corp", "--json").output)
    assert shown["proxy"] == "alice:****@proxy.corp:3128"


def test_listings_mask_a_base_url_password_the_load_refuses(cfg: Path, run: Run) -> None:
    """A file written by hand with user:password in base_url: the load refuses it (never sent),
    and the listings that still read it show it masked (it was printed in clear)."""
    data = json.loads(cfg.read_text())
    data["channels"][0]["base_url"] = "http://buser:basepw-SECRET-B1@127.0.0.1:9/v1"
    cfg.write_text(json.dumps(data))
    for args in (("channel", "list"), ("channel", "show", data["channels"][0]["name"], "--json")):
        r = run(*args)
        assert "basepw-SECRET-B1" not in r.output, r.output


def test_update_with_an_empty_value_removes_the_key(cfg: Path, run: Run) -> None:
    """README: on update "" removes a key; --base-url "" goes back to the provider's default
    (it was refused as a URL that does not match)."""
    assert run("channel", "add", "ds", "--provider", "deepseek", "--api-key", "sk-x", "--base-url", "https://proxy.example.com",
               "--anthropic-base-url", "https://proxy.example.com/anthropic").exit_code == 0
    for flag, key in (("--base-url", "base_url"), ("--anthropic-base-url", "anthropic_base_url")):
        r = run("channel", "update", "ds", flag, "")
        assert r.exit_code == 0, r.output
        assert key not in read(cfg)["channels"][-1]
