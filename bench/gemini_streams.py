"""Apex's CPU per Gemini-client stream: pass-through (Gemini channel) vs translated (OpenAI, Anthropic).

``python -m bench.gemini_streams [--requests N] [--chunks C] [--concurrency K]`` starts Apex
(as ``bench.procs.start_apex`` does) against an in-process fake upstream that serves the
same answer as Gemini SSE, OpenAI Chat SSE and Anthropic SSE (prebuilt bytes, ``C`` content
chunks each, written one event at a time ``--gap-ms`` apart), sends N ``streamGenerateContent?alt=sse`` requests per channel from a Gemini
client, and reports Apex's own CPU (utime + stime of its process) per request. The issue's
gate: translated streams within 1.5x the CPU of the pass-through stream. Only Apex's CPU is
counted, so the fake upstream and the client in this process do not blur the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from bench import procs

GATE = 1.5
WORDS = ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "and", "keeps", "running"]


def _bodies(chunks: int) -> dict[str, bytes]:
    texts = [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(6)) + " " for i in range(chunks)]
    usage = {"promptTokenCount": 12, "candidatesTokenCount": chunks * 6, "totalTokenCount": 12 + chunks * 6}
    gemini = b"".join(
        b"data: " + json.dumps({"candidates": [{"content": {"parts": [{"text": t}], "role": "model"}, "index": 0,
                                                **({"finishReason": "STOP"} if i == chunks - 1 else {})}],
                                "usageMetadata": usage, "modelVersion": "gemini-2.5-flash",
                                "responseId": "bench"}).encode() + b"\r\n\r\n"
        for i, t in enumerate(texts))

    def oai(delta: dict[str, object], finish: str | None) -> bytes:
        return b"data: " + json.dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1,
                                       "model": "gpt-bench", "choices": [{"index": 0, "delta": delta,
                                                                          "finish_reason": finish}]}).encode() + b"\n\n"
    openai = (oai({"role": "assistant", "content": ""}, None) + b"".join(oai({"content": t}, None) for t in texts)
              + oai({}, "stop") + b"data: " + json.dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk",
                                                           "created": 1, "model": "gpt-bench", "choices": [],
                                                           "usage": {"prompt_tokens": 12, "completion_tokens": chunks * 6,
                                                                     "total_tokens": 12 + chunks * 6}}).encode()
              + b"\n\ndata: [DONE]\n\n")

    def ant(name: str, data: dict[str, object]) -> bytes:
        return f"event: {name}\ndata: ".encode() + json.dumps(data).encode() + b"\n\n"
    anthropic = (ant("message_start", {"type": "message_start", "message": {
        "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-bench", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 1}}})
        + ant("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        + b"".join(ant("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                 "delta": {"type": "text_delta", "text": t}}) for t in texts)
        + ant("content_block_stop", {"type": "content_block_stop", "index": 0})
        + ant("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                "usage": {"output_tokens": chunks * 6}})
        + ant("message_stop", {"type": "message_stop"}))
    return {"gemini": gemini, "openai": openai, "anthropic": anthropic}


def _events(body: bytes) -> list[bytes]:
    sep = b"\r\n\r\n" if b"\r\n\r\n" in body else b"\n\n"
    return [e + sep for e in body.split(sep) if e.strip()]


async def _fake(bodies: dict[str, bytes], gap_s: float) -> tuple[web.AppRunner, int]:
    events = {kind: _events(body) for kind, body in bodies.items()}

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        path = request.path
        kind = "gemini" if ":streamGenerateContent" in path else "anthropic" if path.endswith("/v1/messages") else "openai"
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for event in events[kind]:  # one write per event, apart: Apex reads them one by one
            await resp.write(event)
            await asyncio.sleep(gap_s)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = procs.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


def _config(port: int, upstream: int) -> dict[str, object]:
    base = f"http://127.0.0.1:{upstream}"
    return {
        "global": {"listen": f"127.0.0.1:{port}", "auth": {"keys": ["bench-key"]}},
        "logging": {"level": "warning"},
        "channels": [
            {"name": "gemini", "provider_type": "gemini", "base_url": base, "api_key": "g"},
            {"name": "openai", "provider_type": "openai", "base_url": base + "/v1", "api_key": "o"},
            {"name": "anthropic", "provider_type": "anthropic", "base_url": base, "api_key": "a"},
        ],
        "routers": [{"name": "r", "rules": [
            {"match": {"model": "gemini-*"}, "channels": [{"name": "gemini"}]},
            {"match": {"model": "gpt-*"}, "channels": [{"name": "openai"}]},
            {"match": {"model": "claude-*"}, "channels": [{"name": "anthropic"}]},
        ]}],
    }


async def _drive(port: int, model: str, n: int, concurrency: int) -> None:
    url = f"http://127.0.0.1:{port}/v1beta/models/{model}:streamGenerateContent?alt=sse"
    body = {"contents": [{"role": "user", "parts": [{"text": "Tell me about foxes."}]}]}
    left = n
    async with aiohttp.ClientSession() as s:
        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                async with s.post(url, json=body, headers={"x-goog-api-key": "bench-key"}) as r:
                    data = await r.read()
                    if r.status != 200 or b'"finishReason":"STOP"' not in data.replace(b" ", b""):
                        raise RuntimeError(f"{model}: HTTP {r.status}: {data[:300]!r}")
        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def main(args: argparse.Namespace) -> int:
    bodies = _bodies(args.chunks)
    runner, upstream = await _fake(bodies, args.gap_ms / 1000)
    tmp = Path(tempfile.mkdtemp(prefix="apex-gemini-bench-"))
    port = procs.free_port()
    (tmp / "config.json").write_text(json.dumps(_config(port, upstream)))
    cpus = procs.cpus()
    apex = procs.spawn("apex", procs.apex_commands(tmp / "config.json")[0], port, tmp, cpus[-1] if len(cpus) > 1 else None)
    results: dict[str, float] = {}
    try:
        await asyncio.to_thread(procs.wait_http, apex, "/health", 25)
        for model in ("gemini-2.5-flash", "gpt-bench", "claude-bench"):
            await _drive(port, model, max(20, args.requests // 10), args.concurrency)  # warm-up
        for _ in range(args.rounds):  # alternate, keep each target's lowest (shared machines are noisy)
            for label, model in (("pass-through (gemini)", "gemini-2.5-flash"), ("translated (openai)", "gpt-bench"),
                                 ("translated (anthropic)", "claude-bench")):
                cpu0, t0 = procs.cpu_seconds(apex.pid), time.perf_counter()
                await _drive(port, model, args.requests, args.concurrency)
                per = (procs.cpu_seconds(apex.pid) - cpu0) * 1e3 / args.requests
                results[label] = min(results.get(label, per), per)
                print(f"{label:24s} {per:.3f} ms CPU/request ({time.perf_counter() - t0:.1f} s wall)", file=sys.stderr)
    finally:
        apex.stop()
        await runner.cleanup()
    base = results["pass-through (gemini)"]
    print(f"Gemini client streams, {args.chunks} content chunks {args.gap_ms:g} ms apart, {args.requests} requests x {args.rounds} rounds "
          f"(lowest round), Apex CPU per request:")
    worst = 0.0
    for label, value in results.items():
        ratio = value / base
        worst = max(worst, ratio)
        print(f"  {label:24s} {value:7.3f} ms  {ratio:4.2f}x")
    print(f"gate: translated <= {GATE}x pass-through: {'ok' if worst <= GATE else 'FAILED'}")
    return 0 if worst <= GATE else 1


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--chunks", type=int, default=40)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--gap-ms", type=float, default=1.0, help="pause between upstream events")
    sys.exit(asyncio.run(main(p.parse_args())))
