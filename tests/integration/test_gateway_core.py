"""Gateway core over real HTTP: the official SDKs -> Apex -> a fake OpenAI/Anthropic upstream."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import anthropic
import openai
import pytest
from multidict import CIMultiDict

import yarl

from apex.config.load import load_config_bytes
from apex.errors import ConfigError
from tests.conftest import ApexInstance, StartApex, basic_config
from tests.integration.fakes import Behaviour, FakeUpstream, error, fixture_bytes, split_events


from tests.conftest import ant, oai  # noqa: E402  # SDK clients closed by the sdk_clients fixture


async def test_openai_chat_nonstream_passthrough(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A chat completion comes back as the upstream sent it, and the upstream got the client's exact bytes."""
    inst = await start_apex(basic_config(upstream))
    client = oai(inst)
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "What is 4200 + 42?"}]
    )
    completion = raw.parse()
    expected = json.loads(fixture_bytes("openai_chat_nonstream.json"))
    assert completion.choices[0].message.content == expected["choices"][0]["message"]["content"]
    assert completion.model == "gpt-4o"
    assert completion.usage is not None and completion.usage.total_tokens == expected["usage"]["total_tokens"]
    assert raw.headers["x-apex-channel"] == "oa"
    assert raw.headers["x-request-id"]
    rec = upstream.requests[-1]
    assert rec.path == "/v1/chat/completions"
    assert rec.headers["Authorization"] == "Bearer sk-upstream-oa"
    assert rec.headers["OpenAI-Organization"] == "org-test"
    assert "vk-default" not in json.dumps(dict(rec.headers))
    assert rec.json == {"model": "gpt-4o", "messages": [{"role": "user", "content": "What is 4200 + 42?"}]}


async def test_untouched_body_bytes(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """When nothing must change, the upstream receives the client's body byte for byte."""
    inst = await start_apex(basic_config(upstream))
    body = b'{"messages": [{"role":"user","content":"hi \\u2028 there"}],   "model":"gpt-4o", "temperature": 0.5}'
    async with aiohttp.ClientSession() as s, s.post(f"{inst.openai_url}/chat/completions", data=body,
                      headers={"Authorization": "Bearer vk-default", "Content-Type": "application/json"}) as r:
        assert r.status == 200
    assert upstream.requests[-1].body == body


async def test_model_map_rewrites_only_model(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """model_map changes the model sent upstream; the client still sees its own model name."""
    cfg = basic_config(upstream)
    cfg["channels"][0]["model_map"] = {"gpt-4o": "gpt-4o-2024-08-06", "gpt-*": "gpt-4o-mini"}
    inst = await start_apex(cfg)
    raw = await oai(inst).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}], temperature=0.25
    )
    assert raw.headers["x-apex-upstream-model"] == "gpt-4o-2024-08-06"
    assert raw.parse().model == "gpt-4o"
    assert upstream.requests[-1].json == {"model": "gpt-4o-2024-08-06", "messages": [{"role": "user", "content": "x"}], "temperature": 0.25}
    raw = await oai(inst).chat.completions.with_raw_response.create(model="gpt-5", messages=[{"role": "user", "content": "x"}])
    assert raw.headers["x-apex-upstream-model"] == "gpt-4o-mini"
    assert raw.parse().model == "gpt-5"


async def test_openai_stream_text(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A streamed completion arrives as chunks whose text joins to the capture's text, usage chunk stripped."""
    inst = await start_apex(basic_config(upstream))
    stream = await oai(inst).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    texts, usage_chunks = [], 0
    async for chunk in stream:
        if not chunk.choices:
            usage_chunks += 1
            continue
        if chunk.choices[0].delta.content:
            texts.append(chunk.choices[0].delta.content)
    assert "".join(texts) == "The capital of the UK is London."
    assert usage_chunks == 0
    # Apex asked the upstream for usage so it can account tokens.
    assert upstream.requests[-1].json["stream_options"] == {"include_usage": True}


async def test_openai_stream_usage_when_asked(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A client asking include_usage gets the usage chunk, and the body goes upstream untouched."""
    inst = await start_apex(basic_config(upstream))
    stream = await oai(inst).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True},
    )
    usage = None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
    assert usage is not None and usage.total_tokens > 0


async def test_openai_stream_tool_calls_reassembled(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """The SDK's stream helper reassembles parallel tool calls streamed through Apex."""
    inst = await start_apex(basic_config(upstream))
    tools = [{"type": "function", "function": {"name": "secret_retrieval_tool", "parameters": {"type": "object", "properties": {"password": {"type": "string"}}}}}]
    async with oai(inst).chat.completions.stream(
        model="gpt-4o", messages=[{"role": "user", "content": "secrets"}], tools=tools  # type: ignore[arg-type]
    ) as stream:
        final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 2
    assert [json.loads(c.function.arguments) for c in calls] == [{"password": "mellon"}, {"password": "radiance"}]
    assert final.choices[0].finish_reason == "tool_calls"


async def test_anthropic_native_nonstream_and_stream(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """An Anthropic client reaches an Anthropic channel natively, with the provider's auth headers."""
    inst = await start_apex(basic_config(upstream))
    client = ant(inst)
    msg = await client.messages.create(model="claude-apex-test", max_tokens=100,
                                       messages=[{"role": "user", "content": "What is 4200 + 42?"}])
    assert msg.content[0].type == "text" and "4242" in msg.content[0].text
    rec = upstream.requests[-1]
    assert rec.path == "/v1/messages"
    assert rec.headers["x-api-key"] == "sk-ant-upstream"
    # The client's own anthropic-version goes through (this SDK sends its newest one).
    assert rec.headers["anthropic-version"] == client.default_headers["anthropic-version"]
    assert "Authorization" not in rec.headers
    async with client.messages.stream(model="claude-apex-test", max_tokens=100,
                                      messages=[{"role": "user", "content": "What is 4200 + 42?"}]) as stream:
        final = await stream.get_final_message()
    assert "4242" in final.content[0].text  # type: ignore[union-attr]
    assert final.usage.output_tokens > 0


async def test_anthropic_beta_header_forwarded(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """anthropic-version and anthropic-beta from an Anthropic client go through to the upstream."""
    inst = await start_apex(basic_config(upstream))
    await ant(inst).messages.create(
        model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}],
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
    )
    assert upstream.requests[-1].headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"


async def test_anthropic_beta_headers_sent_twice_reach_anthropic_as_one(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """Two anthropic-beta header lines (clients may send one per beta) go on as one, all betas kept."""
    inst = await start_apex(basic_config(upstream))
    body = json.dumps({"model": "claude-x", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
    headers = [("x-api-key", "vk-default"), ("anthropic-version", "2023-06-01"), ("content-type", "application/json"),
               ("anthropic-beta", "interleaved-thinking-2025-05-14"), ("anthropic-beta", "effort-2025-11-24, context-1m-2025-08-07")]
    async with aiohttp.ClientSession() as s, s.post(f"{inst.url}/v1/messages", data=body, headers=CIMultiDict(headers)) as r:
        assert r.status == 200, await r.text()
    assert upstream.requests[-1].headers.getall("anthropic-beta") == [
        "interleaved-thinking-2025-05-14,effort-2025-11-24,context-1m-2025-08-07"]


async def test_embeddings_and_models(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """Embeddings decode through the SDK (base64 by default) and /v1/models lists concrete names."""
    cfg = basic_config(upstream)
    cfg["channels"][0]["models"] = ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "gpt-*"]
    inst = await start_apex(cfg)
    client = oai(inst)
    emb = await client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert len(emb.data[0].embedding) == 128
    assert abs(sum(v * v for v in emb.data[0].embedding) - 1.0) < 1e-3
    models = await client.models.list()
    ids = sorted(m.id for m in models.data)
    assert ids == ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]


async def test_models_anthropic_shape(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """/v1/models answers in Anthropic's list shape when the request carries anthropic-version."""
    cfg = basic_config(upstream)
    cfg["routers"][0]["rules"][0]["match"]["model"] = ["claude-*", "claude-apex-test"]
    inst = await start_apex(cfg)
    page = await ant(inst).models.list()
    assert [m.id for m in page.data] == ["claude-apex-test"]
    # Its errors are Anthropic's too (they came in OpenAI's shape): a bad key, an unknown model.
    with pytest.raises(anthropic.AuthenticationError) as bad_key:
        await ant(inst, "nope").models.list()
    assert bad_key.value.body["type"] == "error"  # type: ignore[index]
    assert bad_key.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError) as unknown:
        await ant(inst).models.retrieve("claude-nope")
    assert unknown.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


async def test_anthropic_model_list_pages(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """limit, after_id and before_id page the list as Anthropic's API does (every page was the
    whole list with has_more false); the SDK's iteration walks every page."""
    cfg = basic_config(upstream)
    names = [f"claude-m{i:02d}" for i in range(25)]
    cfg["routers"][0]["rules"][0]["match"]["model"] = ["claude-*", *names]
    inst = await start_apex(cfg)
    client = ant(inst)
    first = await client.models.list(limit=10)
    assert [m.id for m in first.data] == names[:10] and first.has_more and first.last_id == names[9]
    after = await client.models.list(limit=10, after_id=names[19])
    assert [m.id for m in after.data] == names[20:] and not after.has_more
    before = await client.models.list(limit=3, before_id=names[5])
    assert [m.id for m in before.data] == names[2:5] and before.has_more
    assert [m.id async for m in client.models.list(limit=7)] == names  # all pages
    with pytest.raises(anthropic.BadRequestError):
        await client.models.list(limit=0)


async def test_request_id_echoed(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """The client's x-request-id comes back and goes upstream."""
    inst = await start_apex(basic_config(upstream))
    raw = await oai(inst).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}], extra_headers={"x-request-id": "rid-123"}
    )
    assert raw.headers["x-request-id"] == "rid-123"
    assert upstream.requests[-1].headers["x-request-id"] == "rid-123"


# --- errors ---------------------------------------------------------------------


async def test_bad_key_401_both_dialects(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A wrong key is 401 in the client's dialect, and nothing goes upstream."""
    inst = await start_apex(basic_config(upstream))
    with pytest.raises(openai.AuthenticationError) as oe:
        await oai(inst, "nope").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert oe.value.body["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(anthropic.AuthenticationError) as ae:
        await ant(inst, "nope").messages.create(model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert ae.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert ae.value.response.headers["x-request-id"]
    assert upstream.requests == []


async def test_missing_key_401(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """No key at all is 401 with an OpenAI-shaped body."""
    inst = await start_apex(basic_config(upstream))
    async with aiohttp.ClientSession() as s, s.post(f"{inst.openai_url}/chat/completions", json={"model": "gpt-4o", "messages": []}) as r:
        assert r.status == 401
        body = await r.json()
    assert body["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [(b"{not json", None), (b'{"messages": []}', "model"), (b'{"model": 5}', "model"), (b"", None), (b"[1,2]", None)],
)
async def test_bad_request_400(upstream: FakeUpstream, start_apex: StartApex, body: bytes, param: str | None) -> None:
    """Malformed JSON, a missing or mistyped model are 400 invalid_request_error."""
    inst = await start_apex(basic_config(upstream))
    async with aiohttp.ClientSession() as s, s.post(f"{inst.openai_url}/chat/completions", data=body,
                      headers={"Authorization": "Bearer vk-default"}) as r:
        assert r.status == 400
        err = (await r.json())["error"]
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param
    assert upstream.requests == []


async def test_body_too_large_413(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A body over max_body_bytes is 413: request_too_large for Anthropic clients."""
    cfg = basic_config(upstream)
    cfg["global"]["max_body_bytes"] = 1000
    inst = await start_apex(cfg)
    with pytest.raises(anthropic.APIStatusError) as ae:
        await ant(inst).messages.create(model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "x" * 2000}])
    assert ae.value.status_code == 413
    assert ae.value.body["error"]["type"] == "request_too_large"  # type: ignore[index]
    with pytest.raises(openai.APIStatusError) as oe:
        await oai(inst).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x" * 2000}])
    assert oe.value.status_code == 413
    assert oe.value.body["type"] == "invalid_request_error"  # type: ignore[index]


async def test_no_route_404(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A model no router routes is 404 not_found_error."""
    cfg = basic_config(upstream)
    del cfg["routers"][0]["channels"]
    inst = await start_apex(cfg)
    with pytest.raises(openai.NotFoundError) as oe:
        await oai(inst).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert oe.value.body["type"] == "not_found_error"  # type: ignore[index]


async def test_unknown_path_404_and_wrong_method(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """An unknown path is a JSON 404; GET on a POST endpoint is 405."""
    inst = await start_apex(basic_config(upstream))
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{inst.url}/v2/nothing") as r:
            assert r.status == 404
            assert (await r.json())["error"]["type"] == "not_found_error"
            assert r.headers["x-request-id"]
            assert float(r.headers["x-apex-overhead-ms"]) >= 0  # every response carries it (README)
        async with s.get(f"{inst.openai_url}/chat/completions") as r:
            assert r.status == 405
            assert float(r.headers["x-apex-overhead-ms"]) >= 0


def _requests_counted(inst: ApexInstance) -> float:
    return sum(sample.value for metric in inst.gateway.metrics.registry.collect() if metric.name == "apex_requests"
               for sample in metric.samples if sample.name == "apex_requests_total")


async def test_wrong_methods_and_odd_paths_are_answered_in_the_paths_protocol_and_counted(
    upstream: FakeUpstream, start_apex: StartApex,
) -> None:
    """405 with Allow wherever the path exists under another method (Gemini's paths too; they
    were 404s), 404 for a path that only decodes to an API path (%2F), and each of these
    answers, like a refused Expect (417), counts in apex_requests_total (they did not)."""
    inst = await start_apex(basic_config(upstream))
    gemini = {"x-goog-api-key": "vk-default"}
    cases = [
        ("GET", "/v1/chat/completions", {}, 405, "POST"),
        ("PUT", "/v1beta/models/gemini-2.5-flash:generateContent", gemini, 405, "POST"),
        ("DELETE", "/v1beta/models/gemini-2.5-flash:streamGenerateContent", gemini, 405, "POST"),
        ("GET", "/v1beta/models/gemini-2.5-flash:generateContent", gemini, 405, "POST"),
        ("POST", "/v1beta/models", gemini, 405, "GET"),
        ("POST", "/health", {}, 405, "GET, HEAD"),  # Apex's own paths too (they were 404 "unknown path")
        ("DELETE", "/ready", {}, 405, "GET, HEAD"),
        ("POST", "/metrics", {}, 405, "GET"),
        ("POST", "/v1/chat%2Fcompletions", {}, 404, None),
        ("POST", "/v1%2Fmessages", {}, 404, None),
        ("POST", "/v1/nope", {}, 404, None),
    ]
    before = _requests_counted(inst)
    async with aiohttp.ClientSession() as s:
        for method, path, headers, status, allow in cases:
            url = yarl.URL(inst.url + path, encoded=True)
            async with s.request(method, url, headers={"Authorization": "Bearer vk-default", **headers}, data=b"{}") as r:
                assert (r.status, r.headers.get("Allow")) == (status, allow), (method, path, await r.text())
                body = await r.json()
                if "goog" in str(headers):
                    assert body["error"]["code"] == status and body["error"]["status"], body  # Google's shape
                else:
                    assert "use POST" not in body["error"]["message"] or status == 405, body
        async with s.post(f"{inst.openai_url}/chat/completions", headers={"Expect": "fancy"}, data=b"{}") as r:
            assert r.status == 417
        async with s.post(f"{inst.url}/v1beta/models/gemini-2.5-flash:generateContent",
                          headers={"Expect": "fancy", **gemini}, data=b"{}") as r:
            assert r.status == 417 and (await r.json())["error"]["code"] == 417  # Google's code is the status (was 400)
    await asyncio.sleep(0.05)  # counted once the answer is out
    assert _requests_counted(inst) - before == len(cases) + 2


async def test_upstream_400_returned_once(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """An upstream 400 goes back to the client unretried, keeping its message and type."""
    inst = await start_apex(basic_config(upstream))
    upstream.push(error(400, "bad temperature"))
    with pytest.raises(openai.BadRequestError) as oe:
        await oai(inst).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert "bad temperature" in oe.value.message
    assert oe.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    assert upstream.hits("/chat/completions") == 1


async def test_upstream_401_becomes_502(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """An upstream 401 (the channel's key) is a 502 to the client, after trying again."""
    cfg = basic_config(upstream)
    cfg["global"]["retries"]["max_attempts"] = 2
    inst = await start_apex(cfg)
    upstream.push(error(401, "bad key"), error(401, "bad key"))
    with pytest.raises(openai.APIStatusError) as oe:
        await oai(inst).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert oe.value.status_code == 502
    assert upstream.hits("/chat/completions") == 2


async def test_upstream_429_keeps_retry_after(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """When every attempt gets 429, the client gets 429 with the upstream's Retry-After."""
    cfg = basic_config(upstream)
    cfg["global"]["retries"] = {"max_attempts": 1}
    inst = await start_apex(cfg)
    upstream.push(error(429, "slow down", retry_after="7"))
    with pytest.raises(openai.RateLimitError) as oe:
        await oai(inst).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert oe.value.response.headers["retry-after"] == "7"


async def test_connection_refused_502(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A channel nobody listens on is a 502 api_error."""
    cfg = basic_config(upstream)
    cfg["channels"][0]["base_url"] = "http://127.0.0.1:9/v1"
    cfg["global"]["retries"] = {"max_attempts": 1}
    inst = await start_apex(cfg)
    with pytest.raises(openai.APIStatusError) as oe:
        await oai(inst).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert oe.value.status_code == 502
    assert oe.value.body["type"] == "api_error"  # type: ignore[index]


async def test_first_byte_timeout_504(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """An upstream that stalls past first_byte_ms is a 504 timeout_error."""
    cfg = basic_config(upstream)
    cfg["global"]["timeouts"] = {"first_byte_ms": 200}
    cfg["global"]["retries"] = {"max_attempts": 1}
    inst = await start_apex(cfg)
    upstream.push(Behaviour(stall=2.0))
    with pytest.raises(openai.APIStatusError) as oe:
        await oai(inst).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert oe.value.status_code == 504
    assert oe.value.body["type"] == "timeout_error"  # type: ignore[index]


async def test_malformed_upstream_502(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A 200 that is not JSON is a failed attempt: 502."""
    cfg = basic_config(upstream)
    cfg["global"]["retries"] = {"max_attempts": 1}
    inst = await start_apex(cfg)
    upstream.push(Behaviour(body=b"<html>oops</html>", content_type="text/html"))
    with pytest.raises(openai.APIStatusError) as oe:
        await oai(inst).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert oe.value.status_code == 502


async def test_stream_cut_midway_gets_error_event(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A stream cut after its first chunk is not retried; the client gets an error event, no [DONE]."""
    inst = await start_apex(basic_config(upstream))
    events = split_events(fixture_bytes("openai_chat_stream_text.sse"))
    upstream.push(Behaviour(content_type="text/event-stream", events=events, cut_after=3))
    async with aiohttp.ClientSession() as s, s.post(f"{inst.openai_url}/chat/completions", headers={"Authorization": "Bearer vk-default"},
                      json={"model": "gpt-4o", "stream": True, "messages": []}) as r:
        assert r.status == 200
        text = (await r.read()).decode()
    assert '"error"' in text and "[DONE]" not in text
    assert upstream.hits("/chat/completions") == 1


async def test_stream_idle_timeout_error_event(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """An upstream stream that goes quiet past stream_idle_ms ends with an Anthropic error event."""
    cfg = basic_config(upstream)
    cfg["global"]["timeouts"] = {"stream_idle_ms": 300}
    inst = await start_apex(cfg)
    events = split_events(fixture_bytes("anthropic_messages_stream_text.sse"))
    upstream.push(Behaviour(content_type="text/event-stream", events=events, stall_after=3))
    async with aiohttp.ClientSession() as s, s.post(f"{inst.url}/v1/messages", headers={"x-api-key": "vk-default", "anthropic-version": "2023-06-01"},
                      json={"model": "claude-x", "max_tokens": 5, "stream": True, "messages": []}) as r:
        text = (await r.read()).decode()
    assert "event: error" in text and "timeout_error" in text
    assert "message_stop" not in text


async def test_client_disconnect_cancels_upstream(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A client that hangs up mid-stream makes Apex drop its upstream request at once."""
    inst = await start_apex(basic_config(upstream))
    events = split_events(fixture_bytes("openai_chat_stream_text.sse"))
    upstream.push(Behaviour(content_type="text/event-stream", events=events * 20, gap=0.05))
    async with aiohttp.ClientSession() as s:
        resp = await s.post(f"{inst.openai_url}/chat/completions", headers={"Authorization": "Bearer vk-default"},
                            json={"model": "gpt-4o", "stream": True, "messages": []})
        await resp.content.readany()
        resp.close()
    for _ in range(40):
        if upstream.active_streams == 0:
            break
        await asyncio.sleep(0.05)
    assert upstream.active_streams == 0


async def test_200_concurrent_streams(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """200 concurrent streams all complete with the full text."""
    inst = await start_apex(basic_config(upstream))
    client = oai(inst)

    async def one() -> str:
        stream = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True)
        parts = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
        return "".join(parts)

    results = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(200))), 60)
    assert results == ["The capital of the UK is London."] * 200


async def test_health(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """/health needs no key and reports status, version and uptime."""
    inst = await start_apex(basic_config(upstream))
    async with aiohttp.ClientSession() as s, s.get(f"{inst.url}/health", headers={"x-request-id": "h-1"}) as r:
        body = await r.json()
        assert r.headers["x-request-id"] == "h-1"
    assert body["status"] == "healthy" and body["version"] and body["uptime_seconds"] >= 0


async def test_mock_provider_both_sdks(start_apex: StartApex) -> None:
    """The mock provider answers both SDKs, streamed text equal to non-streamed text."""
    inst = await start_apex({
        "global": {"auth": {"keys": ["k"]}},
        "channels": [{"name": "demo", "provider_type": "mock", "models": ["*"]}],
        "routers": [{"name": "default", "channels": [{"name": "demo"}]}],
    })
    client = oai(inst, "k")
    full = await client.chat.completions.create(model="demo-1", messages=[{"role": "user", "content": "ping"}])
    stream = await client.chat.completions.create(model="demo-1", messages=[{"role": "user", "content": "ping"}], stream=True)
    parts = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
    assert "".join(parts) == full.choices[0].message.content and "ping" in "".join(parts)
    msg = await ant(inst, "k").messages.create(model="demo-1", max_tokens=100, messages=[{"role": "user", "content": "ping"}])
    assert msg.content[0].text == full.choices[0].message.content  # type: ignore[union-attr]
    emb = await client.embeddings.create(model="demo-emb", input=["a", "b"])
    assert len(emb.data) == 2 and emb.data[0].embedding != emb.data[1].embedding


@pytest.mark.parametrize("name", ["openrouter_chat_stream_error_chunk.sse", "groq_chat_stream_midstream_error.sse"])
async def test_upstream_error_event_in_200_stream_reaches_sdk(upstream: FakeUpstream, start_apex: StartApex, name: str) -> None:
    """In-band upstream errors (OpenRouter error chunk, Groq `event: error`) reach the SDK as errors, never dropped."""
    inst = await start_apex(basic_config(upstream))
    upstream.push(Behaviour(content_type="text/event-stream", events=split_events(fixture_bytes(name))))
    stream = await oai(inst).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True)
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass


async def test_mock_stream_usage_accounted_not_shown(start_apex: StartApex) -> None:
    """A mock stream's usage is counted from the chunk Apex asked for, which the client (not asking) never sees."""
    inst = await start_apex({
        "global": {"auth": {"keys": ["k"]}},
        "channels": [{"name": "demo", "provider_type": "mock", "models": ["*"]}],
        "routers": [{"name": "default", "channels": [{"name": "demo"}]}],
    })
    stream = await oai(inst, "k").chat.completions.create(model="demo-1", messages=[{"role": "user", "content": "ping"}], stream=True)
    assert all(c.choices for c in [c async for c in stream])
    async with aiohttp.ClientSession() as s, s.get(f"{inst.url}/metrics") as r:
        text = await r.text()
    completion = [ln for ln in text.splitlines() if ln.startswith("apex_tokens_total{") and 'type="completion"' in ln]
    assert completion and float(completion[0].rsplit(" ", 1)[1]) == 8.0  # 8 words: "This is Apex's mock provider. You said: ping"
    assert "apex_tokens_estimated_total{" not in text or all(ln.endswith(" 0.0") for ln in text.splitlines() if ln.startswith("apex_tokens_estimated_total{"))


async def test_mock_quotes_what_the_user_typed_last(start_apex: StartApex) -> None:
    """Claude Code leads its user turn with a <system-reminder> block: the demo quotes the prompt, not that."""
    inst = await start_apex({
        "global": {"auth": {"keys": ["k"]}},
        "channels": [{"name": "demo", "provider_type": "mock", "models": ["*"]}],
        "routers": [{"name": "default", "channels": [{"name": "demo"}]}],
    })
    msg = await ant(inst, "k").messages.create(model="demo-1", max_tokens=100, messages=[{"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>\n" + "context " * 50 + "\n</system-reminder>"},
        {"type": "text", "text": "hello"}]}])
    assert msg.content[0].type == "text" and msg.content[0].text == "This is Apex's mock provider. You said: hello"


async def test_stream_without_done_after_finish_is_clean(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """An OpenAI-compatible server that omits [DONE] after its finish chunk is not reported as an error."""
    inst = await start_apex(basic_config(upstream))
    events = [e for e in split_events(fixture_bytes("openai_chat_stream_text.sse")) if b"[DONE]" not in e]
    upstream.push(Behaviour(content_type="text/event-stream", events=events))
    stream = await oai(inst).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "The capital of the UK is London."


async def _raw_upstream(answer: bytes, *, reset: bool = False) -> asyncio.Server:
    """A TCP server that reads one request head and answers ``answer`` bytes (or resets)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            if reset:
                writer.transport.abort()
                return
            writer.write(answer)
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


@pytest.mark.parametrize(
    ("answer", "reset", "says"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", False, "bad answer from 127.0.0.1:"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"id\":", False, "failed after sending the request to 127.0.0.1:"),
        (b"", True, "failed after sending the request to 127.0.0.1:"),
    ],
    ids=["not-http", "cut-body", "reset"],
)
async def test_broken_upstream_wire_is_a_502_in_both_protocols(
    upstream: FakeUpstream, start_apex: StartApex, answer: bytes, reset: bool, says: str
) -> None:
    """An upstream that speaks something other than HTTP, cuts its body short, or resets the
    connection gives each client a 502 api_error in its own protocol, naming the channel."""
    raw = await _raw_upstream(answer, reset=reset)
    port = raw.sockets[0].getsockname()[1]
    try:
        cfg = basic_config(upstream)
        cfg["channels"][0]["base_url"] = f"http://127.0.0.1:{port}/v1"
        cfg["channels"][1]["base_url"] = f"http://127.0.0.1:{port}"
        cfg["global"]["retries"] = {"max_attempts": 1}
        inst = await start_apex(cfg)
        with pytest.raises(openai.APIStatusError) as oe:
            await oai(inst).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        assert oe.value.status_code == 502
        assert oe.value.body["type"] == "api_error"  # type: ignore[index]
        assert says in oe.value.body["message"] and "oa" in oe.value.body["message"]  # type: ignore[index]
        with pytest.raises(anthropic.APIStatusError) as ae:
            await ant(inst).messages.create(model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "x"}])
        assert ae.value.status_code == 502
        assert ae.value.body["error"]["type"] == "api_error"  # type: ignore[index]
        assert says in ae.value.body["error"]["message"]  # type: ignore[index]
    finally:
        raw.close()
        await raw.wait_closed()


async def test_requests_the_parser_refuses_or_that_time_out_are_counted(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A request aiohttp's parser refuses (400) and a head that never finishes (408) were
    answered but missing from apex_requests_total and the access log."""
    cfg = basic_config(upstream)
    cfg["global"]["client_timeouts"] = {"header_read_ms": 200}
    inst = await start_apex(cfg)
    before = _requests_counted(inst)
    for data in (b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
                 b"POST /v1/messages HTTP/1.1\r\nHost: a\r\n"):  # never finished: 408 from the sweep
        reader, writer = await asyncio.open_connection("127.0.0.1", inst.port)
        writer.write(data)
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.split(b" ", 2)[1] in (b"400", b"408"), answer
    await asyncio.sleep(0.05)
    assert _requests_counted(inst) - before == 2


async def test_a_head_sent_byte_by_byte_times_out_in_its_paths_protocol(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """The 408 for a slow head on /v1/messages came in OpenAI's shape when the head arrived a
    byte at a time (the path was read from the first read only)."""
    cfg = basic_config(upstream)
    cfg["global"]["client_timeouts"] = {"header_read_ms": 300}
    inst = await start_apex(cfg)
    reader, writer = await asyncio.open_connection("127.0.0.1", inst.port)
    for byte in b"POST /v1/messages HTTP/1.1\r\nHost: a\r\n":
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.005)  # one read per byte on Apex's side
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["type"] == "error"  # Anthropic's error object


async def test_channel_headers_replace_apex_ones_whatever_their_case(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A channel header naming one Apex sets replaces it (a lower-case ``authorization`` went
    out beside the key's ``Authorization``), and a channel's own User-Agent wins over the
    client's on a native hop (the client's replaced it)."""
    cfg = basic_config(upstream)
    cfg["channels"][0]["headers"] = {"authorization": "Bearer sk-from-headers", "User-Agent": "corp-agent/1"}
    inst = await start_apex(cfg)
    await oai(inst).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    rec = upstream.requests[-1]
    assert rec.headers.getall("Authorization") == ["Bearer sk-from-headers"]
    assert rec.headers.getall("User-Agent") == ["corp-agent/1"]
    await ant(inst).messages.create(model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert "anthropic" in upstream.requests[-1].headers["User-Agent"].lower()  # the client's, on other channels


@pytest.mark.parametrize("name", ["Host", "content-length", "Transfer-Encoding", "Connection"])
def test_framing_headers_are_refused_in_channel_headers(upstream: FakeUpstream, name: str) -> None:
    """Host, Content-Length, Transfer-Encoding... are Apex's per request: a second copy is a
    request servers must refuse (or a smuggling shape); the config names the key."""
    cfg = basic_config(upstream)
    cfg["channels"][0]["headers"] = {name: "x"}
    with pytest.raises(ConfigError) as info:
        load_config_bytes(json.dumps(cfg).encode())
    assert info.value.path == f"channels[0].headers.{name}"


async def test_ollama_parallel_calls_reach_the_openai_sdk_as_two_calls(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """Ollama numbers every parallel call 0 (P3); passed through as is, the SDK's stream helper
    built one call get_weatherget_weather with arguments {"city":"Paris"}{"city":"Rome"}."""
    cfg = basic_config(upstream)
    cfg["channels"][0] = {"name": "oa", "provider_type": "ollama", "base_url": upstream.openai_url}
    inst = await start_apex(cfg)

    def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
        body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "llama3.1",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    calls = [{"index": 0, "id": f"call_{c}", "type": "function",
              "function": {"name": "get_weather", "arguments": json.dumps({"city": c})}} for c in ("Paris", "Rome")]
    upstream.push(Behaviour(content_type="text/event-stream", events=[
        chunk({"role": "assistant", "content": ""}), chunk({"tool_calls": [calls[0]]}), chunk({"tool_calls": [calls[1]]}),
        chunk({}, "tool_calls"), b"data: [DONE]\n\n"]))
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}
    async with oai(inst).chat.completions.stream(model="llama3.1", messages=[{"role": "user", "content": "x"}],
                                                 tools=[tool]) as stream:  # type: ignore[list-item]
        final = await stream.get_final_completion()
    got = final.choices[0].message.tool_calls or []
    assert [(c.id, c.function.arguments) for c in got] == [
        ("call_Paris", '{"city": "Paris"}'), ("call_Rome", '{"city": "Rome"}')]


@pytest.mark.parametrize("client", ["openai", "anthropic"])
async def test_stream_usage_false_never_sends_stream_options(upstream: FakeUpstream, start_apex: StartApex,
                                                             client: str) -> None:
    """A server that refuses stream_options (422 on every stream) is reachable with
    "stream_usage": false: Apex adds it neither passed through nor translated."""
    cfg = basic_config(upstream)
    cfg["channels"][0] = {"name": "oa", "provider_type": "openai_compatible", "base_url": upstream.openai_url,
                          "stream_usage": False}
    cfg["routers"][0]["rules"] = []
    inst = await start_apex(cfg)
    if client == "openai":
        stream = await oai(inst).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True)
        _ = [c async for c in stream]
    else:
        async with ant(inst).messages.stream(model="m", max_tokens=20, messages=[{"role": "user", "content": "x"}]) as s:
            await s.get_final_message()
    assert "stream_options" not in upstream.requests[-1].json


async def test_odd_queries_paths_and_ids_get_proper_answers(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """limit=² is a 400 (a 500); a path with an encoded newline gets the JSON 404, counted (a
    plain-text one, uncounted); /ready echoes only a safe x-request-id; a ?key= beside
    Anthropic's ?beta=true is not forwarded (the client's Apex key reached the provider)."""
    inst = await start_apex(basic_config(upstream))
    async with aiohttp.ClientSession() as s:
        async with s.get(yarl.URL(f"{inst.url}/v1/models?limit=%C2%B2", encoded=True),
                         headers={"x-api-key": "vk-default", "anthropic-version": "2023-06-01"}) as r:
            assert r.status == 400 and (await r.json())["type"] == "error"
        async with s.post(yarl.URL(f"{inst.url}/nope%0A", encoded=True)) as r:
            assert r.status == 404 and (await r.json())["error"]["type"] == "not_found_error"
            assert r.headers["x-request-id"]
        async with s.get(f"{inst.url}/ready", headers={"x-request-id": "x" * 8000}) as r:
            assert r.headers["x-request-id"] != "x" * 8000
        async with s.post(f"{inst.url}/v1/messages?beta=true&key=vk-default",
                          headers={"x-api-key": "vk-default", "anthropic-version": "2023-06-01"},
                          json={"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}) as r:
            assert r.status == 200
    assert upstream.requests[-1].query == "beta=true"
