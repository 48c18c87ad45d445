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
the request path; each token's header line is encoded once when it arrives. The exchange
itself goes through Apex's upstream pool and the channel's egress (``PoolRequest``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
from collections.abc import Callable, Mapping
from typing import Final
from urllib.parse import quote

from apex.config.model import Channel
from apex.upstream.cloud import CloudRoute, CloudSetup, Native, anthropic_body_for, bearer_fields
from apex.upstream.credentials import CredentialSlot, Fetched, Refresher
from apex.upstream.egress import Egress
from apex.upstream.http import UpstreamPool, encode_header_fields
from apex.types import Dialect

__all__ = ["VERTEX_ANTHROPIC_VERSION", "google_refresher", "vertex_base_url", "vertex_setup"]

VERTEX_ANTHROPIC_VERSION: Final = "vertex-2023-10-16"
SCOPE: Final = "https://www.googleapis.com/auth/cloud-platform"


def vertex_base_url(location: str) -> str:
    """The regional endpoint, or the global one for ``global``."""
    if location == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def vertex_setup(ch: Channel, base: str, egress: Egress | None = None) -> CloudSetup:
    """URLs, body edits and token auth of a vertex channel; token requests go through
    ``egress`` (the channel's proxy and TLS options), like its model calls."""
    project = quote(ch.project or "", safe="")
    location = ch.location or ""
    publishers = f"{base}/v1/projects/{project}/locations/{location}/publishers"
    credentials_file = ch.credentials_file
    # The file's contents are part of the key: a key rotated in place (new file, reload, old
    # key revoked) gets a new refresher; keyed on the path, the old one signed with the
    # revoked key until a restart.
    key = ("gcp", credentials_file, _file_fingerprint(credentials_file or os.environ.get(ADC_ENV)),
           egress.key if egress is not None else None)
    slot = CredentialSlot(key, lambda pool: google_refresher(ch.name, credentials_file, pool, egress))
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


class _Answer:
    """google-auth's ``Response``: status, headers, body."""

    __slots__ = ("data", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self.status = status
        self.headers = headers
        self.data = data


class PoolRequest:
    """google-auth's HTTP transport (``google.auth.transport.Request``, by duck typing) over
    Apex's upstream pool, so the token exchange (a form POST to the credentials' ``token_uri``)
    leaves through the channel's egress: its proxy, NO_PROXY, CA bundle. google-auth's own
    transport (requests) would read the proxy variables but not the channel's ``proxy`` or
    ``tls`` keys. google-auth calls it from the refresh thread; the POST runs on the
    gateway's loop. Other methods (the GCE metadata server's GETs: link-local, not proxied)
    go through google-auth's requests transport."""

    def __init__(self, pool: UpstreamPool, egress: Egress | None, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self._egress = egress
        self._loop = loop
        self._other: Callable[..., object] | None = None

    def __call__(self, url: str, method: str = "GET", body: bytes | str | None = None,
                 headers: Mapping[str, str] | None = None, timeout: float | None = None, **kwargs: object) -> object:
        import google.auth.exceptions

        if method != "POST":
            if self._other is None:
                import google.auth.transport.requests

                self._other = google.auth.transport.requests.Request()
            return self._other(url, method=method, body=body, headers=headers, timeout=timeout, **kwargs)
        data = body.encode() if isinstance(body, str) else body or b""
        sent = {k: v for k, v in (headers or {}).items() if k.lower() not in ("host", "content-length")}
        fields = encode_header_fields({**sent, "Accept-Encoding": "identity"})
        future = asyncio.run_coroutine_threadsafe(self._post(url, fields, data, timeout or 120.0), self._loop)
        try:
            return future.result()
        except Exception as exc:  # google-auth expects its TransportError for any failure to exchange
            raise google.auth.exceptions.TransportError(str(exc) or type(exc).__name__) from exc  # type: ignore[no-untyped-call]  # google-auth leaves it untyped

    async def _post(self, url: str, fields: bytes, data: bytes, seconds: float) -> _Answer:
        async with asyncio.timeout(seconds):
            reply = await self._pool.post(url, fields, data, connect_timeout=min(seconds, 10.0), egress=self._egress)
            try:
                raw = await reply.read()
            finally:
                reply.close()
        return _Answer(reply.status, dict(reply.headers), raw)


ADC_ENV: Final = "GOOGLE_APPLICATION_CREDENTIALS"


def _file_fingerprint(path: str | None) -> str | None:
    """A digest of the file at ``path`` (None when there is none to read): read at load."""
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def google_refresher(channel: str, credentials_file: str | None, pool: UpstreamPool,
                     egress: Egress | None = None) -> Refresher[object]:
    """``Authorization: Bearer`` lines from a service account file or ADC, via google-auth;
    the token exchange goes through ``pool`` and ``egress`` (see PoolRequest)."""
    import google.auth
    from google.oauth2 import service_account

    state: dict[str, object] = {}

    def refresh(loop: asyncio.AbstractEventLoop) -> Fetched[bytes]:
        creds = state.get("creds")
        if creds is None:
            if credentials_file is not None:
                creds = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]  # google-auth leaves it untyped
                    credentials_file, scopes=[SCOPE])
            else:
                creds, _project = google.auth.default(scopes=[SCOPE])
            state["creds"] = creds
            state["request"] = PoolRequest(pool, egress, loop)
        creds.refresh(state["request"])  # type: ignore[attr-defined]  # google-auth Credentials, untyped here
        token: str = creds.token  # type: ignore[attr-defined]
        expiry: dt.datetime | None = creds.expiry  # type: ignore[attr-defined]  # naive UTC
        lifetime = None
        if expiry is not None:
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            lifetime = (expiry - now).total_seconds()
        return Fetched(encode_header_fields({"Authorization": f"Bearer {token}"}), lifetime)

    async def fetch() -> Fetched[bytes]:
        return await asyncio.to_thread(refresh, asyncio.get_running_loop())

    return Refresher(channel, "Google access token", fetch)
