"""Google Vertex AI: Gemini and Claude publisher endpoints, with google-auth access tokens.

Gemini models: ``{base}/v1/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent``
and ``:streamGenerateContent?alt=sse``, the Gemini wire format Apex already translates.
Claude models (``claude-*``): ``.../publishers/anthropic/models/{m}:rawPredict`` and
``:streamRawPredict`` with the Messages body minus ``model`` plus
``anthropic_version: vertex-2023-10-16`` (``stream`` stays: it selects SSE), as Anthropic's
own Vertex client sends it.

Tokens come from google-auth: a service-account file (``credentials_file``; its
``token_uri`` is where the signed JWT goes) or Application Default Credentials. google-auth
is synchronous (file reads, an HTTP exchange), so it runs in a background thread, never on
the request path; each token's header line is encoded once when it arrives.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Final
from urllib.parse import quote

from apex.config.model import Channel
from apex.upstream.cloud import CloudRoute, CloudSetup, Native, anthropic_body_for, bearer_fields
from apex.upstream.credentials import CredentialSlot, Fetched, Refresher
from apex.upstream.http import encode_header_fields
from apex.types import Dialect

__all__ = ["VERTEX_ANTHROPIC_VERSION", "google_refresher", "vertex_base_url", "vertex_setup"]

VERTEX_ANTHROPIC_VERSION: Final = "vertex-2023-10-16"
SCOPE: Final = "https://www.googleapis.com/auth/cloud-platform"


def vertex_base_url(location: str) -> str:
    """The regional endpoint, or the global one for ``global``."""
    if location == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def vertex_setup(ch: Channel, base: str) -> CloudSetup:
    """URLs, body edits and token auth of a vertex channel."""
    project = quote(ch.project or "", safe="")
    location = ch.location or ""
    publishers = f"{base}/v1/projects/{project}/locations/{location}/publishers"
    credentials_file = ch.credentials_file
    slot = CredentialSlot(("gcp", credentials_file), lambda _pool: google_refresher(ch.name, credentials_file))
    authorize = bearer_fields(slot, ch.name)

    def gemini_url(model: str, stream: bool) -> str:
        method = ":streamGenerateContent?alt=sse" if stream else ":generateContent"
        return f"{publishers}/google/models/{model}{method}"

    def claude_url(model: str, stream: bool) -> str:
        method = ":streamRawPredict" if stream else ":rawPredict"
        return f"{publishers}/anthropic/models/{model}{method}"

    gemini = CloudRoute(gemini_url, None, authorize)
    claude = CloudRoute(claude_url, anthropic_body_for(VERTEX_ANTHROPIC_VERSION, keep_stream=True), authorize)
    kinds = {
        "gemini": {Dialect.GEMINI_GENERATE: Native(f"{publishers}/google/models", "gemini", gemini)},
        "anthropic": {Dialect.ANTHROPIC_MESSAGES: Native(f"{publishers}/anthropic/models", "anthropic", claude)},
    }
    return CloudSetup(kinds, _kind_of, {}, slot)


def _kind_of(model: str) -> str:
    return "anthropic" if model.startswith("claude") else "gemini"


def google_refresher(channel: str, credentials_file: str | None) -> Refresher[object]:
    """``Authorization: Bearer`` lines from a service account file or ADC, via google-auth."""
    import google.auth
    import google.auth.transport.requests
    from google.oauth2 import service_account

    state: dict[str, object] = {}

    def refresh() -> Fetched[bytes]:
        creds = state.get("creds")
        if creds is None:
            if credentials_file is not None:
                creds = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]  # google-auth leaves it untyped
                    credentials_file, scopes=[SCOPE])
            else:
                creds, _project = google.auth.default(scopes=[SCOPE])
            state["creds"] = creds
            state["request"] = google.auth.transport.requests.Request()
        creds.refresh(state["request"])  # type: ignore[attr-defined]  # google-auth Credentials, untyped here
        token: str = creds.token  # type: ignore[attr-defined]
        expiry: dt.datetime | None = creds.expiry  # type: ignore[attr-defined]  # naive UTC
        lifetime = None
        if expiry is not None:
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            lifetime = (expiry - now).total_seconds()
        return Fetched(encode_header_fields({"Authorization": f"Bearer {token}"}), lifetime)

    async def fetch() -> Fetched[bytes]:
        return await asyncio.to_thread(refresh)

    return Refresher(channel, "Google access token", fetch)
