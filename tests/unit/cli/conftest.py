"""Fixtures for CLI tests: a temp config file and a CliRunner bound to it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from apex.cli import cli

BASE_CONFIG: dict[str, Any] = {
    "global": {"listen": "127.0.0.1:8080", "auth": {"keys": ["${APEX_ADMIN_KEY}"]}},
    "channels": [
        {"name": "demo", "provider_type": "mock", "models": ["*"]},
        {"name": "oa", "provider_type": "openai", "api_key": "sk-live-abcdefghijklmnop",
         "models": ["gpt-4o", "gpt-4o-*"], "model_map": {"gpt-4o": "gpt-4o-2024-08-06", "gpt-*": "gpt-generic"}},
    ],
    "routers": [
        {"name": "default", "vkey": "vk-default-0123456789",
         "rules": [{"match": {"model": "gpt-*"}, "channels": [{"name": "oa", "weight": 2}], "fallback": ["demo"]}],
         "channels": [{"name": "demo"}]},
        {"name": "second", "vkey": "${SECOND_VKEY}", "channels": [{"name": "demo"}]},
    ],
    "teams": [
        {"id": "search", "api_key": "tk-search-0123456789",
         "policy": {"allowed_routers": ["second", "default"], "allowed_models": ["gpt-4o*", "claude-*"]}},
    ],
}


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A valid config file (with unset ${VAR} references) as $APEX_CONFIG."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(BASE_CONFIG, indent=2))
    monkeypatch.setenv("APEX_CONFIG", str(path))
    monkeypatch.delenv("APEX_ADMIN_KEY", raising=False)
    monkeypatch.delenv("SECOND_VKEY", raising=False)
    monkeypatch.delenv("APEX_STATE_DIR", raising=False)
    return path


@pytest.fixture
def run() -> Callable[..., Result]:
    """Invoke ``apex ARGS...`` in-process and return click's Result."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(cli, list(args), input=input, catch_exceptions=False)

    return invoke


def read(path: Path) -> dict[str, Any]:
    """The config file as JSON."""
    data: dict[str, Any] = json.loads(path.read_text())
    return data
