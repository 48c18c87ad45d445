"""Read, decode and check a config file; every problem is one ConfigError naming its JSON path.

Order: JSON syntax (line and column of the mistake) -> ``${VAR}`` substitution (every
missing variable at once, each with the key holding it) -> ``APEX_*`` environment overrides
(``ENV_OVERRIDES``) -> strict typed decode (unknown keys, wrong types, unknown enum values)
-> cross-field checks (duplicates, dangling references, globs, weights, listen address,
anonymous auth). This runs once per load; nothing here is on the request path.
``check_host_paths`` adds what only this host can tell (a log directory that does not exist).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import math
import os
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import msgspec

from apex.config.clouds import check_cloud_channel
from apex.config.model import ChannelRef, Config, Price, TracingConfig
from apex.errors import ConfigError
from apex.glob import GlobError, compile_glob

__all__ = [
    "ENV_OVERRIDES",
    "read_config_file",
    "EnvOverride",
    "KEYLESS_PROVIDERS",
    "check_host_paths",
    "is_loopback",
    "load_config",
    "load_config_bytes",
    "parse_listen",
]


@dataclass(frozen=True, slots=True)
class EnvOverride:
    """An environment variable that, when set, replaces one config setting (``key`` path)."""

    variable: str
    key: tuple[str, ...]
    help: str
    boolean: bool = False  # true/false/1/0/yes/no/on/off become a JSON boolean

    @property
    def path(self) -> str:
        return ".".join(self.key)


# Environment overrides, applied after ${VAR} substitution and validated like the file's own
# value. Precedence: `apex gateway start --listen` (which sets APEX_LISTEN for the gateway)
# > the variable > the file. Add a row to support another APEX_* variable.
ENV_OVERRIDES: Final[tuple[EnvOverride, ...]] = (
    EnvOverride("APEX_LISTEN", ("global", "listen"), "address to listen on, host:port"),
    EnvOverride("APEX_LOG_LEVEL", ("logging", "level"), "debug, info, warning or error"),
    EnvOverride("APEX_LOG_FORMAT", ("logging", "format"), "json or pretty"),
    EnvOverride("APEX_LOG_FILE", ("logging", "file"), "a file to log to instead of stderr"),
    EnvOverride("APEX_METRICS_ENABLED", ("metrics", "enabled"), "true or false", boolean=True),
    EnvOverride("APEX_METRICS_PATH", ("metrics", "path"), "where Prometheus scrapes, e.g. /metrics"),
    EnvOverride("APEX_REQUEST_LOG", ("global", "request_log", "type"), "sqlite, postgres or off"),
    EnvOverride("APEX_REQUEST_LOG_PATH", ("global", "request_log", "path"), "the SQLite file"),
    EnvOverride("APEX_REQUEST_LOG_DSN", ("global", "request_log", "dsn"), "postgresql://user:pass@host/db"),
    EnvOverride("APEX_OTLP_ENDPOINT", ("global", "tracing", "otlp_endpoint"), "OTLP/HTTP collector base URL"),
)
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})

# azure_openai takes api_key or azure_ad (apex.config.clouds checks which).
KEYLESS_PROVIDERS: Final = frozenset({"ollama", "openai_compatible", "mock", "azure_openai", "bedrock", "vertex"})
_VAR: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MSGSPEC_AT: Final = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_RESERVED_PATHS: Final = frozenset(
    {"/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/models", "/v1/messages",
     "/v1/messages/count_tokens", "/health", "/ready"}
)


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Load and validate the config file at ``path``; raise ConfigError."""
    return load_config_bytes(read_config_file(path), env)


def read_config_file(path: str | os.PathLike[str]) -> bytes:
    """The file's bytes; a ConfigError saying why it cannot be read and what to do."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {os.fspath(path)} does not exist; create one with `apex init --config "
                          f"{os.fspath(path)}`, or point at yours with --config or $APEX_CONFIG") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"config path {os.fspath(path)} is a directory; give the JSON file inside it") from exc
    except PermissionError as exc:
        raise ConfigError(f"cannot read config file {os.fspath(path)}: permission denied; run as a user "
                          f"that may read it, or make it readable (chmod/chown)") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {os.fspath(path)}: {exc.strerror}") from exc


def load_config_bytes(
    data: bytes, env: Mapping[str, str] | None = None, *, strict_env: bool = True, overrides: bool = True
) -> Config:
    """Validate config ``data``; ``strict_env=False`` leaves unset ``${VAR}`` in place (CLI edits).

    ``env`` (default ``os.environ``) supplies ``${VAR}`` values and, unless ``overrides`` is
    False (checking an edit before it is written), the ``ENV_OVERRIDES``.
    """
    try:
        raw = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise ConfigError(_json_syntax_error(data, exc)) from exc
    if not isinstance(raw, dict):
        raise ConfigError("the config file must hold a JSON object")
    environ = os.environ if env is None else env
    missing: dict[str, list[str]] = {}
    raw = {k: _substitute(v, environ, k, strict_env, missing) for k, v in raw.items()}
    if missing:
        raise _missing_env_error(missing)
    applied = _apply_overrides(raw, environ) if overrides else {}
    try:
        config = msgspec.convert(raw, Config)
        check_config(config)
    except msgspec.ValidationError as exc:
        raise _blame_override(_from_validation_error(exc), applied) from exc
    except ConfigError as exc:
        raise _blame_override(exc, applied) from exc
    return config


def _json_syntax_error(data: bytes, exc: msgspec.DecodeError) -> str:
    """``invalid JSON at line L, column C: <reason>`` from msgspec's byte offset."""
    text = str(exc)
    m = re.search(r"\s*\(byte (\d+)\)$", text)
    reason = text[: m.start()] if m else text
    reason = reason.removeprefix("JSON is malformed: ")
    if m is None:
        return f"invalid JSON: {reason}"
    offset = min(int(m.group(1)), len(data))
    before = data[:offset]
    line = before.count(b"\n") + 1
    column = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
    return f"invalid JSON at line {line}, column {column}: {reason}"


def _missing_env_error(missing: dict[str, list[str]]) -> ConfigError:
    """One error naming every unset variable and the keys that use it."""
    if len(missing) == 1:
        [(name, paths)] = missing.items()
        if len(paths) == 1:
            return ConfigError(f"environment variable {name} is not set", path=paths[0])
    parts = [f"{name} (used by {', '.join(paths)})" for name, paths in missing.items()]
    noun = "an environment variable is" if len(parts) == 1 else f"{len(parts)} environment variables are"
    return ConfigError(
        f"{noun} not set: {'; '.join(parts)}. Set them in the gateway's environment "
        f"(e.g. systemd's EnvironmentFile); `apex config validate --allow-missing-env` checks the rest"
    )


def _apply_overrides(raw: dict[str, object], env: Mapping[str, str]) -> dict[str, str]:
    """Put each set ``ENV_OVERRIDES`` variable into ``raw``; returns {key path: variable}."""
    applied: dict[str, str] = {}
    for override in ENV_OVERRIDES:
        value: object = env.get(override.variable)
        if value is None or value == "":
            continue
        if override.boolean and isinstance(value, str):  # anything else fails validation, naming the variable
            lowered = value.strip().lower()
            value = True if lowered in _TRUE else False if lowered in _FALSE else value
        node: dict[str, object] = raw
        for part in override.key[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[override.key[-1]] = value
        applied[override.path] = override.variable
    return applied


def _blame_override(exc: ConfigError, applied: dict[str, str]) -> ConfigError:
    """Say so when the bad value came from an environment override, not the file."""
    variable = applied.get(exc.path)
    if variable is None:
        return exc
    return ConfigError(f"{exc.detail} (the value comes from ${variable})", path=exc.path)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _substitute(value: object, env: Mapping[str, str], path: str, strict: bool, missing: dict[str, list[str]]) -> object:
    """Replace ``${VAR}`` references; with ``strict``, unset ones are collected in ``missing``
    (variable -> key paths) so the caller reports them all at once."""
    if isinstance(value, str):
        if "${" not in value:
            return value

        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name in env:
                return env[name]
            if strict:
                missing.setdefault(name, []).append(path)
            return m.group(0)

        return _VAR.sub(repl, value)
    if isinstance(value, dict):
        return {k: _substitute(v, env, _join(path, k), strict, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, _join(path, i), strict, missing) for i, v in enumerate(value)]
    return value


def _from_validation_error(exc: msgspec.ValidationError) -> ConfigError:
    m = _MSGSPEC_AT.match(str(exc))
    assert m is not None  # the pattern matches any string
    msg, path = m.group("msg"), (m.group("path") or "").lstrip(".")
    if (u := re.match(r"Object contains unknown field `(.*)`", msg)) is not None:
        return ConfigError("unknown key", path=_join(path, u.group(1)))
    if (r := re.match(r"Object missing required field `(.*)`", msg)) is not None:
        return ConfigError("required key is missing", path=_join(path, r.group(1)))
    if (e := re.match(r"Invalid enum value (.*)", msg)) is not None:
        value = e.group(1).strip("'")
        return ConfigError(f'unknown value "{value}"', path=path)
    if (t := re.match(r"Expected `(.*)`, got `(.*)`", msg)) is not None:
        return ConfigError(f"expected {t.group(1)}, got {t.group(2)}", path=path)
    return ConfigError(msg[:1].lower() + msg[1:], path=path)


def parse_listen(listen: str) -> tuple[str, int]:
    """Split ``host:port`` (IPv6 as ``[::1]:8080``); raise ValueError when malformed."""
    if listen.startswith("["):
        host, sep, port = listen[1:].partition("]:")
        if not sep:
            raise ValueError("an IPv6 listen address is written [::1]:8080")
    else:
        host, sep, port = listen.rpartition(":")
        if not sep or ":" in host:
            raise ValueError("expected host:port")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bad port {port!r}")
    if not host:
        raise ValueError("missing host")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _header_safe(value: str) -> bool:
    """Fit to go into an HTTP header as is: one line, Latin-1 (what HTTP/1.1 carries)."""
    if "\r" in value or "\n" in value:
        return False
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _check_url(url: str | None, path: str) -> None:
    if url is None:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f'expected an http(s) URL, got "{url}"', path=path)


def _check_glob(pattern: str, path: str) -> None:
    try:
        compile_glob(pattern)
    except GlobError as exc:
        raise ConfigError(f"bad glob: {exc}", path=path) from exc


def _positive(value: int | float | None, path: str, *, zero_ok: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not zero_ok):
        raise ConfigError(f"must be {'>= 0' if zero_ok else 'positive'}, got {value}", path=path)


def _check_prices(prices: Mapping[str, Price], path: str) -> None:
    for pattern, price in prices.items():
        _check_glob(pattern, f"{path}.{pattern}")
        for field in ("input", "output", "cache_read", "cache_write", "reasoning"):
            value = getattr(price, field)
            if value is not None and not (value >= 0 and math.isfinite(value)):
                raise ConfigError("must be a finite price in USD per million tokens, 0 or more", path=f"{path}.{pattern}.{field}")
def _check_tracing(t: TracingConfig) -> None:
    if not t.otlp_endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"must be an http(s) URL (the collector's base URL), got {t.otlp_endpoint!r}",
                          path="global.tracing.otlp_endpoint")
    if not 0.0 <= t.sample_ratio <= 1.0:
        raise ConfigError(f"must be between 0 and 1, got {t.sample_ratio}", path="global.tracing.sample_ratio")
    if importlib.util.find_spec("opentelemetry.sdk") is None:
        raise ConfigError("tracing needs OpenTelemetry: pip install 'apex-gateway[otel]'", path="global.tracing")


def check_config(config: Config) -> None:
    """Cross-field rules the types cannot express; raise ConfigError naming the path."""
    g = config.global_
    try:
        host, _ = parse_listen(g.listen)
    except ValueError as exc:
        raise ConfigError(f"bad listen address {g.listen!r}: {exc}", path="global.listen") from exc
    if g.auth.anonymous and not is_loopback(host):
        raise ConfigError(
            f"anonymous auth is only allowed on a loopback listen address, not {host!r}",
            path="global.auth.anonymous",
        )
    for field in ("connect_ms", "request_ms", "first_byte_ms", "stream_idle_ms"):
        _positive(getattr(g.timeouts, field), f"global.timeouts.{field}")
    _positive(g.retries.max_attempts, "global.retries.max_attempts")
    _positive(g.retries.backoff_ms, "global.retries.backoff_ms", zero_ok=True)
    _positive(g.retries.max_backoff_ms, "global.retries.max_backoff_ms", zero_ok=True)
    for i, status in enumerate(g.retries.retry_on_status):
        if not 100 <= status <= 599:
            raise ConfigError(f"not an HTTP status: {status}", path=f"global.retries.retry_on_status[{i}]")
    _positive(g.health.failure_threshold, "global.health.failure_threshold")
    _positive(g.health.cooldown_ms, "global.health.cooldown_ms", zero_ok=True)
    _positive(g.max_body_bytes, "global.max_body_bytes")
    _positive(g.shutdown_grace_ms, "global.shutdown_grace_ms", zero_ok=True)
    _positive(g.drain_delay_ms, "global.drain_delay_ms", zero_ok=True)
    if g.tracing is not None:
        _check_tracing(g.tracing)
    for field in ("header_read_ms", "body_read_ms", "keepalive_idle_ms"):
        _positive(getattr(g.client_timeouts, field), f"global.client_timeouts.{field}")
    if g.rate_limit_store.type == "redis" and not g.rate_limit_store.url:
        raise ConfigError("a redis store needs a url", path="global.rate_limit_store.url")
    rl = g.request_log
    if rl.type == "postgres" and not rl.dsn:
        raise ConfigError("a postgres request log needs a dsn", path="global.request_log.dsn")
    for field in ("retention_days", "queue_size", "batch_size"):
        _positive(getattr(rl, field), f"global.request_log.{field}")
    _positive(rl.capture_max_bytes, "global.request_log.capture_max_bytes", zero_ok=True)
    if not config.metrics.path.startswith("/") or config.metrics.path in _RESERVED_PATHS:
        raise ConfigError(f'"{config.metrics.path}" cannot be the metrics path', path="metrics.path")

    # Every presented key must select exactly one principal.
    key_owner: dict[str, str] = {}

    def claim(key: str | None, path: str) -> None:
        if key is None:
            return
        if not key:
            raise ConfigError("must not be empty", path=path)
        if key in key_owner:
            raise ConfigError(f"the same key is already used at {key_owner[key]}", path=path)
        key_owner[key] = path

    for i, key in enumerate(g.auth.keys):
        claim(key, f"global.auth.keys[{i}]")

    channels: dict[str, int] = {}
    for i, ch in enumerate(config.channels):
        p = f"channels[{i}]"
        if not ch.name:
            raise ConfigError("must not be empty", path=f"{p}.name")
        if ch.name in channels:
            raise ConfigError(f'duplicate channel name "{ch.name}"', path=f"{p}.name")
        channels[ch.name] = i
        check_cloud_channel(ch, p)
        if ch.provider_type not in KEYLESS_PROVIDERS and not ch.api_key:
            raise ConfigError(f"required for provider_type {ch.provider_type}", path=f"{p}.api_key")
        if ch.provider_type == "openai_compatible" and not ch.base_url:
            raise ConfigError("required for provider_type openai_compatible", path=f"{p}.base_url")
        _check_url(ch.base_url, f"{p}.base_url")
        _check_url(ch.anthropic_base_url, f"{p}.anthropic_base_url")
        for name, value in ch.headers.items():
            if not name or any(c in name for c in " \t:\r\n"):
                raise ConfigError(f'bad header name "{name}"', path=f"{p}.headers")
            if not _header_safe(value):
                raise ConfigError("a header value must be one line of Latin-1 text", path=f"{p}.headers.{name}")
        if ch.api_key and not _header_safe(ch.api_key):
            raise ConfigError("an API key must be one line of Latin-1 text", path=f"{p}.api_key")
        for pattern in ch.model_map:
            _check_glob(pattern, f"{p}.model_map.{pattern}")
        for j, pattern in enumerate(ch.models or ()):
            _check_glob(pattern, f"{p}.models[{j}]")
        for j, row in enumerate(ch.capabilities):
            _check_glob(row.model, f"{p}.capabilities[{j}].model")
        if ch.timeouts is not None:
            for field in ("connect_ms", "request_ms", "first_byte_ms", "stream_idle_ms"):
                _positive(getattr(ch.timeouts, field), f"{p}.timeouts.{field}")
        _check_prices(ch.prices, f"{p}.prices")
        _positive(ch.latency_ms, f"{p}.latency_ms", zero_ok=True)
        _positive(ch.tokens_per_s, f"{p}.tokens_per_s")

    def check_refs(refs: tuple[ChannelRef, ...], path: str) -> None:
        seen: set[str] = set()
        for j, ref in enumerate(refs):
            name = ref.name
            if name not in channels:
                raise ConfigError(f'unknown channel "{name}"', path=f"{path}[{j}].name")
            if name in seen:
                raise ConfigError(f'channel "{name}" is listed twice', path=f"{path}[{j}].name")
            seen.add(name)
            _positive(ref.weight, f"{path}[{j}].weight")

    routers: set[str] = set()
    for i, router in enumerate(config.routers):
        p = f"routers[{i}]"
        if not router.name:
            raise ConfigError("must not be empty", path=f"{p}.name")
        if router.name in routers:
            raise ConfigError(f'duplicate router name "{router.name}"', path=f"{p}.name")
        routers.add(router.name)
        claim(router.vkey, f"{p}.vkey")
        check_refs(router.channels, f"{p}.channels")
        for j, rule in enumerate(router.rules):
            rp = f"{p}.rules[{j}]"
            models = (rule.match.model,) if isinstance(rule.match.model, str) else rule.match.model
            if not models:
                raise ConfigError("needs at least one pattern", path=f"{rp}.match.model")
            for k, pattern in enumerate(models):
                _check_glob(pattern, f"{rp}.match.model" + ("" if isinstance(rule.match.model, str) else f"[{k}]"))
            if not rule.channels:
                raise ConfigError("a rule needs at least one channel", path=f"{rp}.channels")
            check_refs(rule.channels, f"{rp}.channels")
            for k, name in enumerate(rule.fallback):
                if name not in channels:
                    raise ConfigError(f'unknown channel "{name}"', path=f"{rp}.fallback[{k}]")

    teams: set[str] = set()
    for i, team in enumerate(config.teams):
        p = f"teams[{i}]"
        if not team.id:
            raise ConfigError("must not be empty", path=f"{p}.id")
        if team.id in teams:
            raise ConfigError(f'duplicate team id "{team.id}"', path=f"{p}.id")
        teams.add(team.id)
        claim(team.api_key, f"{p}.api_key")
        pol = team.policy
        for j, name in enumerate(pol.allowed_routers or ()):
            if name not in routers:
                raise ConfigError(f'unknown router "{name}"', path=f"{p}.policy.allowed_routers[{j}]")
        for j, pattern in enumerate(pol.allowed_models or ()):
            _check_glob(pattern, f"{p}.policy.allowed_models[{j}]")
        if pol.rate_limit is not None:
            _positive(pol.rate_limit.rpm, f"{p}.policy.rate_limit.rpm")
            _positive(pol.rate_limit.tpm, f"{p}.policy.rate_limit.tpm")
        if pol.budget is not None:
            if not (pol.budget.usd >= 0 and math.isfinite(pol.budget.usd)):
                raise ConfigError("must be a finite number of USD, 0 or more", path=f"{p}.policy.budget.usd")
            try:
                zoneinfo.ZoneInfo(pol.budget.timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise ConfigError(f"unknown time zone {pol.budget.timezone!r}", path=f"{p}.policy.budget.timezone") from exc
    _check_prices(config.prices, "prices")


def check_host_paths(config: Config) -> None:
    """What only this host can tell: a ``logging.file`` whose directory does not exist or is
    not a directory. Not part of ``check_config``: a config may be edited on another host."""
    if config.logging.file:
        directory = Path(config.logging.file).parent
        if not directory.is_dir():
            raise ConfigError(
                f"the log file's directory {os.fspath(directory)} does not exist; create it, "
                f"or remove logging.file to log to stderr (journald under systemd)",
                path="logging.file",
            )
