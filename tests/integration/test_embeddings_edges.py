"""Embeddings and token counts at their edges: what the real APIs refuse is refused, what they
count is marked, and an answer with the wrong number of vectors is a bad answer."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.conftest import StartApex, basic_config
from tests.integration.fakes import Behaviour, FakeUpstream


def _config(upstream: FakeUpstream) -> dict[str, Any]:
    cfg = basic_config(upstream)
    cfg["global"]["retries"] = {"max_attempts": 1}
    cfg["channels"] += [
        {"name": "mk", "provider_type": "mock"},
        {"name": "jn", "provider_type": "jina", "base_url": upstream.openai_url, "api_key": "jina-key"},
        {"name": "gm", "provider_type": "gemini", "base_url": upstream.url, "api_key": "g-key"},
    ]
    cfg["routers"][0]["rules"] += [
        {"match": {"model": "mock-*"}, "channels": [{"name": "mk"}]},
        {"match": {"model": "jina-*"}, "channels": [{"name": "jn"}]},
        {"match": {"model": "gemini-*"}, "channels": [{"name": "gm"}]},
    ]
    return cfg


async def _post(url: str, body: dict[str, Any], **headers: str) -> tuple[int, dict[str, Any], Any]:
    async with aiohttp.ClientSession() as s, s.post(url, json=body, headers={
            "Authorization": "Bearer vk-default", "anthropic-version": "2023-06-01", **headers}) as r:
        return r.status, await r.json(), r.headers


@pytest.mark.parametrize(("body", "vectors"), [
    ({"input": [1, 2, 3]}, 1),             # one token array is one input (it gave three vectors)
    ({"input": [[1, 2], [3]]}, 2),
    ({"input": []}, None),                 # OpenAI answers 400
    ({"input": "x", "encoding_format": "binary"}, None),
])
async def test_mock_embeddings_take_what_openai_takes(upstream: FakeUpstream, start_apex: StartApex,
                                                      body: dict[str, Any], vectors: int | None) -> None:
    inst = await start_apex(_config(upstream))
    status, got, _ = await _post(inst.openai_url + "/embeddings", {"model": "mock-emb", **body})
    if vectors is None:
        assert status == 400, got
    else:
        assert status == 200 and len(got["data"]) == vectors, got


async def test_token_arrays_are_refused_for_jina(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """docs/protocols.md 8.9: token arrays cannot be sent to Jina (they went, and Jina's 422 came back)."""
    inst = await start_apex(_config(upstream))
    status, got, _ = await _post(inst.openai_url + "/embeddings", {"model": "jina-embeddings-v3", "input": [[101, 102]]})
    assert status == 400 and "token-array" in got["error"]["message"], got
    assert not upstream.requests


async def test_an_answer_with_too_few_vectors_is_a_bad_answer(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """Gemini answered no embeddings for two inputs: a failed attempt (502), not a 200 with an empty list."""
    inst = await start_apex(_config(upstream))
    upstream.push(Behaviour(body=b'{"embeddings": []}'))
    status, got, _ = await _post(inst.openai_url + "/embeddings", {"model": "gemini-embedding-001", "input": ["a", "b"]})
    assert status == 502 and "2 inputs" in got["error"]["message"], got


async def test_counts_are_checked_and_marked_estimated(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A count with no messages is a 400 as Anthropic answers (an estimate said 200); the mock's
    counts are estimates and say so."""
    inst = await start_apex(_config(upstream))
    for model in ("gpt-4o", "mock-1"):  # estimated for a channel without counts; the mock's own count
        status, got, _ = await _post(inst.url + "/v1/messages/count_tokens", {"model": model})
        assert status == 400 and got["type"] == "error" and "messages" in got["error"]["message"], (model, got)
    status, got, headers = await _post(inst.url + "/v1/messages/count_tokens",
                                       {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200 and got["input_tokens"] > 0 and headers["x-apex-estimated"] == "true"
    status, got, headers = await _post(inst.url + "/v1beta/models/mock-1:countTokens",
                                       {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
                                       **{"x-goog-api-key": "vk-default"})
    assert status == 200 and headers["x-apex-estimated"] == "true", json.dumps(got)


@pytest.mark.parametrize("model", ["gpt-4o", "mock-1"])  # an estimate for a channel without counts; the mock's own
@pytest.mark.parametrize(("gemini", "body", "field"), [
    (False, b'{"model":"M","messages":[{"role":"user","content":"h\xff\xfei"}]}', "UTF-8"),
    (False, b'{"model":"M","messages":5}', "messages"),
    (False, b'{"model":"M","messages":["hi"]}', "messages"),
    (False, b'{"model":"M","messages":[{"role":"user"}]}', "messages"),
    (False, b'{"model":"M","messages":[{"role":"user","content":5}]}', "messages"),
    (True, b'{"contents":5}', "contents"),
    (True, b'{"contents":[{"parts":[{"text":"h\xff"}]}]}', "UTF-8"),
    (True, b'{"contents":["hi"]}', "contents"),
    (True, b'{"contents":[{"parts":"hi"}]}', "contents"),
    (True, b'{"generateContentRequest":{"contents":5}}', "generateContentRequest"),
], ids=lambda v: v.decode(errors="replace")[:40] if isinstance(v, bytes) else str(v))
async def test_an_estimated_count_refuses_what_the_provider_refuses(
    upstream: FakeUpstream, start_apex: StartApex, model: str, gemini: bool, body: bytes, field: str,
) -> None:
    """Anthropic and Gemini answer 400 to a body that is not UTF-8 or whose messages/contents
    are not a list of messages/contents; Apex's estimate answered 200 with a count."""
    inst = await start_apex(_config(upstream))
    url = f"{inst.url}/v1beta/models/{model}:countTokens" if gemini else f"{inst.url}/v1/messages/count_tokens"
    async with aiohttp.ClientSession() as s, s.post(url, data=body.replace(b"M", model.encode()), headers={
            "x-goog-api-key" if gemini else "x-api-key": "vk-default", "anthropic-version": "2023-06-01",
            "Content-Type": "application/json"}) as r:
        status, got = r.status, await r.json()
    assert status == 400, got
    if gemini:
        assert got["error"]["status"] == "INVALID_ARGUMENT" and field in got["error"]["message"], got
    else:
        assert got["error"]["type"] == "invalid_request_error" and field in got["error"]["message"], got
    assert not upstream.requests


async def test_openai_embeddings_past_openais_limit_are_refused_before_any_call(upstream: FakeUpstream,
                                                                                start_apex: StartApex) -> None:
    """30,000 tiny inputs to a Gemini channel went out as 300 calls and held ~1.8 GB of vectors:
    past OpenAI's own 2,048 it is a 400, and nothing is sent."""
    inst = await start_apex(_config(upstream))
    status, got, _ = await _post(inst.openai_url + "/embeddings",
                                 {"model": "gemini-embedding-001", "input": ["x"] * 3000})
    assert status == 400 and "2048" in got["error"]["message"], got
    assert not upstream.requests


@pytest.mark.parametrize("encoding", ["float", "base64"])
async def test_gemini_vectors_reach_openai_clients_exactly(upstream: FakeUpstream, start_apex: StartApex,
                                                           encoding: str) -> None:
    """The values Gemini sent, as floats or packed float32, for each input in order."""
    import base64
    import struct

    inst = await start_apex(_config(upstream))
    upstream.push(Behaviour(body=json.dumps({"embeddings": [{"values": [0.5, -0.25]}, {"values": [1.0, 2.0]}]}).encode()))
    status, got, _ = await _post(inst.openai_url + "/embeddings", {"model": "gemini-embedding-001", "input": ["a", "b"],
                                                                   "encoding_format": encoding})
    assert status == 200, got
    vectors = [d["embedding"] for d in got["data"]]
    if encoding == "base64":
        vectors = [list(struct.unpack("<2f", base64.b64decode(v))) for v in vectors]
    assert vectors == [[0.5, -0.25], [1.0, 2.0]]
