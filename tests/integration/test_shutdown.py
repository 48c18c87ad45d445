"""Shutdown at the grace deadline (issue 13, item 12): a real ``apex gateway start`` process.

Streams that are still open when ``shutdown_grace_ms`` runs out get an error event in their
own protocol and a clean end (pass-through and translated, OpenAI and Anthropic clients);
non-stream requests still waiting on their upstream get a 503 in their protocol (OpenAI,
Anthropic, Gemini) instead of a cut connection; and the process exits within the grace plus a
small margin, not twice the grace.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.integration.fakes import Behaviour, FakeUpstream, fixture_bytes, split_events
from tests.integration.test_reload import free_port, with_repo_on_path
from tests.integration.test_stream_faults import is_error_event, parse_strict

GRACE_MS = 1500
MARGIN_S = 1.5  # process start-up of the signal handling, the error events, interpreter exit


def stalled(events: list[bytes]) -> Behaviour:
    return Behaviour(content_type="text/event-stream", events=[*events[:2], events[2]], stall_after=2)


async def test_open_streams_end_with_error_event_at_shutdown_deadline(upstream: FakeUpstream, tmp_path: Path) -> None:
    port = free_port()
    config: dict[str, Any] = {
        "global": {"listen": f"127.0.0.1:{port}", "auth": {"keys": ["k"]}, "shutdown_grace_ms": GRACE_MS},
        "logging": {"level": "warning"},
        "channels": [
            {"name": "oa", "provider_type": "openai", "base_url": upstream.openai_url, "api_key": "ka"},
            {"name": "an", "provider_type": "anthropic", "base_url": upstream.url, "api_key": "kb"},
        ],
        "routers": [{"name": "r", "rules": [{"match": {"model": "claude-*"}, "channels": [{"name": "an"}]}],
                     "channels": [{"name": "oa"}]}],
    }
    path = tmp_path / "config.json"
    # Started with a short grace, raised by a reload: the stop uses the reloaded one (it read
    # the grace once at start and cut streams at the old one).
    path.write_text(json.dumps({**config, "global": {**config["global"], "shutdown_grace_ms": 200}}))
    oa = split_events(fixture_bytes("openai_chat_stream_text.sse"))
    an = split_events(fixture_bytes("anthropic_messages_stream_text.sse"))
    cases: list[tuple[str, str, list[bytes]]] = [
        ("/v1/chat/completions", "gpt-4o", oa),
        ("/v1/messages", "claude-x", an),
        ("/v1/messages", "gpt-4o", oa),  # translated
        ("/v1/chat/completions", "claude-x", an),  # translated
    ]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "apex", "gateway", "start", "--config", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
        env=with_repo_on_path(None),
    )
    assert proc.stdout is not None
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(200):
                try:
                    async with s.get(f"http://127.0.0.1:{port}/health") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert proc.returncode is None, await proc.stdout.read()
                await asyncio.sleep(0.05)
            path.write_text(json.dumps(config))
            proc.send_signal(signal.SIGHUP)
            for _ in range(100):
                async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
                    if re.search(r'apex_config_reloads_total\{result="success"\} [1-9]', await r.text()):
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the reload was not applied")
            responses: list[aiohttp.ClientResponse] = []
            for p, model, events in cases:
                upstream.push(stalled(events))
                r = await s.post(f"http://127.0.0.1:{port}{p}",
                                 headers={"Authorization": "Bearer k", "anthropic-version": "2023-06-01"},
                                 json={"model": model, "stream": True, "max_tokens": 50,
                                       "messages": [{"role": "user", "content": "x"}]})
                assert r.status == 200
                await asyncio.wait_for(r.content.readany(), 5)  # the stream is open and committed
                responses.append(r)
            waiting: list[asyncio.Task[tuple[int, str, bytes]]] = []
            for p, model in NON_STREAM:
                upstream.push(Behaviour(stall=60))  # never answers within the grace
                waiting.append(asyncio.create_task(post_whole(s, f"http://127.0.0.1:{port}{p}", model)))
            await until_hits(upstream, len(cases) + len(NON_STREAM))
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            bodies = [await asyncio.wait_for(r.read(), GRACE_MS / 1000 + 5) for r in responses]
            answers = [await asyncio.wait_for(t, GRACE_MS / 1000 + 5) for t in waiting]
            output = await asyncio.wait_for(proc.stdout.read(), 10)  # until the process closes it
            await asyncio.wait_for(proc.wait(), 10)
            took = time.monotonic() - sent
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, output
    assert GRACE_MS / 1000 - 0.1 < took < GRACE_MS / 1000 + MARGIN_S, (took, output)
    for (p, model, _), body in zip(cases, bodies, strict=True):
        got = parse_strict(body)  # whole events only, ending on a boundary
        name, data = got[-1]
        assert is_error_event(name, data), (p, model, body[-300:])
        assert "shutting down" in data
        if p == "/v1/messages":
            assert name == "error" and json.loads(data)["error"]["type"] == "overloaded_error"
    for (p, _), (status, retry_after, raw) in zip(NON_STREAM, answers, strict=True):
        assert status == 503, (p, raw)
        assert retry_after == "1"
        body = json.loads(raw)
        if p.startswith("/v1/messages"):
            assert body["type"] == "error" and body["error"]["type"] == "overloaded_error"
        elif p.startswith("/v1beta/"):
            assert body["error"]["code"] == 503 and body["error"]["status"] == "UNAVAILABLE"
        else:
            assert body["error"]["type"] in ("server_error", "service_unavailable", "api_error", "overloaded")
        assert "shutting down" in json.dumps(body)


NON_STREAM: list[tuple[str, str]] = [
    ("/v1/chat/completions", "gpt-4o"),
    ("/v1/messages", "claude-x"),
    ("/v1beta/models/gpt-4o:generateContent", "gpt-4o"),
]


async def post_whole(s: aiohttp.ClientSession, url: str, model: str) -> tuple[int, str, bytes]:
    """POST a non-stream request in the path's protocol; the status, Retry-After and body."""
    if ":generateContent" in url:
        payload: dict[str, object] = {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}
        headers = {"x-goog-api-key": "k"}
    else:
        payload = {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "x"}]}
        headers = {"Authorization": "Bearer k", "anthropic-version": "2023-06-01"}
    async with s.post(url, headers=headers, json=payload) as r:
        return r.status, r.headers.get("Retry-After", ""), await r.read()


async def until_hits(upstream: FakeUpstream, n: int) -> None:
    for _ in range(200):
        if upstream.hits() >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the upstream saw {upstream.hits()} requests, expected {n}")
