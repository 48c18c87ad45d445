"""``apex channel add|update`` flags of the cloud provider types (azure_openai, bedrock, vertex).

One flag per pinned config key; nested keys (``aws.*``, ``azure_ad.*``) are built from
flat flags. Secrets are best given as ``${VAR}`` references, like ``--api-key``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

import rich_click as click

from apex.cli.output import mask

__all__ = ["CLOUD_SECRET_KEYS", "apply_cloud_flags", "cloud_flags", "mask_cloud_secrets"]

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
}
CLOUD_SECRET_KEYS: Final = {("aws", "secret_access_key"), ("aws", "session_token"), ("azure_ad", "client_secret")}


def cloud_flags(f: F) -> F:
    """Add the cloud flags to a command."""
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
    ]
    for option in reversed(options):
        f = option(f)
    return f


def apply_cloud_flags(ch: dict[str, Any], flags: dict[str, str | None]) -> None:
    """Set the keys of the given flags on raw channel ``ch`` (omitted flags keep their value)."""
    for param, value in flags.items():
        if value is None:
            continue
        key, sub = _KEYS[param]
        if sub is None:
            ch[key] = value
        else:
            nested = ch.get(key)
            if not isinstance(nested, dict):
                nested = ch[key] = {}
            nested[sub] = value


def mask_cloud_secrets(ch: dict[str, Any]) -> None:
    """Mask the nested cloud secrets of raw channel ``ch`` in place (a copy's, for display)."""
    for key, sub in CLOUD_SECRET_KEYS:
        nested = ch.get(key)
        if isinstance(nested, dict) and isinstance(nested.get(sub), str):
            ch[key] = {**nested, sub: mask(nested[sub])}
