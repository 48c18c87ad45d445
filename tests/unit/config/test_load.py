"""Config validation: every error kind is one ConfigError naming its JSON path."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from apex.config.load import load_config_bytes
from apex.errors import ConfigError

BASE: dict[str, Any] = {
    "global": {"listen": "127.0.0.1:8080", "auth": {"keys": ["g1"]}},
    "channels": [
        {"name": "oa", "provider_type": "openai", "api_key": "${OPENAI_KEY}"},
        {"name": "demo", "provider_type": "mock", "models": ["*"]},
    ],
    "routers": [
        {"name": "default", "vkey": "v1",
         "rules": [{"match": {"model": "gpt-*"}, "channels": [{"name": "oa", "weight": 3}], "fallback": ["demo"]}],
         "channels": [{"name": "demo"}]},
    ],
    "teams": [{"id": "t", "api_key": "tk", "policy": {"allowed_routers": ["default"], "allowed_models": ["gpt-*"]}}],
}
ENV = {"OPENAI_KEY": "sk-1"}


def load(cfg: dict[str, Any], env: dict[str, str] | None = None) -> object:
    return load_config_bytes(json.dumps(cfg).encode(), ENV if env is None else env)


def mutate(path: str, value: Any) -> dict[str, Any]:
    """A copy of BASE with ``value`` set at a dotted path (``[i]`` for list items); None deletes."""
    cfg = copy.deepcopy(BASE)
    node: Any = cfg
    parts = path.replace("[", ".").replace("]", "").split(".")
    for p in parts[:-1]:
        node = node[int(p)] if p.isdigit() else node.setdefault(p, {})
    last = parts[-1]
    key: Any = int(last) if last.isdigit() else last
    if value is None:
        del node[key]
    else:
        node[key] = value
    return cfg


def test_base_config_loads() -> None:
    """The base config used by the table is valid, with ${VAR} substituted."""
    cfg = load(BASE)
    assert cfg.channels[0].api_key == "sk-1"  # type: ignore[attr-defined]
    assert cfg.routers[0].rules[0].strategy == "round_robin"  # type: ignore[attr-defined]
    assert cfg.teams[0].policy.rate_limit is None  # type: ignore[attr-defined]


CASES: list[tuple[str, dict[str, Any], str]] = [
    ("unknown top-level key", mutate("extra", 1), "extra: unknown key"),
    ("unknown nested key", mutate("routers[0].rules[0].stratgy", "priority"), "routers[0].rules[0].stratgy: unknown key"),
    ("unknown strategy", mutate("routers[0].rules[0].strategy", "fastest"), 'routers[0].rules[0].strategy: unknown value "fastest"'),
    ("unknown provider", mutate("channels[0].provider_type", "acme"), 'channels[0].provider_type: unknown value "acme"'),
    ("wrong type", mutate("global.timeouts", {"connect_ms": "5s"}), "global.timeouts.connect_ms: expected int, got str"),
    ("missing name", mutate("channels[1].name", None), "channels[1].name: required key is missing"),
    ("missing api key", mutate("channels[0].api_key", None), "channels[0].api_key: required for provider_type openai"),
    ("dangling rule channel", mutate("routers[0].rules[0].channels", [{"name": "nope"}]), 'routers[0].rules[0].channels[0].name: unknown channel "nope"'),
    ("dangling router channel", mutate("routers[0].channels", [{"name": "nope"}]), 'routers[0].channels[0].name: unknown channel "nope"'),
    ("dangling fallback", mutate("routers[0].rules[0].fallback", ["ghost"]), 'routers[0].rules[0].fallback[0]: unknown channel "ghost"'),
    ("dangling team router", mutate("teams[0].policy.allowed_routers", ["ghost"]), 'teams[0].policy.allowed_routers[0]: unknown router "ghost"'),
    ("duplicate channel", mutate("channels[1].name", "oa"), 'channels[1].name: duplicate channel name "oa"'),
    ("duplicate router", mutate("routers", [BASE["routers"][0], {**BASE["routers"][0], "vkey": "v2"}]), 'routers[1].name: duplicate router name "default"'),
    ("bad glob", mutate("routers[0].rules[0].match.model", "gpt-[4"), "routers[0].rules[0].match.model: bad glob"),
    ("bad glob in team", mutate("teams[0].policy.allowed_models", ["[x"]), "teams[0].policy.allowed_models[0]: bad glob"),
    ("zero weight", mutate("routers[0].rules[0].channels[0].weight", 0), "routers[0].rules[0].channels[0].weight: must be positive"),
    ("negative weight", mutate("routers[0].rules[0].channels[0].weight", -2), "routers[0].rules[0].channels[0].weight: must be positive"),
    ("anonymous off loopback", mutate("global", {"listen": "0.0.0.0:8080", "auth": {"anonymous": True}}), "global.auth.anonymous: anonymous auth is only allowed"),
    ("bad listen", mutate("global.listen", "8080"), "global.listen: bad listen address"),
    ("bad base_url", mutate("channels[0].base_url", "api.openai.com"), "channels[0].base_url: expected an http(s) URL"),
    ("reused key", mutate("teams[0].api_key", "v1"), "teams[0].api_key: the same key is already used at routers[0].vkey"),
    ("zero attempts", mutate("global.retries", {"max_attempts": 0}), "global.retries.max_attempts: must be positive"),
    ("rule without channels", mutate("routers[0].rules[0].channels", []), "routers[0].rules[0].channels: a rule needs at least one channel"),
    ("header value with a line break", mutate("channels[0].headers", {"X-Team": "a\r\nX-Injected: 1"}), "channels[0].headers.X-Team: a header value must be one line of Latin-1 text"),
    ("header value outside Latin-1", mutate("channels[0].headers", {"X-Team": "équipe ✓"}), "channels[0].headers.X-Team: a header value must be one line of Latin-1 text"),
    ("header name with a space", mutate("channels[0].headers", {"X Team": "a"}), 'channels[0].headers: bad header name "X Team"'),
    ("api key with a line break", mutate("channels[0].api_key", "sk-1\nX-Injected: 1"), "channels[0].api_key: an API key must be one line of Latin-1 text"),
    ("channel named twice in a rule", mutate("routers[0].rules[0].channels", [{"name": "oa"}, {"name": "oa"}]), 'routers[0].rules[0].channels[1].name: channel "oa" is listed twice'),
]


@pytest.mark.parametrize(("name", "cfg", "message"), CASES, ids=[c[0] for c in CASES])
def test_config_errors_name_their_path(name: str, cfg: dict[str, Any], message: str) -> None:
    """Each invalid config is refused with a message that starts with the offending key path."""
    with pytest.raises(ConfigError) as info:
        load(cfg)
    assert str(info.value).startswith(message), str(info.value)


def test_missing_env_var_is_named() -> None:
    """A ${VAR} that is not set is an error naming the variable and the key holding it."""
    with pytest.raises(ConfigError) as info:
        load(BASE, env={})
    assert str(info.value) == "channels[0].api_key: environment variable OPENAI_KEY is not set"


def test_invalid_json() -> None:
    """A file that is not JSON says so."""
    with pytest.raises(ConfigError, match="invalid JSON"):
        load_config_bytes(b"{", {})


def test_defaults_fill_optional_sections() -> None:
    """global, logging, metrics and teams may be left out."""
    cfg = load_config_bytes(b'{"channels":[{"name":"d","provider_type":"mock"}],"routers":[{"name":"r","channels":[{"name":"d"}]}]}', {})
    assert cfg.global_.listen == "127.0.0.1:8080"
    assert cfg.global_.retries.retry_on_status == (429, 500, 502, 503, 504)
    assert cfg.metrics.path == "/metrics" and cfg.teams == ()


@pytest.mark.parametrize("listen", ["127.0.0.1:8080", "[::1]:8080", "localhost:9000", "127.1.2.3:1"])
def test_anonymous_on_loopback_allowed(listen: str) -> None:
    """Anonymous auth is accepted on every loopback form."""
    load(mutate("global", {"listen": listen, "auth": {"anonymous": True}}))
