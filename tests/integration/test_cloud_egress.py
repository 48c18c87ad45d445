"""Cloud channels' token exchanges leave through the channel's egress, like their model calls.

A company that sends all outbound traffic through a proxy needs the Entra ID and Google
token requests to go there too: before, Azure's went direct and Vertex's through
google-auth's own transport, which knows nothing of a channel's ``proxy`` or ``tls`` keys.
The official SDKs call Apex; the clouds are tests/integration/cloud_fakes.py (token services
that verify the grant), reached through tests/proxy_server.py in its own process, with
credentials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartApex
from tests.integration.cloud_clients import answered, ask
from tests.integration.cloud_fakes import CloudFake
from tests.integration.test_azure import ad_config
from tests.integration.test_vertex import config as vertex_config
from tests.integration.conftest import StartProxy

pytest.importorskip("google.auth", reason="the vertex extra (google-auth)")


def vertex_through(cloud: CloudFake, tmp_path: Path, proxy: str) -> dict[str, Any]:
    """test_vertex's config (a service account the fake token service knows) with ``proxy``."""
    cfg = vertex_config(cloud, tmp_path)
    cfg["channels"][0]["proxy"] = proxy
    return cfg


async def test_entra_id_token_goes_through_the_channel_proxy(
    cloud: CloudFake, start_proxy: StartProxy, start_apex: StartApex
) -> None:
    cloud.azure_api_key = None
    proxy = await start_proxy(auth="alice:s3cret")
    cfg = ad_config(cloud)
    cfg["channels"][0]["proxy"] = proxy.url("alice:s3cret")
    inst = await start_apex(cfg)
    text, _ = await ask(inst, "chat", "gpt-4o", stream=False, tools=False)
    assert "4242" in text
    assert f"POST {cloud.url}/tenant-1/oauth2/v2.0/token auth=ok" in proxy.seen
    assert any(seen.startswith(f"POST {cloud.url}/openai/") for seen in proxy.seen)
    assert cloud.azure_tokens.issued


async def test_google_token_goes_through_the_channel_proxy(
    cloud: CloudFake, start_proxy: StartProxy, start_apex: StartApex, tmp_path: Path
) -> None:
    proxy = await start_proxy(auth="alice:s3cret")
    inst = await start_apex(vertex_through(cloud, tmp_path, proxy.url("alice:s3cret")))
    text, _ = await ask(inst, "messages", "claude-sonnet-4@20250514", stream=False, tools=False)
    assert answered(text)
    assert f"POST {cloud.google_tokens.token_uri} auth=ok" in proxy.seen
    assert any("/publishers/anthropic/models/" in seen for seen in proxy.seen)
    assert cloud.google_tokens.issued


async def test_google_token_through_a_refusing_proxy_says_why(
    cloud: CloudFake, start_proxy: StartProxy, start_apex: StartApex, tmp_path: Path
) -> None:
    """The proxy refuses the token request: the channel's credential problem names the proxy
    and the refusal (google-auth's TransportError carries Apex's message), not the password."""
    proxy = await start_proxy(auth="alice:right")
    inst = await start_apex(vertex_through(cloud, tmp_path, proxy.url("alice:wrong-pass")))
    reason = inst.gateway.credential_problems()["vx"]
    assert f"via proxy 127.0.0.1:{proxy.port}" in reason and "HTTP 407" in reason, reason
    assert "wrong-pass" not in reason
    assert not cloud.google_tokens.issued


async def test_pool_request_sends_other_methods_through_google_auth(cloud: CloudFake) -> None:
    """GETs (the GCE metadata server's) are not the token exchange: google-auth's own
    transport takes them, and the answer comes back in google-auth's Response shape."""
    import asyncio

    from apex.upstream.http import UpstreamPool
    from apex.upstream.vertex import PoolRequest

    pool = UpstreamPool()
    try:
        request = PoolRequest(pool, None, asyncio.get_running_loop())
        answer = await asyncio.to_thread(request, f"{cloud.url}/no-such-path", "GET", None, None, 5)
        assert answer.status == 404  # type: ignore[attr-defined]
        posted = await asyncio.to_thread(request, cloud.google_tokens.token_uri, "POST", b"grant_type=x",
                                         {"Content-Type": "application/x-www-form-urlencoded"}, 5)
        assert posted.status == 400 and b"error" in posted.data  # type: ignore[attr-defined]
        assert pool.connections_made == 1  # the POST went through Apex's pool, the GET did not
    finally:
        await pool.close()
