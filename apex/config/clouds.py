"""Config rules of the cloud provider types (azure_openai, bedrock, vertex).

Which keys each one needs or forbids, and which optional extra must be installed for it:
a config naming a cloud whose library is missing is a load error that says what to
install, not a crash on the first request. Pure: reads no files and opens no sockets.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Final

from apex.config.model import Channel
from apex.errors import ConfigError

__all__ = ["CLOUD_PROVIDERS", "check_cloud_channel", "missing_extra"]

CLOUD_PROVIDERS: Final = frozenset({"azure_openai", "bedrock", "vertex"})

# The modules each extra brings, checked with find_spec (nothing is imported at load).
_EXTRA_MODULES: Final[dict[str, tuple[str, ...]]] = {
    "aws": ("botocore",),
    "gcp": ("google.auth", "requests"),
    "socks": ("python_socks",),  # socks5:// channel proxies (apex.upstream.socks)
    "otel": ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"),  # global.tracing
    "postgres": ("asyncpg",),  # global.request_log.type postgres
}
# Channel keys one provider type owns; on another channel they are errors (they would be
# ignored). Unset is None, or 0 for latency_ms.
_PROVIDER_ONLY: Final[dict[str, str]] = {
    "api_version": "azure_openai",
    "azure_ad": "azure_openai",
    "region": "bedrock",
    "aws": "bedrock",
    "project": "vertex",
    "location": "vertex",
    "credentials_file": "vertex",
    "latency_ms": "mock",
    "tokens_per_s": "mock",
    "response_text": "mock",
}


def missing_extra(extra: str) -> bool:
    """Whether the optional extra ``extra`` (aws, gcp, socks) is not installed."""
    for module in _EXTRA_MODULES[extra]:
        try:
            if importlib.util.find_spec(module) is None:
                return True
        except ModuleNotFoundError:  # a parent package is missing
            return True
    return False


def _need_extra(extra: str, provider: str, path: str) -> None:
    if missing_extra(extra):
        raise ConfigError(
            f"provider_type {provider} needs the {extra} extra: pip install 'apex-gateway[{extra}]'",
            path=f"{path}.provider_type",
        )


def check_cloud_channel(ch: Channel, path: str) -> None:
    """The per-cloud rules for channel ``ch`` at ``path``; keys of another provider type (a
    cloud's, the mock's) are errors.

    Each value's own shape (a dated api_version, a region name, non-empty credentials, an
    http(s) authority) is in its type in ``apex.config.model``; these are the keys a cloud
    needs or forbids beside the others."""
    for key, owner in _PROVIDER_ONLY.items():
        if getattr(ch, key) not in (None, 0) and ch.provider_type != owner:
            raise ConfigError(f"only for provider_type {owner}", path=f"{path}.{key}")
    check = _CLOUD_CHECKS.get(ch.provider_type)
    if check is not None:
        check(ch, path)


def _check_azure(ch: Channel, path: str) -> None:
    if not ch.base_url:
        raise ConfigError("required for provider_type azure_openai: the resource endpoint, "
                          "e.g. https://NAME.openai.azure.com", path=f"{path}.base_url")
    if ch.api_version is None:
        raise ConfigError('required for provider_type azure_openai: a dated version such as '
                          '"2024-10-21", or "v1"', path=f"{path}.api_version")
    if (ch.api_key is None) == (ch.azure_ad is None):
        raise ConfigError("azure_openai needs exactly one of api_key or azure_ad", path=f"{path}.api_key")


def _check_bedrock(ch: Channel, path: str) -> None:
    if ch.region is None:
        raise ConfigError("required for provider_type bedrock: an AWS region such as us-east-1", path=f"{path}.region")
    if ch.aws is not None and ch.api_key is not None:
        raise ConfigError("give either aws credentials or a Bedrock api_key, not both", path=f"{path}.api_key")
    _need_extra("aws", "bedrock", path)  # botocore also decodes the event-stream framing


def _check_vertex(ch: Channel, path: str) -> None:
    if ch.project is None:
        raise ConfigError("required for provider_type vertex: the Google Cloud project id", path=f"{path}.project")
    if ch.location is None:
        raise ConfigError("required for provider_type vertex: a region such as us-east5, or global",
                          path=f"{path}.location")
    if ch.api_key is not None:
        raise ConfigError("vertex authenticates with credentials_file or Application Default Credentials",
                          path=f"{path}.api_key")
    _need_extra("gcp", "vertex", path)


_CLOUD_CHECKS: Final[dict[str, Callable[[Channel, str], None]]] = {
    "azure_openai": _check_azure,
    "bedrock": _check_bedrock,
    "vertex": _check_vertex,
}
