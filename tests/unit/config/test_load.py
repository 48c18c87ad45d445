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
    ("missing api key", mutate("channels[0].api_key", None), "channels[0].api_key: required for provider_type openai"),
    ("dangling rule channel", mutate("routers[0].rules[0].channels", [{"name": "nope"}]), 'routers[0].rules[0].channels[0].name: unknown channel "nope"'),
    ("dangling router channel", mutate("routers[0].channels", [{"name": "nope"}]), 'routers[0].channels[0].name: unknown channel "nope"'),
    ("dangling fallback", mutate("routers[0].rules[0].fallback", ["ghost"]), 'routers[0].rules[0].fallback[0]: unknown channel "ghost"'),
    ("dangling team router", mutate("teams[0].policy.allowed_routers", ["ghost"]), 'teams[0].policy.allowed_routers[0]: unknown router "ghost"'),
    ("duplicate channel", mutate("channels[1].name", "oa"), 'channels[1].name: duplicate channel name "oa"'),
    ("duplicate router", mutate("routers", [BASE["routers"][0], {**BASE["routers"][0], "vkey": "v2"}]), 'routers[1].name: duplicate router name "default"'),
    ("bad glob", mutate("routers[0].rules[0].match.model", "gpt-[4"), "routers[0].rules[0].match.model: bad glob"),
    ("bad glob in team", mutate("teams[0].policy.allowed_models", ["[x"]), "teams[0].policy.allowed_models[0]: bad glob"),
    ("anonymous off loopback", mutate("global", {"listen": "0.0.0.0:8080", "auth": {"anonymous": True}}), "global.auth.anonymous: anonymous auth is only allowed"),
    ("bad listen", mutate("global.listen", "8080"), "global.listen: bad listen address"),
    ("reused key", mutate("teams[0].api_key", "v1"), "teams[0].api_key: the same key is already used at routers[0].vkey"),
    ("channel named twice in a rule", mutate("routers[0].rules[0].channels", [{"name": "oa"}, {"name": "oa"}]), 'routers[0].rules[0].channels[1].name: channel "oa" is listed twice'),
    ("fallback named twice", mutate("routers[0].rules[0].fallback", ["demo", "demo"]), 'routers[0].rules[0].fallback[1]: channel "demo" is listed twice in fallback'),
    # upstream URLs the schema's pattern lets through but no request could use
    ("port past 65535", mutate("channels[0].base_url", "https://api.example.com:99999/v1"), "channels[0].base_url: the port must be a number from 1 to 65535"),
    ("port zero", mutate("channels[0].anthropic_base_url", "http://h:0"), "channels[0].anthropic_base_url: the port must be"),
    ("port not a number", mutate("channels[0].base_url", "http://h:abc/v1"), "channels[0].base_url: the port must be"),
    ("space in the host", mutate("channels[0].base_url", "http://a b.example/v1"), "channels[0].base_url: the URL has no usable host name"),
    ("host with no IDNA form", mutate("channels[0].base_url", "http://a..b\u00e9/v1"), "channels[0].base_url: the host name"),
    ("bad proxy", mutate("channels[0].proxy", "socks4://h:1080"), "channels[0].proxy: proxy must be an http://"),
]


@pytest.mark.parametrize(("name", "cfg", "message"), CASES, ids=[c[0] for c in CASES])
def test_config_errors_name_their_path(name: str, cfg: dict[str, Any], message: str) -> None:
    """Each config breaking a rule between values is refused with a message that starts with
    the offending key path."""
    with pytest.raises(ConfigError) as info:
        load(cfg)
    assert str(info.value).startswith(message), str(info.value)


# What a metrics.path that is Apex's own, or that no request path could match, is told.
METRICS_PATH_REFUSED = ("Expected `str` matching regex '^/(?!((v1/chat/completions|v1/responses|v1/embeddings|v1/models|"
                        "v1/messages|v1/messages/count_tokens|v1beta/models|health|ready)$|v1/models/|v1beta/models/))"
                        "[A-Za-z0-9._~/-]*$(?!\\\\n)'")

# msgspec shows a pattern as Python's repr of it.
HEADER_VALUE = repr(r"^[\t\x20-\x7e\x80-\xff]*$(?!\n)")
HEADER_NAME = repr(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$(?!\n)")
HTTP_URL = repr(r"^(https?://[^/?#\s]|\$\{)")
# Each kind of rule a type states, refused by msgspec while decoding: (case, config, key path, message).
TYPE_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown top-level field", mutate("extra", 1), "", "Object contains unknown field `extra`"),
    ("unknown nested field", mutate("routers[0].rules[0].stratgy", "priority"), "routers[0].rules[0]",
     "Object contains unknown field `stratgy`"),
    ("missing field", mutate("channels[1].name", None), "channels[1]", "Object missing required field `name`"),
    ("wrong type", mutate("global.timeouts", {"connect_ms": "5s"}), "global.timeouts.connect_ms", "Expected `int`, got `str`"),
    ("Literal", mutate("routers[0].rules[0].strategy", "fastest"), "routers[0].rules[0].strategy",
     "Invalid enum value 'fastest'"),
    ("Literal provider", mutate("channels[0].provider_type", "acme"), "channels[0].provider_type", "Invalid enum value 'acme'"),
    ("ge", mutate("global.retries", {"max_attempts": 0}), "global.retries.max_attempts", "Expected `int` >= 1"),
    ("ge weight", mutate("routers[0].rules[0].channels[0].weight", -2), "routers[0].rules[0].channels[0].weight",
     "Expected `int` >= 1"),
    ("ge zero", mutate("global.shutdown_grace_ms", -1), "global.shutdown_grace_ms", "Expected `int` >= 0"),
    ("le", mutate("global.retries", {"retry_on_status": [429, 600]}), "global.retries.retry_on_status[1]",
     "Expected `int` <= 599"),
    ("float range", mutate("global.tracing", {"otlp_endpoint": "http://c:4318", "sample_ratio": 1.5}),
     "global.tracing.sample_ratio", "Expected `float` <= 1.0"),
    ("min_length string", mutate("teams[0].id", ""), "teams[0].id", "Expected `str` of length >= 1"),
    ("min_length array", mutate("routers[0].rules[0].channels", []), "routers[0].rules[0].channels",
     "Expected `array` of length >= 1"),
    ("pattern", mutate("channels[0].base_url", "api.openai.com"), "channels[0].base_url",
     f"Expected `str` matching regex {HTTP_URL}"),
    ("pattern, a mapping's entry", mutate("channels[0].headers", {"X-Ok": "a", "X-Team": "a\r\nX-Injected: 1"}),
     "channels[0].headers.X-Team", f"Expected `str` matching regex {HEADER_VALUE}"),
    ("pattern, a newline at the end", mutate("channels[0].api_key", "sk-1\n"), "channels[0].api_key",
     f"Expected `str` matching regex {HEADER_VALUE}"),
    ("pattern, not Latin-1", mutate("channels[0].headers", {"X-Team": "équipe ✓"}), "channels[0].headers.X-Team",
     f"Expected `str` matching regex {HEADER_VALUE}"),
    ("pattern, a mapping's key", mutate("channels[0].headers", {"X Team": "a"}), "channels[0].headers",
     f'Expected `str` matching regex {HEADER_NAME} (the key "X Team")'),
    ("a tracing header's value", mutate("global.tracing", {"otlp_endpoint": "http://c:4318", "headers": {"Authorization": "a\n"}}),
     "global.tracing.headers.Authorization", f"Expected `str` matching regex {HEADER_VALUE}"),
    ("price in a table", mutate("prices", {"a-*": {"input": 1}, "b-*": {"input": 1, "output": -0.5}}),
     "prices.b-*.output", "Expected `float` >= 0.0"),
    ("reserved metrics path", mutate("metrics", {"path": "/health"}), "metrics.path",
     METRICS_PATH_REFUSED),
    # Gemini's model list and every path under the model prefixes are Apex's too (they passed,
    # and then no path served the metrics)
    ("reserved Gemini path", mutate("metrics", {"path": "/v1beta/models"}), "metrics.path",
     METRICS_PATH_REFUSED),
    ("reserved model path", mutate("metrics", {"path": "/v1beta/models/gemini-2.5-flash:generateContent"}), "metrics.path",
     METRICS_PATH_REFUSED),
    # a query, fragment or escape that no request path can match (it loaded; nothing served the metrics)
    ("metrics path with a query", mutate("metrics", {"path": "/metrics?x=1"}), "metrics.path",
     METRICS_PATH_REFUSED),
    ("metrics path with an escape", mutate("metrics", {"path": "/m%65trics"}), "metrics.path",
     METRICS_PATH_REFUSED),
]


@pytest.mark.parametrize(("name", "cfg", "path", "message"), TYPE_CASES, ids=[c[0] for c in TYPE_CASES])
def test_value_rules_are_reported_by_msgspec_with_the_key_path(name: str, cfg: dict[str, Any], path: str, message: str) -> None:
    """A value breaking its type's rule gets msgspec's own message, its location as the key path."""
    with pytest.raises(ConfigError) as info:
        load(cfg)
    assert (info.value.path, info.value.detail) == (path, message)
    assert str(info.value) == (f"{path}: {message}" if path else message)


def test_a_bad_override_value_names_the_variable_and_the_path() -> None:
    """A value from an APEX_* override that breaks its type names the variable too."""
    with pytest.raises(ConfigError) as info:
        load(BASE, env={**ENV, "APEX_METRICS_PATH": "/ready"})
    assert info.value.path == "metrics.path" and str(info.value).endswith("(the value comes from $APEX_METRICS_PATH)")


def test_missing_env_var_is_named() -> None:
    """A ${VAR} that is not set is an error naming the variable and the key holding it."""
    with pytest.raises(ConfigError) as info:
        load(BASE, env={})
    assert str(info.value) == "channels[0].api_key: environment variable OPENAI_KEY is not set"


def test_invalid_json() -> None:
    """A file that is not JSON says so, with the line and column when a parser can tell."""
    with pytest.raises(ConfigError) as info:
        load_config_bytes(b'{\n  "global": {"listen" "x"}}', {})
    assert str(info.value) == "invalid JSON at line 2, column 23: Expecting ':' delimiter"
    with pytest.raises(ConfigError) as info:  # Python's parser takes NaN; msgspec (and JSON) do not
        load_config_bytes(b'{"global": {"max_body_bytes": NaN}}', {})
    assert str(info.value).startswith("invalid JSON: ")


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


@pytest.mark.parametrize("url", ["http://例え.jp/v1", "http://xn--r8jz45g.jp/v1", "http://[::1]:8080/v1", "https://h:65535",
                                 "https://${HOST}/v1"])
def test_upstream_urls_that_load(url: str) -> None:
    """An internationalised name (sent in its IDNA form), an IPv6 literal, the last port, and a
    ${VAR} host (checked once resolved: here it is) all load."""
    load(mutate("channels[0].base_url", url), {**ENV, "HOST": "api.example.com"})



@pytest.mark.parametrize(("text", "path"), [
    ('{"channels": [], "routers": [], "routers": []}', "routers"),
    ('{"channels": [{"name": "a", "provider_type": "mock", "name": "b"}]}', "channels[0].name"),
    ('{"global": {"retries": {"max_attempts": 2, "max_attempts": 3}}}', "global.retries.max_attempts"),
])
def test_a_key_written_twice_in_one_object_is_refused(text: str, path: str) -> None:
    """A repeated key names its path: the parsers keep the last value, so a second
    "routers" silently dropped the first list and validate said valid."""
    with pytest.raises(ConfigError) as err:
        load_config_bytes(text.encode(), {})
    assert err.value.path == path and "appears twice" in str(err.value)


@pytest.mark.parametrize("url", ["127.0.0.1:6379", "http://127.0.0.1:6379", "redis://:pw@127.0.0.1:notaport/0",
                                 "redis://:pwSECRET/x@127.0.0.1:6379/0", "redis://:pwSECRET#@127.0.0.1:6379/0"])
def test_a_redis_url_the_client_cannot_read_is_a_load_error(url: str) -> None:
    """validate passed these and the start died with a ValueError traceback."""
    cfg = mutate("global", {"rate_limit_store": {"type": "redis", "url": url}})
    with pytest.raises(ConfigError) as err:
        load(cfg)
    # A password holding / or # ends the netloc early: the parser's "port" was the password.
    assert err.value.path == "global.rate_limit_store.url" and "pw" not in str(err.value)


@pytest.mark.parametrize("dsn", ["postgresql://apex:pw@127.0.0.1:543o/postgres", "mysql://127.0.0.1/apex",
                                 "postgresql://127.0.0.1/apex?sslmode=required", "postgresql://apex:pwSECRET#x@db:5432/apex",
                                 "postgresql://apex:pwSECRET?@db/apex"])
def test_a_postgres_dsn_asyncpg_cannot_use_is_a_load_error(dsn: str) -> None:
    """validate passed these and the gateway died at start with a traceback (it never listened)."""
    cfg = mutate("global", {"request_log": {"type": "postgres", "dsn": dsn}})
    with pytest.raises(ConfigError) as err:
        load(cfg)
    assert err.value.path == "global.request_log.dsn" and "pw" not in str(err.value)


@pytest.mark.parametrize("dsn", ["postgresql://apex:pw@127.0.0.1:5432/apex", "postgres://h1:5432,[::1]:5433/db?sslmode=verify-full",
                                 "postgresql:///apex?host=/run/postgresql"])
def test_good_postgres_dsns_load(dsn: str) -> None:
    load(mutate("global", {"request_log": {"type": "postgres", "dsn": dsn}}))


def test_missing_extras_are_load_errors_not_tracebacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tracing without OpenTelemetry installed at all (find_spec raised ModuleNotFoundError for
    the missing parent package) and a postgres request log without asyncpg are config errors."""
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        if name.startswith(("opentelemetry.", "asyncpg")):
            if "." in name:
                raise ModuleNotFoundError(f"No module named {name.split('.')[0]!r}")
            return None
        return real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ConfigError) as err:
        load(mutate("global", {"tracing": {"otlp_endpoint": "http://127.0.0.1:4318"}}))
    assert err.value.path == "global.tracing"
    with pytest.raises(ConfigError) as err:
        load(mutate("global", {"request_log": {"type": "postgres", "dsn": "postgresql://u@127.0.0.1/d"}}))
    assert err.value.path == "global.request_log.type" and "asyncpg" in str(err.value)


@pytest.mark.parametrize(("where", "value", "path"), [
    ("channels[0].base_url", "http://[::1", "channels[0].base_url"),
    ("global.request_log", {"type": "postgres", "dsn": "postgresql://[::1"}, "global.request_log.dsn"),
    ("logging.file", "/tmp/apex\x00.log", "logging.file"),
    ("global.request_log", {"type": "sqlite", "path": "/tmp/a\x00.db"}, "global.request_log.path"),
    ("global.listen", "a" * 64 + ".example.com:8080", "global.listen"),
    ("channels[0].name", "mk\nx", "channels[0].name"),
    ("channels[0].model_map", {"gpt-4o": "gpt-4o\r\nX-Injected: 1"}, "channels[0].model_map"),
    ("global.retries.backoff_ms", 10**20, "global.retries.backoff_ms"),
    ("global.retries.max_attempts", 10**400, "global.retries.max_attempts"),
    ("global.max_body_bytes", 2**70, "global.max_body_bytes"),
    ("global.auth.keys", [" spaced-key "], "global.auth.keys[0]"),
    ("global.auth.keys", ["team\tkey"], "global.auth.keys[0]"),
])
def test_hostile_values_are_config_errors_naming_the_key(where: str, value: Any, path: str) -> None:
    """Each of these passed validate and then crashed the start or a reload with a traceback,
    left requests unanswered, hung a request (a 10**20 ms backoff) or could never log in."""
    cfg = mutate(where, value)
    with pytest.raises(ConfigError) as err:
        load(cfg)
    assert (err.value.path or "").startswith(path), (err.value.path, str(err.value))


def test_a_config_nested_too_deeply_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        load_config_bytes(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, {})
    assert "nested too deeply" in str(err.value)


@pytest.mark.parametrize("key", ["base_url", "anthropic_base_url"])
def test_credentials_in_a_channel_url_are_a_load_error_that_does_not_quote_them(key: str) -> None:
    """They were never sent (no Basic auth: the channel got 401s with no hint why) and every
    channel listing printed them."""
    cfg = mutate("channels[0]", {"name": "oa", "provider_type": "deepseek", key: "http://user:pwSECRET@127.0.0.1:9/v1"})
    with pytest.raises(ConfigError) as err:
        load(cfg)
    assert err.value.path == f"channels[0].{key}" and "headers" in str(err.value) and "pwSECRET" not in str(err.value)


@pytest.mark.parametrize(("key", "value"), [("latency_ms", 50), ("tokens_per_s", 10.0), ("response_text", "hi")])
def test_the_mocks_own_keys_on_another_channel_are_a_load_error(key: str, value: object) -> None:
    """They were accepted on an openai channel and silently ignored."""
    cfg = mutate(f"channels[0].{key}", value)
    with pytest.raises(ConfigError) as err:
        load(cfg)
    assert err.value.path == f"channels[0].{key}" and "mock" in str(err.value)
