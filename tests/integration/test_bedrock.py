"""Bedrock end to end: the official SDKs -> Apex -> a fake Bedrock that verifies SigV4 and frames streams."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pydantic
import pytest

from tests.conftest import ApexInstance, StartApex, ant, oai
from tests.integration.access import access_lines
from tests.integration.cloud_clients import PROTOCOLS, TOOL, TOOLS_MESSAGES, TOOLS_RESPONSES, answered, ask
from tests.integration.cloud_fakes import CloudFake, SigV4, bedrock_chunk, bedrock_exception

AK, SK, TOKEN = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-1"
MODEL_ID = "us.anthropic.claude-sonnet-4-20250514-v1:0"


@pytest.fixture
async def cloud() -> AsyncIterator[CloudFake]:
    fake = CloudFake()
    fake.sigv4 = SigV4(AK, SK, "us-west-2", session_token=TOKEN)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def config(cloud: CloudFake, **channel: Any) -> dict[str, Any]:
    ch = {"name": "br", "provider_type": "bedrock", "region": "us-west-2", "base_url": cloud.url,
          "aws": {"access_key_id": AK, "secret_access_key": SK, "session_token": TOKEN},
          "model_map": {"claude-*": MODEL_ID}}
    ch.update(channel)
    return {
        "global": {"auth": {"keys": ["k"]}, "retries": {"max_attempts": 1}},
        "logging": {"level": "error"},
        "channels": [ch],
        "routers": [{"name": "r", "channels": [{"name": "br"}]}],
    }


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("tools", [False, True])
async def test_every_protocol_through_bedrock(cloud: CloudFake, start_apex: StartApex, protocol: str, stream: bool, tools: bool) -> None:
    """Chat, Responses and Messages clients reach Bedrock's InvokeModel(WithResponseStream), signed, and get answers."""
    inst = await start_apex(config(cloud))
    text, names = await ask(inst, protocol, "claude-sonnet-4", stream=stream, tools=tools)
    if tools:
        assert names and set(names) == {TOOL}
    else:
        assert answered(text) and not names
    sent = cloud.last("/model/")
    action = "invoke-with-response-stream" if stream else "invoke"
    assert sent.path == f"/model/{MODEL_ID.replace(':', '%3A')}/{action}"
    body = sent.json
    assert body["anthropic_version"] == "bedrock-2023-05-31" and "model" not in body and "stream" not in body
    assert sent.headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={AK}/")
    assert sent.headers["X-Amz-Security-Token"] == TOKEN
    if tools:
        assert body["tools"][0]["name"] == TOOL


async def test_wrong_secret_is_refused_by_the_signature_check(cloud: CloudFake, start_apex: StartApex) -> None:
    """A request signed with the wrong secret is rejected by the fake's SigV4 recomputation: 502 naming the channel."""
    cfg = config(cloud, aws={"access_key_id": AK, "secret_access_key": "not-the-secret", "session_token": TOKEN})
    inst = await start_apex(cfg)
    with pytest.raises(anthropic.APIStatusError) as err:
        await ant(inst, "k").messages.create(model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 502
    assert "signature we calculated does not match" in str(err.value)
    assert SK not in str(err.value) and "not-the-secret" not in str(err.value)


async def test_bedrock_api_key_is_a_bearer_token(cloud: CloudFake, start_apex: StartApex) -> None:
    """With api_key, Bedrock gets Authorization: Bearer and no SigV4 headers."""
    cloud.bedrock_api_key = "ABSK-test-key"
    cfg = config(cloud, api_key="ABSK-test-key")
    del cfg["channels"][0]["aws"]
    inst = await start_apex(cfg)
    text, _ = await ask(inst, "messages", "claude-x", stream=True, tools=False)
    assert "4242" in text
    sent = cloud.last("/model/")
    assert sent.headers["Authorization"] == "Bearer ABSK-test-key" and "X-Amz-Date" not in sent.headers


async def test_exception_frame_mid_stream_ends_the_stream_with_an_error(cloud: CloudFake, start_apex: StartApex) -> None:
    """A throttlingException frame after the first events becomes the client's in-stream error."""
    start = {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
             "content": [], "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 1}}}
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}
    cloud.stream_frames = [bedrock_chunk(json.dumps(e).encode()) for e in (start, block, delta)]
    cloud.stream_frames.append(bedrock_exception("throttlingException", "Too many tokens, please wait before trying again."))
    inst = await start_apex(config(cloud))
    c = oai(inst, "k")
    s = await c.chat.completions.create(model="claude-x", messages=[{"role": "user", "content": "hi"}], max_tokens=10, stream=True)
    got = ""
    with pytest.raises(openai.APIError) as err:
        async for chunk in s:
            for choice in chunk.choices:
                got += choice.delta.content or ""
    assert got == "Hel"
    assert "Too many tokens" in str(err.value)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("tools", [False, True])
async def test_every_protocol_through_converse(cloud: CloudFake, start_apex: StartApex, protocol: str, stream: bool, tools: bool) -> None:
    """A non-Anthropic model goes through Converse / ConverseStream, signed; answers and tool calls come back."""
    inst = await start_apex(config(cloud, model_map={"llama": "meta.llama3-3-70b-instruct-v1:0"}))
    text, names = await ask(inst, protocol, "llama", stream=stream, tools=tools)
    if tools:
        assert names == [TOOL]
    else:
        assert "4242" in text and not names
    sent = cloud.last("/model/")
    assert sent.path == f"/model/meta.llama3-3-70b-instruct-v1%3A0/{'converse-stream' if stream else 'converse'}"
    body = sent.json
    assert body["messages"][0] == {"role": "user", "content": [{"text": "What is 4200 + 42?"}]}
    assert body["inferenceConfig"]["maxTokens"] == 200
    if tools:
        assert body["toolConfig"]["tools"][0]["toolSpec"]["name"] == TOOL
    assert sent.headers["Authorization"].startswith("AWS4-HMAC-SHA256 ")


async def test_tool_results_reach_converse_as_tool_result_blocks(cloud: CloudFake, start_apex: StartApex) -> None:
    """A Messages turn with tool_use and tool_result becomes Converse toolUse / toolResult blocks."""
    inst = await start_apex(config(cloud, model_map={"llama": "meta.llama3-3-70b-instruct-v1:0"}))
    cloud.call_tools = False
    history: Any = [
        {"role": "user", "content": "Get the secret for mellon."},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_1", "name": TOOL, "input": {"password": "mellon"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": "the secret is 42", "is_error": False}]},
    ]
    done = await ant(inst, "k").messages.create(model="llama", max_tokens=50, system="Be brief.", messages=history,
                                                tools=TOOLS_MESSAGES)  # type: ignore[arg-type]
    assert done.content[0].type == "text" and "4242" in done.content[0].text
    body = cloud.last("/converse").json
    assert body["system"] == [{"text": "Be brief."}]
    assert body["messages"][1]["content"] == [{"toolUse": {"toolUseId": "tu_1", "name": TOOL, "input": {"password": "mellon"}}}]
    assert body["messages"][2]["content"] == [{"toolResult": {"toolUseId": "tu_1", "content": [{"text": "the secret is 42"}]}}]
    # No tools offered (or tool_choice none): Bedrock refuses toolUse/toolResult without a
    # toolConfig, so the history goes as text the model can read but not act on.
    extras: list[dict[str, Any]] = [{}, {"tools": TOOLS_MESSAGES, "tool_choice": {"type": "none"}}]
    for extra in extras:
        done = await ant(inst, "k").messages.create(model="llama", max_tokens=50, messages=history, **extra)
        assert done.content[0].type == "text"
        body = cloud.last("/converse").json
        assert "toolConfig" not in body
        assert body["messages"][1]["content"] == [{"text": f'[called tool {TOOL} with {{"password":"mellon"}}]'}]
        assert body["messages"][2]["content"] == [{"text": "[tool result: the secret is 42]"}]


async def test_same_role_turns_are_merged_for_converse(cloud: CloudFake, start_apex: StartApex) -> None:
    """Converse refuses two user (or assistant) turns in a row, which Chat histories hold (two
    user messages; Codex's turns): they go as one turn."""
    inst = await start_apex(config(cloud, model_map={"llama": "meta.llama3-3-70b-instruct-v1:0"}))
    done = await oai(inst, "k").chat.completions.create(model="llama", messages=[
        {"role": "user", "content": "first"}, {"role": "user", "content": "second"},
        {"role": "assistant", "content": "ok"}, {"role": "assistant", "content": "and more"},
        {"role": "user", "content": "third"}])
    assert done.choices[0].message.content
    body = cloud.last("/converse").json
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"] == [{"text": "first"}, {"text": "second"}]


@pytest.mark.parametrize("answer", [b"<html>Bad Gateway</html>", b'{"output": "not a message"}', b"[1, 2]"])
async def test_a_malformed_converse_answer_fails_over(cloud: CloudFake, start_apex: StartApex, answer: bytes) -> None:
    """A Converse 200 that is not a Converse answer is a failed attempt: the next channel
    serves (it was a 500 'internal error (DecodeError)' and no failover)."""
    cfg = config(cloud, model_map={"llama": "meta.llama3-3-70b-instruct-v1:0"})
    cfg["channels"].append({"name": "demo", "provider_type": "mock", "models": ["*"]})
    cfg["routers"][0]["channels"] = [{"name": cfg["channels"][0]["name"]}, {"name": "demo"}]
    cfg["routers"][0]["strategy"] = "priority"
    cfg["global"]["retries"] = {"max_attempts": 2, "backoff_ms": 1}
    inst = await start_apex(cfg)
    cloud.converse_answer = answer
    raw = await oai(inst, "k").chat.completions.with_raw_response.create(model="llama", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-apex-attempts"] == "2" and raw.headers["x-apex-channel"] == "demo"


async def test_claude_code_shapes_reach_converse(cloud: CloudFake, start_apex: StartApex) -> None:
    """Claude Code 2.1.3xx on a Converse model: its mid-conversation system message joins the
    system prompt (Converse has user/assistant turns only), deferred tools are declared once a
    tool_reference loads them, and the reference reaches the model as text."""
    inst = await start_apex(config(cloud, model_map={"llama": "meta.llama3-3-70b-instruct-v1:0"}))
    schema: dict[str, Any] = {"type": "object", "properties": {}}
    tools: list[Any] = [{"name": "ToolSearch", "description": "find tools", "input_schema": schema},
                        {"name": "WebFetch", "description": "fetch", "input_schema": schema, "defer_loading": True},
                        {"name": "CronList", "description": "crons", "input_schema": schema, "defer_loading": True}]
    messages: list[Any] = [
        {"role": "user", "content": "fetch example.com"},
        {"role": "system", "content": "# Environment: linux"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_1", "name": "ToolSearch",
                                           "input": {"query": "select:WebFetch"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1",
                                      "content": [{"type": "tool_reference", "tool_name": "WebFetch"}]},
                                     {"type": "text", "text": "Tool loaded."}]},
    ]
    done = await ant(inst, "k").messages.create(model="llama", max_tokens=50, system="Be brief.", tools=tools,
                                                messages=messages)
    assert done.content[0].type == "text"
    body = cloud.last("/converse").json
    assert body["system"] == [{"text": "Be brief."}, {"text": "# Environment: linux"}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert [t["toolSpec"]["name"] for t in body["toolConfig"]["tools"]] == ["ToolSearch", "WebFetch"]
    assert body["messages"][2]["content"] == [
        {"toolResult": {"toolUseId": "tu_1", "content": [{"text": "Tool loaded: WebFetch"}]}}, {"text": "Tool loaded."}]


MCP_TOOL = "mcp__claude_ai_internal_engineering_tools_server_v2__" + "x" * 40 + "alpha_search"  # 105 characters


@pytest.mark.parametrize("stream", [False, True])
async def test_long_tool_names_are_fitted_for_converse_and_come_back(cloud: CloudFake, start_apex: StartApex, stream: bool) -> None:
    """Converse takes tool names of at most 64 characters (the fake refuses longer ones as
    Bedrock does): Claude Code's 105-character MCP tool, loaded by tool search, goes out fitted
    in the tools, toolChoice, the history's calls and the "Tool loaded" text; the answer's call
    carries the client's name (it went out unchanged: a 400 on every turn)."""
    inst = await start_apex(config(cloud, model_map={"llama": "meta.llama3-3-70b-instruct-v1:0"}))
    schema: dict[str, Any] = {"type": "object", "properties": {}}
    tools: list[Any] = [{"name": "ToolSearch", "description": "find tools", "input_schema": schema},
                        {"name": MCP_TOOL, "description": "search", "input_schema": schema, "defer_loading": True}]
    messages: list[Any] = [
        {"role": "user", "content": "search alpha"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_1", "name": "ToolSearch", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1",
                                      "content": [{"type": "tool_reference", "tool_name": MCP_TOOL}]}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_2", "name": MCP_TOOL, "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_2", "content": "no hits"}]},
    ]
    extra: dict[str, Any] = {"tools": tools, "tool_choice": {"type": "tool", "name": MCP_TOOL}}
    client = ant(inst, "k")
    if stream:
        async with client.messages.stream(model="llama", max_tokens=50, messages=messages, **extra) as s:
            final = await s.get_final_message()
    else:
        final = await client.messages.create(model="llama", max_tokens=50, messages=messages, **extra)
    assert [b.name for b in final.content if b.type == "tool_use"] == [MCP_TOOL]
    body = cloud.last("/model/").json
    fitted = body["toolConfig"]["tools"][1]["toolSpec"]["name"]
    assert len(fitted) <= 64 and fitted.startswith("mcp__claude_ai") and fitted.endswith(MCP_TOOL[-20:])
    assert body["toolConfig"]["toolChoice"] == {"tool": {"name": fitted}}
    assert body["messages"][2]["content"] == [{"toolResult": {"toolUseId": "tu_1", "content": [{"text": f"Tool loaded: {fitted}"}]}}]
    assert body["messages"][3]["content"] == [{"toolUse": {"toolUseId": "tu_2", "name": fitted, "input": {}}}]


@pytest.mark.parametrize("stream", [False, True])
async def test_codex_namespace_tool_past_64_reaches_converse_fitted(cloud: CloudFake, start_apex: StartApex, stream: bool) -> None:
    """A Codex namespace tool flattened for Messages to 70 characters is fitted again for
    Converse, and the Responses client gets its call under its own name and namespace."""
    inst = await start_apex(config(cloud, model_map={"llama": "meta.llama3-3-70b-instruct-v1:0"}))
    namespace, name = "mcp__codex_apps_internal_engineering_server", "search_the_issue_tracker"
    tools: Any = [{"type": "namespace", "name": namespace, "description": "issues", "tools": [
        {"type": "function", "name": name, "description": "search", "parameters": {"type": "object", "properties": {}}}]}]
    c = oai(inst, "k")
    if stream:
        events = await c.responses.create(model="llama", input="find it", tools=tools, stream=True)
        calls: list[Any] = [ev.item async for ev in events
                            if ev.type == "response.output_item.done" and ev.item.type == "function_call"]
    else:
        done = await c.responses.create(model="llama", input="find it", tools=tools)
        calls = [o for o in done.output if o.type == "function_call"]
    assert [(call.name, call.model_dump().get("namespace")) for call in calls] == [(name, namespace)]
    sent = cloud.last("/model/").json["toolConfig"]["tools"][0]["toolSpec"]["name"]
    assert len(sent) <= 64 and sent.startswith(namespace[:15]) and sent.endswith(name)


async def test_betas_go_in_the_body_and_a_clients_own_list_wins(cloud: CloudFake, start_apex: StartApex) -> None:
    """Bedrock takes betas in the body: the header's known ones go there (unknown ones are dropped,
    Bedrock would refuse them); a client that wrote ``anthropic_beta`` itself keeps its list."""
    inst = await start_apex(config(cloud))
    client = ant(inst, "k")
    hi: list[Any] = [{"role": "user", "content": "hi"}]
    betas = {"anthropic-beta": "claude-code-20250219,effort-2025-11-24"}
    await client.messages.create(model="claude-x", max_tokens=50, messages=hi, extra_headers=betas)
    assert cloud.last("/invoke").json["anthropic_beta"] == ["effort-2025-11-24"]
    await client.messages.create(model="claude-x", max_tokens=50, messages=hi, extra_headers=betas,
                                 extra_body={"anthropic_beta": ["context-1m-2025-08-07"]})
    assert cloud.last("/invoke").json["anthropic_beta"] == ["context-1m-2025-08-07"]


@pytest.mark.parametrize("model", ["claude-x", "llama"])  # InvokeModel (Claude), Converse
@pytest.mark.parametrize("stream", [False, True])
async def test_bedrocks_own_errors_reach_anthropic_clients_in_anthropics_shape(
    cloud: CloudFake, start_apex: StartApex, model: str, stream: bool,
) -> None:
    """Bedrock answers {"message": ...} with an x-amzn-ErrorType: an Anthropic client gets
    Anthropic's error object (it got Bedrock's body as it was), with the status and message."""
    from aiohttp import web

    inst = await start_apex(config(cloud, model_map={"claude-*": MODEL_ID, "llama": "meta.llama3-3-70b-instruct-v1:0"}))
    cloud.next_error = web.json_response({"message": "Too many requests, please wait before trying again."}, status=429,
                                         headers={"x-amzn-ErrorType": "ThrottlingException:http://internal.amazon.com/"})
    with pytest.raises(anthropic.RateLimitError) as info:
        if stream:
            async with ant(inst, "k").messages.stream(model=model, max_tokens=5, messages=[{"role": "user", "content": "hi"}]) as s:
                await s.get_final_message()
        else:
            await ant(inst, "k").messages.create(model=model, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    body = info.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error", body
    assert "Too many requests" in body["error"]["message"]



@pytest.mark.parametrize("extra", [{"tools": [5]}, {"tools": [{"description": "no name"}]},
                                   {"tools": TOOLS_MESSAGES, "tool_choice": {"type": "tool"}},
                                   {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
                                   {"tools": [{"type": "bash_20250124", "name": "bash"}]}])
async def test_converse_refuses_tools_it_cannot_express(cloud: CloudFake, start_apex: StartApex, extra: dict[str, Any]) -> None:
    """A tool that is not an object with a name, a tool_choice naming no tool, or one of
    Anthropic's server tools (went as a parameterless function): a 400 naming the field, as on
    OpenAI and Gemini channels (the tools were dropped, or {"tool": {"name": null}} went to Bedrock)."""
    inst = await start_apex(config(cloud, model_map={"llama": "meta.llama3-3-70b-instruct-v1:0"}))
    with pytest.raises(anthropic.BadRequestError) as info:
        await ant(inst, "k").messages.create(model="llama", max_tokens=5, messages=[{"role": "user", "content": "hi"}], **extra)
    assert "tool" in info.value.message
    assert not [r for r in cloud.requests if "/converse" in r.path]


@pytest.mark.parametrize("stream", [False, True])
async def test_converse_reasoning_reaches_openai_and_anthropic_clients(cloud: CloudFake, start_apex: StartApex, stream: bool) -> None:
    """A Converse reasoningContent block (DeepSeek-R1 on Bedrock) reaches an OpenAI client as
    reasoning_content and an Anthropic client as a signed thinking block (spec 3); it was dropped."""
    cloud.converse_reasoning = True
    inst = await start_apex(config(cloud, model_map={"r1": "us.deepseek.r1-v1:0"}))
    messages: Any = [{"role": "user", "content": "What is 4200 + 42?"}]
    c = oai(inst, "k")
    if stream:
        s = await c.chat.completions.create(model="r1", messages=messages, max_tokens=200, stream=True)
        reasoning = text = ""
        async for chunk in s:
            for choice in chunk.choices:
                reasoning += getattr(choice.delta, "reasoning_content", None) or ""
                text += choice.delta.content or ""
    else:
        done = await c.chat.completions.create(model="r1", messages=messages, max_tokens=200)
        reasoning = getattr(done.choices[0].message, "reasoning_content", None) or ""
        text = done.choices[0].message.content or ""
    assert reasoning == "Adding the numbers." and "4242" in text
    a = ant(inst, "k")
    final: Any
    if stream:
        async with a.messages.stream(model="r1", max_tokens=200, messages=messages) as ms:
            final = await ms.get_final_message()
    else:
        final = await a.messages.create(model="r1", max_tokens=200, messages=messages)
    kinds = [b.type for b in final.content]
    assert kinds == ["thinking", "text"]
    thinking = final.content[0]
    assert thinking.type == "thinking" and thinking.thinking == "Adding the numbers." and thinking.signature == "sig-bdrk-1"


async def test_converse_stream_usage_keeps_cache_reads_and_writes(cloud: CloudFake, start_apex: StartApex) -> None:
    """ConverseStream's metadata usage with cache counts: the streamed answer carries them as
    the non-stream one does (they were dropped, so a cached stream was priced as uncached)."""
    cloud.converse_usage = {"inputTokens": 100, "outputTokens": 50, "cacheReadInputTokens": 1000,
                            "cacheWriteInputTokens": 200, "totalTokens": 1350}
    inst = await start_apex(config(cloud, model_map={"nova": "amazon.nova-pro-v1:0"}))
    messages: Any = [{"role": "user", "content": "What is 4200 + 42?"}]
    async with ant(inst, "k").messages.stream(model="nova", max_tokens=200, messages=messages) as ms:
        final = await ms.get_final_message()
    u = final.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens) == (100, 50, 1000, 200)
    s = await oai(inst, "k").chat.completions.create(model="nova", messages=messages, max_tokens=200, stream=True,
                                                     stream_options={"include_usage": True})
    usage = None
    async for chunk in s:
        usage = chunk.usage or usage
    assert usage is not None and usage.prompt_tokens == 1300 and usage.completion_tokens == 50
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 1000


async def test_images_in_tool_results_reach_converse(cloud: CloudFake, start_apex: StartApex) -> None:
    """A tool result holding an image (a screenshot tool) lost the image on the way to Converse."""
    inst = await start_apex(config(cloud, model_map={"llama": "meta.llama3-3-70b-instruct-v1:0"}))
    cloud.call_tools = False
    png = "iVBORw0KGgo="
    history: Any = [
        {"role": "user", "content": "Take a screenshot."},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_1", "name": TOOL, "input": {"password": "x"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": [
            {"type": "text", "text": "here"}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}]}]},
    ]
    await ant(inst, "k").messages.create(model="llama", max_tokens=50, messages=history, tools=TOOLS_MESSAGES)  # type: ignore[arg-type]
    result = cloud.last("/converse").json["messages"][2]["content"][0]["toolResult"]
    assert result["content"] == [{"text": "here"}, {"image": {"format": "png", "source": {"bytes": png}}}]


async def test_codex_image_tool_output_reaches_converse(cloud: CloudFake, start_apex: StartApex) -> None:
    """Codex's view_image output (a function_call_output whose output is input_text and
    input_image parts) was refused with 400 "function_call_output must be text": it reaches
    Converse as a toolResult holding the text and the image, as Claude Code's screenshot does."""
    inst = await start_apex(config(cloud, model_map={"llama": "meta.llama3-3-70b-instruct-v1:0"}))
    cloud.call_tools = False
    png = "iVBORw0KGgo="
    history: Any = [
        {"type": "message", "role": "user", "content": "Look at pic.png."},
        {"type": "function_call", "call_id": "call_1", "name": TOOL, "arguments": '{"password": "x"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": [
            {"type": "input_text", "text": "here"}, {"type": "input_image", "image_url": f"data:image/png;base64,{png}"}]},
    ]
    await oai(inst, "k").responses.create(model="llama", input=history, tools=TOOLS_RESPONSES)  # type: ignore[arg-type]
    result = cloud.last("/converse").json["messages"][2]["content"][0]["toolResult"]
    assert result["content"] == [{"text": "here"}, {"image": {"format": "png", "source": {"bytes": png}}}]


async def test_documents_reach_converse_in_messages_and_tool_results(cloud: CloudFake, start_apex: StartApex) -> None:
    """Claude Code's Read of a PDF answers a text line plus the PDF as a document block: on
    Converse only the text went (the model never saw the file), and a document in a user
    message was a 400. Converse takes documents in both places."""
    inst = await start_apex(config(cloud, model_map={"llama": "meta.llama3-3-70b-instruct-v1:0"}))
    cloud.call_tools = False
    pdf = "JVBERi0xLjQK"
    doc: Any = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf}}
    history: Any = [
        {"role": "user", "content": [{"type": "text", "text": "Read both."}, doc,
                                     {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_1", "name": TOOL, "input": {"password": "x"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": [
            {"type": "text", "text": "PDF file read"}, doc]}]},
    ]
    await ant(inst, "k").messages.create(model="llama", max_tokens=50, messages=history, tools=TOOLS_MESSAGES)  # type: ignore[arg-type]
    sent = cloud.last("/converse").json["messages"]
    first = sent[0]["content"][1]["document"]
    assert first["format"] == "pdf" and first["source"] == {"bytes": pdf} and re.fullmatch(r"[A-Za-z0-9-]+", first["name"])
    assert sent[0]["content"][2]["document"]["format"] == "txt"
    result = sent[2]["content"][0]["toolResult"]["content"]
    assert result[0] == {"text": "PDF file read"} and result[1]["document"]["source"] == {"bytes": pdf}


async def test_a_converse_stream_broken_before_its_usage_is_charged_its_prompt(cloud: CloudFake, start_apex: StartApex,
                                                                              log_file: Path) -> None:
    """ConverseStream counts only in its last frame; a stream that breaks before it reported 0
    prompt tokens, taken as reported: the prompt is estimated instead (it was priced $0)."""
    cfg = config(cloud, model_map={"llama": "meta.llama3-3-70b-instruct-v1:0"})
    cfg["logging"] = {"level": "info", "file": str(log_file)}
    inst = await start_apex(cfg)
    cloud.converse_break_after = 3  # messageStart and two text deltas
    stream = await oai(inst, "k").chat.completions.create(
        model="llama", messages=[{"role": "user", "content": "word " * 400}], max_tokens=50, stream=True)
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    await asyncio.sleep(0.1)
    tokens = access_lines(log_file)[-1]["tokens"]
    assert tokens["estimated"] is True and tokens["prompt"] >= 300, tokens


async def test_a_quota_refusal_fails_over_to_the_next_region(cloud: CloudFake, start_apex: StartApex) -> None:
    """Bedrock refuses over quota with a 400 ServiceQuotaExceededException that may be resubmitted:
    a rate limit, so the other region's channel answers (the client got invalid_request_error)."""
    from aiohttp import web

    cfg = config(cloud)
    cfg["global"]["retries"] = {"max_attempts": 2, "backoff_ms": 1, "max_backoff_ms": 5}
    cfg["channels"].append({**cfg["channels"][0], "name": "br-east"})  # another account (the fake signs one region)
    cfg["routers"][0]["channels"] = [{"name": "br"}, {"name": "br-east"}]
    cfg["routers"][0]["strategy"] = "priority"
    inst = await start_apex(cfg)
    cloud.next_error = web.json_response({"message": "You have exceeded your quota"}, status=400, headers={
        "x-amzn-ErrorType": "ServiceQuotaExceededException:http://internal.amazon.com/coral/com.amazon.bedrock/"})
    reply = await ant(inst, "k").messages.with_raw_response.create(
        model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert reply.headers["x-apex-channel"] == "br-east"


async def test_a_conversation_starting_with_the_assistant_reaches_converse(cloud: CloudFake, start_apex: StartApex) -> None:
    """A chat app's greeting first: Converse refuses a conversation that does not start with the
    user (a 400 every time), so a one-character user turn goes first."""
    inst = await start_apex(config(cloud, model_map={"llama": "meta.llama3-3-70b-instruct-v1:0"}))
    await oai(inst, "k").chat.completions.create(model="llama", messages=[
        {"role": "assistant", "content": "Hi! How can I help?"}, {"role": "user", "content": "What is 4200 + 42?"}])
    sent = cloud.last("/model/").json
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]


async def test_a_request_converse_cannot_carry_goes_to_the_routes_next_channel(cloud: CloudFake,
                                                                               start_apex: StartApex) -> None:
    """Converse refuses Anthropic's server tools; the Anthropic channel after it takes them.
    The refusal came from the route's own conversion, after the attempt had started: it was a
    400 from the Converse channel with one attempt, the next channel never tried."""
    cfg = config(cloud, model_map={"llama": "meta.llama3-3-70b-instruct-v1:0"})
    cfg["channels"].append({"name": "demo", "provider_type": "mock", "models": ["*"]})
    cfg["routers"][0]["channels"] = [{"name": "br"}, {"name": "demo"}]
    cfg["routers"][0]["strategy"] = "priority"
    inst = await start_apex(cfg)
    raw = await ant(inst, "k").messages.with_raw_response.create(
        model="llama", max_tokens=5, messages=[{"role": "user", "content": "hi"}],
        tools=[{"type": "web_search_20250305", "name": "web_search"}])
    assert raw.headers["x-apex-channel"] == "demo" and raw.headers["x-apex-attempts"] == "1"
    assert not [r for r in cloud.requests if "/converse" in r.path]


async def test_codexs_web_search_is_dropped_for_converse(cloud: CloudFake, start_apex: StartApex) -> None:
    """Codex's web_search became Anthropic's server tool, which Converse refuses: every turn of
    Codex on a Converse model was a 400. Dropped and named, as on other channels without one."""
    inst = await start_apex(config(cloud, model_map={"llama": "meta.llama3-3-70b-instruct-v1:0"}))
    raw = await oai(inst, "k").responses.with_raw_response.create(model="llama", input="hi",
                                                                  tools=[{"type": "web_search"}])
    assert raw.http_response.status_code == 200 and "web_search" in raw.headers["x-apex-dropped-tools"]
    assert "toolConfig" not in cloud.last("/model/").json


class Weather(pydantic.BaseModel):
    city: str
    temp: int


@pytest.mark.parametrize("stream", [False, True])
async def test_an_anthropic_clients_structured_output_reaches_converse(cloud: CloudFake, start_apex: StartApex,
                                                                       stream: bool) -> None:
    """messages.parse(output_format=...) on a Converse model: output_config.format was dropped, so
    the model was never asked for JSON and the SDK's parse failed on its prose. It gets the
    system instruction with the schema that OpenAI and Gemini clients get on the same model."""
    cloud.converse_json = '{"city": "Paris", "temp": 20}'  # what the model says when asked for JSON
    inst = await start_apex(config(cloud, model_map={"llama": "meta.llama3-3-70b-instruct-v1:0"}))
    a = ant(inst, "k")
    messages: Any = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        async with a.messages.stream(model="llama", max_tokens=200, system="Be brief.", messages=messages,
                                     output_format=Weather) as s:
            parsed = (await s.get_final_message()).parsed_output
    else:
        parsed = (await a.messages.parse(model="llama", max_tokens=200, system="Be brief.", messages=messages,
                                         output_format=Weather)).parsed_output
    assert parsed == Weather(city="Paris", temp=20)
    system = cloud.last("/model/").json["system"]
    assert system[0] == {"text": "Be brief."} and "JSON" in system[1]["text"]
    assert set(json.loads(system[1]["text"].split("\n", 1)[1])["properties"]) == {"city", "temp"}
    # The same instruction as an OpenAI client's json_schema gets on this model.
    await oai(inst, "k").chat.completions.parse(model="llama", messages=messages, response_format=Weather)
    assert cloud.last("/model/").json["system"][-1]["text"].split("\n", 1)[0] == system[1]["text"].split("\n", 1)[0]


async def _ends(inst: ApexInstance, stream: bool) -> tuple[str | None, str | None, str]:
    """How one Converse answer ended for each client: Chat finish_reason, Anthropic
    stop_reason, Responses status (with its incomplete reason)."""
    messages: Any = [{"role": "user", "content": "What is 4200 + 42?"}]
    c, a = oai(inst, "k"), ant(inst, "k")
    if stream:
        chat = None
        async for chunk in await c.chat.completions.create(model="llama", messages=messages, stream=True):
            chat = next((ch.finish_reason for ch in chunk.choices if ch.finish_reason), chat)
        async with a.messages.stream(model="llama", max_tokens=200, messages=messages) as s:
            stop = (await s.get_final_message()).stop_reason
        response = None
        async for ev in await c.responses.create(model="llama", input="What is 4200 + 42?", stream=True):
            if ev.type in ("response.completed", "response.incomplete"):
                response = ev.response
        assert response is not None
    else:
        chat = (await c.chat.completions.create(model="llama", messages=messages)).choices[0].finish_reason
        stop = (await a.messages.create(model="llama", max_tokens=200, messages=messages)).stop_reason
        response = await c.responses.create(model="llama", input="What is 4200 + 42?")
    details = response.incomplete_details.reason if response.incomplete_details is not None else None
    return chat, stop, f"{response.status}:{details}" if details else str(response.status)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("reason", "chat", "stop", "status"), [
    ("model_context_window_exceeded", "length", "model_context_window_exceeded", "incomplete:max_output_tokens"),
    ("max_tokens", "length", "max_tokens", "incomplete:max_output_tokens"),
    ("stop_sequence", "stop", "stop_sequence", "completed"),
    ("guardrail_intervened", "content_filter", "refusal", "incomplete:content_filter"),
    ("content_filtered", "content_filter", "refusal", "incomplete:content_filter"),
    ("malformed_model_output", "stop", "end_turn", "completed"),
    ("malformed_tool_use", "stop", "end_turn", "completed"),
])
async def test_converse_stop_reasons_reach_every_client(cloud: CloudFake, start_apex: StartApex, stream: bool,
                                                        reason: str, chat: str, stop: str, status: str) -> None:
    """Each documented Converse stopReason (end_turn and tool_use: above) as Chat, Anthropic and
    Responses clients see it. model_context_window_exceeded was a normal end (stop, end_turn,
    completed), so an app checking for a cut answer took it as whole: it is Anthropic's own
    value, read as Anthropic's is. A malformed output with text ends the turn, as Gemini's do."""
    cloud.converse_stop = reason
    inst = await start_apex(config(cloud, model_map={"llama": "meta.llama3-3-70b-instruct-v1:0"}))
    assert await _ends(inst, stream) == (chat, stop, status)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("reason", ["malformed_model_output", "malformed_tool_use"])
async def test_a_malformed_converse_output_with_nothing_said_is_an_error(cloud: CloudFake, start_apex: StartApex,
                                                                        stream: bool, reason: str) -> None:
    """Bedrock could not read the model's output and nothing came with it: that was an empty
    answer ending normally (end_turn). It is a malformed answer (a 502, or the stream's error),
    as Gemini's MALFORMED_* finish with no output is."""
    cloud.converse_stop, cloud.converse_text, cloud.call_tools = reason, "", False
    inst = await start_apex(config(cloud, model_map={"llama": "meta.llama3-3-70b-instruct-v1:0"}))
    a = ant(inst, "k")
    messages: Any = [{"role": "user", "content": "What is 4200 + 42?"}]
    with pytest.raises(anthropic.APIError) as err:
        if stream:
            async with a.messages.stream(model="llama", max_tokens=200, messages=messages) as s:
                await s.get_final_message()
        else:
            await a.messages.create(model="llama", max_tokens=200, messages=messages)
    assert f"no usable output (stopReason {reason})" in str(err.value)
    if not stream:
        assert isinstance(err.value, anthropic.APIStatusError) and err.value.status_code == 502
    with pytest.raises(openai.APIError):
        if stream:
            async for _ in await oai(inst, "k").chat.completions.create(model="llama", messages=messages, stream=True):
                pass
        else:
            await oai(inst, "k").chat.completions.create(model="llama", messages=messages)
