"""Channel egress over real sockets: proxies (a real proxy process), TLS options (trustme CA,
mTLS), connection errors that name host:port and the reason, and the connections gauge.

Clients are the official OpenAI SDK against Apex on loopback; upstreams are FakeUpstream
(aiohttp, over TLS where the test says so); the proxy is tests/proxy_server.py in its own
process, started and stopped (by PID) by the fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from apex.config.load import load_config_bytes
from apex.errors import ConfigError
from apex.snapshot import build_snapshot
from tests.conftest import StartApex, basic_config, oai
from tests.integration.conftest import StartProxy, free_port
from tests.integration.fakes import Behaviour, FakeUpstream, fixture_bytes

trustme = pytest.importorskip("trustme", reason="trustme makes the test CA (pip install trustme)")


def one_channel(upstream_url: str, **channel: Any) -> dict[str, Any]:
    """The basic config with a single OpenAI channel ``oa`` at ``upstream_url`` plus ``channel`` keys."""
    cfg = basic_config(FakeUpstream())
    cfg["channels"] = [{"name": "oa", "provider_type": "openai", "base_url": upstream_url,
                        "api_key": "sk-upstream-oa", **channel}]
    cfg["routers"][0]["rules"] = []
    cfg["global"]["retries"] = {"max_attempts": 1}
    return cfg


async def chat(inst: Any) -> str:
    out = await oai(inst).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    return out.choices[0].message.content or ""


async def chat_error(inst: Any) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        await chat(inst)
    return caught.value


async def refusal(inst: Any, caplog: pytest.LogCaptureFixture, password: str) -> str:
    """The message of the 502 a refused proxy gives, checked to hold ``password`` nowhere
    (neither in it nor in any log line at DEBUG)."""
    with caplog.at_level(logging.DEBUG):
        err = await chat_error(inst)
    assert err.status_code == 502
    message: str = err.body["message"]  # type: ignore[index]
    assert password not in message and password not in caplog.text
    return message


def write_pem(tmp_path: Path, name: str, blob: Any) -> str:
    path = tmp_path / name
    blob.write_to_path(str(path))
    return str(path)


# --- proxies ----------------------------------------------------------------------------


async def test_https_upstream_through_connect_proxy_with_credentials(
    ca: Any, tls_upstream: FakeUpstream, start_proxy: StartProxy, start_apex: StartApex, tmp_path: Path
) -> None:
    """proxy + tls.ca_file: the request goes through a real proxy process with CONNECT and its
    Basic credentials, TLS is verified against the private CA, and the connection is reused."""
    proxy = await start_proxy(auth="alice:s3cret")
    cfg = one_channel(tls_upstream.openai_url, proxy=proxy.url("alice:s3cret"),
                      tls={"ca_file": write_pem(tmp_path, "ca.pem", ca.cert_pem)})
    inst = await start_apex(cfg)
    assert await chat(inst)
    assert await chat(inst)
    assert proxy.seen == [f"CONNECT 127.0.0.1:{tls_upstream.port} auth=ok"]  # one tunnel, reused
    assert tls_upstream.hits("/v1/chat/completions") == 2
    assert "proxy-authorization" not in {k.lower() for k in tls_upstream.requests[0].headers}


async def test_http_upstream_is_forwarded_in_absolute_form(
    upstream: FakeUpstream, start_proxy: StartProxy, start_apex: StartApex
) -> None:
    """An http:// upstream behind a proxy: the request line carries the absolute URL and the
    proxy's credentials; the upstream sees neither."""
    proxy = await start_proxy(auth="bob:pw")
    inst = await start_apex(one_channel(upstream.openai_url, proxy=proxy.url("bob:pw")))
    assert await chat(inst)
    assert proxy.seen == [f"POST http://127.0.0.1:{upstream.port}/v1/chat/completions auth=ok"]
    assert upstream.hits("/v1/chat/completions") == 1
    assert "proxy-authorization" not in {k.lower() for k in upstream.requests[0].headers}


async def test_proxy_refusing_credentials_names_the_proxy_not_the_password(
    ca: Any, tls_upstream: FakeUpstream, start_proxy: StartProxy, start_apex: StartApex,
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Wrong proxy credentials: a 502 saying the proxy refused the tunnel (HTTP 407), naming
    the upstream and the proxy; the password appears in no answer and no log line."""
    proxy = await start_proxy(auth="alice:right")
    cfg = one_channel(tls_upstream.openai_url, proxy=proxy.url("alice:wrong-pass"),
                      tls={"ca_file": write_pem(tmp_path, "ca.pem", ca.cert_pem)})
    message = await refusal(await start_apex(cfg), caplog, "wrong-pass")
    assert f"could not connect to 127.0.0.1:{tls_upstream.port} via proxy 127.0.0.1:{proxy.port}" in message
    assert "the proxy refused the tunnel (HTTP 407)" in message
    assert proxy.seen == [f"CONNECT 127.0.0.1:{tls_upstream.port} auth=bad"]


async def test_forwarding_proxy_refusing_credentials_is_named_as_the_proxy(
    upstream: FakeUpstream, start_proxy: StartProxy, start_apex: StartApex, caplog: pytest.LogCaptureFixture,
) -> None:
    """An http:// upstream through a forwarding proxy that answers 407: the answer is the
    proxy's, so the 502 says the proxy refused the request and names it, not the upstream's
    error passed on as if it came from the model's API; the password is nowhere."""
    proxy = await start_proxy(auth="alice:right")
    inst = await start_apex(one_channel(upstream.openai_url, proxy=proxy.url("alice:wrong-pass")))
    message = await refusal(inst, caplog, "wrong-pass")
    assert f"could not connect to 127.0.0.1:{upstream.port} via proxy 127.0.0.1:{proxy.port}" in message
    assert "the proxy refused the request (HTTP 407)" in message
    assert upstream.hits("/v1/chat/completions") == 0


def proxy_certificate(ca: Any, tmp_path: Path) -> tuple[str, str]:
    """Certificate chain and key files for an https:// test proxy on 127.0.0.1, from ``ca``."""
    issued = ca.issue_cert("127.0.0.1", "localhost")
    chain, key = tmp_path / "proxy.pem", tmp_path / "proxy.key"
    chain.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key))
    return str(chain), str(key)


async def test_https_upstream_through_an_https_proxy(
    ca: Any, tls_upstream: FakeUpstream, start_proxy: StartProxy, start_apex: StartApex, tmp_path: Path
) -> None:
    """proxy: https://: TLS to the proxy (checked against tls.ca_file), CONNECT with Basic
    credentials inside it, then TLS to the upstream inside that; the tunnel is reused."""
    proxy = await start_proxy(auth="alice:s3cret", tls=proxy_certificate(ca, tmp_path))
    cfg = one_channel(tls_upstream.openai_url, proxy=proxy.url("alice:s3cret", scheme="https"),
                      tls={"ca_file": write_pem(tmp_path, "ca.pem", ca.cert_pem)})
    inst = await start_apex(cfg)
    assert await chat(inst)
    assert await chat(inst)
    assert proxy.seen == [f"CONNECT 127.0.0.1:{tls_upstream.port} auth=ok"]
    assert tls_upstream.hits("/v1/chat/completions") == 2


async def test_http_upstream_through_an_https_proxy(
    ca: Any, upstream: FakeUpstream, start_proxy: StartProxy, start_apex: StartApex, tmp_path: Path
) -> None:
    proxy = await start_proxy(auth="alice:s3cret", tls=proxy_certificate(ca, tmp_path))
    cfg = one_channel(upstream.openai_url, proxy=proxy.url("alice:s3cret", scheme="https"),
                      tls={"ca_file": write_pem(tmp_path, "ca.pem", ca.cert_pem)})
    inst = await start_apex(cfg)
    assert await chat(inst)
    assert proxy.seen == [f"POST {upstream.openai_url}/chat/completions auth=ok"]


async def test_an_https_proxy_with_an_untrusted_certificate_says_so(
    ca: Any, upstream: FakeUpstream, start_proxy: StartProxy, start_apex: StartApex, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No tls.ca_file: the system store does not know the test CA, so the TLS to the proxy
    fails, and the message says it was the proxy's certificate, not the upstream's."""
    proxy = await start_proxy(auth="alice:s3cret", tls=proxy_certificate(ca, tmp_path))
    inst = await start_apex(one_channel(upstream.openai_url, proxy=proxy.url("alice:s3cret", scheme="https")))
    message = await refusal(inst, caplog, "s3cret")
    assert f"could not connect to 127.0.0.1:{upstream.port} via proxy 127.0.0.1:{proxy.port}" in message
    assert "TLS to the proxy failed: TLS certificate verify failed" in message
    assert proxy.seen == []


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
async def test_environment_proxy_applies_without_the_key(
    upstream: FakeUpstream, start_proxy: StartProxy, start_apex: StartApex,
    monkeypatch: pytest.MonkeyPatch, variable: str,
) -> None:
    """Without a proxy key, HTTP_PROXY (either case) is used; "direct" ignores it; NO_PROXY
    naming the upstream bypasses it."""
    proxy = await start_proxy()
    # The SDK client honours these variables too (httpx trust_env): count only Apex's requests.
    to_upstream = f"http://127.0.0.1:{upstream.port}/"

    def through_proxy() -> int:
        return sum(1 for line in proxy.seen if to_upstream in line)

    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, proxy.url())
    via_env = await start_apex(one_channel(upstream.openai_url))
    assert await chat(via_env)
    assert through_proxy() == 1
    direct = await start_apex(one_channel(upstream.openai_url, proxy="direct"))
    assert await chat(direct)
    assert through_proxy() == 1
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    bypassed = await start_apex(one_channel(upstream.openai_url))
    assert await chat(bypassed)
    assert through_proxy() == 1
    # A CIDR block (urllib's own NO_PROXY reading has none) and a port that is not the upstream's.
    monkeypatch.setenv("NO_PROXY", "10.0.0.0/8, 127.0.0.0/8")
    assert await chat(await start_apex(one_channel(upstream.openai_url)))
    assert through_proxy() == 1
    monkeypatch.setenv("NO_PROXY", f"127.0.0.0/8:{upstream.port + 1}")
    assert await chat(await start_apex(one_channel(upstream.openai_url)))
    assert through_proxy() == 2
    assert upstream.hits("/v1/chat/completions") == 5


# --- TLS options --------------------------------------------------------------------------


async def test_mutual_tls_with_a_client_certificate(ca: Any, start_apex: StartApex, tmp_path: Path) -> None:
    """An upstream that requires a client certificate from the test CA: served with
    tls.cert_file/key_file, refused (502 naming the upstream) without them."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca.configure_trust(server_context)
    server_context.verify_mode = ssl.CERT_REQUIRED
    fake = FakeUpstream()
    await fake.start(ssl_context=server_context)
    try:
        client = ca.issue_cert("apex-client@example.test")
        tls = {"ca_file": write_pem(tmp_path, "ca.pem", ca.cert_pem),
               "cert_file": write_pem(tmp_path, "client.pem", client.cert_chain_pems[0]),
               "key_file": write_pem(tmp_path, "client.key", client.private_key_pem)}
        inst = await start_apex(one_channel(fake.openai_url, tls=tls))
        assert await chat(inst)
        without = await start_apex(one_channel(fake.openai_url, tls={"ca_file": tls["ca_file"]}))
        err = await chat_error(without)
        assert err.status_code == 502
        assert f"127.0.0.1:{fake.port}" in err.body["message"]  # type: ignore[index]
        assert fake.hits("/v1/chat/completions") == 1
    finally:
        await fake.stop()


async def test_verify_false_is_warned_at_every_load_and_skips_verification(
    tls_upstream: FakeUpstream, start_apex: StartApex, caplog: pytest.LogCaptureFixture
) -> None:
    """tls.verify false talks to an upstream whose CA Apex does not trust, and each config load
    (start and reload) logs a warning naming the channel."""
    cfg = one_channel(tls_upstream.openai_url, tls={"verify": False})
    with caplog.at_level(logging.WARNING, logger="apex.config"):
        inst = await start_apex(cfg)
        assert await chat(inst)
        assert inst.gateway.reload_bytes(json.dumps(cfg).encode())
    warnings = [r for r in caplog.records if r.name == "apex.config" and "tls.verify is false" in r.getMessage()]
    assert len(warnings) == 2
    assert all("channel oa" in r.getMessage() for r in warnings)


async def test_untrusted_certificate_is_a_verify_failure_naming_host_and_port(
    tls_upstream: FakeUpstream, start_apex: StartApex
) -> None:
    """Without the private CA, the system store does not trust the upstream: a 502 that says
    TLS certificate verify failed and names 127.0.0.1:port."""
    inst = await start_apex(one_channel(tls_upstream.openai_url))
    err = await chat_error(inst)
    assert err.status_code == 502
    message = err.body["message"]  # type: ignore[index]
    assert f"could not connect to 127.0.0.1:{tls_upstream.port}: TLS certificate verify failed" in message


# --- connection errors (issue 12, bump 7) -------------------------------------------------


async def test_refused_and_dns_failures_say_so(start_apex: StartApex) -> None:
    """Nothing listening: "connection refused"; a name that cannot resolve: "DNS lookup
    failed"; each names host:port instead of an exception class."""
    port = free_port()
    refused = await start_apex(one_channel(f"http://127.0.0.1:{port}/v1"))
    err = await chat_error(refused)
    assert err.status_code == 502
    assert f"could not connect to 127.0.0.1:{port}: connection refused" in err.body["message"]  # type: ignore[index]
    dns = await start_apex(one_channel("http://no-such-host.invalid:8080/v1"))
    err = await chat_error(dns)
    assert "could not connect to no-such-host.invalid:8080: DNS lookup failed" in err.body["message"]  # type: ignore[index]


@pytest.mark.parametrize(("timeouts", "stall", "stream", "says"), [
    ({"first_byte_ms": 200}, 2.0, False, "no answer within first_byte_ms (0.2 s)"),
    ({"request_ms": 300}, 2.0, False, "no answer within request_ms (0.3 s)"),
    ({"first_byte_ms": 200}, 2.0, True, "no answer within first_byte_ms (0.2 s)"),
])
async def test_upstream_timeouts_name_host_port_and_the_limit(
    upstream: FakeUpstream, start_apex: StartApex, timeouts: dict[str, int], stall: float, stream: bool, says: str,
) -> None:
    """A first-byte or whole-request timeout says where and which limit, as the connect
    timeout does (it was "upstream channel oa timed out")."""
    inst = await start_apex(one_channel(upstream.openai_url, timeouts=timeouts))
    upstream.persistent = Behaviour(stall=stall)
    with pytest.raises(openai.APIStatusError) as info:
        await oai(inst).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=stream)
    assert info.value.status_code == 504
    message = info.value.body["message"]  # type: ignore[index]
    assert f"failed after sending the request to 127.0.0.1:{upstream.port}: {says}" in message, message
    # The wait was the upstream's, streams too (it was counted as Apex's overhead: ~0.2 s).
    overhead = float(info.value.response.headers["x-apex-overhead-ms"])
    assert overhead < 100, overhead


async def test_request_ms_bounds_the_whole_request_retries_included(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """Spec 2: the global request_ms bounds a whole non-stream request. A channel's own
    request_ms (0.4 s) bounds each attempt within it: of five allowed attempts at a stalled
    upstream, two run their 0.4 s and the third is cut at the request's 1 s; a fourth never
    starts. (Each attempt got its full request_ms: five attempts, 2 s and more.)"""
    cfg = one_channel(upstream.openai_url, timeouts={"request_ms": 400})
    cfg["global"]["retries"] = {"max_attempts": 5, "backoff_ms": 0}
    cfg["global"]["timeouts"] = {"request_ms": 1000}
    inst = await start_apex(cfg)
    upstream.persistent = Behaviour(stall=5.0)
    err = await chat_error(inst)
    assert err.status_code == 504
    assert err.response.headers["x-apex-attempts"] == "3"
    assert "no answer within request_ms (1 s for the whole request)" in err.body["message"]  # type: ignore[index]
    assert len(upstream.requests) == 3


async def test_request_ms_counts_the_wait_for_a_connection(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """max_connections 1: B waits ~1.5 s behind A for the connection, then its upstream takes
    1 s more. request_ms (2 s) bounds B's whole request, the queue included: no answer by then.
    (The wait gave B a fresh first-byte wait: it was answered at ~2.5 s, past request_ms.)"""
    cfg = one_channel(upstream.openai_url, max_connections=1)
    cfg["global"]["timeouts"] = {"request_ms": 2000, "connect_ms": 1900}
    inst = await start_apex(cfg)
    answer = fixture_bytes("openai_chat_nonstream.json")
    upstream.push(Behaviour(stall=1.5, body=answer), Behaviour(stall=1.0, body=answer))
    first = asyncio.create_task(chat(inst))
    await asyncio.sleep(0.2)
    err = await chat_error(inst)
    assert await first
    assert err.status_code == 504
    assert "no answer within request_ms (2 s" in err.body["message"]  # type: ignore[index]


async def test_connect_timeout_is_a_504_naming_host_and_port(start_apex: StartApex) -> None:
    """A listener that never completes the handshake: 504 "timed out after 0.2 s"."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(8):  # Linux drops SYNs once the accept queue is full
            filler = socket.socket()
            filler.setblocking(False)
            fillers.append(filler)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        inst = await start_apex(one_channel(f"http://127.0.0.1:{port}/v1", timeouts={"connect_ms": 200}))
        err = await chat_error(inst)
        if err.status_code != 504:
            pytest.skip("this kernel completed the handshake despite a full accept queue")
        assert f"could not connect to 127.0.0.1:{port}: timed out after 0.2 s" in err.body["message"]  # type: ignore[index]
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


# --- connection budget and gauge ------------------------------------------------------------


async def test_connections_gauge_and_budget_through_apex(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """max_connections 2 under 40 concurrent SDK requests: all succeed, the upstream never sees
    more than 2 connections, and apex_upstream_connections shows them idle afterwards."""
    upstream.stream_gap = 0.0
    inst = await start_apex(one_channel(upstream.openai_url, max_connections=2))
    results = await asyncio.gather(*(chat(inst) for _ in range(40)))
    assert all(results)
    assert inst.gateway.upstream.connections_made <= 2
    async with aiohttp.ClientSession() as s, s.get(f"{inst.url}/metrics") as r:
        text = await r.text()
    idle = [line for line in text.splitlines() if line.startswith('apex_upstream_connections{channel="oa",state="idle"}')]
    active = [line for line in text.splitlines() if line.startswith('apex_upstream_connections{channel="oa",state="active"}')]
    assert idle and 1 <= float(idle[0].split()[-1]) <= 2
    assert active and float(active[0].split()[-1]) == 0


@pytest.mark.parametrize("stream", [False, True])
async def test_the_wait_for_a_connection_does_not_count_as_the_upstreams_first_byte(
        upstream: FakeUpstream, start_apex: StartApex, stream: bool) -> None:
    """max_connections 1, answers 0.6 s apart, first_byte_ms 1 s, three requests at once: the
    third waits 1.2 s for the connection. That wait ran on its first-byte clock: a 504 (one
    never even reached the upstream) that cooled the channel. All three are now answered."""
    from tests.integration.fakes import Behaviour, fixture_bytes

    cfg = one_channel(upstream.openai_url, max_connections=1)
    cfg["global"]["timeouts"] = {"connect_ms": 5000, "first_byte_ms": 1000}
    inst = await start_apex(cfg)
    if stream:
        upstream.persistent = Behaviour(stall=0.6, content_type="text/event-stream",
                                        body=fixture_bytes("openai_chat_stream_text.sse"))
    else:
        upstream.persistent = Behaviour(stall=0.6, body=fixture_bytes("openai_chat_nonstream.json"))
    client = oai(inst).with_options(max_retries=0)

    async def ask() -> str:
        if not stream:
            done = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a"}])
            return done.choices[0].message.content or ""
        s = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a"}], stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in s if c.choices])

    answers = await asyncio.gather(*(ask() for _ in range(3)))
    assert all(answers) and len(upstream.requests) == 3
    assert inst.gateway.snapshot.health.is_available("oa", inst.gateway.clock())


async def test_a_channel_at_its_connection_budget_is_busy_not_failed(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """max_connections 1, a slow answer in it: a second request waits the connect timeout for a
    connection, then gets a 503 with Retry-After (Apex's own cap, no 504), the channel is not
    cooled for it (the next request is served at once), and another channel serves it when
    the route has one."""
    from tests.integration.fakes import Behaviour, fixture_bytes

    answer = fixture_bytes("openai_chat_nonstream.json")
    cfg = one_channel(upstream.openai_url, max_connections=1)
    cfg["global"]["timeouts"] = {"connect_ms": 300}
    cfg["global"]["retries"] = {"max_attempts": 3, "backoff_ms": 10}
    cfg["global"]["health"] = {"failure_threshold": 1}
    inst = await start_apex(cfg)
    upstream.persistent = Behaviour(stall=1.5, body=answer)
    client = oai(inst).with_options(max_retries=0)
    slow = asyncio.create_task(client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a"}]))
    await asyncio.sleep(0.2)
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "b"}])
    assert caught.value.status_code == 503 and caught.value.response.headers.get("retry-after") == "1"
    assert "no free connection within 0.3 s (max_connections 1 in use)" in str(caught.value)
    assert (await slow).choices[0].message.content
    upstream.persistent = Behaviour(body=answer)
    assert (await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "c"}])).choices
    assert inst.gateway.snapshot.health.is_available("oa", inst.gateway.clock())  # never cooled

    cfg["channels"].append({"name": "oa2", "provider_type": "openai", "base_url": upstream.openai_url,
                            "api_key": "sk-upstream-oa"})
    cfg["routers"][0]["channels"] = [{"name": "oa"}, {"name": "oa2"}]
    cfg["routers"][0]["strategy"] = "priority"
    inst2 = await start_apex(cfg)
    upstream.persistent = Behaviour(stall=1.0, body=answer)
    client2 = oai(inst2).with_options(max_retries=0)
    both = await asyncio.gather(*(client2.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
                                  for _ in range(2)))
    assert all(r.choices for r in both)  # the second went to oa2 after oa's budget stayed full


async def test_bad_egress_keys_are_config_errors(start_apex: StartApex, tmp_path: Path) -> None:
    """Each bad egress value is a config error naming its key path (and never the credentials)."""

    cases: list[tuple[dict[str, Any], str]] = [
        ({"proxy": "socks4://u:hunter2@127.0.0.1:1080"}, "channels[0].proxy"),
        ({"proxy": "http://127.0.0.1:notaport"}, "channels[0].proxy"),
        ({"tls": {"ca_file": str(tmp_path / "missing.pem")}}, "channels[0].tls.ca_file"),
        ({"tls": {"key_file": str(tmp_path / "x.key")}}, "channels[0].tls.key_file"),
        ({"max_connections": 0}, "channels[0].max_connections"),
    ]
    (tmp_path / "x.key").write_text("not a key")
    for extra, path in cases:
        cfg = one_channel("https://api.example.test/v1", **extra)
        with pytest.raises(ConfigError) as caught:
            build_snapshot(load_config_bytes(json.dumps(cfg).encode(), {}), None, None)
        assert caught.value.path == path, (extra, caught.value)
        assert "hunter2" not in str(caught.value)
