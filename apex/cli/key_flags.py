"""``apex channel add|update`` flags for the channel keys beyond the basic ones: the cloud
provider types' (azure_openai, bedrock, vertex) and egress (proxy, TLS, connection budget).

One flag per pinned config key; nested keys (``aws.*``, ``azure_ad.*``, ``tls.*``) are built
from flat flags. Secrets are best given as ``${VAR}`` references, like ``--api-key``. On
update, an omitted flag keeps its value and an empty string removes the key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

import rich_click as click

__all__ = ["apply_key_flags", "key_flags"]

F = TypeVar("F", bound=Callable[..., object])

# flag parameter -> (config key, nested key or None)
_KEYS: Final[dict[str, tuple[str, str | None]]] = {
    "api_version": ("api_version", None),
    "region": ("region", None),
    "project": ("project", None),
    "location": ("location", None),
    "credentials_file": ("credentials_file", None),
    "aws_access_key_id": ("aws", "access_key_id"),
    "aws_secret_access_key": ("aws", "secret_access_key"),
    "aws_session_token": ("aws", "session_token"),
    "azure_tenant_id": ("azure_ad", "tenant_id"),
    "azure_client_id": ("azure_ad", "client_id"),
    "azure_client_secret": ("azure_ad", "client_secret"),
    "azure_authority_host": ("azure_ad", "authority_host"),
    "proxy": ("proxy", None),
    "max_connections": ("max_connections", None),
    "ca_file": ("tls", "ca_file"),
    "cert_file": ("tls", "cert_file"),
    "key_file": ("tls", "key_file"),
    "verify": ("tls", "verify"),
}


def key_flags(f: F) -> F:
    """Add the cloud and egress flags to a command."""
    options = [
        click.option("--api-version", help='azure_openai: a dated API version ("2024-10-21") or "v1".'),
        click.option("--region", help="bedrock: the AWS region, e.g. us-east-1."),
        click.option("--project", help="vertex: the Google Cloud project id."),
        click.option("--location", help="vertex: the region (us-east5) or global."),
        click.option("--credentials-file", help="vertex: a service-account JSON (default: Application Default Credentials)."),
        click.option("--aws-access-key-id", help="bedrock: static AWS key id (default: the AWS credential chain)."),
        click.option("--aws-secret-access-key", help="bedrock: its secret; prefer a ${VAR} reference."),
        click.option("--aws-session-token", help="bedrock: a session token for temporary keys."),
        click.option("--azure-tenant-id", help="azure_openai: Entra ID tenant (instead of --api-key)."),
        click.option("--azure-client-id", help="azure_openai: Entra ID application (client) id."),
        click.option("--azure-client-secret", help="azure_openai: its client secret; prefer a ${VAR} reference."),
        click.option("--azure-authority-host", help="azure_openai: default https://login.microsoftonline.com."),
        click.option("--proxy", metavar="URL",
                     help='http(s)://[user:pass@]host:port, socks5(h)://..., or "direct" (ignore HTTPS_PROXY etc.).'),
        click.option("--max-connections", type=click.IntRange(min=0), metavar="N",
                     help="Most connections to each of the channel's origins at once (default 100; 0 removes the key)."),
        click.option("--ca-file", metavar="PEM", help="tls.ca_file: trust this CA bundle instead of the system store."),
        click.option("--cert-file", metavar="PEM", help="tls.cert_file: client certificate (mTLS)."),
        click.option("--key-file", metavar="PEM", help="tls.key_file: its private key (if not in --cert-file)."),
        click.option("--verify/--no-verify", default=None,
                     help="tls.verify: --no-verify turns certificate checks off (warned at every load)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def apply_key_flags(ch: dict[str, Any], flags: dict[str, Any]) -> None:
    """Set the keys of the given flags on raw channel ``ch``: an omitted flag (None) keeps its
    value; an empty string (or ``--max-connections 0``) removes the key, and an emptied
    nested object with it."""
    for param, value in flags.items():
        if value is None:
            continue
        key, sub = _KEYS[param]
        remove = value == "" or (param == "max_connections" and value == 0)
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
