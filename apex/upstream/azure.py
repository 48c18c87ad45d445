"""Azure OpenAI: the two URL shapes, the ``api-key`` header, and Entra ID client-credential tokens.

With a dated ``api_version`` the deployment (the upstream model after ``model_map``) goes
in the path, ``/openai/deployments/{deployment}/chat/completions?api-version=...``, and
Responses is reached by translation through Chat; with ``"v1"`` the URLs are
``/openai/v1/...`` with the deployment as ``model`` in the body, Responses included.

Entra ID tokens come from a client-credentials exchange written here (one form POST, see
https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow)
rather than from ``azure-identity``: that library pulls in azure-core, msal and
msal-extensions for what is one POST here, and refuses a non-https authority, which rules
out checking the exchange against a local token service.
The exchange goes through Apex's own upstream pool and the channel's egress (proxy, TLS
options), in the background.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final
from urllib.parse import quote, urlencode

import msgspec

from apex.config.model import AzureAd, Channel
from apex.upstream.cloud import CloudRoute, CloudSetup, Native, bearer_fields
from apex.upstream.credentials import CredentialSlot, Fetched, Refresher
from apex.upstream.egress import Egress
from apex.upstream.http import UpstreamPool, encode_header_fields
from apex.types import Dialect
from apex.wire.azure import TokenAnswer

__all__ = ["AZURE_SCOPE", "azure_setup", "azure_token_refresher"]

AZURE_SCOPE: Final = "https://cognitiveservices.azure.com/.default"
_PATHS: Final[dict[Dialect, str]] = {
    Dialect.OPENAI_CHAT: "/chat/completions",
    Dialect.OPENAI_RESPONSES: "/responses",
    Dialect.OPENAI_EMBEDDINGS: "/embeddings",
}
_FORM_HEADERS: Final = encode_header_fields(
    {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json", "Accept-Encoding": "identity"}
)


_ANSWER: Final = msgspec.json.Decoder(TokenAnswer)


def azure_setup(ch: Channel, base: str, egress: Egress | None = None) -> CloudSetup:
    """URLs and auth of an azure_openai channel (its config already checked); Entra ID
    tokens are fetched through ``egress`` (the channel's proxy and TLS options)."""
    version = ch.api_version or "v1"
    credentials: CredentialSlot | None = None
    auth: dict[str, str] = {}
    if ch.azure_ad is not None:
        ad = ch.azure_ad
        key = ("azure_ad", ad, egress.key if egress is not None else None)
        credentials = CredentialSlot(key, lambda pool: azure_token_refresher(ch.name, ad, pool, egress))
    elif ch.api_key:
        auth = {"api-key": ch.api_key}
    authorize = bearer_fields(credentials, ch.name) if credentials is not None else None
    native: dict[Dialect, Native] = {}
    if version == "v1":
        for d, path in _PATHS.items():
            url = f"{base}/openai/v1{path}"
            route = None if authorize is None else CloudRoute(_fixed(url), None, authorize)
            native[d] = Native(url, "openai", route)
    else:
        query = "?" + urlencode({"api-version": version})
        for d in (Dialect.OPENAI_CHAT, Dialect.OPENAI_EMBEDDINGS):  # Responses needs v1
            prefix = f"{base}/openai/deployments/"
            suffix = _PATHS[d] + query

            def url_of(model: str, _stream: bool, prefix: str = prefix, suffix: str = suffix) -> str:
                return prefix + model + suffix

            native[d] = Native(prefix, "openai", CloudRoute(url_of, None, authorize))
    return CloudSetup({"": native}, lambda _m: "", auth, credentials)


def _fixed(url: str) -> Callable[[str, bool], str]:
    def url_of(_model: str, _stream: bool) -> str:
        return url

    return url_of


def azure_token_refresher(channel: str, ad: AzureAd, pool: UpstreamPool, egress: Egress | None = None) -> Refresher[object]:
    """A Refresher of ``Authorization: Bearer`` lines from the tenant's token endpoint,
    reached through ``egress`` (a company proxy sees the token request too)."""
    url = f"{ad.authority_host.rstrip('/')}/{quote(ad.tenant_id, safe='')}/oauth2/v2.0/token"
    form = urlencode({
        "grant_type": "client_credentials",
        "client_id": ad.client_id,
        "client_secret": ad.client_secret,
        "scope": AZURE_SCOPE,
    }).encode()

    async def fetch() -> Fetched[bytes]:
        reply = await pool.post(url, _FORM_HEADERS, form, connect_timeout=10.0, egress=egress)
        try:
            raw = await reply.read()
        finally:
            reply.close()
        try:
            answer = _ANSWER.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise RuntimeError(f"the token endpoint answered HTTP {reply.status} without a token") from None
        if reply.status != 200 or not answer.access_token:
            detail = (answer.error_description or "").splitlines()[0] if answer.error_description else ""
            raise RuntimeError(f"the token endpoint answered HTTP {reply.status} {answer.error or ''} {detail}".strip())
        lifetime = float(answer.expires_in) if answer.expires_in is not None else 3600.0
        return Fetched(encode_header_fields({"Authorization": f"Bearer {answer.access_token}"}), lifetime)

    return Refresher(channel, "Entra ID token", fetch)
