"""A refused Gemini key fails over to the next channel, whatever reason Gemini gives for it.

Gemini refuses a key with 400 INVALID_ARGUMENT + an ErrorInfo reason (API_KEY_INVALID,
API_KEY_EXPIRED, API_KEY_SERVICE_BLOCKED) or with 401 UNAUTHENTICATED. Each is the channel's
key refused: Apex tries the next channel, for stream and non-stream requests alike (one
classifier, ``apex.translate.read.gemini_errors``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import StartApex, oai
from tests.integration.fakes import Behaviour, FakeUpstream, fixture_bytes, split_events


def _config(upstream: FakeUpstream) -> dict[str, Any]:
    return {
        "global": {"auth": {"keys": ["k"]}, "retries": {"max_attempts": 2}},
        "logging": {"level": "error"},
        "channels": [
            {"name": "g1", "provider_type": "gemini", "base_url": upstream.url, "api_key": "g-key-1"},
            {"name": "g2", "provider_type": "gemini", "base_url": upstream.url, "api_key": "g-key-2"},
        ],
        "routers": [{"name": "r", "channels": [{"name": "g1"}, {"name": "g2"}], "strategy": "priority"}],
    }


def _refusal(status: int, rpc: str, reason: str | None) -> Behaviour:
    error: dict[str, Any] = {"code": status, "message": "API key expired. Please renew the API key.", "status": rpc}
    if reason is not None:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                             "domain": "googleapis.com"}]
    return Behaviour(status=status, body=json.dumps({"error": error}).encode())


REFUSALS = [
    pytest.param(400, "INVALID_ARGUMENT", "API_KEY_INVALID", id="invalid"),
    pytest.param(400, "INVALID_ARGUMENT", "API_KEY_EXPIRED", id="expired"),
    pytest.param(403, "PERMISSION_DENIED", "API_KEY_SERVICE_BLOCKED", id="blocked"),
    pytest.param(401, "UNAUTHENTICATED", None, id="unauthenticated"),
]


@pytest.mark.parametrize(("status", "rpc", "reason"), REFUSALS)
async def test_refused_key_fails_over_non_stream(
    upstream: FakeUpstream, start_apex: StartApex, status: int, rpc: str, reason: str | None
) -> None:
    """Non-stream: the first channel's refusal is a failover; the client gets the second's answer."""
    inst = await start_apex(_config(upstream))
    upstream.push(_refusal(status, rpc, reason), Behaviour(body=fixture_bytes("gemini_generate_content.json")))
    raw = await oai(inst, "k").chat.completions.with_raw_response.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-apex-channel"] == "g2" and raw.headers["x-apex-attempts"] == "2"
    assert raw.parse().choices[0].message.content
    assert [r.headers.get("x-goog-api-key") for r in upstream.requests] == ["g-key-1", "g-key-2"]


@pytest.mark.parametrize(("status", "rpc", "reason"), REFUSALS)
async def test_refused_key_fails_over_stream(
    upstream: FakeUpstream, start_apex: StartApex, status: int, rpc: str, reason: str | None
) -> None:
    """Stream: a refusal before the first event fails over the same way."""
    inst = await start_apex(_config(upstream))
    upstream.push(_refusal(status, rpc, reason),
                  Behaviour(content_type="text/event-stream", events=split_events(fixture_bytes("gemini_stream.sse"))))
    stream = await oai(inst, "k").chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}], stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text
    assert [r.headers.get("x-goog-api-key") for r in upstream.requests] == ["g-key-1", "g-key-2"]
