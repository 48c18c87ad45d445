"""Channel proxies against tinyproxy, a proxy Apex did not write.

test_egress.py drives tests/proxy_server.py, which answers the way Apex's client expects by
construction. tinyproxy (1.11, the Debian package; `.ci/install-deps` installs it) is a second
opinion from a real deployment's proxy: its CONNECT answer is `HTTP/1.0 200 Connection
established` with a `Proxy-agent` header, it refuses bad credentials with its own 407 page, and
it rewrites absolute-form requests (adds `Via`) before forwarding them. Clients are the
official OpenAI SDK; tinyproxy runs in its own process, started and stopped by the fixture.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartApex, oai
from tests.integration.conftest import free_port, serving
from tests.integration.fakes import FakeUpstream
from tests.integration.test_egress import chat, one_channel, refusal, write_pem

pytestmark = pytest.mark.skipif(shutil.which("tinyproxy") is None,
                                reason="tinyproxy is not installed (.ci/install-deps installs it)")

LIMIT = 10.0


@dataclass
class Tinyproxy:
    port: int
    log: Path

    def url(self, auth: str | None = None) -> str:
        return f"http://{auth + '@' if auth else ''}127.0.0.1:{self.port}"

    def lines(self, needle: str) -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines() if needle in line]


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[Tinyproxy]:
    """tinyproxy on a free loopback port with Basic credentials alice:s3cret, in the foreground."""
    port = free_port()
    conf = tmp_path / "tinyproxy.conf"
    conf.write_text(f"Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nBasicAuth alice s3cret\n"
                    "LogLevel Info\nTimeout 30\nMaxClients 50\n")
    log = tmp_path / "tinyproxy.log"
    with serving(["tinyproxy", "-d", "-c", str(conf)], port, log, "tinyproxy"):
        yield Tinyproxy(port, log)


async def test_https_upstream_through_tinyproxy_connect(
    ca: Any, tls_upstream: FakeUpstream, tinyproxy: Tinyproxy, start_apex: StartApex, tmp_path: Path
) -> None:
    """CONNECT with credentials, TLS verified against the private CA inside the tunnel, the
    tunnel reused for the next request, and a stream relayed through it event by event."""
    cfg = one_channel(tls_upstream.openai_url, proxy=tinyproxy.url("alice:s3cret"),
                      tls={"ca_file": write_pem(tmp_path, "ca.pem", ca.cert_pem)})
    inst = await start_apex(cfg)
    assert await chat(inst)
    assert await chat(inst)
    stream = await oai(inst).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text
    assert tls_upstream.hits("/v1/chat/completions") == 3
    connects = tinyproxy.lines(f"CONNECT 127.0.0.1:{tls_upstream.port}")
    assert 1 <= len(connects) <= 2, connects  # the pooled tunnel is reused (a stream may open a second)
    assert "proxy-authorization" not in {k.lower() for k in tls_upstream.requests[0].headers}


async def test_http_upstream_through_tinyproxy_forwarding(
    upstream: FakeUpstream, tinyproxy: Tinyproxy, start_apex: StartApex
) -> None:
    """An http:// upstream is sent to the proxy in absolute form with Proxy-Authorization; the
    proxy strips it, adds Via, and the upstream sees the channel's own key."""
    inst = await start_apex(one_channel(upstream.openai_url, proxy=tinyproxy.url("alice:s3cret")))
    assert await chat(inst)
    assert await chat(inst)
    assert upstream.hits("/v1/chat/completions") == 2
    seen = {k.lower(): v for k, v in upstream.requests[-1].headers.items()}
    assert "tinyproxy" in seen.get("via", "")
    assert "proxy-authorization" not in seen
    assert seen["authorization"] == "Bearer sk-upstream-oa"


async def test_tinyproxy_refusing_credentials_is_a_502_without_the_password(
    ca: Any, tls_upstream: FakeUpstream, tinyproxy: Tinyproxy, start_apex: StartApex,
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = one_channel(tls_upstream.openai_url, proxy=tinyproxy.url("alice:wrong-pass"),
                      tls={"ca_file": write_pem(tmp_path, "ca.pem", ca.cert_pem)})
    message = await refusal(await start_apex(cfg), caplog, "wrong-pass")
    assert f"could not connect to 127.0.0.1:{tls_upstream.port} via proxy 127.0.0.1:{tinyproxy.port}" in message
    # tinyproxy refuses with 401 (and a page after the head), not the 407 RFC 9110 asks for.
    assert "the proxy refused the tunnel (HTTP 401)" in message
    assert tls_upstream.hits("/v1/chat/completions") == 0

