"""Pooled upstream connections through Apex, over real sockets, with the OpenAI SDK as client.

A keep-alive connection the upstream closes while idle (a FIN or an RST) is not reused and
costs nothing: the next request is answered on a fresh connection, no attempt is counted as
failed and the channel stays up (even with ``failure_threshold: 1``). A connection dropped
after the request was written is different: the request may have reached the upstream, so
it is not re-sent behind the failover policy's back; it is a failed attempt ("failed after
sending the request to HOST:PORT") that counts against the channel, as is a "bad answer from
HOST:PORT" (bytes that are not HTTP). The write-failed-at-once
re-send is tested on the pool itself (tests/unit/test_http_client.py), where the instant
between the pre-reuse poll and the write can be reproduced.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import ApexInstance, StartApex
from tests.integration.fakes import fixture_bytes
from tests.integration.test_egress import chat, chat_error, one_channel

LIMIT = 10.0
ANSWER = fixture_bytes("openai_chat_nonstream.json")


class KeepAliveUpstream:
    """An OpenAI-shaped upstream on raw asyncio streams, keep-alive, whose n-th request (over
    all connections) is handled as ``plan[n]`` says:

    ``answer``: answer and keep the connection; ``answer-then-fin`` / ``answer-then-rst``:
    answer, then close the now idle connection (FIN, or RST by SO_LINGER 0); ``drop``: read
    the request and reset the connection without answering; ``garbage``: answer with bytes
    that are not HTTP."""

    def __init__(self, plan: list[str]) -> None:
        self.plan = plan
        self.requests: list[tuple[int, bytes]] = []  # (connection index, request line)
        self.accepted = 0
        self.closed = asyncio.Event()  # set once the upstream closed an idle connection
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.accepted
        self.accepted += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
                step = self.plan[len(self.requests)] if len(self.requests) < len(self.plan) else "answer"
                self.requests.append((index, head.split(b"\r\n", 1)[0]))
                if step == "drop":
                    _reset(writer)
                    return
                if step == "garbage":
                    writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
                    await writer.drain()
                    return
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(ANSWER), ANSWER))
                await writer.drain()
                if step.startswith("answer-then-"):
                    await asyncio.sleep(0.02)  # idle now: Apex has put the connection back in its pool
                    if step == "answer-then-rst":
                        _reset(writer)
                    else:
                        writer.close()
                    self.closed.set()
                    return
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@pytest.fixture
async def keepalive() -> AsyncIterator[list[KeepAliveUpstream]]:
    started: list[KeepAliveUpstream] = []
    yield started
    for upstream in started:
        await upstream.stop()


async def start_upstream(started: list[KeepAliveUpstream], plan: list[str]) -> KeepAliveUpstream:
    upstream = KeepAliveUpstream(plan)
    await upstream.start()
    started.append(upstream)
    return upstream


def strict_channel(url: str) -> dict[str, Any]:
    """One channel, one attempt per request, cooled down by a single counted failure."""
    cfg = one_channel(url)
    cfg["global"]["health"] = {"failure_threshold": 1, "cooldown_ms": 60_000}
    return cfg


async def metric(inst: ApexInstance, name: str, channel: str) -> float | None:
    async with aiohttp.ClientSession() as s, s.get(f"{inst.url}/metrics") as r:
        text = await r.text()
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(name + "{") and f'channel="{channel}"' in line]
    return sum(values) if values else None


@pytest.mark.parametrize("how", ["fin", "rst"])
async def test_idle_connection_closed_by_the_upstream_costs_nothing(
    keepalive: list[KeepAliveUpstream], start_apex: StartApex, how: str
) -> None:
    """The upstream closes a keep-alive connection once it is idle in Apex's pool: the next
    request is answered on a fresh connection, no attempt failed, the channel is still up."""
    upstream = await start_upstream(keepalive, [f"answer-then-{how}", "answer"])
    inst = await start_apex(strict_channel(upstream.url))
    assert await chat(inst)
    async with asyncio.timeout(LIMIT):
        await upstream.closed.wait()
    await asyncio.sleep(0.02)  # Apex's loop (this one) sees the FIN / RST
    assert await chat(inst)
    assert await chat(inst)
    assert upstream.accepted == 2
    assert [index for index, _ in upstream.requests] == [0, 1, 1]
    assert await metric(inst, "apex_attempt_failures_total", "oa") is None
    assert await metric(inst, "apex_channel_up", "oa") == 1.0


async def test_connection_dropped_after_sending_is_a_counted_failure_not_a_resend(
    keepalive: list[KeepAliveUpstream], start_apex: StartApex
) -> None:
    """A reused connection the upstream resets after reading the request: a 502 "failed after
    sending the request to 127.0.0.1:PORT" with the reason, the request reached the upstream
    exactly once (not re-sent), the attempt is counted and cools the channel down."""
    upstream = await start_upstream(keepalive, ["answer", "drop"])
    inst = await start_apex(strict_channel(upstream.url))
    assert await chat(inst)
    err = await chat_error(inst)
    assert err.status_code == 502
    message = err.body["message"]  # type: ignore[index]
    assert f"upstream channel oa: failed after sending the request to 127.0.0.1:{upstream.port}: " in message
    assert "the upstream closed the connection before answering" in message
    assert [index for index, _ in upstream.requests] == [0, 0]  # the second request, once, on the reused connection
    assert await metric(inst, "apex_attempt_failures_total", "oa") == 1.0
    assert await metric(inst, "apex_channel_up", "oa") == 0.0


async def test_bad_answer_names_host_port_and_the_reason(
    keepalive: list[KeepAliveUpstream], start_apex: StartApex
) -> None:
    """An answer that is not HTTP: a 502 "bad answer from 127.0.0.1:PORT" with llhttp's reason,
    counted as a failed attempt (the third class beside "could not connect", tests/integration/
    test_egress.py, and "failed after sending" above)."""
    upstream = await start_upstream(keepalive, ["garbage"])
    inst = await start_apex(strict_channel(upstream.url))
    err = await chat_error(inst)
    assert err.status_code == 502
    message = err.body["message"]  # type: ignore[index]
    assert f"upstream channel oa: bad answer from 127.0.0.1:{upstream.port}: not a valid HTTP/1.1 response: " in message
    assert await metric(inst, "apex_attempt_failures_total", "oa") == 1.0
