"""``apex channel add|update`` flags for the channel keys beyond the basic ones: the cloud
provider types' (azure_openai, bedrock, vertex) and egress (proxy, TLS, connection budget).

One flag per pinned config key; nested keys (``aws.*``, ``azure_ad.*``, ``tls.*``) are built
from flat flags. Secrets are best given as ``${VAR}`` references, like ``--api-key``. On
update, an omitted flag keeps its value and an empty string removes the key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import rich_click as click

__all__ = ["apply_key_flags", "key_flags"]

F = TypeVar("F", bound=Callable[..., object])

@dataclass(frozen=True, slots=True)
class _Flag:
    """One flag: its declaration, the config key it writes (``sub`` inside a nested object),
    the value that removes the key on update, and click's other option settings."""

    decl: str
    key: str
    sub: str | None
    help: str
    unset: object = ""
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def param(self) -> str:
        """The keyword click passes the value as (``--aws-access-key-id`` -> ``aws_access_key_id``)."""
        return self.decl.split("/", 1)[0].lstrip("-").replace("-", "_")


_FLAGS: Final = (
    _Flag("--api-version", "api_version", None, 'azure_openai: a dated API version ("2024-10-21") or "v1".'),
    _Flag("--region", "region", None, "bedrock: the AWS region, e.g. us-east-1."),
    _Flag("--project", "project", None, "vertex: the Google Cloud project id."),
    _Flag("--location", "location", None, "vertex: the region (us-east5) or global."),
    _Flag("--credentials-file", "credentials_file", None,
          "vertex: a service-account JSON (default: Application Default Credentials)."),
    _Flag("--aws-access-key-id", "aws", "access_key_id", "bedrock: static AWS key id (default: the AWS credential chain)."),
    _Flag("--aws-secret-access-key", "aws", "secret_access_key", "bedrock: its secret; prefer a ${VAR} reference."),
    _Flag("--aws-session-token", "aws", "session_token", "bedrock: a session token for temporary keys."),
    _Flag("--azure-tenant-id", "azure_ad", "tenant_id", "azure_openai: Entra ID tenant (instead of --api-key)."),
    _Flag("--azure-client-id", "azure_ad", "client_id", "azure_openai: Entra ID application (client) id."),
    _Flag("--azure-client-secret", "azure_ad", "client_secret", "azure_openai: its client secret; prefer a ${VAR} reference."),
    _Flag("--azure-authority-host", "azure_ad", "authority_host", "azure_openai: default https://login.microsoftonline.com."),
    _Flag("--proxy", "proxy", None, 'http(s)://[user:pass@]host:port, socks5(h)://..., or "direct" (ignore HTTPS_PROXY etc.).',
          options={"metavar": "URL"}),
    _Flag("--max-connections", "max_connections", None,
          "Most connections to each of the channel's origins at once (default 100; 0 removes the key).",
          unset=0, options={"type": click.IntRange(min=0), "metavar": "N"}),
    _Flag("--ca-file", "tls", "ca_file", "tls.ca_file: trust this CA bundle instead of the system store.",
          options={"metavar": "PEM"}),
    _Flag("--cert-file", "tls", "cert_file", "tls.cert_file: client certificate (mTLS).", options={"metavar": "PEM"}),
    _Flag("--key-file", "tls", "key_file", "tls.key_file: its private key (if not in --cert-file).",
          options={"metavar": "PEM"}),
    _Flag("--verify/--no-verify", "tls", "verify", "tls.verify: --no-verify turns certificate checks off (warned at every load).",
          unset=None, options={"default": None}),
)
_BY_PARAM: Final = {flag.param: flag for flag in _FLAGS}


def key_flags(f: F) -> F:
    """Add the cloud and egress flags to a command."""
    for flag in reversed(_FLAGS):
        f = click.option(flag.decl, help=flag.help, **flag.options)(f)
    return f


def apply_key_flags(ch: dict[str, Any], flags: dict[str, Any]) -> None:
    """Set the keys of the given flags on raw channel ``ch``: an omitted flag (None) keeps its
    value; the flag's ``unset`` value (an empty string, or ``--max-connections 0``) removes the
    key, and an emptied nested object with it."""
    for param, value in flags.items():
        if value is None:
            continue
        flag = _BY_PARAM[param]
        key, sub = flag.key, flag.sub
        remove = value == flag.unset
        if sub is None:
            if remove:
                ch.pop(key, None)
            else:
                ch[key] = value
            continue
        nested = ch.get(key)
        if not isinstance(nested, dict):
            if remove:
                continue
            nested = ch[key] = {}
        if remove:
            nested.pop(sub, None)
            if not nested:
                del ch[key]
        else:
            nested[sub] = value
