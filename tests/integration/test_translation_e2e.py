"""Protocol translation end to end: the official SDKs -> Apex -> a fake upstream of another protocol."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.conftest import StartApex, ant, oai
from tests.integration.fakes import Behaviour, FakeUpstream, error, fixture_bytes, named_events, split_events

TOOLS_OPENAI = [{"type": "function", "function": {
    "name": "secret_retrieval_tool", "description": "A tool that requires a password.",
    "parameters": {"type": "object", "properties": {"password": {"type": "string"}}, "required": ["password"]}}}]
TOOLS_ANTHROPIC = [{"name": "secret_retrieval_tool", "description": "A tool that requires a password.",
                    "input_schema": {"type": "object", "properties": {"password": {"type": "string"}}, "required": ["password"]}}]


def config(upstream: FakeUpstream) -> dict[str, Any]:
    return {
        "global": {"auth": {"keys": ["k"]}, "retries": {"max_attempts": 1}},
        "logging": {"level": "error"},
        "channels": [
            {"name": "an", "provider_type": "anthropic", "base_url": upstream.url, "api_key": "sk-ant"},
            {"name": "gm", "provider_type": "gemini", "base_url": upstream.url, "api_key": "g-key"},
            {"name": "oa", "provider_type": "openai", "base_url": upstream.openai_url, "api_key": "sk-oa"},
            {"name": "ds", "provider_type": "deepseek", "base_url": upstream.openai_url, "api_key": "sk-ds",
             "anthropic_base_url": upstream.url + "/anthropic"},
        ],
        "routers": [{"name": "r", "rules": [
            {"match": {"model": "claude-*"}, "channels": [{"name": "an"}]},
            {"match": {"model": ["gemini-*", "text-embedding-004"]}, "channels": [{"name": "gm"}]},
            {"match": {"model": "deepseek-*"}, "channels": [{"name": "ds"}]},
        ], "channels": [{"name": "oa"}]}],
    }


async def test_openai_client_anthropic_upstream_nonstream(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """An OpenAI chat request is translated to Anthropic Messages and the answer back to a ChatCompletion."""
    inst = await start_apex(config(upstream))
    done = await oai(inst, "k").chat.completions.create(
        model="claude-apex", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 4200 + 42?"}],
        max_tokens=200,
    )
    assert done.choices[0].message.content == "4200 + 42 = 4242"
    assert done.choices[0].finish_reason == "stop"
    assert done.model == "claude-apex"
    sent = upstream.requests[-1]
    assert sent.path == "/v1/messages" and sent.headers["x-api-key"] == "sk-ant"
    assert sent.json["system"] in ("Be brief.", [{"type": "text", "text": "Be brief."}])
    assert sent.json["max_tokens"] == 200 and sent.json["messages"][0]["role"] == "user"
    expected = json.loads(fixture_bytes("anthropic_messages_nonstream.json"))["usage"]
    assert done.usage is not None and done.usage.completion_tokens == expected["output_tokens"]


async def test_openai_client_anthropic_upstream_stream_tools(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """Anthropic tool_use streams become OpenAI tool-call deltas the SDK reassembles into valid calls."""
    inst = await start_apex(config(upstream))
    async with oai(inst, "k").chat.completions.stream(
        model="claude-apex", messages=[{"role": "user", "content": "secrets for mellon, radiance"}], tools=TOOLS_OPENAI  # type: ignore[arg-type]
    ) as stream:
        final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 2
    assert sorted(json.loads(c.function.arguments)["password"] for c in calls) == ["mellon", "radiance"]
    assert all(c.id for c in calls) and len({c.id for c in calls}) == 2
    assert final.choices[0].finish_reason == "tool_calls"
    assert upstream.requests[-1].json["tools"][0]["input_schema"]["properties"]["password"]["type"] == "string"


async def test_openai_client_anthropic_stream_usage(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """include_usage gives a final usage chunk from Anthropic's cumulative usage."""
    inst = await start_apex(config(upstream))
    stream = await oai(inst, "k").chat.completions.create(
        model="claude-apex", messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True}
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage is not None:
            usage = chunk.usage
    assert text == "4200 + 42 = 4242"
    assert usage is not None and usage.completion_tokens == 15 and usage.prompt_tokens == 17
    # The translated stream's usage is accounted, too.
    async with aiohttp.ClientSession() as s, s.get(f"{inst.url}/metrics") as r:
        metrics = await r.text()
    completion = [line for line in metrics.splitlines() if line.startswith("apex_tokens_total{") and 'type="completion"' in line]
    assert completion and float(completion[0].rsplit(" ", 1)[1]) == 15.0


async def test_openai_client_gemini_upstream(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """OpenAI chat -> Gemini generateContent with x-goog-api-key, and Gemini's answer back."""
    inst = await start_apex(config(upstream))
    done = await oai(inst, "k").chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "What is 4200 + 42?"}])
    sent = upstream.requests[-1]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == "g-key"
    assert sent.json["contents"][0]["parts"][0]["text"] == "What is 4200 + 42?"
    assert done.choices[0].message.content and "4242" in done.choices[0].message.content
    assert done.usage is not None and done.usage.total_tokens == 115


async def test_openai_client_audio_reaches_gemini_as_inline_data(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """An input_audio part (wav, mp3) goes to Gemini as audio inlineData, as Gemini takes audio
    (it was a 400 "content part type 'input_audio' is not supported by Gemini")."""
    inst = await start_apex(config(upstream))
    content: Any = [{"type": "text", "text": "Transcribe these."},
                    {"type": "input_audio", "input_audio": {"data": "UklGRgAAAABXQVZF", "format": "wav"}},
                    {"type": "input_audio", "input_audio": {"data": "SUQzBAAAAAAA", "format": "mp3"}}]
    done = await oai(inst, "k").chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": content}])
    assert done.choices[0].message.content
    assert upstream.requests[-1].json["contents"][0]["parts"] == [
        {"text": "Transcribe these."}, {"inlineData": {"mimeType": "audio/wav", "data": "UklGRgAAAABXQVZF"}},
        {"inlineData": {"mimeType": "audio/mp3", "data": "SUQzBAAAAAAA"}}]


async def test_openai_client_gemini_stream_function_calls(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A Gemini stream with function calls ends as tool_calls, and the SDK gets both calls."""
    inst = await start_apex(config(upstream))
    async with oai(inst, "k").chat.completions.stream(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "secrets"}], tools=TOOLS_OPENAI  # type: ignore[arg-type]
    ) as stream:
        final = await stream.get_final_completion()
    sent = upstream.requests[-1]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent" and sent.query == "alt=sse"
    calls = final.choices[0].message.tool_calls
    assert calls is not None and [json.loads(c.function.arguments) for c in calls] == [{"password": "mellon"}, {"password": "radiance"}]
    assert final.choices[0].finish_reason == "tool_calls"


async def test_gemini_split_finish_is_tool_use_for_anthropic(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """Gemini 3's function call with a later STOP chunk still ends an Anthropic turn as tool_use."""
    inst = await start_apex(config(upstream))
    upstream.push(Behaviour(content_type="text/event-stream", events=split_events(fixture_bytes("gemini_stream_function_call_split_finish.sse"))))
    async with ant(inst, "k").messages.stream(model="gemini-3-pro", max_tokens=100, messages=[{"role": "user", "content": "country?"}],
                                              tools=TOOLS_ANTHROPIC) as stream:  # type: ignore[arg-type]
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["tool_use"]


async def test_anthropic_client_openai_upstream_nonstream(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """An Anthropic Messages request reaches an OpenAI channel as chat, and comes back as a Message."""
    inst = await start_apex(config(upstream))
    msg = await ant(inst, "k").messages.create(model="gpt-4o", max_tokens=100, system="Be brief.",
                                               messages=[{"role": "user", "content": "What is 4200 + 42?"}])
    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions" and sent.headers["Authorization"] == "Bearer sk-oa"
    assert sent.json["messages"][0] == {"role": "system", "content": "Be brief."}
    assert msg.content[0].text == "\\(4200 + 42 = 4242\\)."  # type: ignore[union-attr]
    assert msg.stop_reason == "end_turn" and msg.model == "gpt-4o"
    usage = json.loads(fixture_bytes("openai_chat_nonstream.json"))["usage"]
    assert msg.usage.input_tokens == usage["prompt_tokens"] and msg.usage.output_tokens == usage["completion_tokens"]


async def test_anthropic_client_openai_upstream_stream_tools(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """OpenAI tool-call deltas become tool_use blocks with input_json_delta the Anthropic SDK assembles."""
    inst = await start_apex(config(upstream))
    async with ant(inst, "k").messages.stream(model="gpt-4o", max_tokens=100, messages=[{"role": "user", "content": "secrets"}],
                                              tools=TOOLS_ANTHROPIC) as stream:  # type: ignore[arg-type]
        final = await stream.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [u.input for u in uses] == [{"password": "mellon"}, {"password": "radiance"}]
    assert final.stop_reason == "tool_use"
    sent = upstream.requests[-1].json
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["tools"][0]["function"]["name"] == "secret_retrieval_tool"


async def test_anthropic_client_tool_result_round_trip(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """Anthropic tool_use / tool_result history becomes OpenAI tool_calls / tool messages with matching ids."""
    inst = await start_apex(config(upstream))
    await ant(inst, "k").messages.create(model="gpt-4o", max_tokens=50, tools=TOOLS_ANTHROPIC, messages=[  # type: ignore[arg-type]
        {"role": "user", "content": "secret for mellon"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "secret_retrieval_tool", "input": {"password": "mellon"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "The secret is 42"}]},
    ])
    msgs = upstream.requests[-1].json["messages"]
    assert msgs[1]["tool_calls"][0]["id"] == "toolu_1"
    assert json.loads(msgs[1]["tool_calls"][0]["function"]["arguments"]) == {"password": "mellon"}
    assert msgs[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "The secret is 42"}


async def test_anthropic_client_reasoning_becomes_thinking(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """DeepSeek-style reasoning_content streams reach an Anthropic client as a thinking block before the text."""
    cfg = config(upstream)
    cfg["channels"][3].pop("anthropic_base_url")
    cfg["channels"][3]["base_url"] = upstream.openai_url  # overridden base_url and no anthropic_base_url: translate
    inst = await start_apex(cfg)
    upstream.push(Behaviour(content_type="text/event-stream", events=split_events(fixture_bytes("deepseek_chat_stream_reasoning.sse"))))
    async with ant(inst, "k").messages.stream(model="deepseek-reasoner", max_tokens=100, messages=[{"role": "user", "content": "Hello"}]) as stream:
        final = await stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert upstream.requests[-1].path == "/v1/chat/completions"


async def test_dual_protocol_provider_native_anthropic(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A DeepSeek channel with anthropic_base_url is spoken to in Anthropic's protocol, untranslated."""
    inst = await start_apex(config(upstream))
    body = {"model": "deepseek-chat", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as s, s.post(f"{inst.url}/v1/messages", json=body, headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}) as r:
        assert r.status == 200
    sent = upstream.requests[-1]
    assert sent.path == "/anthropic/v1/messages" and sent.headers["x-api-key"] == "sk-ds"
    assert sent.json == body
    await oai(inst, "k").chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "hi"}])
    assert upstream.requests[-1].path == "/v1/chat/completions"


async def test_openai_compatible_channel_with_anthropic_base_url_is_native_for_anthropic_clients(
        upstream: FakeUpstream, start_apex: StartApex) -> None:
    """An OpenAI-shaped channel given anthropic_base_url (a local server with both routes) takes
    Anthropic clients natively, with its bearer key as x-api-key, and OpenAI clients as before."""
    cfg = config(upstream)
    cfg["channels"][2].update(provider_type="openai_compatible", anthropic_base_url=upstream.url + "/anthropic")
    inst = await start_apex(cfg)
    body = {"model": "local-model", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    done = await ant(inst, "k").messages.create(model="local-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert done.content[0].type == "text"
    sent = upstream.requests[-1]
    assert sent.path == "/anthropic/v1/messages" and sent.headers["x-api-key"] == "sk-oa"
    assert sent.json == body
    await oai(inst, "k").chat.completions.create(model="local-model", messages=[{"role": "user", "content": "hi"}])
    assert upstream.requests[-1].path == "/v1/chat/completions"


async def test_responses_client_chat_upstream(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """The Responses API on a chat-only channel is translated to chat, streamed and not."""
    cfg = config(upstream)
    cfg["channels"][2]["provider_type"] = "openai_compatible"
    inst = await start_apex(cfg)
    client = oai(inst, "k")
    resp = await client.responses.create(model="local-model", input="What is the capital of the UK?", instructions="Be brief.")
    assert resp.output_text == "\\(4200 + 42 = 4242\\)."
    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.json["messages"][0] == {"role": "system", "content": "Be brief."}
    stream = await client.responses.create(model="local-model", input="hi", stream=True)
    deltas, completed = [], None
    async for event in stream:
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        if event.type == "response.completed":
            completed = event.response
    assert "".join(deltas) == "The capital of the UK is London."
    assert completed is not None and completed.usage is not None and completed.usage.output_tokens == 9


async def test_responses_native_on_openai(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """The Responses API on an OpenAI channel goes through natively."""
    inst = await start_apex(config(upstream))
    resp = await oai(inst, "k").responses.create(model="gpt-4o", input="hi")
    assert upstream.requests[-1].path == "/v1/responses"
    assert resp.output_text


async def test_responses_client_anthropic_upstream(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """The Responses API on an Anthropic channel is translated both ways."""
    inst = await start_apex(config(upstream))
    resp = await oai(inst, "k").responses.create(model="claude-apex", input="What is 4200 + 42?")
    assert resp.output_text == "4200 + 42 = 4242"
    assert upstream.requests[-1].path == "/v1/messages"


async def test_embeddings_on_gemini_base64(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """OpenAI embeddings on a Gemini channel come back base64-encoded for the SDK, decoding to Gemini's values."""
    inst = await start_apex(config(upstream))
    emb = await oai(inst, "k").embeddings.create(model="text-embedding-004", input="Some text goes here")
    expected = json.loads(fixture_bytes("gemini_batch_embed_contents.json"))["embeddings"][0]["values"]
    assert len(emb.data[0].embedding) == len(expected) == 768
    assert max(abs(a - b) for a, b in zip(emb.data[0].embedding, expected, strict=True)) < 1e-6
    sent = upstream.requests[-1]
    assert sent.path == "/v1beta/models/text-embedding-004:batchEmbedContents"


async def test_count_tokens_native_and_estimated(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """count_tokens is native on Anthropic channels and an estimate, marked so, elsewhere."""
    inst = await start_apex(config(upstream))
    client = ant(inst, "k")
    raw = await client.messages.with_raw_response.count_tokens(model="claude-apex", messages=[{"role": "user", "content": "hi"}])
    assert (await raw.parse()).input_tokens == 42 and "x-apex-estimated" not in raw.headers
    raw = await client.messages.with_raw_response.count_tokens(model="gpt-4o", messages=[{"role": "user", "content": "hello there " * 50}])
    assert raw.headers["x-apex-estimated"] == "true"
    assert 100 <= (await raw.parse()).input_tokens <= 200


async def test_translated_upstream_error_in_client_dialect(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """An Anthropic 429 reaches an OpenAI client as a rate_limit_error with its message and Retry-After."""
    inst = await start_apex(config(upstream))
    upstream.push(error(429, "Number of requests exceeded", retry_after="3", family="anthropic"))
    with pytest.raises(openai.RateLimitError) as info:
        await oai(inst, "k").chat.completions.create(model="claude-apex", messages=[{"role": "user", "content": "x"}])
    assert "Number of requests exceeded" in info.value.message
    assert info.value.body["type"] == "rate_limit_error"  # type: ignore[index]
    assert info.value.response.headers["retry-after"] == "3"


async def test_anthropic_midstream_error_reaches_openai_client(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """An Anthropic `event: error` inside a 200 stream reaches an OpenAI client as an error event."""
    inst = await start_apex(config(upstream))
    events = split_events(fixture_bytes("anthropic_messages_stream_text.sse"))[:4]
    events.append(b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n')
    upstream.push(Behaviour(content_type="text/event-stream", events=events))
    stream = await oai(inst, "k").chat.completions.create(model="claude-apex", messages=[{"role": "user", "content": "x"}], stream=True)
    with pytest.raises(openai.APIError, match="Overloaded"):
        async for _ in stream:
            pass


async def test_gemini_bad_key_is_502_after_failover(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """Gemini's 400 API_KEY_INVALID counts as the channel's key refused: the client gets 502."""
    inst = await start_apex(config(upstream))
    body = json.dumps({"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT",
                                 "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}}).encode()
    upstream.push(Behaviour(status=400, body=body))
    with pytest.raises(anthropic.APIStatusError) as info:
        await ant(inst, "k").messages.create(model="gemini-2.5-flash", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502


async def test_unsigned_thinking_stripped_for_anthropic(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """History with a thinking block Apex produced (empty signature) reaches real Anthropic without it."""
    inst = await start_apex(config(upstream))
    await ant(inst, "k").messages.create(model="claude-apex", max_tokens=50, messages=[
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": ""},
                                          {"type": "text", "text": "hello"}]},
        {"role": "user", "content": "again"},
    ])
    sent = upstream.requests[-1].json
    assert sent["messages"][1]["content"] == [{"type": "text", "text": "hello"}]
    signed: anthropic.types.ThinkingBlockParam = {"type": "thinking", "thinking": "hmm", "signature": "EqQBCgIYAhIM"}
    await ant(inst, "k").messages.create(model="claude-apex", max_tokens=50, messages=[
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": [signed, {"type": "text", "text": "hello"}]},
        {"role": "user", "content": "again"},
    ])
    assert upstream.requests[-1].json["messages"][1]["content"][0] == signed


async def test_responses_client_gemini_upstream(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """The Responses API on a Gemini channel: Responses -> Chat -> Gemini and back, streamed and not."""
    inst = await start_apex(config(upstream))
    client = oai(inst, "k")
    resp = await client.responses.create(model="gemini-2.5-flash", input="What is 4200 + 42?", instructions="Be brief.")
    sent = upstream.requests[-1]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.json["systemInstruction"]["parts"][0]["text"] == "Be brief."
    assert "4242" in resp.output_text
    assert resp.usage is not None and resp.usage.total_tokens == 115
    stream = await client.responses.create(model="gemini-2.5-flash", input="capital of France?", stream=True)
    deltas, completed = [], None
    async for event in stream:
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        if event.type == "response.completed":
            completed = event.response
    assert "".join(deltas).startswith("The capital of France is Paris")
    assert completed is not None and completed.usage is not None and completed.usage.input_tokens == 13
    assert upstream.requests[-1].path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"


async def test_anthropic_client_gemini_nonstream(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """An Anthropic Messages request reaches Gemini and comes back as a Message with Gemini's usage."""
    inst = await start_apex(config(upstream))
    msg = await ant(inst, "k").messages.create(model="gemini-2.5-flash", max_tokens=100, system="Be brief.",
                                               messages=[{"role": "user", "content": "What is 4200 + 42?"}])
    sent = upstream.requests[-1].json
    assert sent["generationConfig"]["maxOutputTokens"] == 100
    assert msg.content[-1].type == "text" and "4242" in msg.content[-1].text
    assert msg.stop_reason == "end_turn" and msg.usage.output_tokens == 102


@pytest.mark.parametrize("provider", ["jina", "ollama"])
async def test_float_only_embedding_upstreams_honour_base64(upstream: FakeUpstream, start_apex: StartApex, provider: str) -> None:
    """Jina gets embedding_type, Ollama is asked for floats; either way the SDK gets base64 it can decode."""
    cfg = config(upstream)
    cfg["channels"].append({"name": "emb", "provider_type": provider, "base_url": upstream.openai_url, "api_key": "sk-emb"})
    cfg["routers"][0]["rules"].insert(0, {"match": {"model": "emb-*"}, "channels": [{"name": "emb"}]})
    inst = await start_apex(cfg)
    emb = await oai(inst, "k").embeddings.create(model="emb-small", input="hello")  # the SDK asks for base64
    assert len(emb.data[0].embedding) == 128
    sent = upstream.requests[-1].json
    if provider == "jina":
        assert "encoding_format" not in sent and sent["embedding_type"] == "base64"
    else:
        assert sent["encoding_format"] == "float"
    expected = json.loads(fixture_bytes("openai_embeddings_base64.json"))["data"][0]["embedding"]
    import base64
    import struct
    raw = base64.b64decode(expected)
    floats = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert max(abs(a - b) for a, b in zip(emb.data[0].embedding, floats, strict=True)) < 1e-6


async def test_translated_stream_leaves_no_ping_task(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A finished translated stream (aiohttp-sse response) leaves no keep-alive task running."""
    import asyncio

    inst = await start_apex(config(upstream))
    stream = await oai(inst, "k").chat.completions.create(model="claude-apex", messages=[{"role": "user", "content": "hi"}], stream=True)
    async for _ in stream:
        pass
    await asyncio.sleep(0.05)
    assert not [t for t in asyncio.all_tasks() if getattr(t.get_coro(), "__qualname__", "") == "EventSourceResponse._ping"]


@pytest.mark.parametrize(("model", "compat"), [("deepseek-chat", True), ("gpt-4o", False)])
async def test_developer_role_and_max_completion_tokens_reach_compatible_servers_in_their_words(
        upstream: FakeUpstream, start_apex: StartApex, model: str, compat: bool) -> None:
    """A Chat client's developer message and max_completion_tokens went to DeepSeek as sent:
    it answers 400 "unknown variant developer" and ignores the limit. Non-OpenAI Chat servers
    get system and max_tokens (P15, P16); OpenAI keeps both."""
    inst = await start_apex(config(upstream))
    await oai(inst, "k").chat.completions.create(
        model=model, max_completion_tokens=77,
        messages=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    sent = upstream.requests[-1].json
    assert [m["role"] for m in sent["messages"]] == ["system" if compat else "developer", "user"]
    if compat:
        assert sent["max_tokens"] == 77 and "max_completion_tokens" not in sent
    else:
        assert sent["max_completion_tokens"] == 77 and "max_tokens" not in sent


SIGNED = {"id": "msg_t1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
          "content": [{"type": "thinking", "thinking": "I should look it up.", "signature": "EqQBsig-genuine"},
                      {"type": "tool_use", "id": "toolu_01", "name": "lookup", "input": {"q": "x"}}],
          "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 20}}
LOOKUP: Any = [{"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]


@pytest.mark.parametrize("stream", [False, True])
async def test_codex_keeps_claudes_thinking_across_a_tool_loop(upstream: FakeUpstream, start_apex: StartApex,
                                                               stream: bool) -> None:
    """A Responses client (Codex) on an Anthropic channel: Claude's signed thinking comes back
    as the reasoning item's encrypted_content, and sent back with the tool output it is
    replayed signed, so the next step thinks too (it was turned off after the first, P6)."""
    inst = await start_apex(config(upstream))
    c = oai(inst, "k")
    if stream:
        events: list[dict[str, Any]] = [{"type": "message_start", "message": {**SIGNED, "content": [], "stop_reason": None}},
                  {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
                  {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "I should look it up."}},
                  {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBsig-genuine"}},
                  {"type": "content_block_stop", "index": 0},
                  {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_01", "name": "lookup", "input": {}}},
                  {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"q": "x"}'}},
                  {"type": "content_block_stop", "index": 1},
                  {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 20}},
                  {"type": "message_stop"}]
        upstream.push(Behaviour(content_type="text/event-stream",
                                events=named_events(events)))
        s = await c.responses.create(model="claude-sonnet-4-5", input="look up x", tools=LOOKUP, stream=True,
                                     reasoning={"effort": "high"}, include=["reasoning.encrypted_content"])
        output = [ev.response.output async for ev in s if ev.type == "response.completed"][0]
    else:
        upstream.push(Behaviour(body=json.dumps(SIGNED).encode()))
        output = (await c.responses.create(model="claude-sonnet-4-5", input="look up x", tools=LOOKUP,
                                           reasoning={"effort": "high"}, include=["reasoning.encrypted_content"])).output
    reasoning = next(o for o in output if o.type == "reasoning")
    call = next(o for o in output if o.type == "function_call")
    assert reasoning.encrypted_content and "EqQBsig-genuine" in reasoning.encrypted_content
    upstream.push(Behaviour(body=json.dumps({**SIGNED, "content": [{"type": "text", "text": "done"}],
                                             "stop_reason": "end_turn"}).encode()))
    follow: Any = [{"role": "user", "content": "look up x"}, reasoning.model_dump(exclude_none=True),
                   call.model_dump(exclude_none=True), {"type": "function_call_output", "call_id": call.call_id, "output": "42"}]
    await c.responses.create(model="claude-sonnet-4-5", input=follow, tools=LOOKUP, reasoning={"effort": "high"})
    sent = upstream.requests[-1].json
    assert sent["thinking"]["type"] == "enabled"
    assert sent["messages"][1]["content"][0] == {"type": "thinking", "thinking": "I should look it up.",
                                                 "signature": "EqQBsig-genuine"}
    assert sent["messages"][1]["content"][1]["type"] == "tool_use"
    # The same history to an OpenAI channel: the carried item is not OpenAI's to read.
    upstream.push(Behaviour(body=fixture_bytes("openai_responses_nonstream.json")))
    await c.responses.create(model="gpt-5", input=follow, tools=LOOKUP)
    assert all(item.get("type") != "reasoning" for item in upstream.requests[-1].json["input"])


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("blocks", [[("", "SIG_omitted")], [("First.", "SIG_1"), ("Second.", "SIG_2")]],
                         ids=["omitted", "two-blocks"])
async def test_codex_keeps_every_signed_thinking_block(upstream: FakeUpstream, start_apex: StartApex,
                                                       stream: bool, blocks: list[tuple[str, str]]) -> None:
    """Claude's "omitted" thinking (empty text, a signature only: Opus 4.7's default) gave a
    Responses client no reasoning item, so the next step replayed nothing and thinking went
    off; two thinking blocks gave one item "First.Second." with the second signature. Each
    signed block is a reasoning item with its own signature, replayed signed on the next step."""
    inst = await start_apex(config(upstream))
    c = oai(inst, "k")
    content: list[dict[str, Any]] = [{"type": "thinking", "thinking": text, "signature": sig} for text, sig in blocks]
    call_index = len(blocks)
    output: Any
    if stream:
        events: list[dict[str, Any]] = [{"type": "message_start", "message": {**SIGNED, "content": [], "stop_reason": None}}]
        for i, (text, sig) in enumerate(blocks):
            events.append({"type": "content_block_start", "index": i,
                           "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
            if text:
                events.append({"type": "content_block_delta", "index": i, "delta": {"type": "thinking_delta", "thinking": text}})
            events += [{"type": "content_block_delta", "index": i, "delta": {"type": "signature_delta", "signature": sig}},
                       {"type": "content_block_stop", "index": i}]
        events += [{"type": "content_block_start", "index": call_index,
                    "content_block": {"type": "tool_use", "id": "toolu_01", "name": "lookup", "input": {}}},
                   {"type": "content_block_delta", "index": call_index,
                    "delta": {"type": "input_json_delta", "partial_json": '{"q": "x"}'}},
                   {"type": "content_block_stop", "index": call_index},
                   {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 20}},
                   {"type": "message_stop"}]
        upstream.push(Behaviour(content_type="text/event-stream", events=named_events(events)))
        async with c.responses.stream(model="claude-sonnet-4-5", input="look up x", tools=LOOKUP,
                                      reasoning={"effort": "high"}, include=["reasoning.encrypted_content"]) as s:
            output = (await s.get_final_response()).output
    else:
        call_block: Any = SIGNED["content"]
        upstream.push(Behaviour(body=json.dumps({**SIGNED, "content": [*content, call_block[1]]}).encode()))
        output = (await c.responses.create(model="claude-sonnet-4-5", input="look up x", tools=LOOKUP,
                                           reasoning={"effort": "high"}, include=["reasoning.encrypted_content"])).output
    reasoning = [o for o in output if o.type == "reasoning"]
    assert [(["".join(p.text for p in r.summary)], r.encrypted_content) for r in reasoning] == [
        ([text], "apex-thinking-signature:" + sig) for text, sig in blocks]
    call = next(o for o in output if o.type == "function_call")
    upstream.push(Behaviour(body=json.dumps({**SIGNED, "content": [{"type": "text", "text": "done"}],
                                             "stop_reason": "end_turn"}).encode()))
    follow: Any = [{"role": "user", "content": "look up x"}, *(r.model_dump(exclude_none=True) for r in reasoning),
                   call.model_dump(exclude_none=True), {"type": "function_call_output", "call_id": call.call_id, "output": "42"}]
    await c.responses.create(model="claude-sonnet-4-5", input=follow, tools=LOOKUP, reasoning={"effort": "high"})
    sent = upstream.requests[-1].json
    assert sent["thinking"]["type"] == "enabled"
    replayed = [b for m in sent["messages"] if m["role"] == "assistant" for b in m["content"]]
    assert replayed == [*content, {"type": "tool_use", "id": "toolu_01", "name": "lookup", "input": {"q": "x"}}]


def _chat_chunks(*choices: dict[str, Any]) -> list[bytes]:
    return [b"data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
                                    "choices": [c]}).encode() + b"\n\n" for c in choices] + [b"data: [DONE]\n\n"]


async def test_a_streamed_refusal_reaches_a_responses_client_as_a_refusal(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A Chat upstream's streamed refusal reached Responses clients as output text, so
    responses.stream(text_format=...) tried to parse it as JSON and raised; the answer is a
    completed response with a refusal part, as OpenAI's own, streamed or not."""
    from pydantic import BaseModel

    class Answer(BaseModel):
        value: int

    inst = await start_apex(config(upstream))
    upstream.push(Behaviour(content_type="text/event-stream", events=_chat_chunks(
        {"index": 0, "delta": {"role": "assistant", "refusal": "I can't help "}, "finish_reason": None},
        {"index": 0, "delta": {"refusal": "with that."}, "finish_reason": None},
        {"index": 0, "delta": {}, "finish_reason": "stop"})))
    async with oai(inst, "k").responses.stream(model="deepseek-chat", input="x",
                                               text_format=Answer) as s:
        final = await s.get_final_response()
    assert final.status == "completed" and final.output_parsed is None
    message = next(o for o in final.output if o.type == "message")
    assert [(c.type, getattr(c, "refusal", None)) for c in message.content] == [("refusal", "I can't help with that.")]
    upstream.push(Behaviour(body=json.dumps({"id": "c2", "object": "chat.completion", "created": 1, "model": "deepseek-chat",
                                             "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                                 "role": "assistant", "content": None, "refusal": "No."}}]}).encode()))
    whole = await oai(inst, "k").responses.create(model="deepseek-chat", input="x")
    assert whole.status == "completed" and whole.output[0].type == "message"
    assert whole.output[0].content[0].type == "refusal"


@pytest.mark.parametrize("held", [{"conversation": "conv_123"}, {"prompt": {"id": "pmpt_1"}}])
async def test_server_held_state_is_a_400_on_translated_channels(upstream: FakeUpstream, start_apex: StartApex,
                                                                 held: dict[str, Any]) -> None:
    """conversation and prompt name state OpenAI keeps; on other upstreams they were dropped
    silently (the model answered without the earlier turns or the stored instructions)."""
    inst = await start_apex(config(upstream))
    with pytest.raises(openai.BadRequestError) as info:
        await oai(inst, "k").responses.create(model="claude-x", input="x", extra_body=held)
    assert next(iter(held)) in str(info.value)
    assert not upstream.requests


async def test_a_call_the_output_limit_cut_is_not_done_for_a_responses_client(upstream: FakeUpstream,
                                                                                start_apex: StartApex) -> None:
    """finish_reason length inside a tool call: the call was marked completed with broken
    arguments ({"ci) and a client would run it; it is left out of an incomplete response."""
    inst = await start_apex(config(upstream))
    upstream.push(Behaviour(content_type="text/event-stream", events=_chat_chunks(
        {"index": 0, "delta": {"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                                     "function": {"name": "lookup", "arguments": '{"ci'}}]},
         "finish_reason": None},
        {"index": 0, "delta": {}, "finish_reason": "length"})))
    s = await oai(inst, "k").responses.create(model="deepseek-chat", input="x", tools=LOOKUP, stream=True)
    events = [ev async for ev in s]
    done = [ev for ev in events if ev.type == "response.output_item.done" and ev.item.type == "function_call"]
    final = next(ev.response for ev in events if ev.type == "response.incomplete")
    assert not done and not [o for o in final.output if o.type == "function_call"]


async def test_a_claude_call_cut_by_max_tokens_is_not_done_for_a_responses_client(upstream: FakeUpstream,
                                                                                   start_apex: StartApex) -> None:
    """Anthropic closes a tool_use block that max_tokens cut before it says why it stopped: the
    call reached Responses clients as completed with broken arguments. It is left out."""
    inst = await start_apex(config(upstream))
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {**SIGNED, "content": [], "stop_reason": None}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_01", "name": "lookup", "input": {}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": '{"q": "x'}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": None}, "usage": {"output_tokens": 20}},
        {"type": "message_stop"}]
    upstream.push(Behaviour(content_type="text/event-stream",
                            events=named_events(events)))
    s = await oai(inst, "k").responses.create(model="claude-sonnet-4-5", input="x", tools=LOOKUP, stream=True)
    seen = [ev async for ev in s]
    assert not [ev for ev in seen if ev.type == "response.output_item.done" and ev.item.type == "function_call"]
    final = next(ev.response for ev in seen if ev.type == "response.incomplete")
    assert not [o for o in final.output if o.type == "function_call"]


@pytest.mark.parametrize(("provider", "sent"), [
    ("groq", None),            # Groq (and OpenAI, Cerebras) refuse reasoning_content on messages
    ("openai", None),
    ("deepseek", "Look first."),  # DeepSeek and Kimi refuse a tool-call turn without it
    ("moonshot", "Look first."),
])
async def test_past_reasoning_goes_only_where_it_is_taken(upstream: FakeUpstream, start_apex: StartApex,
                                                          provider: str, sent: str | None) -> None:
    """Claude Code's history (thinking, a tool call, its result) on an OpenAI-shaped channel:
    the thinking goes back as reasoning_content only to the servers that take it; a tool-call
    turn that had no thinking gets "" on DeepSeek and Kimi (P7: they answer 400 without it)."""
    cfg = {"global": {"auth": {"keys": ["k"]}}, "logging": {"level": "error"},
           "channels": [{"name": "c", "provider_type": provider, "base_url": upstream.openai_url, "api_key": "sk-x"}],
           "routers": [{"name": "r", "channels": [{"name": "c"}]}]}
    inst = await start_apex(cfg)
    call = {"type": "tool_use", "id": "toolu_1", "name": "ls", "input": {}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"}
    tools: Any = [{"name": "ls", "description": "list", "input_schema": {"type": "object", "properties": {}}}]
    client = ant(inst, "k")
    for thinking in ([{"type": "thinking", "thinking": "Look first.", "signature": "sig"}], []):
        history: Any = [
            {"role": "user", "content": "list files"},
            {"role": "assistant", "content": [*thinking, call]},
            {"role": "user", "content": [result]},
        ]
        await client.messages.create(model="m-1", max_tokens=100, tools=tools, messages=history)
        assistant = upstream.requests[-1].json["messages"][1]
        assert assistant["tool_calls"][0]["function"]["name"] == "ls"
        expected = (sent if thinking else "") if sent is not None else None
        assert assistant.get("reasoning_content") == expected, assistant


async def test_inline_think_tags_become_thinking(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """MiniMax's /v1 (and reasoners served without a reasoning parser) write their thinking as
    <think>...</think> at the start of the content: Anthropic clients get it as a thinking
    block and the answer as text, streamed or not (they got the tags as text)."""
    cfg = {"global": {"auth": {"keys": ["k"]}}, "logging": {"level": "error"},
           "channels": [{"name": "mm", "provider_type": "minimax", "base_url": upstream.openai_url, "api_key": "sk-mm"}],
           "routers": [{"name": "r", "channels": [{"name": "mm"}]}]}
    inst = await start_apex(cfg)
    content = "<think>\nThe user greets me.\n</think>\n\nHello there!"
    upstream.push(Behaviour(body=json.dumps({
        "id": "c", "object": "chat.completion", "created": 1, "model": "MiniMax-M2",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}}).encode()))
    client = ant(inst, "k")
    msg = await client.messages.create(model="MiniMax-M2", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    assert [(b.type, getattr(b, "thinking", None) or getattr(b, "text", None)) for b in msg.content] == [
        ("thinking", "The user greets me."), ("text", "Hello there!")]

    def chunk(text: str | None, finish: str | None = None) -> bytes:
        delta = {"content": text} if text is not None else {}
        return b"data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "MiniMax-M2",
                                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).encode() + b"\n\n"

    pieces = ["<th", "ink>\nThe user", " greets me.\n</th", "ink>\n\nHello", " there!"]
    upstream.push(Behaviour(content_type="text/event-stream",
                            events=[*(chunk(p) for p in pieces), chunk(None, "stop"), b"data: [DONE]\n\n"]))
    async with client.messages.stream(model="MiniMax-M2", max_tokens=100,
                                      messages=[{"role": "user", "content": "hi"}]) as stream:
        final = await stream.get_final_message()
    thinking = [b.thinking for b in final.content if b.type == "thinking"]
    text = [b.text for b in final.content if b.type == "text"]
    assert thinking == ["The user greets me.\n"] and text == ["Hello there!"], final.content


def _anthropic_and_gemini(upstream: FakeUpstream) -> dict[str, Any]:
    """claude-* to an Anthropic channel, gemini-* to a Gemini one, both on the fake."""
    return {"global": {"auth": {"keys": ["k"]}}, "logging": {"level": "error"},
            "channels": [{"name": "an", "provider_type": "anthropic", "base_url": upstream.url, "api_key": "sk-a"},
                         {"name": "gm", "provider_type": "gemini", "base_url": upstream.url, "api_key": "g-k"}],
            "routers": [{"name": "r", "rules": [{"match": {"model": "claude-*"}, "channels": [{"name": "an"}]},
                                                {"match": {"model": "gemini-*"}, "channels": [{"name": "gm"}]}]}]}


@pytest.mark.parametrize("model", ["claude-x", "gemini-x"])
async def test_legacy_function_calling_is_translated(upstream: FakeUpstream, start_apex: StartApex, model: str) -> None:
    """OpenAI's legacy functions / function_call / role "function" (still served by OpenAI and
    sent by its SDK) reach Anthropic and Gemini as tools (they were dropped: no tools upstream,
    a text answer; the function result went as an orphan)."""
    inst = await start_apex(_anthropic_and_gemini(upstream))
    fn = {"name": "get_weather", "description": "weather", "parameters": {"type": "object", "properties": {}}}
    legacy: Any = {"model": model, "functions": [fn], "function_call": {"name": "get_weather"}, "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": "{}"}},
        {"role": "function", "name": "get_weather", "content": "sunny"},
    ]}
    await oai(inst, "k").chat.completions.create(**legacy)
    sent = upstream.requests[-1].json
    if model.startswith("claude"):
        assert [t["name"] for t in sent["tools"]] == ["get_weather"]
        assert sent["tool_choice"] == {"type": "tool", "name": "get_weather"}
        call = sent["messages"][1]["content"][0]
        result = sent["messages"][2]["content"][0]
        assert call["type"] == "tool_use" and result["type"] == "tool_result" and result["tool_use_id"] == call["id"]
    else:
        assert [d["name"] for d in sent["tools"][0]["functionDeclarations"]] == ["get_weather"]
        assert sent["contents"][1]["parts"][0]["functionCall"]["name"] == "get_weather"
        assert sent["contents"][2]["parts"][0]["functionResponse"]["name"] == "get_weather"


@pytest.mark.parametrize("model", ["claude-x", "gemini-x"])
async def test_legacy_function_calling_is_answered_in_the_legacy_shape(upstream: FakeUpstream, start_apex: StartApex,
                                                                      model: str) -> None:
    """A client that declared legacy ``functions`` gets the call as ``message.function_call``
    and finish_reason "function_call" (stream: ``delta.function_call``, name then arguments), as
    OpenAI answers that form; it got ``tool_calls``, which a legacy client never reads. The legacy
    form has one call per message: of the fakes' two parallel calls, the first."""
    inst = await start_apex(_anthropic_and_gemini(upstream))
    client = oai(inst, "k")
    fn: Any = {"name": "get_secret", "parameters": {"type": "object", "properties": {"password": {"type": "string"}}}}
    messages: Any = [{"role": "user", "content": "secrets for mellon, radiance"}]
    done = await client.chat.completions.create(model=model, messages=messages, functions=[fn])
    choice = done.choices[0]
    assert choice.finish_reason == "function_call" and choice.message.tool_calls is None, choice
    call = choice.message.function_call
    assert call is not None and call.name == "get_secret" and json.loads(call.arguments) == {"password": "mellon"}

    stream = await client.chat.completions.create(model=model, messages=messages, functions=[fn], stream=True)
    names, arguments, finish = [], "", None
    async for chunk in stream:
        for c in chunk.choices:
            assert c.delta.tool_calls is None, chunk
            if c.delta.function_call is not None:
                names.append(c.delta.function_call.name)
                arguments += c.delta.function_call.arguments or ""
            finish = c.finish_reason or finish
    assert names[0] == "get_secret" and not any(names[1:]), names
    assert json.loads(arguments) == {"password": "mellon"} and finish == "function_call"

    # A client that declared tools keeps today's shape, all calls.
    tools: Any = [{"type": "function", "function": fn}]
    done = await client.chat.completions.create(model=model, messages=messages, tools=tools)
    assert done.choices[0].finish_reason == "tool_calls" and done.choices[0].message.function_call is None
    assert len(done.choices[0].message.tool_calls or []) == 2


async def test_legacy_function_calling_passes_through_to_openai(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """On an OpenAI channel the legacy request and OpenAI's legacy answer pass through as they are."""
    inst = await start_apex(config(upstream))
    answer = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
              "choices": [{"index": 0, "finish_reason": "function_call", "message": {
                  "role": "assistant", "content": None, "function_call": {"name": "get_secret", "arguments": "{}"}}}]}
    upstream.push(Behaviour(body=json.dumps(answer).encode()))
    fn: Any = {"name": "get_secret", "parameters": {"type": "object", "properties": {}}}
    done = await oai(inst, "k").chat.completions.create(model="gpt-4o", functions=[fn],
                                                        messages=[{"role": "user", "content": "secret?"}])
    assert upstream.requests[-1].json["functions"] == [fn] and "tools" not in upstream.requests[-1].json
    assert done.choices[0].finish_reason == "function_call"
    assert done.choices[0].message.function_call is not None and done.choices[0].message.function_call.name == "get_secret"


async def test_claude_codes_user_id_and_codexs_cache_key_reach_strict_chat_servers(upstream: FakeUpstream,
                                                                                  start_apex: StartApex) -> None:
    """Claude Code's metadata.user_id (a 150-character JSON string) goes to OpenAI as a user of
    at most 64 characters (OpenAI refused every request); Codex's prompt_cache_key and
    safety_identifier do not go to Chat servers that are not OpenAI's (Groq refused them)."""
    cfg = {"global": {"auth": {"keys": ["k"]}}, "logging": {"level": "error"},
           "channels": [{"name": "oa", "provider_type": "openai", "base_url": upstream.openai_url, "api_key": "sk"},
                        {"name": "gq", "provider_type": "groq", "base_url": upstream.openai_url, "api_key": "gsk"}],
           "routers": [{"name": "r", "rules": [{"match": {"model": "llama-*"}, "channels": [{"name": "gq"}]}],
                        "channels": [{"name": "oa"}]}]}
    inst = await start_apex(cfg)
    user_id = json.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": "s" * 36})
    await ant(inst, "k").messages.create(model="gpt-4o", max_tokens=50, metadata={"user_id": user_id},
                                         messages=[{"role": "user", "content": "hi"}])
    sent = upstream.requests[-1].json
    assert len(sent["user"]) <= 64 and sent["user"] != user_id
    client = oai(inst, "k")
    await client.responses.create(model="llama-3.3-70b", input="hi", prompt_cache_key="codex-session-1",
                                  safety_identifier="u" * 80)
    sent = upstream.requests[-1].json
    assert "prompt_cache_key" not in sent and "safety_identifier" not in sent, sent
    await client.responses.create(model="gpt-4o-mini", input="hi", prompt_cache_key="codex-session-1")
    assert upstream.requests[-1].path.endswith("/responses")  # OpenAI itself: native, untouched


# --- Tool names one dialect allows and the upstream's refuses (the fakes refuse them as the real APIs do)

MCP_TOOL = "mcp__plugin_chrome-devtools-mcp_chrome-devtools__performance_analyze_insight_for_the_current_page_v2"  # 100 characters
SCHEMA: dict[str, object] = {"type": "object", "properties": {"password": {"type": "string"}}, "required": ["password"]}


def _sent_tool_names(sent: dict[str, Any]) -> list[str]:
    """The declared tool names of a Chat, Messages or Gemini request."""
    tools = sent.get("tools") or []
    if tools and "functionDeclarations" in tools[0]:
        return [d["name"] for t in tools for d in t["functionDeclarations"]]
    return [t["function"]["name"] if "function" in t else t["name"] for t in tools]


@pytest.mark.parametrize("model", ["gpt-4o", "gemini-2.5-flash"])
@pytest.mark.parametrize("stream", [False, True])
async def test_claude_codes_long_mcp_tool_names_reach_openai_and_gemini(upstream: FakeUpstream, start_apex: StartApex,
                                                                        model: str, stream: bool) -> None:
    """A 100-character tool name (Anthropic takes 128) is fitted to the upstream's 64 in the tools
    and the forced tool_choice, and the calls come back under the client's name."""
    assert len(MCP_TOOL) == 100
    inst = await start_apex(config(upstream))
    tools = [{"name": MCP_TOOL, "description": "d", "input_schema": SCHEMA}]
    ask: dict[str, Any] = {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": "secrets"}],
                           "tools": tools, "tool_choice": {"type": "tool", "name": MCP_TOOL}}
    if stream:
        async with ant(inst, "k").messages.stream(**ask) as events:
            msg = await events.get_final_message()
    else:
        msg = await ant(inst, "k").messages.create(**ask)
    assert [b.name for b in msg.content if b.type == "tool_use"] == [MCP_TOOL, MCP_TOOL]
    sent = upstream.requests[-1].json
    [upstream_name] = _sent_tool_names(sent)
    assert upstream_name != MCP_TOOL and len(upstream_name) <= 64 and upstream_name.startswith("mcp__plugin_chrome")
    forced = sent["tool_choice"]["function"]["name"] if "tool_choice" in sent else sent["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"][0]
    assert forced == upstream_name


@pytest.mark.parametrize("model", ["gpt-4o", "gemini-2.5-flash"])
async def test_a_long_tool_names_result_turn_reaches_openai_and_gemini(upstream: FakeUpstream, start_apex: StartApex,
                                                                       model: str) -> None:
    """The second turn of that session: the history's call and result carry the same fitted name."""
    inst = await start_apex(config(upstream))
    msg = await ant(inst, "k").messages.create(model=model, max_tokens=50, tools=[
        {"name": MCP_TOOL, "description": "d", "input_schema": SCHEMA}], messages=[
        {"role": "user", "content": "secret for mellon"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": MCP_TOOL, "input": {"password": "mellon"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "The secret is 42"}]},
    ])
    assert [b.name for b in msg.content if b.type == "tool_use"] == [MCP_TOOL, MCP_TOOL]
    sent = upstream.requests[-1].json
    [upstream_name] = _sent_tool_names(sent)
    if model.startswith("gpt"):
        assert sent["messages"][1]["tool_calls"][0]["function"]["name"] == upstream_name
    else:
        call, result = sent["contents"][1]["parts"][0], sent["contents"][2]["parts"][0]
        assert call["functionCall"]["name"] == result["functionResponse"]["name"] == upstream_name


@pytest.mark.parametrize("stream", [False, True])
async def test_a_gemini_clients_dotted_tool_name_reaches_anthropic(upstream: FakeUpstream, start_apex: StartApex,
                                                                   stream: bool) -> None:
    """google-genai's ``a.b:c`` (Gemini allows . and :) goes to Anthropic fitted, in the tools and the
    history, and its calls come back as ``a.b:c``."""
    from google import genai
    from google.genai import types

    inst = await start_apex(config(upstream))
    client = genai.Client(api_key="k", http_options=types.HttpOptions(
        base_url=inst.url, retry_options=types.HttpRetryOptions(attempts=1)))
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(
        name="a.b:c", description="d", parameters_json_schema=SCHEMA)])
    cfg = types.GenerateContentConfig(tools=[tool], automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    question = types.Content(role="user", parts=[types.Part.from_text(text="secrets")])
    try:
        if stream:
            chunks = [c async for c in await client.aio.models.generate_content_stream(
                model="claude-apex", contents=[question], config=cfg)]
            parts = [p for c in chunks if c.candidates and c.candidates[0].content for p in c.candidates[0].content.parts or []]
        else:
            resp = await client.aio.models.generate_content(model="claude-apex", contents=[question], config=cfg)
            assert resp.candidates and resp.candidates[0].content
            parts = resp.candidates[0].content.parts or []
        calls = [p.function_call for p in parts if p.function_call]
        assert [c.name for c in calls] == ["a.b:c", "a.b:c"]
        answers = [types.Part.from_function_response(name="a.b:c", response={"output": "42"}) for _ in calls]
        await client.aio.models.generate_content(model="claude-apex", config=cfg, contents=[
            question, types.Content(role="model", parts=parts), types.Content(role="user", parts=answers)])
    finally:
        await client.aio.aclose()
    sent = upstream.requests[-1].json
    [upstream_name] = _sent_tool_names(sent)
    assert upstream_name.startswith("a_b_c_")
    assert {b["name"] for b in sent["messages"][1]["content"] if b["type"] == "tool_use"} == {upstream_name}


@pytest.mark.parametrize("stream", [False, True])
async def test_an_openai_tool_name_starting_with_a_digit_reaches_gemini(upstream: FakeUpstream, start_apex: StartApex,
                                                                       stream: bool) -> None:
    """``1tool`` (OpenAI allows it; Gemini wants a letter or _ first) is fitted in the declarations,
    allowedFunctionNames, calls and results, and comes back as ``1tool``."""
    inst = await start_apex(config(upstream))
    tools: Any = [{"type": "function", "function": {"name": "1tool", "description": "d", "parameters": SCHEMA}}]
    choice: Any = {"type": "function", "function": {"name": "1tool"}}
    messages: Any = [{"role": "user", "content": "secrets"}]
    done: Any
    if stream:
        async with oai(inst, "k").chat.completions.stream(model="gemini-2.5-flash", messages=messages, tools=tools,
                                                          tool_choice=choice) as events:
            done = await events.get_final_completion()
    else:
        done = await oai(inst, "k").chat.completions.create(model="gemini-2.5-flash", messages=messages, tools=tools,
                                                            tool_choice=choice)
    calls = done.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls if c.type == "function"] == ["1tool", "1tool"]
    sent = upstream.requests[-1].json
    [upstream_name] = _sent_tool_names(sent)
    assert upstream_name.startswith("_1tool_") and sent["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"] == [upstream_name]
    history = [*messages, done.choices[0].message.model_dump(exclude_none=True),
               *({"role": "tool", "tool_call_id": c.id, "content": "42"} for c in calls)]
    await oai(inst, "k").chat.completions.create(model="gemini-2.5-flash", messages=history, tools=tools)
    parts = upstream.requests[-1].json["contents"][1]["parts"] + upstream.requests[-1].json["contents"][2]["parts"]
    assert {(p.get("functionCall") or p.get("functionResponse"))["name"] for p in parts} == {upstream_name}


async def test_a_responses_clients_digit_tool_name_reaches_gemini(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """Through Responses -> Chat -> Gemini the fitted name is undone once per step: Codex gets ``1tool``."""
    inst = await start_apex(config(upstream))
    resp = await oai(inst, "k").responses.create(model="gemini-2.5-flash", input="secrets", tools=[
        {"type": "function", "name": "1tool", "description": "d", "parameters": SCHEMA, "strict": False}])
    assert [i.name for i in resp.output if i.type == "function_call"] == ["1tool", "1tool"]
    assert _sent_tool_names(upstream.requests[-1].json)[0].startswith("_1tool_")


GEMINI_STREAM_TEXT = "The capital of France is Paris.\n"  # tests/fixtures/real/gemini_stream.sse


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_logprobs_on_a_gemini_channel(upstream: FakeUpstream, start_apex: StartApex, stream: bool) -> None:
    """logprobs/top_logprobs become Gemini's responseLogprobs/logprobs, and its logprobsResult comes
    back as choices[0].logprobs.content, each stream chunk with its own tokens (they were dropped:
    200 with logprobs null). logit_bias has no Gemini form: dropped and named in a header."""
    inst = await start_apex(config(upstream))
    messages: Any = [{"role": "user", "content": "What is the capital of France?"}]
    if stream:
        chunks = [c async for c in await oai(inst, "k").chat.completions.create(
            model="gemini-2.5-flash", messages=messages, logprobs=True, top_logprobs=2, stream=True)]
        texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        assert "".join(texts) == GEMINI_STREAM_TEXT
        for chunk in chunks:
            choice = chunk.choices[0]
            if choice.delta.content:  # every text chunk carries the tokens of its own text
                assert choice.logprobs is not None and choice.logprobs.content is not None
                assert "".join(t.token for t in choice.logprobs.content) == choice.delta.content
        tokens = [t for c in chunks if c.choices and c.choices[0].logprobs
                  for t in c.choices[0].logprobs.content or []]
    else:
        done = await oai(inst, "k").chat.completions.create(
            model="gemini-2.5-flash", messages=messages, logprobs=True, top_logprobs=2)
        text = json.loads(fixture_bytes("gemini_generate_content.json"))["candidates"][0]["content"]["parts"][0]["text"]
        assert done.choices[0].message.content == text
        assert done.choices[0].logprobs is not None and done.choices[0].logprobs.content is not None
        tokens = done.choices[0].logprobs.content
        assert "".join(t.token for t in tokens) == text
    assert upstream.requests[-1].json["generationConfig"] == {"responseLogprobs": True, "logprobs": 2}
    assert tokens and all(t.logprob == -len(t.token) / 100 and t.bytes == list(t.token.encode()) for t in tokens)
    assert all([a.token for a in t.top_logprobs] == [t.token, t.token + "~1"] for t in tokens)
    raw = await oai(inst, "k").chat.completions.with_raw_response.create(
        model="gemini-2.5-flash", messages=messages, logit_bias={"1234": -100}, stream=stream)
    assert raw.headers["x-apex-dropped-params"] == "logit_bias"
    assert upstream.requests[-1].json.get("generationConfig", {}) == {}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_tool_calls_finish_with_no_call_is_a_natural_end_for_claude_clients(
        upstream: FakeUpstream, start_apex: StartApex, stream: bool) -> None:
    """A Chat upstream said finish_reason "tool_calls" and sent no call: an Anthropic client got
    stop_reason "tool_use" with no tool_use block, and a loop keyed on it sends a turn of
    results for no call. The finish matches the calls sent: end_turn."""
    inst = await start_apex(config(upstream))
    message: anthropic.types.Message
    if stream:
        upstream.push(Behaviour(content_type="text/event-stream", events=_chat_chunks(
            {"index": 0, "delta": {"role": "assistant", "content": "Hello"}, "finish_reason": None},
            {"index": 0, "delta": {}, "finish_reason": "tool_calls"})))
        async with ant(inst, "k").messages.stream(model="gpt-4o", max_tokens=100, tools=TOOLS_ANTHROPIC,  # type: ignore[arg-type]
                                                  messages=[{"role": "user", "content": "hi"}]) as s:
            message = await s.get_final_message()
    else:
        upstream.push(Behaviour(body=json.dumps({
            "id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}).encode()))
        message = await ant(inst, "k").messages.create(model="gpt-4o", max_tokens=100, tools=TOOLS_ANTHROPIC,  # type: ignore[arg-type]
                                                       messages=[{"role": "user", "content": "hi"}])
    assert [b.type for b in message.content] == ["text"]
    assert message.stop_reason == "end_turn"
