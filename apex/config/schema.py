"""The config as data: its JSON Schema, and the effective config with defaults and secrets masked.

Both come from the msgspec types in ``apex.config.model``, so they cannot drift from what the
loader accepts. ``config/apex-config.schema.json`` in the repository is this module's output
(a test keeps it current); editors use it to validate ``config.json`` as people type.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import msgspec

from apex.config.model import Config

__all__ = ["config_schema", "config_schema_json", "effective_config", "is_secret_header", "mask_secrets", "mask_value"]

SCHEMA_ID: Final = "https://apex-gateway.dev/schema/config.json"

# Keys whose values are credentials wherever they appear in the config.
_SECRET_KEY: Final = re.compile(
    r"^(api_key|vkey|keys|access_key_id|secret_access_key|session_token|client_secret|password|private_key)$"
)
# Header names whose values are credentials (channel `headers`, tracing `headers`).
_SECRET_HEADER: Final = re.compile(r"(auth|key|token|secret|cookie|password)", re.I)
# Keys whose values are URLs that may carry user:password (redis, postgres, proxies).
_URL_KEY: Final = frozenset({"url", "dsn", "proxy", "otlp_endpoint", "base_url", "anthropic_base_url", "authority_host"})


# host:port or [v6]:port. The loader checks listen itself (its message names what is wrong);
# the schema says it too, so an editor flags "127.0.0.1" before a load does.
LISTEN_PATTERN: Final = r"^(\[[0-9A-Fa-f:.]+\]|[^:\s\[\]]+):[0-9]{1,5}$"


def config_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of the config file."""
    schema: dict[str, Any] = msgspec.json.schema(Config)
    schema["$defs"]["GlobalConfig"]["properties"]["listen"]["pattern"] = LISTEN_PATTERN
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": "Apex gateway config", **schema}


def config_schema_json() -> str:
    return json.dumps(config_schema(), indent=2, sort_keys=True) + "\n"


def mask_value(secret: str) -> str:
    """``sk-…wxyz`` for a literal secret; a ``${VAR}`` reference is shown as written."""
    if secret.startswith("${") and secret.endswith("}"):
        return secret
    if len(secret) < 12:
        return "****"
    return f"{secret[:3]}…{secret[-4:]}"


def is_secret_header(name: str) -> bool:
    """True for header names that usually carry credentials (their values get masked)."""
    return _SECRET_HEADER.search(name) is not None


def _mask_url(value: str) -> str:
    """``scheme://user:****@host:port/...``: the password masked, the rest as written; a
    userinfo without ``:`` is a token used as the user name (``http://TOKEN@proxy``): all of
    it masked. Read by hand rather than urlsplit: a proxy may be written without a scheme
    (``user:pw@host:3128``), which urlsplit reads as a scheme and a path, and a bad port or a
    password holding ``/ ? #`` (the userinfo runs to the LAST ``@``) must not show it."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "", value
    userinfo, at, tail = rest.rpartition("@")
    if not at:
        return value
    user, colon, _ = userinfo.partition(":")
    shown = f"{user}:****" if colon else "****"
    return f"{scheme}{sep}{shown}@{tail}"


def mask_secrets(data: Any, key: str = "", in_headers: bool = False, all_headers: bool = False) -> Any:
    """A copy of plain config data with every credential masked. Channel headers are masked
    by name (``OpenAI-Organization`` is not a secret); every header of the trace exporter is
    (they exist to authenticate it, under names such as ``x-honeycomb-team``)."""
    if isinstance(data, dict):
        if in_headers:
            return {k: mask_value(v) if isinstance(v, str) and (all_headers or is_secret_header(k)) else v
                    for k, v in data.items()}
        return {k: mask_secrets(v, k, in_headers=k == "headers", all_headers=key == "tracing")
                for k, v in data.items()}
    if isinstance(data, list):
        return [mask_secrets(v, key) for v in data]
    if isinstance(data, str):
        if _SECRET_KEY.match(key):
            return mask_value(data)
        if key in _URL_KEY:
            return _mask_url(data)
    return data


def _with_defaults(value: Any) -> Any:
    """Plain data of a config Struct including default values (the model omits them when encoding)."""
    if isinstance(value, msgspec.Struct):
        return {f.encode_name: _with_defaults(getattr(value, f.name)) for f in msgspec.structs.fields(value)}
    if isinstance(value, dict):
        return {k: _with_defaults(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_with_defaults(v) for v in value]
    return msgspec.to_builtins(value)


def effective_config(config: Config) -> dict[str, Any]:
    """The config as the gateway runs it (defaults filled in), secrets masked."""
    data: dict[str, Any] = mask_secrets(_with_defaults(config))
    return data
