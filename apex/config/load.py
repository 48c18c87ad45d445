"""Read, decode and check a config file; every problem is one ConfigError naming its JSON path.

Order: JSON syntax (line and column of the mistake) -> ``${VAR}`` substitution (every
missing variable at once, each with the key holding it) -> ``APEX_*`` environment overrides
(``ENV_OVERRIDES``) -> strict typed decode, where msgspec checks every value against its type in
``apex.config.model`` (unknown keys, wrong types, unknown enum values, ranges, patterns)
-> the rules relating several values (duplicates, dangling references, globs, keys a
provider type needs, listen address and anonymous auth). This runs once per load; nothing here is on the request path.
``check_host_paths`` adds what only this host can tell (a log directory that does not exist).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit
from typing import Final

import msgspec

from apex.config.clouds import check_cloud_channel, missing_extra
from apex.config.proxy import check_proxy
from apex.config.decode import decode_config
from apex.config.model import Channel, ChannelRef, Config, Price, Router, Rule, Team
from apex.errors import ConfigError
from apex.glob import GlobError, compile_glob

__all__ = [
    "ENV_OVERRIDES",
    "read_config_file",
    "EnvOverride",
    "KEYLESS_PROVIDERS",
    "check_host_paths",
    "check_unique_keys",
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
    except RecursionError:
        raise ConfigError("the config file is nested too deeply") from None
    if not isinstance(raw, dict):
        raise ConfigError("the config file must hold a JSON object")
    check_unique_keys(data)
    environ = os.environ if env is None else env
    missing: dict[str, list[str]] = {}
    raw = {k: _substitute(v, environ, k, strict_env, missing) for k, v in raw.items()}
    if missing:
        raise _missing_env_error(missing)
    applied = _apply_overrides(raw, environ) if overrides else {}
    try:
        config = decode_config(raw)
        check_config(config)
    except ConfigError as exc:
        raise _blame_override(exc, applied) from exc
    return config


def check_unique_keys(data: bytes) -> None:
    """ConfigError naming the first key written twice in one object. The JSON parsers keep
    the last one: an earlier list would vanish unseen (and a CLI edit would write that)."""
    duplicate = _duplicate_key(data)
    if duplicate is not None:
        raise ConfigError(f"key {duplicate[1]!r} appears twice in one object", path=duplicate[0])


class _Object(dict[str, object]):
    """A JSON object as parsed for the duplicate check, with its first repeated key."""

    repeated: str | None = None


def _duplicate_key(data: bytes) -> tuple[str, str] | None:
    """(path, key) of the first key written twice in one object, or None. A second parse
    by the standard library (config loads only): msgspec, like every JSON parser, keeps the
    last value without a word."""

    def pairs(items: list[tuple[str, object]]) -> _Object:
        obj = _Object(items)
        if len(obj) != len(items):
            seen: set[str] = set()
            for key, _ in items:
                if key in seen:
                    obj.repeated = key
                    break
                seen.add(key)
        return obj

    try:
        tree = json.loads(data, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return None
    todo: list[tuple[str, object]] = [("", tree)]
    while todo:
        path, node = todo.pop()
        if isinstance(node, _Object):
            if node.repeated is not None:
                return _join(path, node.repeated), node.repeated
            todo.extend((_join(path, k), v) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            todo.extend((_join(path, i), v) for i, v in reversed(list(enumerate(node))))
    return None


def _json_syntax_error(data: bytes, exc: msgspec.DecodeError) -> str:
    """``invalid JSON at line L, column C: <reason>`` (the column counts characters).

    msgspec tells the position only inside its sentence, so the file is parsed again (only
    once it failed) by the standard library, whose error carries line and column as fields.
    """
    try:
        json.loads(data)
    except json.JSONDecodeError as err:
        return f"invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}"
    except (ValueError, RecursionError):  # not UTF-8, or nested deeper than Python recurses
        pass
    return f"invalid JSON: {exc}"  # what msgspec alone refuses (NaN, a number out of range)


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


def parse_listen(listen: str) -> tuple[str, int]:
    """Split ``host:port`` (IPv6 as ``[::1]:8080``); raise ValueError when malformed."""
    if listen.startswith("["):
        host, sep, port = listen[1:].partition("]:")
        if not sep:
            raise ValueError("an IPv6 listen address is written [::1]:8080")
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise ValueError(f"{host!r} in brackets is not an IPv6 address") from None
    else:
        host, sep, port = listen.rpartition(":")
        if not sep or ":" in host:
            raise ValueError("expected host:port")
    if not port.isascii() or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bad port {port!r}")
    if not host:
        raise ValueError("missing host")
    if not listen.startswith("["):
        try:
            host.encode("idna")  # what the resolver does with it at start
        except UnicodeError:
            raise ValueError(f"{host!r} is not a host name (each dot-separated part 1-63 characters)") from None
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_config(config: Config) -> None:
    """The rules relating several values (each value's own rules are in its type); raise
    ConfigError naming the path."""
    _check_global(config)
    keys = _Keys()
    for i, key in enumerate(config.global_.auth.keys):
        keys.claim(key, f"global.auth.keys[{i}]")
    channels = _check_channels(config.channels)
    routers = _check_routers(config.routers, channels, keys)
    _check_teams(config.teams, routers, keys)
    _check_prices(config.prices, "prices")


def _check_global(config: Config) -> None:
    g = config.global_
    if "${" not in g.listen:  # else unresolved (--allow-missing-env): checked once it is set
        try:
            host, _ = parse_listen(g.listen)
        except ValueError as exc:
            raise ConfigError(f"bad listen address {g.listen!r}: {exc}", path="global.listen") from exc
        if g.auth.anonymous and not is_loopback(host):
            raise ConfigError(
                f"anonymous auth is only allowed on a loopback listen address, not {host!r}",
                path="global.auth.anonymous",
            )
    if g.tracing is not None and missing_extra("otel"):  # find_spec raises when the parent package is missing
        raise ConfigError("tracing needs OpenTelemetry: pip install 'apex-gateway[otel]'", path="global.tracing")
    if g.tracing is not None:
        _check_http_url(g.tracing.otlp_endpoint, "global.tracing.otlp_endpoint")
    if g.rate_limit_store.type == "redis":
        _check_redis_url(g.rate_limit_store.url)
    if g.request_log.type == "postgres" and not g.request_log.dsn:
        raise ConfigError("a postgres request log needs a dsn", path="global.request_log.dsn")
    if g.request_log.type == "postgres" and missing_extra("postgres"):
        raise ConfigError("a postgres request log needs asyncpg: pip install 'apex-gateway[postgres]'",
                          path="global.request_log.type")
    if g.request_log.type == "postgres" and g.request_log.dsn:
        _check_postgres_dsn(g.request_log.dsn)
    _check_file_name(config.logging.file, "logging.file")
    _check_file_name(g.request_log.path, "global.request_log.path")


def _check_file_name(value: str | None, path: str) -> None:
    """A file name the OS can open: a NUL byte passed validate and crashed the start."""
    if value is not None and "\x00" in value:
        raise ConfigError("a file name cannot hold a NUL character", path=path)


_SSLMODES: Final = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})


def _check_postgres_dsn(dsn: str) -> None:
    """The parts of a postgres URL asyncpg refuses at start (it raised there, after validate
    passed, and the gateway never listened): the scheme, the port, sslmode."""
    path = "global.request_log.dsn"
    if "${" in dsn:
        return  # checked once the variable is set
    try:
        url = urlsplit(dsn)
    except ValueError as exc:
        raise ConfigError(f"bad postgres dsn: {exc}", path=path) from None
    if url.scheme not in ("postgres", "postgresql"):
        raise ConfigError("the dsn must be a postgresql:// URL", path=path)
    try:
        for host in url.netloc.rpartition("@")[2].split(","):  # several hosts: h1:5432,h2:5433
            if host.startswith("["):  # [::1]:5432
                port = host.partition("]")[2].removeprefix(":")
            else:
                port = host.rpartition(":")[2] if ":" in host else ""
            if port and not port.isdigit():  # never quoted: a password holding / ? # ends up here
                raise ValueError("a port is not a number (a password holding / ? # @ must be percent-encoded)")
        for key, value in parse_qsl(url.query):
            if key == "sslmode" and value not in _SSLMODES:
                raise ValueError(f"sslmode {value!r} is not one of {', '.join(sorted(_SSLMODES))}")
    except ValueError as exc:
        raise ConfigError(f"bad postgres dsn: {exc}", path=path) from None


def _check_redis_url(url: str | None) -> None:
    """The url as the Redis client reads it at start (it raised there, after validate passed)."""
    from redis.connection import parse_url  # the client's own parser; config load only

    path = "global.rate_limit_store.url"
    if not url:
        raise ConfigError("a redis store needs a url", path=path)
    try:
        parse_url(url)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
    except ValueError as exc:
        # redis-py quotes the part it could not read: with a password holding / ? or # that
        # part is the password. Its message is kept only for a URL without credentials.
        detail = str(exc) if "@" not in url else "it cannot be read (a password holding / ? # @ must be percent-encoded)"
        raise ConfigError(f"bad redis url: {detail}", path=path) from None


class _Keys:
    """Every presented key must select exactly one principal."""

    def __init__(self) -> None:
        self._owner: dict[str, str] = {}

    def claim(self, key: str | None, path: str) -> None:
        if key is None:
            return
        if "${" not in key and (key != key.strip() or not key.isascii() or not key.isprintable()):
            # A presented key is stripped and must be printable ASCII: this one could never match.
            raise ConfigError("a key is printable ASCII without spaces around it (this one could never "
                              "authenticate)", path=path)
        if key in self._owner:
            raise ConfigError(f"the same key is already used at {self._owner[key]}", path=path)
        self._owner[key] = path


def _check_glob(pattern: str, path: str) -> None:
    try:
        compile_glob(pattern)
    except GlobError as exc:
        raise ConfigError(f"bad glob: {exc}", path=path) from exc


def _check_prices(prices: Mapping[str, Price], path: str) -> None:
    for pattern, price in prices.items():
        _check_glob(pattern, f"{path}.{pattern}")
        if price.cached_input is not None and price.cache_read is not None:
            raise ConfigError("cached_input and cache_read are the same price: give one", path=f"{path}.{pattern}.cache_read")


def _check_http_url(url: str | None, path: str) -> None:
    """What the schema's pattern cannot see in an upstream URL: a port that is not 1-65535,
    spaces or control characters in the host, a host name with no ASCII (IDNA) form. Each
    would fail every request that uses it instead of the load. A value still holding a
    ``${VAR}`` is checked once it is resolved."""
    if not url or "${" in url:
        return
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL": an unclosed [
        raise ConfigError(f"not a URL: {exc}", path=path) from None
    try:
        port = parts.port  # None when the URL has none
    except ValueError:  # not a number, or past 65535
        port = -1
    if port is not None and not 0 < port < 65536:
        raise ConfigError("the port must be a number from 1 to 65535", path=path)
    host = parts.hostname or ""
    if not host or any(c.isspace() or not c.isprintable() for c in host):
        raise ConfigError("the URL has no usable host name", path=path)
    if not host.isascii():
        try:
            host.encode("idna")
        except UnicodeError:
            raise ConfigError(f"the host name {host!r} has no IDNA (ASCII) form", path=path) from None


def _check_channels(channels: tuple[Channel, ...]) -> frozenset[str]:
    """The channels' names, each once; a channel's keys fit its provider type."""
    names: set[str] = set()
    for i, ch in enumerate(channels):
        p = f"channels[{i}]"
        if ch.name in names:
            raise ConfigError(f'duplicate channel name "{ch.name}"', path=f"{p}.name")
        names.add(ch.name)
        check_cloud_channel(ch, p)
        check_proxy(ch.proxy, f"{p}.proxy")
        for key in ("base_url", "anthropic_base_url"):
            url = getattr(ch, key)
            _check_http_url(url, f"{p}.{key}")
            if url and "${" not in url and "@" in urlsplit(url).netloc:
                # Apex never sent them (the channel got 401s with no hint why), and every
                # listing printed them: credentials go in `headers` (or api_key), not the URL.
                raise ConfigError("credentials in the URL are not sent upstream; put them in `headers` "
                                  "(e.g. an Authorization header) or api_key", path=f"{p}.{key}")
        if ch.azure_ad is not None:
            _check_http_url(ch.azure_ad.authority_host, f"{p}.azure_ad.authority_host")
        if ch.provider_type not in KEYLESS_PROVIDERS and not ch.api_key:
            raise ConfigError(f"required for provider_type {ch.provider_type}", path=f"{p}.api_key")
        if ch.provider_type == "openai_compatible" and not ch.base_url:
            raise ConfigError("required for provider_type openai_compatible", path=f"{p}.base_url")
        _check_channel_globs(ch, p)
        _check_file_name(ch.credentials_file, f"{p}.credentials_file")
        if ch.tls is not None:
            for key in ("ca_file", "cert_file", "key_file"):
                _check_file_name(getattr(ch.tls, key), f"{p}.tls.{key}")
        for name in ch.headers:
            if name.lower() in _FRAMING_HEADERS:
                raise ConfigError(f"{name} is set by Apex for each request (from base_url and the body); "
                                  "a second one would make the request ambiguous", path=f"{p}.headers.{name}")
    return frozenset(names)


# Headers that frame the message or the connection: Apex writes them itself, and a second
# copy (two Hosts, Content-Length beside Transfer-Encoding) is a request servers must refuse.
_FRAMING_HEADERS: Final = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive",
                                     "te", "trailer", "upgrade", "proxy-connection", "expect"})


def _check_channel_globs(ch: Channel, path: str) -> None:
    for pattern in ch.model_map:
        _check_glob(pattern, f"{path}.model_map.{pattern}")
    for j, pattern in enumerate(ch.models or ()):
        _check_glob(pattern, f"{path}.models[{j}]")
    for j, row in enumerate(ch.capabilities):
        _check_glob(row.model, f"{path}.capabilities[{j}].model")
    _check_prices(ch.prices, f"{path}.prices")


def _check_refs(refs: tuple[ChannelRef, ...], channels: frozenset[str], path: str) -> None:
    seen: set[str] = set()
    for j, ref in enumerate(refs):
        if ref.name not in channels:
            raise ConfigError(f'unknown channel "{ref.name}"', path=f"{path}[{j}].name")
        if ref.name in seen:
            raise ConfigError(f'channel "{ref.name}" is listed twice', path=f"{path}[{j}].name")
        seen.add(ref.name)


def _check_routers(routers: tuple[Router, ...], channels: frozenset[str], keys: _Keys) -> frozenset[str]:
    """The routers' names, each once; every channel they name exists."""
    names: set[str] = set()
    for i, router in enumerate(routers):
        p = f"routers[{i}]"
        if router.name in names:
            raise ConfigError(f'duplicate router name "{router.name}"', path=f"{p}.name")
        names.add(router.name)
        keys.claim(router.vkey, f"{p}.vkey")
        _check_refs(router.channels, channels, f"{p}.channels")
        for j, rule in enumerate(router.rules):
            _check_rule(rule, channels, f"{p}.rules[{j}]")
    return frozenset(names)


def _check_rule(rule: Rule, channels: frozenset[str], path: str) -> None:
    if isinstance(rule.match.model, str):
        _check_glob(rule.match.model, f"{path}.match.model")
    else:
        for k, pattern in enumerate(rule.match.model):
            _check_glob(pattern, f"{path}.match.model[{k}]")
    _check_refs(rule.channels, channels, f"{path}.channels")
    seen: set[str] = set()  # a fallback that is also one of the rule's channels is tried once (Route.order)
    for k, name in enumerate(rule.fallback):
        if name not in channels:
            raise ConfigError(f'unknown channel "{name}"', path=f"{path}.fallback[{k}]")
        if name in seen:
            raise ConfigError(f'channel "{name}" is listed twice in fallback', path=f"{path}.fallback[{k}]")
        seen.add(name)


def _check_teams(teams: tuple[Team, ...], routers: frozenset[str], keys: _Keys) -> None:
    ids: set[str] = set()
    for i, team in enumerate(teams):
        p = f"teams[{i}]"
        if team.id in ids:
            raise ConfigError(f'duplicate team id "{team.id}"', path=f"{p}.id")
        ids.add(team.id)
        keys.claim(team.api_key, f"{p}.api_key")
        pol = team.policy
        for j, name in enumerate(pol.allowed_routers or ()):
            if name not in routers:
                raise ConfigError(f'unknown router "{name}"', path=f"{p}.policy.allowed_routers[{j}]")
        for j, pattern in enumerate(pol.allowed_models or ()):
            _check_glob(pattern, f"{p}.policy.allowed_models[{j}]")
        if pol.budget is not None:
            try:
                zoneinfo.ZoneInfo(pol.budget.timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise ConfigError(f"unknown time zone {pol.budget.timezone!r}", path=f"{p}.policy.budget.timezone") from exc


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
