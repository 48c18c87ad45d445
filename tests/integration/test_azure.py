"""Azure OpenAI end to end: the official SDKs -> Apex -> a fake Azure with both URL shapes and Entra ID tokens."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import StartApex, ant, oai
from tests.integration.access import access_lines
from tests.integration.cloud_clients import PROTOCOLS, TOOL, answered, ask
from tests.integration.cloud_fakes import CloudFake


@pytest.fixture
async def cloud() -> AsyncIterator[CloudFake]:
    fake = CloudFake()
    fake.azure_api_key = "azure-key-1"
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def config(cloud: CloudFake, api_version: str, **channel: Any) -> dict[str, Any]:
    ch: dict[str, Any] = {"name": "az", "provider_type": "azure_openai", "base_url": cloud.url, "api_version": api_version,
                          "api_key": "azure-key-1", "model_map": {"gpt-4o": "my-gpt4o-deployment"}}
    ch.update(channel)
    return {
        "global": {"auth": {"keys": ["k"]}, "retries": {"max_attempts": 1}},
        "logging": {"level": "error"},
        "channels": [ch],
        "routers": [{"name": "r", "channels": [{"name": "az"}]}],
    }


@pytest.mark.parametrize("api_version", ["2024-10-21", "v1", "2024-06-01"])  # 2024-06-01 refuses stream_options
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("tools", [False, True])
async def test_every_protocol_through_azure(cloud: CloudFake, start_apex: StartApex, api_version: str,
                                            protocol: str, stream: bool, tools: bool) -> None:
    """Every client protocol reaches the deployment through the dated or the v1 URL shape, with api-key."""
    inst = await start_apex(config(cloud, api_version))
    text, names = await ask(inst, protocol, "gpt-4o", stream=stream, tools=tools)
    native_responses = protocol == "responses" and api_version == "v1"
    if tools and not (native_responses and not stream):  # the captured non-stream Responses answer is text
        assert names and set(names) == {TOOL}
    else:
        assert answered(text) and not names
    sent = cloud.last("/openai/")
    op = "responses" if native_responses else "chat/completions"
    if api_version == "v1":
        assert sent.path == f"/openai/v1/{op}" and sent.query == ""
        assert sent.json["model"] == "my-gpt4o-deployment"
    else:
        assert sent.path == "/openai/deployments/my-gpt4o-deployment/chat/completions"
        assert sent.query == f"api-version={api_version}"
    assert sent.headers["api-key"] == "azure-key-1" and "Authorization" not in sent.headers


@pytest.mark.parametrize("api_version", ["2024-10-21", "v1"])
async def test_embeddings_through_azure(cloud: CloudFake, start_apex: StartApex, api_version: str) -> None:
    """Embeddings reach /embeddings in both URL shapes."""
    inst = await start_apex(config(cloud, api_version, model_map={"text-embedding-3-small": "emb-deployment"}))
    out = await oai(inst, "k").embeddings.create(model="text-embedding-3-small", input=["hello"])
    assert out.data and len(out.data[0].embedding) > 10
    sent = cloud.last("/openai/")
    expected = "/openai/v1/embeddings" if api_version == "v1" else "/openai/deployments/emb-deployment/embeddings"
    assert sent.path == expected


async def test_wrong_api_key_is_a_502_without_the_key(cloud: CloudFake, start_apex: StartApex) -> None:
    """Azure's 401 for a wrong key becomes a 502 that names the channel and never shows the key."""
    inst = await start_apex(config(cloud, "v1", api_key="wrong-key"))
    with pytest.raises(openai.APIStatusError) as err:
        await oai(inst, "k").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 502 and "az" in str(err.value) and "wrong-key" not in str(err.value)


def ad_config(cloud: CloudFake, api_version: str = "v1", **ad: Any) -> dict[str, Any]:
    azure_ad = {"tenant_id": "tenant-1", "client_id": "client-1", "client_secret": "s3cret", "authority_host": cloud.url}
    azure_ad.update(ad)
    cfg = config(cloud, api_version, azure_ad=azure_ad)
    del cfg["channels"][0]["api_key"]
    return cfg


@pytest.mark.parametrize("api_version", ["2024-10-21", "v1"])
async def test_entra_id_tokens_expire_and_are_refreshed_in_the_background(cloud: CloudFake, start_apex: StartApex,
                                                                          api_version: str) -> None:
    """Short-lived Entra ID tokens are renewed before they expire: requests keep working across several lifetimes."""
    cloud.azure_api_key = None
    cloud.azure_tokens.lifetime_s = 1.2
    inst = await start_apex(ad_config(cloud, api_version))
    tokens = set()
    for _ in range(8):
        text, _ = await ask(inst, "chat", "gpt-4o", stream=False, tools=False)
        assert "4242" in text
        tokens.add(cloud.last("/openai/").headers["Authorization"])
        await asyncio.sleep(0.4)
    assert len(tokens) >= 2  # a later token was used: the first expired meanwhile
    assert len(cloud.azure_tokens.issued) >= 3
    assert all(t.startswith("Bearer az-") for t in tokens)


async def test_failed_token_refresh_marks_the_channel_and_fails_fast(cloud: CloudFake, start_apex: StartApex) -> None:
    """A wrong client secret: start-up does not hang or crash, /health names the reason, requests get a prompt 502."""
    cloud.azure_api_key = None
    inst = await start_apex(ad_config(cloud, client_secret="wrong"))
    reasons = inst.gateway.credential_problems()
    assert "AADSTS7000215" in reasons["az"] and "wrong" not in reasons["az"]
    with pytest.raises(openai.APIStatusError) as err:
        await oai(inst, "k").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 502 and "no valid Entra ID token" in str(err.value)
    assert cloud.hits_openai() == 0


async def test_failed_refresh_shows_in_ready_and_the_channel_gauge(cloud: CloudFake, start_apex: StartApex) -> None:
    """/ready names the channel and its reason (503: the router has no usable channel); apex_channel_up is 0."""
    import aiohttp

    cloud.azure_api_key = None
    cloud.azure_tokens.fail = True
    inst = await start_apex(ad_config(cloud))
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{inst.url}/ready") as r:
            body = await r.json()
            assert r.status == 503
        async with s.get(f"{inst.url}/metrics") as m:
            metrics = await m.text()
    assert "AADSTS7000215" in body["credentials"]["az"]
    assert any("no channel has valid cloud credentials" in reason for reason in body["reasons"])
    assert 'apex_channel_up{channel="az"} 0.0' in metrics


async def test_deployments_are_priced_and_fitted_as_the_model_asked(cloud: CloudFake, start_apex: StartApex,
                                                                    log_file: Path) -> None:
    """gpt-4o served by "my-gpt4o-deployment" is priced as gpt-4o (it was unpriced: cost null and
    budgets never applied); o3 behind "my-o3-deployment" gets max_completion_tokens, as o3 takes
    (it got max_tokens from an Anthropic client, and Azure answered 400)."""
    cfg = config(cloud, "v1", model_map={"gpt-4o": "my-gpt4o-deployment", "o3": "my-o3-deployment"})
    cfg["logging"] = {"level": "info", "file": str(log_file)}
    inst = await start_apex(cfg)
    await oai(inst, "k").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    line = access_lines(log_file)[-1]
    assert line["upstream_model"] == "my-gpt4o-deployment" and line["cost_usd"] and line["cost_usd"] > 0, line
    await ant(inst, "k").messages.create(model="o3", max_tokens=300, messages=[{"role": "user", "content": "hi"}])
    sent = cloud.last("/openai/").json
    assert sent.get("max_completion_tokens") and "max_tokens" not in sent, sent


# Azure's asynchronous content filter (learn.microsoft.com, "content streaming"): the prompt's
# filter results first, with empty id/model, and after the finish a choice of annotations only,
# with offsets and no delta. The docs show that chunk with an empty id (which the openai SDK's
# helper happens to skip); deployments also send it with the stream's id, as here.
_FILTER = {"hate": {"filtered": False, "severity": "safe"}, "violence": {"filtered": False, "severity": "safe"}}
_CHUNK = {"id": "chatcmpl-AZ", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o-2024-11-20"}


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


ASYNC_FILTER_STREAM = [
    _event({"choices": [], "created": 0, "id": "", "model": "", "object": "",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _FILTER}]}),
    _event({**_CHUNK, "choices": [{"delta": {"role": "assistant", "content": ""}, "finish_reason": None, "index": 0}]}),
    _event({**_CHUNK, "choices": [{"content_filter_results": _FILTER, "delta": {"content": "Hello world"},
                                   "finish_reason": None, "index": 0}]}),
    _event({**_CHUNK, "choices": [{"delta": {}, "finish_reason": "stop", "index": 0}]}),
    _event({**_CHUNK, "choices": [{"content_filter_offsets": {"check_offset": 11, "start_offset": 0, "end_offset": 11},
                                   "content_filter_results": _FILTER, "finish_reason": None, "index": 0}]}),
    b"data: [DONE]\n\n",
]


@pytest.mark.parametrize("mapped", [True, False])
async def test_async_content_filter_annotations_reach_the_openai_stream_helper(
        cloud: CloudFake, start_apex: StartApex, mapped: bool) -> None:
    """The annotation choice Azure sends after the finish has no delta; the openai SDK's stream
    helper failed on it (AttributeError). It gets an empty delta and keeps its offsets."""
    model_map = {"gpt-4o": "my-gpt4o-deployment"} if mapped else {}
    inst = await start_apex(config(cloud, "2024-10-21", model_map=model_map))
    cloud.azure_stream = ASYNC_FILTER_STREAM
    async with oai(inst, "k").chat.completions.stream(model="gpt-4o", messages=[{"role": "user", "content": "hi"}]) as s:
        done = await s.get_final_completion()
    assert done.choices[0].message.content == "Hello world" and done.choices[0].finish_reason == "stop"
    cloud.azure_stream = ASYNC_FILTER_STREAM
    raw = await oai(inst, "k").chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True)
    events = [json.loads(line[6:]) for line in (await raw.http_response.aread()).split(b"\n\n")
              if line.startswith(b"data: {")]
    annotation = events[-1]["choices"][0]
    assert annotation["delta"] == {}
    assert annotation["content_filter_offsets"] == {"check_offset": 11, "start_offset": 0, "end_offset": 11}
