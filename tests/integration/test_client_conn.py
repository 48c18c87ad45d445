"""Slow, idle and malformed clients (issue 13, items 2, 7 and 10), over raw sockets.

Header-read, body-read and keep-alive idle timeouts close what a slowloris holds open, while
normal clients keep being served; HTTP that aiohttp's parser refuses is answered in JSON in
the path's protocol, and no log line quotes the client's bytes (which may hold its key).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import socket
import time
from typing import Any

import aiohttp
import pytest

from apex.server.conn import raise_fd_limit
from tests.conftest import StartApex, basic_config
from tests.integration.fakes import Behaviour, FakeUpstream
from tests.integration.test_bad_input import BODY, parse, post, raw_exchange


def timeouts_config(upstream: FakeUpstream, header: int = 1000, body: int = 1000, idle: int = 1500) -> dict[str, Any]:
    cfg = basic_config(upstream)
    cfg["global"]["client_timeouts"] = {"header_read_ms": header, "body_read_ms": body, "keepalive_idle_ms": idle}
    return cfg


@pytest.mark.parametrize(("path", "shape"), [
    (b"/v1/chat/completions", "openai"), (b"/v1/messages", "anthropic"),
    (b"/v1beta/models/gemini-2.5-flash:generateContent", "gemini"),
    (b"/v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse", "gemini"),
])
@pytest.mark.parametrize("bad", [
    b"Authorization: Bearer vk-default\x01",  # a valid key with a control byte
    b"Bad Header Bearer vk-default",  # no colon
    b"x-api-key : vk-default",  # space before the colon
])
async def test_malformed_http_answered_in_json_and_key_never_logged(
    upstream: FakeUpstream, start_apex: StartApex, caplog: pytest.LogCaptureFixture, path: bytes, shape: str, bad: bytes
) -> None:
    inst = await start_apex(basic_config(upstream))
    request = b"POST " + path + b" HTTP/1.1\r\nHost: apex\r\n" + bad + b"\r\nContent-Length: 2\r\n\r\n{}"
    with caplog.at_level(logging.DEBUG):
        status, _, body = parse(await raw_exchange(inst.port, request))
    assert status == 400
    if shape == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    elif shape == "gemini":  # google.rpc.Status, as Google answers
        assert body["error"]["code"] == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    else:
        assert body["error"]["type"] == "invalid_request_error"
    assert "vk-default" not in str(body)
    assert "vk-default" not in caplog.text
    assert "Traceback" not in caplog.text


async def test_slow_head_is_closed_after_header_read_timeout(upstream: FakeUpstream, start_apex: StartApex) -> None:
    inst = await start_apex(timeouts_config(upstream))
    reader, writer = await asyncio.open_connection("127.0.0.1", inst.port)
    started = time.monotonic()
    try:
        writer.write(b"POST /v1/messages HTTP/1.1\r\nHost: apex\r\n")
        answer = b""
        for _ in range(15):  # keep trickling: a byte every 0.3 s never completes the head
            try:
                answer = await asyncio.wait_for(reader.read(65536), 0.3)
                break
            except TimeoutError:
                writer.write(b"x")
    finally:
        writer.close()
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 3.5, elapsed
    status, _, body = parse(answer)
    assert status == 408 and body["type"] == "error"  # Anthropic's shape: the path was /v1/messages


async def test_slow_body_gets_408_in_protocol(upstream: FakeUpstream, start_apex: StartApex) -> None:
    inst = await start_apex(timeouts_config(upstream))
    reader, writer = await asyncio.open_connection("127.0.0.1", inst.port)
    started = time.monotonic()
    try:
        writer.write(post(b"/v1/chat/completions", [(b"Authorization", b"Bearer vk-default")], BODY)[:-10])
        answer = await asyncio.wait_for(reader.read(), 6)
    finally:
        writer.close()
    assert 0.9 < time.monotonic() - started < 4
    status, _, body = parse(answer)
    assert status == 408 and body["error"]["type"] == "timeout_error"
    assert upstream.requests == []


async def test_idle_connection_closed_after_keepalive_idle(upstream: FakeUpstream, start_apex: StartApex) -> None:
    inst = await start_apex(timeouts_config(upstream, idle=700))
    reader, writer = await asyncio.open_connection("127.0.0.1", inst.port)
    started = time.monotonic()
    try:
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()
    assert 0.5 < time.monotonic() - started < 3


async def test_slowloris_does_not_lock_out_normal_clients(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """400 slowloris connections (half trickle heads, half trickle bodies) on loopback: normal
    requests keep being answered quickly all along, and the slow sockets are closed by Apex."""
    raise_fd_limit()
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 2048
    inst = await start_apex(timeouts_config(upstream, header=1500, body=1500, idle=3000))
    slow: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for i in range(400):
        reader, writer = await asyncio.open_connection("127.0.0.1", inst.port)
        if i % 2:
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: apex\r\n")
        else:
            writer.write(post(b"/v1/chat/completions", [(b"Authorization", b"Bearer vk-default")], BODY)[:-5])
        slow.append((reader, writer))

    async def trickle() -> None:
        for _ in range(12):
            await asyncio.sleep(0.4)
            for _, w in slow:
                if not w.is_closing():
                    w.write(b"x")

    trickling = asyncio.create_task(trickle())
    latencies: list[float] = []
    try:
        async with aiohttp.ClientSession() as s:
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                t = time.monotonic()
                async with s.post(inst.openai_url + "/chat/completions", headers={"Authorization": "Bearer vk-default"},
                                  data=BODY) as r:
                    assert r.status == 200
                    await r.read()
                latencies.append(time.monotonic() - t)
                await asyncio.sleep(0.05)
        closed = 0
        for reader, _ in slow:
            try:
                await asyncio.wait_for(reader.read(), 2)
            except ConnectionError:  # closed by Apex while the trickle was still writing
                pass
            except TimeoutError:
                continue
            closed += 1
    finally:
        trickling.cancel()
        for _, w in slow:
            w.close()
    assert len(latencies) > 20
    assert max(latencies) < 1.0, max(latencies)
    assert closed == len(slow)  # Apex closed every slow socket itself
    server = inst.runner.server
    assert server is not None and len(server.connections) <= 2  # only the SDK session's may be left


def test_raise_fd_limit_reaches_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
        new_soft, new_hard = raise_fd_limit()
        assert new_hard == hard
        assert new_soft == (hard if hard != resource.RLIM_INFINITY else max(1024, 1 << 20))
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == new_soft
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0]), hard))


async def half_closed_exchange(port: int, data: bytes, *, wait: float = 0.0, read_timeout: float = 5.0) -> tuple[bytes, float]:
    """Send ``data``, (after ``wait`` s) shut the sending side down, as raw-socket clients and
    probes do, and read until the server closes: what came back and how long it took. A
    blocking socket in a thread, so the request and the EOF leave back to back, as from
    another process (an asyncio client here would let the gateway, on this loop, run between)."""

    def exchange() -> tuple[bytes, float]:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
            sock.sendall(data)
            if wait:
                time.sleep(wait)
            sock.shutdown(socket.SHUT_WR)
            out = b""
            while chunk := sock.recv(65536):  # to EOF: the server must close after answering
                out += chunk
        return out, time.monotonic() - started

    return await asyncio.to_thread(exchange)


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET /health HTTP/1.1\r\nHost: apex\r\n\r\n", 200),
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: apex\r\nAuthorization: Bearer vk-default\r\n"
     b"Content-Length: 5\r\n\r\n{bad}", 400),
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: apex\r\nAuthorization: Bearer vk-default\r\n"
     b"Content-Length: 100\r\n\r\n{\"model\"", 400),  # the EOF cuts the body short
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /v1/models HTTP/1.1\r\nHost: apex\r\nAuthorization: Bearer vk-default\r\n\r\n", 200),
], ids=["health", "bad-json", "short-body", "garbage", "models"])
async def test_a_client_that_half_closes_after_its_request_gets_the_answer(
    upstream: FakeUpstream, start_apex: StartApex, request_bytes: bytes, status: int,
) -> None:
    """aiohttp closes on a client's EOF and dropped the answer: ``nc -N`` and probes that send,
    shut down and read got nothing at all, not even for /health. Now an answer Apex makes
    itself comes, then the connection closes (a short body is a 400 at once, not a wait for
    the body timeout). A request that reached an upstream is cancelled instead (next test)."""
    inst = await start_apex(timeouts_config(upstream, body=30_000))
    answer, took = await half_closed_exchange(inst.port, request_bytes)
    got, _, body = parse(answer)
    assert got == status, answer
    assert took < 2.0
    if request_bytes.startswith(b"GET /v1/models"):
        assert body["object"] == "list"


async def test_a_half_close_while_waiting_on_the_upstream_still_cancels_it(
    upstream: FakeUpstream, start_apex: StartApex,
) -> None:
    """Once Apex waits on an upstream, a client's EOF is a client that left (TCP cannot tell a
    half-close from a hang-up): the upstream call is dropped at once, as for a closed socket."""
    inst = await start_apex(basic_config(upstream))
    upstream.push(Behaviour(stall=3.0))
    request_bytes = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: apex\r\nAuthorization: Bearer vk-default\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
    answer, took = await half_closed_exchange(inst.port, request_bytes, wait=0.3)
    assert answer == b"" and took < 2.0, (answer, took)


def slow_reader(port: int, body: bytes) -> socket.socket:
    """A blocking socket with a 4 KiB receive buffer that has sent a chat request with ``body``;
    the caller reads (or does not) as it likes."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: apex\r\nAuthorization: Bearer vk-default\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    return sock


async def test_a_client_that_stops_reading_a_stream_is_cut_after_send_ms(
    upstream: FakeUpstream, start_apex: StartApex, caplog: pytest.LogCaptureFixture,
) -> None:
    """A client that stops reading would hold its upstream connection for ever (backpressure
    stops the relay, and a slow client is not an idle upstream). ``send_ms`` bounds a write:
    past it the client's connection is closed, the upstream stream dropped, the request a 499."""
    cfg = basic_config(upstream)
    cfg["global"]["client_timeouts"] = {"send_ms": 500}
    cfg["logging"] = {"level": "info"}
    inst = await start_apex(cfg)
    big = "x" * 60_000
    event = b"data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
                                     "choices": [{"index": 0, "delta": {"content": big}, "finish_reason": None}]}).encode() + b"\n\n"
    upstream.push(Behaviour(content_type="text/event-stream", events=[event] * 400, gap=0.001))  # ~24 MB: more than any buffer
    caplog.set_level(logging.INFO)
    body = json.dumps({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "x"}]}).encode()

    def stalled_client() -> bytes:
        with slow_reader(inst.port, body) as sock:
            head = sock.recv(1024)  # the head, then nothing read for a while
            time.sleep(3.0)
            return head

    started = time.monotonic()
    head = await asyncio.to_thread(stalled_client)
    assert head.startswith(b"HTTP/1.1 200"), head
    for _ in range(100):
        if upstream.active_streams == 0:
            break
        await asyncio.sleep(0.05)
    assert upstream.active_streams == 0
    access = [r for r in caplog.records if r.name == "apex.access"]
    assert access and access[-1].fields["status"] == 499, [getattr(r, "fields", None) for r in access]  # type: ignore[attr-defined]
    assert any("did not read its stream" in r.getMessage() for r in caplog.records)
    assert time.monotonic() - started < 10


async def test_a_client_that_does_not_read_a_large_json_answer_is_closed_after_send_ms(
    upstream: FakeUpstream, start_apex: StartApex, caplog: pytest.LogCaptureFixture,
) -> None:
    """aiohttp writes a JSON answer after the handler returned; a client that reads none of it
    kept the socket and the answer in memory for as long as it liked. The connection sweep closes
    it once nothing has gone out for ``send_ms``."""
    cfg = basic_config(upstream)
    cfg["global"]["client_timeouts"] = {"send_ms": 500}
    inst = await start_apex(cfg)
    content = "y" * 16_000_000
    upstream.push(Behaviour(body=json.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o",
                                             "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                                          "finish_reason": "stop"}]}).encode()))
    caplog.set_level(logging.WARNING)
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}).encode()

    def stalled_client() -> int:
        with slow_reader(inst.port, body) as sock:
            got = len(sock.recv(1024))
            time.sleep(2.5)  # read nothing for a while
            sock.settimeout(5)
            try:
                while chunk := sock.recv(1 << 20):
                    got += len(chunk)
            except (ConnectionResetError, TimeoutError):
                pass
            return got

    received = await asyncio.to_thread(stalled_client)
    assert received < len(content)  # cut off, not delivered whole
    assert any("took none of its answer" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_an_answer_slower_than_the_head_timeout_is_not_cut(
    upstream: FakeUpstream, start_apex: StartApex, stream: bool,
) -> None:
    """The head timeout is for a client's request head, not for Apex's answer. aiohttp calls
    data_received(b"") whenever a body read drains its buffer, and that armed the head timer
    for the request being served: any answer slower than header_read_ms (10 s by default, a
    common LLM answer time) had its connection closed ("Server disconnected")."""
    from tests.integration.fakes import fixture_bytes, split_events

    inst = await start_apex(timeouts_config(upstream, header=300, body=300, idle=5000))
    if stream:
        upstream.push(Behaviour(content_type="text/event-stream", stall=1.2,
                                events=split_events(fixture_bytes("openai_chat_stream_text.sse"))))
    else:
        upstream.push(Behaviour(stall=1.2, body=fixture_bytes("openai_chat_nonstream.json")))
    async with aiohttp.ClientSession() as s, s.post(
        f"{inst.openai_url}/chat/completions", headers={"Authorization": "Bearer vk-default"},
        json={"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": "x" * 1000}]},
    ) as resp:
        assert resp.status == 200
        text = await resp.text()
    assert ("[DONE]" in text) if stream else json.loads(text)["choices"]
    assert len(upstream.requests) == 1  # answered on the first attempt, nothing retried
