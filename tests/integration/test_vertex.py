"""Vertex AI end to end: the official SDKs -> Apex -> a fake Vertex whose token endpoint verifies the service account's JWT."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import anthropic
import pytest
from google import genai
from google.genai import types

from tests.conftest import StartApex, ant
from tests.integration.cloud_clients import PROTOCOLS, TOOL, answered, ask
from tests.integration.cloud_fakes import CloudFake, service_account

CLAUDE = "claude-sonnet-4@20250514"
GEMINI = "gemini-2.5-flash"


def config(cloud: CloudFake, tmp_path: Path, *, key_of: Any = None) -> dict[str, Any]:
    info, public = service_account(cloud.google_tokens.token_uri)
    cloud.google_tokens.public_key = public
    if key_of is not None:  # sign with another key than the one the token service knows
        info["private_key"] = key_of["private_key"]
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(info))
    return {
        "global": {"auth": {"keys": ["k"]}, "retries": {"max_attempts": 1}},
        "logging": {"level": "error"},
        "channels": [{"name": "vx", "provider_type": "vertex", "project": "proj-1", "location": "us-east5",
                      "base_url": cloud.url, "credentials_file": str(path)}],
        "routers": [{"name": "r", "channels": [{"name": "vx"}]}],
    }


@pytest.mark.parametrize("model", [CLAUDE, GEMINI])
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("tools", [False, True])
async def test_every_protocol_through_vertex(cloud: CloudFake, start_apex: StartApex, tmp_path: Path,
                                             model: str, protocol: str, stream: bool, tools: bool) -> None:
    """Every client protocol reaches Claude (rawPredict) and Gemini (generateContent) on Vertex with a token."""
    inst = await start_apex(config(cloud, tmp_path))
    text, names = await ask(inst, protocol, model, stream=stream, tools=tools)
    gemini_text_only = model == GEMINI and not stream  # the captured non-stream Gemini answer is text
    if tools and not gemini_text_only:
        assert names and set(names) == {TOOL}
    else:
        assert answered(text) and not names
    sent = cloud.last("/publishers/")
    prefix = "/v1/projects/proj-1/locations/us-east5/publishers"
    if model == CLAUDE:
        method = "streamRawPredict" if stream else "rawPredict"
        assert sent.path == f"{prefix}/anthropic/models/{CLAUDE}:{method}"
        assert sent.json["anthropic_version"] == "vertex-2023-10-16" and "model" not in sent.json
        assert bool(sent.json.get("stream")) == stream
    else:
        method = "streamGenerateContent" if stream else "generateContent"
        assert sent.path == f"{prefix}/google/models/{GEMINI}:{method}"
        assert sent.query == ("alt=sse" if stream else "")
        assert "contents" in sent.json
    assert sent.headers["Authorization"].startswith("Bearer ya29-")
    if tools:
        assert TOOL in sent.body.decode()


async def test_google_tokens_expire_and_are_refreshed(cloud: CloudFake, start_apex: StartApex, tmp_path: Path) -> None:
    """Tokens living ~1.5 s are renewed with a new signed JWT before they expire; requests never see an expired one."""
    cloud.google_tokens.lifetime_s = 1.5
    inst = await start_apex(config(cloud, tmp_path))
    used = set()
    for _ in range(8):
        text, _ = await ask(inst, "messages", CLAUDE, stream=False, tools=False)
        assert answered(text)
        used.add(cloud.last("/publishers/").headers["Authorization"])
        await asyncio.sleep(0.4)
    assert len(used) >= 2 and len(cloud.google_tokens.issued) >= 3


async def test_a_jwt_signed_with_the_wrong_key_is_refused(cloud: CloudFake, start_apex: StartApex, tmp_path: Path) -> None:
    """The token service rejects a JWT whose signature does not verify; the channel reports why and fails fast."""
    other, _ = service_account("unused", which=1)
    inst = await start_apex(config(cloud, tmp_path, key_of=other))
    reason = inst.gateway.credential_problems()["vx"]
    assert "Invalid JWT Signature" in reason and "PRIVATE KEY" not in reason
    with pytest.raises(anthropic.APIStatusError) as err:
        await ant(inst, "k").messages.create(model=CLAUDE, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 502 and "no valid Google access token" in str(err.value)
    assert not [r for r in cloud.requests if "/publishers/" in r.path]


@pytest.mark.parametrize("stream", [False, True])
async def test_gemini_client_alias_reaches_vertex_in_the_url_only(
        cloud: CloudFake, start_apex: StartApex, tmp_path: Path, stream: bool) -> None:
    """A Gemini client's model alias goes to Vertex as the mapped model in the URL and the body stays as sent:
    Gemini refuses a body with a ``model`` field ('Unknown name "model"'), which a renamed model once added."""
    cfg = config(cloud, tmp_path)
    cfg["channels"][0]["model_map"] = {"gm-alias": GEMINI}
    inst = await start_apex(cfg)
    client = genai.Client(api_key="k", http_options=types.HttpOptions(
        base_url=inst.url, retry_options=types.HttpRetryOptions(attempts=1)))
    try:
        question = "What is the capital of France?"
        if stream:
            chunks = [c async for c in await client.aio.models.generate_content_stream(model="gm-alias", contents=question)]
            text = "".join(c.text or "" for c in chunks)
        else:
            text = (await client.aio.models.generate_content(model="gm-alias", contents=question)).text or ""
    finally:
        await client.aio.aclose()
    assert answered(text)
    sent = cloud.last("/publishers/")
    method = "streamGenerateContent" if stream else "generateContent"
    assert sent.path == f"/v1/projects/proj-1/locations/us-east5/publishers/google/models/{GEMINI}:{method}"
    assert "model" not in sent.json and sent.json["contents"][0]["parts"][0]["text"] == question


async def test_vertexs_own_errors_reach_anthropic_clients_in_anthropics_shape(
    cloud: CloudFake, start_apex: StartApex, tmp_path: Path,
) -> None:
    """Vertex answers Claude requests it refuses with a google.rpc error: an Anthropic client
    gets Anthropic's error object (it got Google's body as it was)."""
    from aiohttp import web

    inst = await start_apex(config(cloud, tmp_path))
    cloud.next_error = web.json_response({"error": {"code": 429, "message": "Quota exceeded for aiplatform.googleapis.com",
                                                    "status": "RESOURCE_EXHAUSTED"}}, status=429)
    with pytest.raises(anthropic.RateLimitError) as info:
        await ant(inst, "k").messages.create(model=CLAUDE, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    body = info.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error", body
    assert "Quota exceeded" in body["error"]["message"]


async def test_a_key_file_rotated_in_place_is_used_after_a_reload(cloud: CloudFake, start_apex: StartApex,
                                                                 tmp_path: Path) -> None:
    """Rotation: write the new key to the same path, reload, revoke the old key. The reload
    starts a refresher for the new contents (keyed on the path, the old one kept signing with
    the revoked key until a restart)."""
    cloud.google_tokens.lifetime_s = 1.0
    cfg = config(cloud, tmp_path)
    inst = await start_apex(cfg)
    text, _ = await ask(inst, "messages", CLAUDE, stream=False, tools=False)
    assert answered(text)
    new_info, new_public = service_account(cloud.google_tokens.token_uri, which=1)
    (tmp_path / "sa.json").write_text(json.dumps(new_info))
    assert inst.gateway.reload_bytes(json.dumps(cfg).encode())
    cloud.google_tokens.public_key = new_public  # the old key is revoked
    await asyncio.sleep(1.2)  # the token fetched with the old key has expired
    text, _ = await ask(inst, "messages", CLAUDE, stream=False, tools=False)
    assert answered(text)


def test_a_missing_credentials_file_is_a_config_error(cloud: CloudFake, tmp_path: Path) -> None:
    """validate said valid and every request was a 502 (a typo in the path)."""
    from apex.config.load import load_config_bytes
    from apex.errors import ConfigError
    from apex.snapshot import build_snapshot

    cfg = config(cloud, tmp_path)
    cfg["channels"][0]["credentials_file"] = str(tmp_path / "nope.json")
    with pytest.raises(ConfigError) as err:
        build_snapshot(load_config_bytes(json.dumps(cfg).encode()))
    assert err.value.path == "channels[0].credentials_file"
    from apex.upstream.channel import check_egress  # what `apex config validate` runs

    with pytest.raises(ConfigError) as err:
        check_egress(load_config_bytes(json.dumps(cfg).encode()))
    assert err.value.path == "channels[0].credentials_file"
