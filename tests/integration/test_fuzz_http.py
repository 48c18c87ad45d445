"""Bounded HTTP fuzzing of a running Apex (issue 13, "keep it proven").

Hypothesis builds raw requests (methods, paths, header names and values including non-UTF-8
and control bytes, bodies from valid API requests to garbage and deep nesting, both framings)
and sends each on a fresh loopback socket. Every one must get a complete HTTP answer (never a
dropped connection), never a 5xx other than an upstream-caused 502/503/504, every error in
JSON; afterwards the process is still healthy. Apex and the fake upstream run in a thread of
their own so the property test can be a plain blocking one. Bounded: 200 examples, well under a minute on an idle machine.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvloop
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apex.config.load import load_config_bytes
from apex.server.app import build_app
from apex.server.conn import ApexRunner
from apex.server.gateway import Gateway
from tests.conftest import basic_config
from tests.integration.fakes import FakeUpstream

PATHS = ["/v1/chat/completions", "/v1/messages", "/v1/responses", "/v1/embeddings", "/v1/messages/count_tokens",
         "/v1/models", "/v1/models/gpt-4o", "/health", "/metrics", "/", "/v1/", "/v1/messages/../chat/completions",
         "/v1beta/models/gemini-2.5-flash:generateContent", "/v1beta/models/gpt-4o:streamGenerateContent?alt=sse",
         "/v1/models/claude-x:countTokens", "/v1beta/models/%2e%2e:generateContent", "/v1beta/models"]
KEYS = [b"vk-default", b"global-key", b"wrong", b"", b"vk-d\xe9fault", b"\xff\xfe", b"vk-default\t"]


class Served:
    def __init__(self) -> None:
        self.port = 0
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None


def _serve(served: Served) -> None:
    async def main() -> None:
        up = FakeUpstream()
        await up.start()
        cfg: dict[str, Any] = basic_config(up)
        cfg["channels"].append({"name": "gm", "provider_type": "gemini", "base_url": up.url, "api_key": "g-key"})
        cfg["routers"][0]["rules"].append({"match": {"model": "gemini-*"}, "channels": [{"name": "gm"}]})
        cfg["logging"] = {"level": "error"}
        cfg["global"]["client_timeouts"] = {"header_read_ms": 2000, "body_read_ms": 2000, "keepalive_idle_ms": 5000}
        gateway = Gateway(load_config_bytes(json.dumps(cfg).encode(), {}))
        runner = ApexRunner(build_app(gateway), gateway, handler_cancellation=True, access_log=None, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        served.port = runner.addresses[0][1]  # the bound port of an ephemeral listen
        served.loop = asyncio.get_running_loop()
        served.stop = asyncio.Event()
        served.ready.set()
        await served.stop.wait()
        await runner.cleanup()
        await up.stop()

    uvloop.run(main())


@pytest.fixture(scope="module")
def apex_port() -> Iterator[int]:
    served = Served()
    thread = threading.Thread(target=_serve, args=(served,), daemon=True)
    thread.start()
    assert served.ready.wait(30), "Apex did not start"
    try:
        yield served.port
    finally:
        assert served.loop is not None and served.stop is not None
        served.loop.call_soon_threadsafe(served.stop.set)
        thread.join(10)


def exchange(port: int, data: bytes) -> bytes:
    """Send one request; read until the answer is complete or the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(data)
        got = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
            if _complete(got):
                break
        return got


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    lines = head.split(b"\r\n")
    if lines[0].split(b" ")[1:2] == [b"100"]:
        return _complete(body)
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
        if name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
            return body.endswith(b"0\r\n\r\n")
    return False


header_value = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.text(max_size=30).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"application/json", b"2023-06-01", b"100-continue", b"chunked", b"gzip", b"x" * 9000]),
)
header_name = st.one_of(
    st.sampled_from([b"Authorization", b"x-api-key", b"x-request-id", b"x-apex-router", b"Content-Type",
                     b"anthropic-version", b"Expect", b"Accept-Encoding", b"Content-Encoding", b"Connection"]),
    st.binary(min_size=1, max_size=12).filter(lambda b: b":" not in b and b"\r" not in b and b"\n" not in b),
)
model = st.one_of(st.sampled_from(["gpt-4o", "claude-x", "gemini-2.5-flash", "gemini-x/../y", "", "gpt-4o\n"]),
                  st.text(max_size=20))
json_body = st.builds(
    lambda m, stream, extra: json.dumps({"model": m, "stream": stream, "max_tokens": 5, "input": "x",
                                         "messages": [{"role": "user", "content": extra}]}).encode(),
    model, st.booleans(), st.one_of(st.text(max_size=30), st.just("x")),
)
body = st.one_of(
    json_body,
    st.binary(max_size=200),
    st.integers(1, 3000).map(lambda n: b'{"model":"gpt-4o","messages":' + b"[" * n + b"]" * n + b"}"),
    st.sampled_from([b"", b"null", b"[]", b'{"model": 5}', b'{"model":"gpt-4o","stream":"yes"}']),
)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from([b"POST", b"GET", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"BREW"]))
    path = draw(st.one_of(st.sampled_from(PATHS).map(str.encode),
                          st.binary(max_size=30).map(lambda b: b"/" + bytes(c for c in b if c > 0x20 and c != 0x7F)),
                          st.sampled_from(PATHS).map(lambda p: (p + "?x=%ff&%00").encode())))
    headers: list[tuple[bytes, bytes]] = [(b"Host", b"apex")]
    key = draw(st.sampled_from(KEYS))
    headers.append(draw(st.sampled_from([(b"Authorization", b"Bearer " + key), (b"x-api-key", key)])))
    headers += draw(st.lists(st.tuples(header_name, header_value), max_size=4))
    payload = draw(body)
    chunked = draw(st.booleans()) and method == b"POST"
    if chunked:
        headers.append((b"Transfer-Encoding", b"chunked"))
        framed = (f"{len(payload):x}\r\n".encode() + payload + b"\r\n" if payload else b"") + b"0\r\n\r\n"
    else:
        headers.append((b"Content-Length", str(len(payload)).encode()))
        framed = payload
    head = method + b" " + path + b" HTTP/1.1\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    return head + b"\r\n" + framed


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                   HealthCheck.data_too_large], deadline=None)
@given(request=requests())
def test_fuzzed_requests_get_clean_answers(apex_port: int, request: bytes) -> None:
    answer = exchange(apex_port, request)
    assert answer.startswith(b"HTTP/1."), f"no answer (dropped connection) to {request[:300]!r}"
    head, _, rest = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    if status == 100:
        head, _, rest = rest.partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1])
    assert status < 500 or status in (502, 503, 504), f"{status} for {request[:300]!r}: {answer[:400]!r}"
    if status >= 400 and not request.startswith(b"HEAD "):
        assert b"application/json" in head.lower(), f"non-JSON error for {request[:200]!r}: {answer[:300]!r}"
        json.loads(rest[: int(dict(_h(head)).get(b"content-length", b"0"))] if b"content-length" in head.lower() else rest)


def _h(head: bytes) -> list[tuple[bytes, bytes]]:
    out = []
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        out.append((name.strip().lower(), value.strip()))
    return out


def test_still_healthy_after_fuzzing(apex_port: int) -> None:
    answer = exchange(apex_port, b"GET /health HTTP/1.1\r\nHost: apex\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200"), answer
