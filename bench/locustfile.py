"""Locust scenario for Apex: optional, not part of CI (locust is a closed-loop tool and costs
far more CPU per request than Apex itself; use `python -m bench` for numbers you compare).

Useful for eyeballing behaviour under a mixed, bursty user population with the web UI:

    pip install -e ".[bench]"                         # locust
    python -m bench serve --seconds 600 &             # prints {"apex": {"port": P, ...}, ...}
    locust -f bench/locustfile.py --host http://127.0.0.1:P --users 50 --spawn-rate 10 \
           --run-time 60s --headless --only-summary

Environment: APEX_BENCH_KEY (default bench-key), APEX_BENCH_TEAM_KEY (default team-key).
Task weights: non-stream chat 6, OpenAI stream 2, translated stream (claude-* via OpenAI) 1,
Anthropic messages 1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` importable whatever the cwd

from locust import FastHttpUser, between, task  # type: ignore[import-not-found]  # optional [bench] extra

from bench.openloop import chat_body

_KEY = os.environ.get("APEX_BENCH_KEY", "bench-key")
_TEAM_KEY = os.environ.get("APEX_BENCH_TEAM_KEY", "team-key")
_CHAT = chat_body("gpt-4o-mini", stream=False)
_CHAT_STREAM = chat_body("gpt-4o-mini", stream=True)
_TRANSLATED = chat_body("claude-x", stream=True)
_MESSAGES = chat_body("claude-x", stream=False, anthropic=True)


class ApexUser(FastHttpUser):  # type: ignore[misc]  # locust is untyped
    wait_time = between(0.05, 0.5)

    def _post(self, path: str, body: bytes, name: str, key: str = _KEY, anthropic: bool = False) -> None:
        headers = {"Content-Type": "application/json"}
        if anthropic:
            headers.update({"x-api-key": key, "anthropic-version": "2023-06-01"})
        else:
            headers["Authorization"] = f"Bearer {key}"
        with self.client.post(path, data=body, headers=headers, name=name, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"status {resp.status_code}")
            elif b"[DONE]" not in resp.content and b'"stream":true' in body:
                resp.failure("stream ended without [DONE]")

    @task(6)  # type: ignore[untyped-decorator]  # locust is untyped
    def chat(self) -> None:
        self._post("/v1/chat/completions", _CHAT, "chat")

    @task(2)  # type: ignore[untyped-decorator]  # locust is untyped
    def chat_stream(self) -> None:
        self._post("/v1/chat/completions", _CHAT_STREAM, "chat stream", key=_TEAM_KEY)

    @task(1)  # type: ignore[untyped-decorator]  # locust is untyped
    def translated_stream(self) -> None:
        self._post("/v1/chat/completions", _TRANSLATED, "chat stream -> anthropic")

    @task(1)  # type: ignore[untyped-decorator]  # locust is untyped
    def messages(self) -> None:
        self._post("/v1/messages", _MESSAGES, "messages", anthropic=True)
