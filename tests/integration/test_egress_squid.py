"""Channel proxies against squid, the proxy most company networks run.

Like test_egress_tinyproxy.py, a second opinion from a proxy Apex did not write: squid (the
Debian package; `.ci/install-deps` installs it) with Basic authentication by its own
basic_ncsa_auth helper. It answers CONNECT with `HTTP/1.1 200 Connection established`,
refuses bad credentials with a 407 and an HTML page after the head (on CONNECT and when
forwarding), and adds `Via` to what it forwards. Clients are the official OpenAI SDK; squid
runs in the foreground (-N) in its own process, started and stopped by the fixture.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartApex, oai
from tests.integration.conftest import free_port, serving
from tests.integration.fakes import FakeUpstream
from tests.integration.test_egress import chat, one_channel, refusal, write_pem

_HELPER = Path("/usr/lib/squid/basic_ncsa_auth")
pytestmark = pytest.mark.skipif(
    shutil.which("squid") is None or not _HELPER.exists() or shutil.which("openssl") is None,
    reason="squid (with basic_ncsa_auth) and openssl are not installed (.ci/install-deps installs them)",
)

LIMIT = 10.0


@dataclass
class Squid:
    port: int
    dir: Path

    def url(self, auth: str) -> str:
        return f"http://{auth}@127.0.0.1:{self.port}"

    def access(self) -> str:
        path = self.dir / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def squid() -> Iterator[Squid]:
    """squid on a free loopback port requiring Basic alice:s3cret, caching off. Its files are in
    a world-readable temp dir: started as root, squid drops to its own user."""
    work = Path(tempfile.mkdtemp(prefix="apex-squid-"))
    os.chmod(work, 0o777)
    port = free_port()
    digest = subprocess.run(["openssl", "passwd", "-apr1", "s3cret"], check=True, capture_output=True, text=True).stdout.strip()
    (work / "passwd").write_text(f"alice:{digest}\n")
    os.chmod(work / "passwd", 0o644)
    (work / "squid.conf").write_text(
        f"http_port 127.0.0.1:{port}\n"
        f"auth_param basic program {_HELPER} {work}/passwd\n"
        "acl lo src 127.0.0.1\nacl users proxy_auth REQUIRED\n"
        "http_access allow lo users\nhttp_access deny all\ncache deny all\n"
        f"pid_filename {work}/squid.pid\naccess_log stdio:{work}/access.log\ncache_log {work}/cache.log\n"
        f"coredump_dir {work}\nshutdown_lifetime 0 seconds\n"
    )
    try:
        with serving(["squid", "-N", "-f", str(work / "squid.conf")], port, work / "squid.out", "squid"):
            yield Squid(port, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def test_https_upstream_through_squid_connect(
    ca: Any, tls_upstream: FakeUpstream, squid: Squid, start_apex: StartApex, tmp_path: Path
) -> None:
    """CONNECT with Basic credentials, TLS to the upstream inside, a stream relayed through it."""
    cfg = one_channel(tls_upstream.openai_url, proxy=squid.url("alice:s3cret"),
                      tls={"ca_file": write_pem(tmp_path, "ca.pem", ca.cert_pem)})
    inst = await start_apex(cfg)
    assert await chat(inst)
    stream = await oai(inst).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert tls_upstream.hits("/v1/chat/completions") == 2
    assert "proxy-authorization" not in {k.lower() for k in tls_upstream.requests[0].headers}


async def test_http_upstream_through_squid_forwarding(upstream: FakeUpstream, squid: Squid, start_apex: StartApex) -> None:
    inst = await start_apex(one_channel(upstream.openai_url, proxy=squid.url("alice:s3cret")))
    assert await chat(inst)
    assert await chat(inst)
    seen = {k.lower(): v for k, v in upstream.requests[-1].headers.items()}
    assert "squid" in seen.get("via", "")
    assert "proxy-authorization" not in seen and seen["authorization"] == "Bearer sk-upstream-oa"


@pytest.mark.parametrize("tls", [True, False], ids=["connect", "forwarding"])
async def test_squid_refusing_credentials(
    tls: bool, ca: Any, tls_upstream: FakeUpstream, upstream: FakeUpstream, squid: Squid,
    start_apex: StartApex, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """squid's 407 (a page after its head) is the proxy refusing, named as such."""
    target = tls_upstream if tls else upstream
    extra = {"tls": {"ca_file": write_pem(tmp_path, "ca.pem", ca.cert_pem)}} if tls else {}
    inst = await start_apex(one_channel(target.openai_url, proxy=squid.url("alice:wrong-pass"), **extra))
    message = await refusal(inst, caplog, "wrong-pass")
    assert f"could not connect to 127.0.0.1:{target.port} via proxy 127.0.0.1:{squid.port}" in message
    assert f"the proxy refused the {'tunnel' if tls else 'request'} (HTTP 407)" in message
    assert target.hits("/v1/chat/completions") == 0
