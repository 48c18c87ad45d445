"""Gemini clients through Apex: the official google-genai SDK over real HTTP on every channel kind.

Channels: a Gemini channel (pass-through, model mapped), an OpenAI and an Anthropic channel
(translated) on the fake upstream, and the in-process mock. The SDK is the judge: it must
parse every answer, stream and error Apex sends it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.conftest import ApexInstance, StartApex, oai
from tests.integration.fakes import Behaviour, FakeUpstream, fixture_bytes, named_events, split_events
from tests.integration.access import access_lines

KEY = "gk-client-secret-1"
CHANNEL_MODELS = {"gemini": "gm-alias", "openai": "gpt-alias", "anthropic": "claude-alias", "mock": "mock-alias"}

TOOL = types.Tool(function_declarations=[types.FunctionDeclaration(
    name="secret_retrieval_tool", description="A tool that requires a password.",
    parameters=types.Schema(type=types.Type.OBJECT, properties={"password": types.Schema(type=types.Type.STRING)},
                            required=["password"]))])


def config(upstream: FakeUpstream) -> dict[str, Any]:
    return {
        "global": {"auth": {"keys": [KEY]}, "retries": {"max_attempts": 1}},
        "logging": {"level": "error"},
        "channels": [
            {"name": "gm", "provider_type": "gemini", "base_url": upstream.url, "api_key": "g-upstream-key",
             "model_map": {"gm-alias": "gemini-2.5-flash"}, "models": ["gm-alias", "gm-emb"]},
            {"name": "oa", "provider_type": "openai", "base_url": upstream.openai_url, "api_key": "sk-oa-upstream",
             "models": ["gpt-alias", "gpt-emb"]},
            {"name": "an", "provider_type": "anthropic", "base_url": upstream.url, "api_key": "sk-ant-upstream",
             "models": ["claude-alias"]},
            {"name": "mk", "provider_type": "mock", "models": ["mock-alias", "mock-emb"]},
            {"name": "ds", "provider_type": "deepseek", "base_url": upstream.openai_url, "api_key": "sk-ds-upstream",
             "models": ["deepseek-reasoner"]},
        ],
        "routers": [{"name": "r", "rules": [
            {"match": {"model": "gm-*"}, "channels": [{"name": "gm"}]},
            {"match": {"model": "gpt-*"}, "channels": [{"name": "oa"}]},
            {"match": {"model": "claude-*"}, "channels": [{"name": "an"}]},
            {"match": {"model": "mock-*"}, "channels": [{"name": "mk"}]},
            {"match": {"model": "deepseek-*"}, "channels": [{"name": "ds"}]},
        ]}],
    }


@pytest.fixture
async def apex(upstream: FakeUpstream, start_apex: StartApex) -> ApexInstance:
    return await start_apex(config(upstream))


@pytest.fixture
async def client(apex: ApexInstance) -> AsyncIterator[genai.Client]:
    c = genai.Client(api_key=KEY, http_options=types.HttpOptions(
        base_url=apex.url, retry_options=types.HttpRetryOptions(attempts=1)))
    yield c
    await c.aio.aclose()


EXPECTED_TEXT = {
    "gemini": json.loads(fixture_bytes("gemini_generate_content.json"))["candidates"][0]["content"]["parts"][0]["text"],
    "openai": json.loads(fixture_bytes("openai_chat_nonstream.json"))["choices"][0]["message"]["content"],
    "anthropic": "4200 + 42 = 4242",
    "mock": "This is Apex's mock provider. You said: What is 4200 + 42?",
}
EXPECTED_STREAM = {
    "gemini": "The capital of France is Paris.\n",
    "openai": "The capital of the UK is London.",
    "anthropic": "4200 + 42 = 4242",
    "mock": "This is Apex's mock provider. You said: What is 4200 + 42?",
}


@pytest.mark.parametrize("kind", ["gemini", "openai", "anthropic", "mock"])
async def test_generate_on_every_channel_kind(kind: str, client: genai.Client, upstream: FakeUpstream) -> None:
    """generateContent answers in Gemini's shape on every channel kind, with text, finish and usage."""
    resp = await client.aio.models.generate_content(
        model=CHANNEL_MODELS[kind], contents="What is 4200 + 42?",
        config=types.GenerateContentConfig(system_instruction="Be brief.", max_output_tokens=300, temperature=0.5))
    assert resp.text == EXPECTED_TEXT[kind]
    cand = resp.candidates[0] if resp.candidates else None
    assert cand is not None and cand.finish_reason == types.FinishReason.STOP
    usage = resp.usage_metadata
    assert usage is not None and usage.prompt_token_count and usage.total_token_count
    if kind == "mock":
        return
    sent = upstream.requests[-1]
    assert KEY not in str(sent.headers) and KEY not in sent.query and KEY.encode() not in sent.body
    if kind == "gemini":
        assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
        assert sent.headers["x-goog-api-key"] == "g-upstream-key" and sent.query == ""
        assert sent.json["systemInstruction"]["parts"][0]["text"] == "Be brief."
        assert usage.thoughts_token_count == 25 and usage.candidates_token_count == 77
    elif kind == "openai":
        assert sent.path == "/v1/chat/completions" and sent.headers["Authorization"] == "Bearer sk-oa-upstream"
        assert sent.json["messages"] == [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": "What is 4200 + 42?"}]
        assert sent.json["max_tokens"] == 300 and sent.json["temperature"] == 0.5 and sent.json["model"] == "gpt-alias"
    else:
        assert sent.path == "/v1/messages" and sent.headers["x-api-key"] == "sk-ant-upstream"
        assert sent.json["system"] == "Be brief." and sent.json["max_tokens"] == 300
        assert sent.json["messages"] == [{"role": "user", "content": [{"type": "text", "text": "What is 4200 + 42?"}]}]


async def test_the_mock_answers_max_output_tokens_0_the_same_streamed_or_not(client: genai.Client) -> None:
    """0 is no limit, as the mock reads max_tokens 0 in the other dialects; the stream was a 502
    (no word left to send) while generateContent answered 200."""
    config = types.GenerateContentConfig(max_output_tokens=0)
    resp = await client.aio.models.generate_content(model="mock-alias", contents="What is 4200 + 42?", config=config)
    chunks = [c async for c in await client.aio.models.generate_content_stream(
        model="mock-alias", contents="What is 4200 + 42?", config=config)]
    assert "".join(c.text or "" for c in chunks) == resp.text == EXPECTED_TEXT["mock"]
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == types.FinishReason.STOP


@pytest.mark.parametrize("kind", ["gemini", "openai", "anthropic", "mock"])
async def test_stream_on_every_channel_kind(kind: str, client: genai.Client, upstream: FakeUpstream) -> None:
    """streamGenerateContent?alt=sse streams chunks the SDK reads; the last carries STOP and usage."""
    chunks = [c async for c in await client.aio.models.generate_content_stream(
        model=CHANNEL_MODELS[kind], contents="What is 4200 + 42?")]
    assert "".join(c.text or "" for c in chunks) == EXPECTED_STREAM[kind]
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata is not None and last.usage_metadata.total_token_count
    if kind == "gemini":
        assert upstream.requests[-1].path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
        assert upstream.requests[-1].query == "alt=sse"
    elif kind == "openai":
        assert upstream.requests[-1].json["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("kind", ["gemini", "openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
async def test_function_calling_round_trip(kind: str, stream: bool, client: genai.Client, upstream: FakeUpstream) -> None:
    """Function declarations go up, function calls come back whole, and their responses reach the upstream
    as that protocol's tool results, matched to the right call."""
    cfg = types.GenerateContentConfig(tools=[TOOL], automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    question = types.Content(role="user", parts=[types.Part.from_text(text="secrets for mellon, radiance")])
    if stream:
        chunks = [c async for c in await client.aio.models.generate_content_stream(
            model=CHANNEL_MODELS[kind], contents=[question], config=cfg)]
        parts = [p for c in chunks if c.candidates and c.candidates[0].content
                 for p in c.candidates[0].content.parts or []]
        model_turn = types.Content(role="model", parts=parts)
        assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    else:
        resp = await client.aio.models.generate_content(model=CHANNEL_MODELS[kind], contents=[question], config=cfg)
        assert resp.candidates and resp.candidates[0].content is not None
        model_turn = resp.candidates[0].content
        assert resp.candidates[0].finish_reason == types.FinishReason.STOP
    calls = [p.function_call for p in model_turn.parts or [] if p.function_call]
    assert [c.name for c in calls] == ["secret_retrieval_tool"] * 2
    assert sorted((c.args or {})["password"] for c in calls) == ["mellon", "radiance"]
    first_request = upstream.requests[-1].json
    if kind == "openai":
        assert first_request["tools"][0]["function"]["parameters"] == {
            "type": "object", "properties": {"password": {"type": "string"}}, "required": ["password"]}
    elif kind == "anthropic":
        assert first_request["tools"][0]["input_schema"]["properties"]["password"] == {"type": "string"}
    # The client answers the calls by name, in order, without ids (what Part.from_function_response does).
    answers = [types.Part.from_function_response(name="secret_retrieval_tool", response={"output": f"secret-{i}"})
               for i in range(len(calls))]
    follow = await client.aio.models.generate_content(
        model=CHANNEL_MODELS[kind], contents=[question, model_turn, types.Content(role="user", parts=answers)],
        config=cfg)
    assert follow.candidates
    sent = upstream.requests[-1].json
    if kind == "openai":
        assistant = next(m for m in sent["messages"] if m["role"] == "assistant")
        tools = [m for m in sent["messages"] if m["role"] == "tool"]
        assert [t["tool_call_id"] for t in tools] == [c["id"] for c in assistant["tool_calls"]]
        assert [t["content"] for t in tools] == ["secret-0", "secret-1"]
        assert [c.id for c in calls] == [c["id"] for c in assistant["tool_calls"]]  # the upstream's ids reach the client
    elif kind == "anthropic":
        uses = [b for b in sent["messages"][1]["content"] if b["type"] == "tool_use"]
        results = sent["messages"][2]["content"]
        assert [r["tool_use_id"] for r in results] == [u["id"] for u in uses]
        assert [r["content"] for r in results] == ["secret-0", "secret-1"]
    else:  # pass-through: Gemini gets the parts as the client sent them, thought signature included
        assert sent["contents"][1]["parts"][0]["thoughtSignature"]
        assert sent["contents"][2]["parts"][0]["functionResponse"]["response"] == {"output": "secret-0"}


@pytest.mark.parametrize("kind", ["gemini", "openai", "anthropic", "mock"])
async def test_count_tokens(kind: str, client: genai.Client, upstream: FakeUpstream) -> None:
    """countTokens: Gemini's own count on a Gemini channel, an estimate marked x-apex-estimated elsewhere."""
    resp = await client.aio.models.count_tokens(model=CHANNEL_MODELS[kind], contents="What is 4200 + 42?")
    assert resp.total_tokens
    headers = resp.sdk_http_response.headers if resp.sdk_http_response else {}
    assert headers is not None
    if kind == "gemini":
        assert resp.total_tokens == 31
        assert upstream.requests[-1].path == "/v1beta/models/gemini-2.5-flash:countTokens"
    elif kind != "mock":
        assert headers.get("x-apex-estimated") == "true"


@pytest.mark.parametrize("kind", ["gemini", "openai", "mock"])
async def test_embed(kind: str, client: genai.Client, upstream: FakeUpstream) -> None:
    """embed_content (batchEmbedContents) on Gemini, OpenAI and mock channels; embedContent unwraps one."""
    model = {"gemini": "gm-emb", "openai": "gpt-emb", "mock": "mock-emb"}[kind]
    resp = await client.aio.models.embed_content(model=model, contents=["hello", "world"])
    assert resp.embeddings is not None and len(resp.embeddings) == 2
    assert all(e.values and all(isinstance(v, float) for v in e.values) for e in resp.embeddings)
    if kind == "gemini":
        sent = upstream.requests[-1]
        assert sent.path == "/v1beta/models/gm-emb:batchEmbedContents"
        assert [r["model"] for r in sent.json["requests"]] == ["models/gm-emb"] * 2
    elif kind == "openai":
        assert upstream.requests[-1].json["input"] == ["hello", "world"]


@pytest.mark.parametrize("spelling", ["outputDimensionality", "output_dimensionality"])
async def test_embed_dimensions_in_either_spelling(spelling: str, apex: ApexInstance, upstream: FakeUpstream) -> None:
    """On an OpenAI channel the snake_case field Google's API reads is a dimensions request too
    (output_dimensionality was dropped: full-size vectors)."""
    async with aiohttp.ClientSession() as s, s.post(
            f"{apex.url}/v1beta/models/gpt-emb:batchEmbedContents", headers={"x-goog-api-key": KEY},
            json={"requests": [{"model": "models/gpt-emb", "content": {"parts": [{"text": "hello"}]},
                                spelling: 3}]}) as r:
        assert r.status == 200, await r.text()
    assert upstream.requests[-1].json["dimensions"] == 3


async def test_openai_embeddings_past_geminis_batch_limit_are_split(apex: ApexInstance, upstream: FakeUpstream) -> None:
    """OpenAI clients send up to 2,048 inputs (LangChain 1,000 by default); Gemini embeds 100
    per call: 250 inputs go as 100 + 100 + 50 and come back as 250 vectors (it was a 400)."""
    client = openai.AsyncOpenAI(base_url=apex.openai_url, api_key=KEY, max_retries=0)
    got = await client.embeddings.create(model="gm-emb", input=[f"text {i}" for i in range(250)])
    await client.close()
    assert [d.index for d in got.data] == list(range(250))
    batches = [r.json for r in upstream.requests if r.path.endswith(":batchEmbedContents")]
    assert [len(b["requests"]) for b in batches] == [100, 100, 50]
    assert batches[1]["requests"][0]["content"]["parts"][0]["text"] == "text 100"


async def test_embed_content_single(apex: ApexInstance, upstream: FakeUpstream) -> None:
    """A single :embedContent is served as a batch of one and answered as {"embedding": {...}}."""
    async with aiohttp.ClientSession() as s, s.post(
            f"{apex.url}/v1beta/models/gm-emb:embedContent", headers={"x-goog-api-key": KEY},
            json={"content": {"parts": [{"text": "hello"}]}, "taskType": "RETRIEVAL_QUERY"}) as r:
        assert r.status == 200
        body = await r.json()
    assert list(body) == ["embedding"] and body["embedding"]["values"]
    sent = upstream.requests[-1]
    assert sent.path.endswith(":batchEmbedContents")
    assert sent.json == {"requests": [{"content": {"parts": [{"text": "hello"}]}, "taskType": "RETRIEVAL_QUERY",
                                       "model": "models/gm-emb"}]}


async def test_model_list_in_gemini_shape(client: genai.Client) -> None:
    """GET /v1beta/models lists the exact model names this key may use; one model can be fetched."""
    names = [m.name async for m in await client.aio.models.list()]
    assert names == [f"models/{n}" for n in sorted(["gm-alias", "gm-emb", "gpt-alias", "gpt-emb", "claude-alias",
                                                     "mock-alias", "mock-emb", "deepseek-reasoner"])]
    one = await client.aio.models.get(model="gpt-alias")
    assert one.name == "models/gpt-alias" and one.supported_actions and "generateContent" in one.supported_actions
    with pytest.raises(genai_errors.ClientError) as info:
        await client.aio.models.get(model="nope")
    assert info.value.code == 404 and info.value.status == "NOT_FOUND"


async def test_keys_query_and_bearer_and_errors(apex: ApexInstance, upstream: FakeUpstream) -> None:
    """?key= and Bearer work like x-goog-api-key; a missing or wrong key is 401 in Gemini's shape."""
    url = f"{apex.url}/v1beta/models/gm-alias:generateContent"
    body = {"contents": [{"parts": [{"text": "hi"}]}]}
    async with aiohttp.ClientSession() as s:
        async with s.post(url, params={"key": KEY}, json=body) as r:
            assert r.status == 200
        async with s.post(url, headers={"Authorization": f"Bearer {KEY}"}, json=body) as r:
            assert r.status == 200
        async with s.post(url, json=body) as r:
            assert r.status == 401
            err = await r.json()
        async with s.post(url, params={"key": "wrong"}, json=body) as r:
            assert r.status == 401
        async with s.post(f"{apex.url}/v1beta/models/gm-alias:summon", params={"key": KEY}, json=body) as r:
            assert r.status == 404 and (await r.json())["error"]["status"] == "NOT_FOUND"
        async with s.post(url, params={"key": KEY}, data=b"{nope") as r:
            assert r.status == 400 and (await r.json())["error"]["status"] == "INVALID_ARGUMENT"
        async with s.get(f"{apex.url}/v1beta/nothing-here", params={"key": KEY}) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == 404
    assert err["error"]["code"] == 401 and err["error"]["status"] == "UNAUTHENTICATED" and "x-goog-api-key" in err["error"]["message"]
    assert all(KEY not in str(req.headers) and KEY not in req.query for req in upstream.requests)


async def test_upstream_errors_keep_gemini_status(client: genai.Client, upstream: FakeUpstream) -> None:
    """A Gemini 429 keeps its RESOURCE_EXHAUSTED status; an OpenAI 400 becomes INVALID_ARGUMENT."""
    upstream.push(Behaviour(status=429, body=json.dumps({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}).encode()))
    with pytest.raises(genai_errors.ClientError) as info:
        await client.aio.models.generate_content(model="gm-alias", contents="hi")
    assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED" and "quota" in (info.value.message or "")
    upstream.push(Behaviour(status=400, body=b'{"error":{"message":"bad thing","type":"invalid_request_error"}}'))
    with pytest.raises(genai_errors.ClientError) as info:
        await client.aio.models.generate_content(model="gpt-alias", contents="hi")
    assert info.value.code == 400 and info.value.status == "INVALID_ARGUMENT"


@pytest.mark.parametrize("kind", ["gemini", "openai"])
async def test_stream_failure_after_commit(kind: str, client: genai.Client, upstream: FakeUpstream) -> None:
    """A stream cut after it started ends with a Gemini error chunk, which the SDK raises."""
    if kind == "gemini":
        events = split_events(fixture_bytes("gemini_stream.sse"))
    else:
        events = split_events(fixture_bytes("openai_chat_stream_text.sse"))
    upstream.push(Behaviour(content_type="text/event-stream", events=events, cut_after=2))
    got: list[str] = []
    with pytest.raises(genai_errors.APIError) as info:
        stream = await client.aio.models.generate_content_stream(model=CHANNEL_MODELS[kind], contents="hi")
        async for chunk in stream:
            got.append(chunk.text or "")  # noqa: PERF401 -- what arrived before the error must stay
    assert info.value.code == 500 and "channel" in (info.value.message or "")
    assert "".join(got)


@pytest.mark.parametrize("kind", ["gemini", "anthropic"])
async def test_json_array_stream_without_alt_sse(kind: str, apex: ApexInstance) -> None:
    """streamGenerateContent without alt=sse answers one incremental JSON array, as Google does."""
    async with aiohttp.ClientSession() as s, s.post(
            f"{apex.url}/v1beta/models/{CHANNEL_MODELS[kind]}:streamGenerateContent",
            headers={"x-goog-api-key": KEY}, json={"contents": [{"parts": [{"text": "hi"}]}]}) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
        raw = await r.read()
    chunks = json.loads(raw)
    assert isinstance(chunks, list) and len(chunks) > 1
    text = "".join(p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"])
    assert text == EXPECTED_STREAM[kind]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP" and chunks[-1]["usageMetadata"]["totalTokenCount"]


async def test_access_line_metrics_and_no_key_in_logs(
    upstream: FakeUpstream, start_apex: StartApex, log_file: Path
) -> None:
    """Gemini requests get the access line and metrics of every dialect; a ?key= never reaches the log."""
    cfg = config(upstream)
    cfg["logging"] = {"level": "info", "format": "json"}
    inst = await start_apex(cfg)
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{inst.url}/v1beta/models/claude-alias:generateContent", params={"key": KEY},
                          json={"contents": [{"parts": [{"text": "hi"}]}]}) as r:
            assert r.status == 200
        async with s.post(f"{inst.url}/v1beta/models/claude-alias:generateContent", params={"key": KEY + "x"},
                          json={"contents": [{"parts": [{"text": "hi"}]}]}) as r:
            assert r.status == 401
        async with s.get(f"{inst.url}/metrics") as r:
            metrics = await r.text()
    lines = access_lines(log_file)
    assert [(x["dialect"], x["status"], x["channel"], x["model"]) for x in lines] == [
        ("gemini_generate", 200, "an", "claude-alias"), ("gemini_generate", 401, None, None)]
    assert lines[0]["tokens"]["prompt"] > 0
    assert KEY not in log_file.read_text()  # noqa: ASYNC240 -- a small local file read in a test
    assert 'apex_requests_total{channel="an",model="claude-alias",router="r",status="200",team_id="none"} 1.0' in metrics


async def test_v1_paths_serve_the_same(apex: ApexInstance, upstream: FakeUpstream) -> None:
    """The SDK on api_version v1 uses /v1/models/...: generate, stream and the model list answer there too."""
    c = genai.Client(api_key=KEY, http_options=types.HttpOptions(
        base_url=apex.url, api_version="v1", retry_options=types.HttpRetryOptions(attempts=1)))
    try:
        resp = await c.aio.models.generate_content(model="claude-alias", contents="What is 4200 + 42?")
        assert resp.text == EXPECTED_TEXT["anthropic"]
        chunks = [ch async for ch in await c.aio.models.generate_content_stream(model="gpt-alias", contents="hi")]
        assert "".join(ch.text or "" for ch in chunks) == EXPECTED_STREAM["openai"]
        names = [m.name async for m in await c.aio.models.list()]
        assert "models/claude-alias" in names
    finally:
        await c.aio.aclose()


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_images_and_multi_turn_reach_translated_channels(kind: str, client: genai.Client, upstream: FakeUpstream) -> None:
    """An inline image and an earlier model turn from the SDK arrive as the upstream's image and assistant forms."""
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
    contents = [types.Content(role="user", parts=[types.Part.from_text(text="hello")]),
                types.Content(role="model", parts=[types.Part.from_text(text="hi, send a picture")]),
                types.Content(role="user", parts=[types.Part.from_text(text="what is this?"),
                                                  types.Part.from_bytes(data=png, mime_type="image/png")])]
    resp = await client.aio.models.generate_content(model=CHANNEL_MODELS[kind], contents=contents)
    assert resp.text == EXPECTED_TEXT[kind]
    sent = upstream.requests[-1].json
    b64 = "iVBORw0KGgoAAAAAAAAAAAAAAAAAAAAA"
    if kind == "openai":
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
        assert sent["messages"][1]["content"] == "hi, send a picture"
        assert sent["messages"][2]["content"][1] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64}"}}
    else:
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
        assert sent["messages"][2]["content"][1] == {"type": "image", "source": {
            "type": "base64", "media_type": "image/png", "data": b64}}


async def test_model_names_with_a_slash_or_colon_can_be_used(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """GET /v1beta/models listed meta-llama/Llama-3.1-8B, but calling it (the SDKs send the "/"
    unencoded) was a 404 "unknown path", and fetching qwen2.5:7b a 405; OpenAI's models.retrieve too."""
    cfg = config(upstream)
    cfg["channels"].append({"name": "mk2", "provider_type": "mock", "models": ["meta-llama/Llama-3.1-8B", "qwen2.5:7b"]})
    cfg["routers"][0]["rules"].append({"match": {"model": ["meta-llama/*", "qwen*"]}, "channels": [{"name": "mk2"}]})
    inst = await start_apex(cfg)
    c = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=inst.url,
                                                                 retry_options=types.HttpRetryOptions(attempts=1)))
    try:
        for name in ("meta-llama/Llama-3.1-8B", "qwen2.5:7b"):
            resp = await c.aio.models.generate_content(model=name, contents="hi")
            assert resp.text and "mock provider" in resp.text
            chunks = [ch.text async for ch in await c.aio.models.generate_content_stream(model=name, contents="hi")]
            assert "mock provider" in "".join(t or "" for t in chunks)
            assert (await c.aio.models.get(model=name)).name == f"models/{name}"
    finally:
        await c.aio.aclose()
    retrieved = await oai(inst, KEY).models.retrieve("meta-llama/Llama-3.1-8B")
    assert retrieved.id == "meta-llama/Llama-3.1-8B"


SIGNED_CALL = {"id": "msg_g1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
               "content": [{"type": "thinking", "thinking": "Check the file first.", "signature": "EqQBsig-claude"},
                           {"type": "text", "text": "Let me read it."},
                           {"type": "tool_use", "id": "toolu_01", "name": "read_file", "input": {"path": "a.txt"}}],
               "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 20}}


@pytest.mark.parametrize("stream", [False, True])
async def test_claudes_signed_thinking_survives_a_client_that_drops_thought_parts(
        client: genai.Client, upstream: FakeUpstream, stream: bool) -> None:
    """The Gemini CLI keeps a functionCall's thoughtSignature but drops thought parts from its
    history: the signature rode only on an empty thought part, so every later step of the agent
    loop went to Claude with thinking off. The call part now carries the signed thinking."""
    read_file = types.Tool(function_declarations=[types.FunctionDeclaration(
        name="read_file", description="Read a file",
        parameters=types.Schema(type=types.Type.OBJECT, properties={"path": types.Schema(type=types.Type.STRING)}))])
    cfg = types.GenerateContentConfig(tools=[read_file], thinking_config=types.ThinkingConfig(include_thoughts=True,
                                                                                              thinking_budget=4096))
    if stream:
        events: list[dict[str, Any]] = [{"type": "message_start", "message": {**SIGNED_CALL, "content": [], "stop_reason": None}},
                  {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
                  {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Check the file first."}},
                  {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBsig-claude"}},
                  {"type": "content_block_stop", "index": 0},
                  {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
                  {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Let me read it."}},
                  {"type": "content_block_stop", "index": 1},
                  {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_01", "name": "read_file", "input": {}}},
                  {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"path": "a.txt"}'}},
                  {"type": "content_block_stop", "index": 2},
                  {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 20}},
                  {"type": "message_stop"}]
        upstream.push(Behaviour(content_type="text/event-stream",
                                events=named_events(events)))
        parts = [p for ch in [c async for c in await client.aio.models.generate_content_stream(
            model="claude-alias", contents="read a.txt", config=cfg)] for cand in ch.candidates or []
            for p in (cand.content.parts if cand.content and cand.content.parts else [])]
    else:
        upstream.push(Behaviour(body=json.dumps(SIGNED_CALL).encode()))
        resp = await client.aio.models.generate_content(model="claude-alias", contents="read a.txt", config=cfg)
        assert resp.candidates and resp.candidates[0].content and resp.candidates[0].content.parts
        parts = resp.candidates[0].content.parts
    call_part = next(p for p in parts if p.function_call)
    assert call_part.thought_signature
    kept = [p for p in parts if not p.thought]  # what the Gemini CLI keeps of the model turn
    upstream.push(Behaviour(body=json.dumps({**SIGNED_CALL, "content": [{"type": "text", "text": "done"}],
                                             "stop_reason": "end_turn"}).encode()))
    history = [types.Content(role="user", parts=[types.Part(text="read a.txt")]),
               types.Content(role="model", parts=kept),
               types.Content(role="user", parts=[types.Part(function_response=types.FunctionResponse(
                   name="read_file", response={"output": "hello"}))])]
    await client.aio.models.generate_content(model="claude-alias", contents=history, config=cfg)
    sent = upstream.requests[-1].json
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert sent["messages"][1]["content"][0] == {"type": "thinking", "thinking": "Check the file first.",
                                                 "signature": "EqQBsig-claude"}  # first, before Claude's text
    assert [b["type"] for b in sent["messages"][1]["content"]] == ["thinking", "text", "tool_use"]
    # The session moves to a Gemini channel: Apex's signatures are not Gemini's to read (P5).
    upstream.push(Behaviour(body=fixture_bytes("gemini_generate_content.json")))
    await client.aio.models.generate_content(model="gm-alias", contents=history, config=cfg)
    model_turn = upstream.requests[-1].json["contents"][1]["parts"]
    assert [p.get("thoughtSignature") for p in model_turn if "functionCall" in p] == ["skip_thought_signature_validator"]
    assert "YXBleC1hbnRocm9w" not in upstream.requests[-1].body.decode()


async def test_reasoning_content_survives_a_client_that_drops_thought_parts(client: genai.Client,
                                                                           upstream: FakeUpstream) -> None:
    """A DeepSeek-style reasoner answers reasoning_content + a tool call; the Gemini CLI keeps the
    call and drops the thought part, and DeepSeek refuses a tool-call turn without its
    reasoning_content (P7): the call part carries it back."""
    body = {"id": "c1", "object": "chat.completion", "created": 1, "model": "deepseek-reasoner",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": None, "reasoning_content": "Need the file.",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "read_file", "arguments": '{"path": "a.txt"}'}}]}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}
    upstream.push(Behaviour(body=json.dumps(body).encode()))
    read_file = types.Tool(function_declarations=[types.FunctionDeclaration(name="read_file", description="Read a file")])
    cfg = types.GenerateContentConfig(tools=[read_file], thinking_config=types.ThinkingConfig(include_thoughts=True))
    resp = await client.aio.models.generate_content(model="deepseek-reasoner", contents="read a.txt", config=cfg)
    assert resp.candidates and resp.candidates[0].content and resp.candidates[0].content.parts
    kept = [p for p in resp.candidates[0].content.parts if not p.thought]
    upstream.push(Behaviour(body=fixture_bytes("openai_chat_nonstream.json")))
    history = [types.Content(role="user", parts=[types.Part(text="read a.txt")]), types.Content(role="model", parts=kept),
               types.Content(role="user", parts=[types.Part(function_response=types.FunctionResponse(
                   name="read_file", response={"output": "hello"}))])]
    await client.aio.models.generate_content(model="deepseek-reasoner", contents=history, config=cfg)
    assistant = upstream.requests[-1].json["messages"][1]
    assert assistant["reasoning_content"] == "Need the file." and assistant["tool_calls"][0]["function"]["name"] == "read_file"


@pytest.mark.parametrize("include", [False, True])
async def test_thought_parts_only_when_the_client_asks_for_them(client: genai.Client, upstream: FakeUpstream,
                                                                include: bool) -> None:
    """Gemini writes no thought parts unless thinkingConfig.includeThoughts is true; translated
    answers carried them always (clients that walk the parts showed the reasoning)."""
    body = {"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-alias",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "4242", "reasoning_content": "Adding."}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}
    upstream.push(Behaviour(body=json.dumps(body).encode()))
    cfg = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=include)) if include else None
    resp = await client.aio.models.generate_content(model="gpt-alias", contents="What is 4200 + 42?", config=cfg)
    assert resp.candidates and resp.candidates[0].content and resp.candidates[0].content.parts
    parts = resp.candidates[0].content.parts
    assert [p.text for p in parts if p.thought] == (["Adding."] if include else [])
    assert resp.text == "4242"


async def test_count_tokens_with_a_generate_request_names_the_mapped_model(apex: ApexInstance, upstream: FakeUpstream) -> None:
    """countTokens with generateContentRequest on a model_map hit: the URL named the upstream
    model, the body still the client's alias (a model the upstream does not know)."""
    body = {"generateContentRequest": {"model": "models/gm-alias", "contents": [{"role": "user", "parts": [{"text": "hi"}]}]}}
    async with aiohttp.ClientSession() as s, s.post(f"{apex.url}/v1beta/models/gm-alias:countTokens",
                                                    headers={"x-goog-api-key": KEY}, json=body) as r:
        assert r.status == 200, await r.text()
    sent = upstream.requests[-1]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:countTokens"
    assert sent.json["generateContentRequest"]["model"] == "models/gemini-2.5-flash"


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_media_a_tool_returned_reaches_other_protocols(kind: str, apex: ApexInstance, upstream: FakeUpstream) -> None:
    """A functionResponse's parts (a screenshot the tool took) reach OpenAI and Anthropic
    channels after the result (they were dropped and the answer was still a 200)."""
    model = CHANNEL_MODELS[kind]
    call = {"functionCall": {"name": "screenshot", "args": {}}}
    result = {"functionResponse": {"name": "screenshot", "response": {"output": "taken"},
                                   "parts": [{"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}]}}
    body = {"contents": [{"role": "user", "parts": [{"text": "look"}]}, {"role": "model", "parts": [call]},
                         {"role": "user", "parts": [result]}],
            "tools": [{"functionDeclarations": [{"name": "screenshot", "description": "take one"}]}]}
    async with aiohttp.ClientSession() as s, s.post(f"{apex.url}/v1beta/models/{model}:generateContent",
                                                    headers={"x-goog-api-key": KEY}, json=body) as r:
        assert r.status == 200, await r.text()
    sent = json.dumps(upstream.requests[-1].json)
    assert "iVBORw0KGgo=" in sent, sent


@pytest.mark.parametrize("kind", ["gemini", "openai", "anthropic"])
async def test_integral_floats_in_int_fields_are_ints(kind: str, client: genai.Client, apex: ApexInstance,
                                                      upstream: FakeUpstream) -> None:
    """google-genai types topK as a float and sends "topK": 4.0, which Gemini serves (proto3 JSON):
    every channel serves it, Anthropic gets top_k 4 (was a 400 "Expected int, got float" on OpenAI
    and Anthropic channels). The other int32 fields take 300.0 too; 4.5 is Gemini's 400."""
    resp = await client.aio.models.generate_content(model=CHANNEL_MODELS[kind], contents="hi",
                                                    config=types.GenerateContentConfig(top_k=4))
    assert resp.text
    if kind == "anthropic":
        top_k = upstream.requests[-1].json["top_k"]
        assert top_k == 4 and type(top_k) is int
    url = f"{apex.url}/v1beta/models/{CHANNEL_MODELS[kind]}:generateContent"
    config = {"maxOutputTokens": 300.0, "candidateCount": 1.0, "seed": 7.0, "thinkingConfig": {"thinkingBudget": 1024.0}}
    async with aiohttp.ClientSession() as s:
        async with s.post(url, headers={"x-goog-api-key": KEY},
                          json={"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": config}) as r:
            assert r.status == 200, await r.text()
        sent = upstream.requests[-1].json
        if kind == "openai":
            assert sent["max_tokens"] == 300 and sent["seed"] == 7 and type(sent["max_tokens"]) is int
        elif kind == "anthropic":
            assert sent["max_tokens"] == 300 and type(sent["max_tokens"]) is int
        if kind != "gemini":  # Gemini itself answers a fraction so
            async with s.post(url, headers={"x-goog-api-key": KEY},
                              json={"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"topK": 4.5}}) as r:
                assert r.status == 400
                assert "generationConfig.topK" in (await r.json())["error"]["message"]


@pytest.mark.parametrize("model", ["gpt-alias", "deepseek-reasoner"])
async def test_json_mode_on_openai_says_json(model: str, client: genai.Client, upstream: FakeUpstream) -> None:
    """JSON mode without a schema becomes json_object, which OpenAI (and DeepSeek) refuse unless
    a message says "json" (a 400; Gemini has no such rule): Apex asks for JSON in the system
    message when no message says it, and leaves a request that does as sent."""
    config = types.GenerateContentConfig(response_mime_type="application/json")
    resp = await client.aio.models.generate_content(model=model, contents="List three primary colors.", config=config)
    assert resp.text
    sent = upstream.requests[-1].json
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["messages"][0]["role"] == "system" and "JSON" in sent["messages"][0]["content"]
    await client.aio.models.generate_content(model=model, contents="List three primary colors as Json.", config=config)
    assert upstream.requests[-1].json["messages"] == [{"role": "user", "content": "List three primary colors as Json."}]


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_optional_tool_config_fields_and_every_dropped_tool_named(kind: str, client: genai.Client,
                                                                        upstream: FakeUpstream) -> None:
    """Gemini takes a toolConfig without functionCallingConfig (the SDK's ToolConfig(retrieval_config=...),
    for Maps grounding) and a functionCallingConfig without mode (AUTO): both were a 400 on translated
    channels. Built-in tools are dropped and named, googleMaps and fileSearch too (they went unnamed)."""
    tools: list[Any] = [types.Tool(google_maps=types.GoogleMaps()), types.Tool(file_search=types.FileSearch(
        file_search_store_names=["fileSearchStores/x"])), TOOL]
    for tool_config in (types.ToolConfig(retrieval_config=types.RetrievalConfig(language_code="en")),
                        types.ToolConfig(function_calling_config=types.FunctionCallingConfig())):
        resp = await client.aio.models.generate_content(model=CHANNEL_MODELS[kind], contents="hi", config=types.GenerateContentConfig(
            tools=tools, tool_config=tool_config, automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)))
        assert resp.sdk_http_response is not None and resp.sdk_http_response.headers is not None
        assert resp.sdk_http_response.headers["x-apex-dropped-tools"] == "googleMaps,fileSearch"
        sent = upstream.requests[-1].json
        assert [t.get("name") or t["function"]["name"] for t in sent["tools"]] == ["secret_retrieval_tool"]
        assert sent.get("tool_choice") in (None, "auto", {"type": "auto"})


@pytest.mark.parametrize("stream", [False, True])
async def test_logprobs_on_an_openai_channel(client: genai.Client, upstream: FakeUpstream, stream: bool) -> None:
    """responseLogprobs/logprobs become OpenAI's logprobs/top_logprobs, and its choices[0].logprobs
    come back as logprobsResult (and avgLogprobs for a whole answer), each chunk with its own
    tokens (they were dropped: no logprobsResult, no error)."""
    config = types.GenerateContentConfig(response_logprobs=True, logprobs=2)
    if stream:
        chunks = [c async for c in await client.aio.models.generate_content_stream(
            model="gpt-alias", contents="What is the capital of the UK?", config=config)]
        assert "".join(c.text or "" for c in chunks) == EXPECTED_STREAM["openai"]
        results = []
        for chunk in chunks:
            cand = chunk.candidates[0] if chunk.candidates else None
            if chunk.text:  # every text chunk carries the tokens of its own text
                assert cand is not None and cand.logprobs_result is not None
                results.append(cand.logprobs_result)
                assert "".join(c.token or "" for c in cand.logprobs_result.chosen_candidates or []) == chunk.text
    else:
        resp = await client.aio.models.generate_content(model="gpt-alias", contents="What is 4200 + 42?", config=config)
        cand = resp.candidates[0] if resp.candidates else None
        assert cand is not None and cand.logprobs_result is not None
        results = [cand.logprobs_result]
        chosen = cand.logprobs_result.chosen_candidates or []
        assert "".join(c.token or "" for c in chosen) == EXPECTED_TEXT["openai"]
        assert cand.avg_logprobs == pytest.approx(sum(c.log_probability or 0 for c in chosen) / len(chosen))
    sent = upstream.requests[-1].json
    assert sent["logprobs"] is True and sent["top_logprobs"] == 2
    for result in results:
        chosen, tops = result.chosen_candidates or [], result.top_candidates or []
        assert chosen
        for c, top in zip(chosen, tops, strict=True):
            assert c.token and c.log_probability == -len(c.token) / 100
            assert [a.token for a in top.candidates or []] == [c.token, c.token + "~1"]


def _cut_call_stream(kind: str) -> Behaviour:
    """The output limit cuts a call's arguments: Anthropic max_tokens mid tool_use, or Chat
    finish_reason length mid arguments, after a complete text."""
    if kind == "anthropic":
        events: list[dict[str, Any]] = [
            {"type": "message_start", "message": {**SIGNED_CALL, "content": [], "stop_reason": None}},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Reading."}},
            {"type": "content_block_stop", "index": 0},
            {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_01",
                                                                          "name": "secret_retrieval_tool", "input": {}}},
            {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"password": "mel'}},
            {"type": "content_block_stop", "index": 1},
            {"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": None}, "usage": {"output_tokens": 20}},
            {"type": "message_stop"}]
        return Behaviour(content_type="text/event-stream", events=named_events(events))
    chunks = [{"index": 0, "delta": {"role": "assistant", "content": "Reading."}, "finish_reason": None},
              {"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {
                  "name": "secret_retrieval_tool", "arguments": '{"password": "mel'}}]}, "finish_reason": None},
              {"index": 0, "delta": {}, "finish_reason": "length"}]
    return Behaviour(content_type="text/event-stream", events=[
        b"data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
                                "choices": [c]}).encode() + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"])


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
async def test_a_call_the_output_limit_cut_is_not_sent_whole(kind: str, client: genai.Client, upstream: FakeUpstream) -> None:
    """A tool call cut by the output limit reached the Gemini client as a finished functionCall
    with args {"_raw": half its JSON}, which Gemini CLI runs (Gemini only sends whole calls).
    It is left out, as for Responses clients, and MAX_TOKENS says the answer was cut."""
    upstream.push(_cut_call_stream(kind))
    cfg = types.GenerateContentConfig(tools=[TOOL], automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    chunks = [c async for c in await client.aio.models.generate_content_stream(
        model=CHANNEL_MODELS[kind], contents="secret for mellon", config=cfg)]
    parts = [p for c in chunks if c.candidates and c.candidates[0].content
             for p in c.candidates[0].content.parts or []]
    assert not any(p.function_call for p in parts)
    assert "".join(p.text or "" for p in parts) == "Reading."
    assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
