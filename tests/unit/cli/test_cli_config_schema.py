"""`apex config schema` and `apex config show --effective`, run as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from tests.fixtures import REPO

SHIPPED = REPO / "apex" / "share" / "config.schema.json"


def apex(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "apex", *args], capture_output=True, text=True, timeout=60, env=full)


def test_schema_command_matches_the_shipped_file_and_validates_configs() -> None:
    r = apex("config", "schema")
    assert r.returncode == 0, r.stderr
    schema = json.loads(r.stdout)
    assert r.stdout == SHIPPED.read_text(), "apex/share/config.schema.json is stale: apex config schema -o it"
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for name in ("demo.json", "example.json"):
        shipped = next(p for p in (REPO / "apex" / "share" / name, REPO / "config" / name) if p.exists())
        assert list(validator.iter_errors(json.loads(shipped.read_text()))) == [], name
    hinted = {"$schema": "./config.schema.json", "channels": [{"name": "m", "provider_type": "mock"}],
              "routers": [{"name": "r", "channels": [{"name": "m"}]}]}
    assert list(validator.iter_errors(hinted)) == []
    bad: dict[str, Any] = {"channels": [{"name": "x", "provider_type": "nope"}], "routers": [], "colour": 1}
    messages = " ".join(e.message for e in validator.iter_errors(bad))
    assert "colour" in messages and "nope" in messages
    for listen, ok in (("127.0.0.1", False), ("127.0.0.1:8080", True), ("[::1]:8080", True)):  # as the loader
        assert (not list(validator.iter_errors({**hinted, "global": {"listen": listen}}))) is ok, listen


def test_show_effective_fills_defaults_and_masks_secrets(tmp_path: Path) -> None:
    cfg = {
        "global": {"auth": {"keys": ["global-secret-key-123456"]},
                   "rate_limit_store": {"type": "redis", "url": "redis://:hunter2hunter2@127.0.0.1:6379/0"},
                   "tracing": {"otlp_endpoint": "http://otuser:OtelPass42@127.0.0.1:4318",
                               "headers": {"x-honeycomb-team": "hc-live-9f8e7d6c5b4a"}}},
        "channels": [{"name": "oa", "provider_type": "openai", "api_key": "sk-live-abcdefghijklmnop",
                      "headers": {"X-Api-Token": "tok-abcdefghijklmnop", "OpenAI-Organization": "org-1"}},
                     {"name": "br", "provider_type": "bedrock", "region": "us-east-1",
                      "aws": {"access_key_id": "AKIAEXAMPLEKEYID1234", "secret_access_key": "aws-secret-abcdefghij"}}],
        "routers": [{"name": "r", "vkey": "${MY_VKEY}", "channels": [{"name": "oa"}]}],
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    r = apex("config", "show", "--effective", "--config", str(path), env={"MY_VKEY": "vk-from-env-0123456789"})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for secret in ("global-secret-key-123456", "sk-live-abcdefghijklmnop", "hunter2hunter2", "tok-abcdefghijklmnop",
                   "vk-from-env-0123456789", "hc-live-9f8e7d6c5b4a", "OtelPass42", "AKIAEXAMPLEKEYID1234",
                   "aws-secret-abcdefghij"):
        assert secret not in r.stdout
    assert out["global"]["timeouts"]["connect_ms"] == 5000  # a default the file did not write
    assert out["global"]["rate_limit_store"]["url"] == "redis://:****@127.0.0.1:6379/0"
    assert out["channels"][0]["headers"]["OpenAI-Organization"] == "org-1"
    assert out["channels"][0]["api_key"] == "sk-…mnop"


@pytest.mark.parametrize("args", [("config", "show"), ("config", "show", "--effective", "--config", "/nonexistent.json")])
def test_show_needs_effective_and_a_readable_config(args: tuple[str, ...]) -> None:
    r = apex(*args)
    assert r.returncode != 0 and r.stderr
