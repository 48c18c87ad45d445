"""SOCKS5 channel proxies over real sockets: ``socks5://`` and ``socks5h://`` through a real
SOCKS5 server process (microsocks, started and stopped by PID here; .ci/install-deps
installs it), with and without user and password, to http and https (trustme) upstreams.

The client is the official OpenAI SDK against Apex on loopback; upstreams are FakeUpstream.
A small relay in the test process sits between Apex and microsocks and records the bytes
Apex sends it, so a test can read the SOCKS handshake itself: which address Apex asked
for (an IP it resolved, or the name for the proxy to resolve) and which credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import socket
import struct
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from apex.config.load import load_config_bytes
from apex.errors import ConfigError
from apex.snapshot import build_snapshot
from tests.conftest import ApexInstance, StartApex, oai
from tests.integration.conftest import free_port, stop_process
from tests.integration.fakes import FakeUpstream
from tests.integration.test_egress import chat, chat_error, one_channel, write_pem
from tests.proxy_server import pipe

trustme = pytest.importorskip("trustme", reason="trustme makes the test CA (pip install trustme)")
pytest.importorskip("python_socks", reason="the socks extra (pip install 'apex-gateway[socks]')")

LIMIT = 10.0
MICROSOCKS = shutil.which("microsocks")
needs_microsocks = pytest.mark.skipif(
    MICROSOCKS is None, reason="microsocks (a SOCKS5 server) is not installed: .ci/install-deps installs it"
)


class Socks:
    """microsocks on a loopback port, behind a recording relay on another (``port``)."""

    def __init__(self, proc: asyncio.subprocess.Process, relay: asyncio.Server, sent: list[bytearray]) -> None:
        self.proc = proc
        self.relay = relay
        self.port: int = relay.sockets[0].getsockname()[1]
        self.sent = sent  # per connection through the relay: the bytes Apex sent

    def url(self, scheme: str = "socks5", auth: str | None = None) -> str:
        return f"{scheme}://{auth + '@' if auth else ''}127.0.0.1:{self.port}"

    def connect_request(self, index: int = 0) -> bytes:
        """The SOCKS5 CONNECT request Apex sent on connection ``index`` (after any auth)."""
        data = bytes(self.sent[index])
        methods = data[1]
        rest = data[2 + methods:]
        if rest[:1] == b"\x01":  # RFC 1929 user/password sub-negotiation
            ulen = rest[1]
            plen = rest[2 + ulen]
            rest = rest[3 + ulen + plen:]
        assert rest[:3] == b"\x05\x01\x00", rest  # version 5, CONNECT, reserved
        size = {1: 4, 3: 1 + rest[4], 4: 16}[rest[3]]  # IPv4, a name (length-prefixed), IPv6
        return rest[:4 + size + 2]

    def credentials(self, index: int = 0) -> tuple[str, str] | None:
        data = bytes(self.sent[index])
        rest = data[2 + data[1]:]
        if rest[:1] != b"\x01":
            return None
        ulen = rest[1]
        plen = rest[2 + ulen]
        return rest[2:2 + ulen].decode(), rest[3 + ulen:3 + ulen + plen].decode()

    async def stop(self) -> None:
        self.relay.close()
        await stop_process(self.proc)


StartSocks = Callable[..., Awaitable[Socks]]


async def _microsocks(args: list[str]) -> tuple[asyncio.subprocess.Process, int]:
    """microsocks listening on a free loopback port (it has no "pick one" mode: retried on a clash)."""
    assert MICROSOCKS is not None
    for _ in range(5):
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            MICROSOCKS, "-i", "127.0.0.1", "-p", str(port), *args,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        async with asyncio.timeout(LIMIT):
            while proc.returncode is None:
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    return proc, port
                await asyncio.sleep(0.02)
    raise RuntimeError("microsocks did not start")


@pytest.fixture
async def start_socks() -> AsyncIterator[StartSocks]:
    started: list[Socks] = []

    async def start(auth: str | None = None) -> Socks:
        args: list[str] = []
        if auth is not None:
            user, _, password = auth.partition(":")
            args = ["-u", user, "-P", password]
        proc, port = await _microsocks(args)
        sent: list[bytearray] = []

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            record = bytearray()
            sent.append(record)
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                writer.close()
                return
            await asyncio.gather(pipe(reader, up_writer, record), pipe(up_reader, writer, None))

        server = await asyncio.start_server(relay, "127.0.0.1", 0)
        socks = Socks(proc, server, sent)
        started.append(socks)
        return socks

    yield start
    for socks in started:
        await socks.stop()


def ipv4_target(port: int) -> bytes:
    return b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack(">H", port)


def name_target(name: str, port: int) -> bytes:
    return b"\x05\x01\x00\x03" + bytes([len(name)]) + name.encode() + struct.pack(">H", port)


async def metric_lines(inst: ApexInstance, prefix: str) -> list[str]:
    async with aiohttp.ClientSession() as s, s.get(f"{inst.url}/metrics") as r:
        text = await r.text()
    return [line for line in text.splitlines() if line.startswith(prefix)]


# --- through the proxy ----------------------------------------------------------------------


@needs_microsocks
async def test_http_upstream_through_socks5(upstream: FakeUpstream, start_socks: StartSocks, start_apex: StartApex) -> None:
    """socks5:// without credentials to an http upstream: one tunnel to the upstream's address,
    the request in origin form inside it (no absolute URL, no Proxy-Authorization), reused."""
    socks = await start_socks()
    inst = await start_apex(one_channel(upstream.openai_url, proxy=socks.url()))
    assert await chat(inst)
    assert await chat(inst)
    assert len(socks.sent) == 1  # one tunnel, kept alive and reused
    assert socks.sent[0][:2] == b"\x05\x01" and socks.sent[0][2] == 0  # one method offered: none
    assert socks.connect_request() == ipv4_target(upstream.port)
    http = bytes(socks.sent[0]).split(ipv4_target(upstream.port), 1)[1]
    assert http.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"proxy-authorization" not in http.lower()
    assert upstream.hits("/v1/chat/completions") == 2


@needs_microsocks
async def test_https_upstream_through_socks5_with_credentials(
    ca: Any, tls_upstream: FakeUpstream, start_socks: StartSocks, start_apex: StartApex, tmp_path: Path
) -> None:
    """socks5:// with user and password to an https upstream: RFC 1929 credentials to the
    proxy (percent-decoded from the URL), TLS verified against the private CA inside the
    tunnel, the connection reused (a JSON answer, then a stream); the upstream never sees the
    proxy's credentials."""
    socks = await start_socks(auth="alice:p@ss word")
    cfg = one_channel(tls_upstream.openai_url, proxy=socks.url(auth="alice:p%40ss%20word"),
                      tls={"ca_file": write_pem(tmp_path, "ca.pem", ca.cert_pem)})
    inst = await start_apex(cfg)
    assert await chat(inst)
    stream = await oai(inst).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])  # SSE through the tunnel
    assert len(socks.sent) == 1
    assert socks.credentials() == ("alice", "p@ss word")
    assert socks.connect_request() == ipv4_target(tls_upstream.port)
    assert bytes(socks.sent[0]).split(ipv4_target(tls_upstream.port), 1)[1][:1] == b"\x16"  # a TLS handshake follows
    assert tls_upstream.hits("/v1/chat/completions") == 2
    assert all("p@ss" not in v for v in tls_upstream.requests[0].headers.values())


@needs_microsocks
@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
async def test_socks5h_lets_the_proxy_resolve_the_name(
    ca: Any, tls_upstream: FakeUpstream, start_socks: StartSocks, start_apex: StartApex, tmp_path: Path, scheme: str
) -> None:
    """An upstream named by host name: socks5h sends the name for the proxy to resolve,
    socks5 resolves it in Apex and sends the address. TLS checks the name either way."""
    if socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)[0][4][0] != "127.0.0.1":
        pytest.skip("localhost does not resolve to 127.0.0.1 first on this machine (microsocks takes the first)")
    socks = await start_socks(auth="bob:pw")
    url = f"https://localhost:{tls_upstream.port}/v1"
    cfg = one_channel(url, proxy=socks.url(scheme, "bob:pw"), tls={"ca_file": write_pem(tmp_path, "ca.pem", ca.cert_pem)})
    inst = await start_apex(cfg)
    assert await chat(inst)
    expected = name_target("localhost", tls_upstream.port) if scheme == "socks5h" else ipv4_target(tls_upstream.port)
    assert socks.connect_request() == expected
    assert tls_upstream.hits("/v1/chat/completions") == 1


# --- failures -------------------------------------------------------------------------------


@needs_microsocks
@pytest.mark.parametrize("given", ["wrong", "none"])
async def test_socks_credentials_refused_name_the_proxy_not_the_password(
    upstream: FakeUpstream, start_socks: StartSocks, start_apex: StartApex,
    caplog: pytest.LogCaptureFixture, given: str,
) -> None:
    """A wrong password (or none where the proxy wants one): a 502 "could not connect" naming
    the upstream and the proxy's host:port and why; counted as a failed attempt of the channel
    like any connect failure; the password is in no answer, no log line and no metric."""
    socks = await start_socks(auth="alice:right-pass")
    proxy = socks.url(auth="alice:wrong-pass" if given == "wrong" else None)
    inst = await start_apex(one_channel(upstream.openai_url, proxy=proxy))
    with caplog.at_level(logging.DEBUG):
        err = await chat_error(inst)
    assert err.status_code == 502
    message = err.body["message"]  # type: ignore[index]
    assert f"could not connect to 127.0.0.1:{upstream.port} via proxy 127.0.0.1:{socks.port}" in message
    if given == "wrong":
        assert "the SOCKS proxy refused the handshake (username and password authentication failure)" in message
    else:
        assert "the SOCKS proxy refused the handshake (no acceptable authentication methods were offered)" in message
    failures = [line for line in await metric_lines(inst, "apex_attempt_failures_total{") if 'channel="oa"' in line]
    assert len(failures) == 1 and failures[0].endswith(" 1.0"), failures
    assert "wrong-pass" not in message and "wrong-pass" not in caplog.text and "right-pass" not in caplog.text
    assert upstream.hits() == 0


@needs_microsocks
async def test_socks_proxy_that_cannot_reach_the_upstream_says_so(
    start_socks: StartSocks, start_apex: StartApex
) -> None:
    """The proxy answers but cannot connect to the upstream (nothing listens there): the
    proxy's reply is the reason; a proxy that is down is "unreachable"."""
    socks = await start_socks()
    dead = free_port()
    inst = await start_apex(one_channel(f"http://127.0.0.1:{dead}/v1", proxy=socks.url()))
    err = await chat_error(inst)
    assert err.status_code == 502
    message = err.body["message"]  # type: ignore[index]
    assert f"could not connect to 127.0.0.1:{dead} via proxy 127.0.0.1:{socks.port}: " in message
    assert "the SOCKS proxy could not connect to the upstream (connection refused by destination host)" in message
    down = free_port()
    inst = await start_apex(one_channel(f"http://127.0.0.1:{dead}/v1", proxy=f"socks5h://u:secret-pw@127.0.0.1:{down}"))
    err = await chat_error(inst)
    message = err.body["message"]  # type: ignore[index]
    assert f"could not connect to 127.0.0.1:{dead} via proxy 127.0.0.1:{down}: the SOCKS proxy is unreachable (connection refused)" in message
    assert "secret-pw" not in message


async def test_silent_socks_proxy_is_bounded_by_the_connect_timeout(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A "proxy" that accepts the connection and never answers the handshake: a 504 after the
    channel's connect timeout, naming the upstream and the proxy."""
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        cfg = one_channel(upstream.openai_url, proxy=f"socks5://127.0.0.1:{port}", timeouts={"connect_ms": 200})
        inst = await start_apex(cfg)
        err = await chat_error(inst)
        assert err.status_code == 504
        message = err.body["message"]  # type: ignore[index]
        assert f"could not connect to 127.0.0.1:{upstream.port} via proxy 127.0.0.1:{port}: timed out after 0.2 s" in message
        assert upstream.hits() == 0
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


# --- environment variables and config -------------------------------------------------------


@needs_microsocks
@pytest.mark.parametrize("variable", ["ALL_PROXY", "https_proxy"])
async def test_socks_proxy_from_the_environment(
    ca: Any, tls_upstream: FakeUpstream, start_socks: StartSocks, start_apex: StartApex,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str,
) -> None:
    """Without a proxy key, a socks5h:// URL in HTTPS_PROXY or ALL_PROXY (ALL_PROXY serving a
    scheme without its own variable, as in curl) is used; "direct" ignores it, and so does an
    upstream that NO_PROXY names."""
    socks = await start_socks(auth="env:pw")
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    tls = {"ca_file": write_pem(tmp_path, "ca.pem", ca.cert_pem)}
    monkeypatch.setenv(variable, socks.url("socks5h", "env:pw"))
    via_env = await start_apex(one_channel(tls_upstream.openai_url, tls=tls))  # the environment is read here
    direct = await start_apex(one_channel(tls_upstream.openai_url, tls=tls, proxy="direct"))
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    bypassed = await start_apex(one_channel(tls_upstream.openai_url, tls=tls))
    monkeypatch.delenv(variable)  # the SDK client would read it too (and has no SOCKS support installed)
    monkeypatch.delenv("NO_PROXY")
    assert await chat(via_env)
    assert len(socks.sent) == 1 and socks.credentials() == ("env", "pw")
    assert socks.connect_request() == ipv4_target(tls_upstream.port)
    assert await chat(direct)
    assert await chat(bypassed)
    assert len(socks.sent) == 1
    assert tls_upstream.hits("/v1/chat/completions") == 3


async def test_socks_proxy_without_the_extra_does_not_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """A socks5 proxy (key or environment) without python-socks installed is a config error
    that names the extra to install, never the password (the key's already when the file is
    loaded, as for the clouds' extras; the environment's when the channels are compiled);
    http proxies still load."""
    monkeypatch.setitem(sys.modules, "python_socks", None)  # find_spec says: not installed
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)

    def build(**channel: Any) -> None:
        cfg = one_channel("https://api.example.test/v1", **channel)
        build_snapshot(load_config_bytes(json.dumps(cfg).encode(), {}), None, None)

    with pytest.raises(ConfigError) as caught:
        build(proxy="socks5h://u:hunter2@127.0.0.1:1080")
    assert caught.value.path == "channels[0].proxy"
    assert "pip install 'apex-gateway[socks]'" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    # The load alone says so too (what `apex config validate` runs), like a cloud's missing extra.
    cfg = one_channel("https://api.example.test/v1", proxy="socks5://u:hunter2@127.0.0.1:1080")
    with pytest.raises(ConfigError) as caught:
        load_config_bytes(json.dumps(cfg).encode(), {})
    assert caught.value.path == "channels[0].proxy"
    assert "a socks5:// proxy needs the socks extra: pip install 'apex-gateway[socks]'" in str(caught.value)
    monkeypatch.setenv("ALL_PROXY", "socks5://u:hunter2@127.0.0.1:1080")
    with pytest.raises(ConfigError) as caught:
        build()
    assert "ALL_PROXY environment variable" in str(caught.value) and "apex-gateway[socks]" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    monkeypatch.delenv("ALL_PROXY")
    build(proxy="http://u:pw@127.0.0.1:3128")


@pytest.mark.parametrize(
    ("proxy", "says"),
    [
        ("socks4://127.0.0.1:1080", "socks4 proxies are not supported"),
        ("socks5://:hunter2@127.0.0.1:1080", "need a user name and a password"),
        ("socks5://u:" + "x" * 300 + "@127.0.0.1:1080", "need a user name and a password"),
        ("socks5://127.0.0.1:1080/path", "must not have a path"),
    ],
)
def test_bad_socks_urls_are_config_errors(proxy: str, says: str) -> None:
    cfg = one_channel("https://api.example.test/v1", proxy=proxy)
    with pytest.raises(ConfigError) as caught:
        build_snapshot(load_config_bytes(json.dumps(cfg).encode(), {}), None, None)
    assert caught.value.path == "channels[0].proxy"
    assert says in str(caught.value)
    assert "hunter2" not in str(caught.value) and "xxxx" not in str(caught.value)
