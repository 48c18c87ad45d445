"""Anthropic fields that refer to state Anthropic's API keeps: ``thread``, ``mcp_servers``, ``container``.

The anthropic SDK's ``client.beta.messages.tool_runner`` holds the conversation in a server-side
thread by default (the message-threads beta): turn 1 sends ``thread: {"type": "create"}``, later
turns only the new tool results with ``thread: {"type": "continue", ...}``. A translated channel
dropped ``thread``, so the upstream got a turn without the user's question or the model's tool
call (an orphan tool message on OpenAI, an unknown function response on Gemini). Apex refuses
such a request on channels that cannot hold a thread with Anthropic's
``thread_unsupported_request``: the next channel of the route serves it, or the SDK resends
the turn unthreaded with the whole history. ``mcp_servers`` and ``container`` were dropped
silently the same way and are refused too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic import beta_async_tool

from tests.conftest import StartApex, ant, basic_config, one_channel_config
from tests.integration.cloud_fakes import CloudFake, claude_channel
from tests.integration.fakes import FAKE_TOOL, Behaviour, FakeUpstream, fixture_bytes, split_events

THREADS_BETA = "message-threads-2026-08-12"
QUESTION = "What is the secret for mellon?"
REFUSED_THREAD = {"error_code": "thread_unsupported_request", "unsupported": ["thread"]}
HELD: dict[str, dict[str, Any]] = {
    "thread": {"thread": {"type": "continue", "previous_message_id": "msg_01abc"}},
    "mcp_servers": {"mcp_servers": [{"type": "url", "url": "https://mcp.example.com/sse", "name": "ex"}]},
    "container": {"container": "container_011CPR5CNjB747bTd36fQLFk"},
}


@beta_async_tool(name=FAKE_TOOL)
async def secret_retrieval_tool(password: str) -> str:
    """Look up the secret a password guards."""
    return f"the secret for {password} is 42"


def gemini_channel(upstream: FakeUpstream) -> dict[str, Any]:
    return {"name": "gm", "provider_type": "gemini", "base_url": upstream.url, "api_key": "AIza-upstream-gm-000000"}


def only(upstream: FakeUpstream, kind: str) -> dict[str, Any]:
    """A route to the fake upstream whose one channel speaks ``kind`` (openai or gemini)."""
    cfg = basic_config(upstream)
    cfg["global"]["retries"]["max_attempts"] = 1
    if kind == "gemini":
        cfg["channels"].append(gemini_channel(upstream))
        cfg["routers"][0]["channels"] = [{"name": "gm"}]
    return cfg


def converse_channel(cloud: CloudFake) -> dict[str, Any]:
    cloud.bedrock_api_key = "ABSK-test"
    return {"provider_type": "bedrock", "region": "us-west-2", "base_url": cloud.url, "api_key": "ABSK-test",
            "model_map": {"*": "meta.llama3-3-70b-instruct-v1:0"}}


# The model's turn that calls the tool, then its answer, as each upstream sends them.
ANSWERS: dict[str, tuple[bytes, bytes]] = {
    "openai": (fixture_bytes("openai_chat_nonstream_tool_calls.json"), fixture_bytes("openai_chat_nonstream.json")),
    "gemini": (split_events(fixture_bytes("gemini_stream_function_call.sse"))[0].strip()[6:],
               fixture_bytes("gemini_generate_content.json")),
}


@pytest.mark.parametrize("kind", ["openai", "gemini"])
async def test_the_sdks_tool_runner_sends_the_whole_conversation_to_a_translated_channel(
        upstream: FakeUpstream, start_apex: StartApex, kind: str) -> None:
    """The threaded first turn is refused with ``thread_unsupported_request`` before anything is
    sent; the SDK resends it unthreaded, so the second turn reaches the upstream with the question,
    the model's tool calls and their results, and the tools."""
    inst = await start_apex(only(upstream, kind))
    upstream.push(*(Behaviour(body=answer) for answer in ANSWERS[kind]))
    model = "gpt-4o" if kind == "openai" else "gemini-2.5-flash"
    runner = ant(inst).beta.messages.tool_runner(model=model, max_tokens=200, tools=[secret_retrieval_tool],
                                                 messages=[{"role": "user", "content": QUESTION}])
    replies = [reply async for reply in runner]
    assert [r.stop_reason for r in replies] == ["tool_use", "end_turn"]
    assert "4242" in str(replies[-1].content[0])
    assert len(upstream.requests) == 2 and all("thread" not in r.json for r in upstream.requests)
    second = upstream.requests[1].json
    if kind == "openai":
        messages = second["messages"]
        assert messages[0] == {"role": "user", "content": QUESTION}
        assert [c["function"]["name"] for c in messages[1]["tool_calls"]] == [FAKE_TOOL, FAKE_TOOL]
        assert [(m["role"], m["content"]) for m in messages[2:]] == [
            ("tool", "the secret for mellon is 42"), ("tool", "the secret for radiance is 42")]
        assert second["tools"][0]["function"]["name"] == FAKE_TOOL
    else:
        contents = second["contents"]
        assert contents[0] == {"role": "user", "parts": [{"text": QUESTION}]}
        assert contents[1]["parts"][0]["functionCall"]["name"] == FAKE_TOOL
        response = contents[2]["parts"][0]["functionResponse"]
        assert response["name"] == FAKE_TOOL and "the secret for mellon is 42" in json.dumps(response)
        assert second["tools"][0]["functionDeclarations"][0]["name"] == FAKE_TOOL


@pytest.mark.parametrize("kind", ["bedrock", "vertex"])
async def test_a_thread_is_refused_by_the_clouds_claude(upstream: FakeUpstream, cloud: CloudFake, start_apex: StartApex,
                                                        tmp_path: Path, kind: str) -> None:
    """Bedrock and Vertex take Claude's Messages body but hold no threads (nor get their beta):
    the thread went in the body and the cloud answered without the conversation. Refused with
    ``thread_unsupported_request``; the SDK's runner goes on unthreaded."""
    inst = await start_apex(one_channel_config(kind, claude_channel(kind, upstream, cloud, tmp_path), "vk"))
    with pytest.raises(anthropic.BadRequestError) as info:
        await ant(inst, "vk").beta.messages.create(model="claude-x", max_tokens=50, betas=[THREADS_BETA],
                                                   messages=[{"role": "user", "content": QUESTION}], **HELD["thread"])
    assert info.value.body["error"]["details"] == REFUSED_THREAD  # type: ignore[index]
    assert not cloud.requests
    cloud.call_tools = False
    runner = ant(inst, "vk").beta.messages.tool_runner(model="claude-x", max_tokens=50,
                                                       tools=[secret_retrieval_tool],
                                                       messages=[{"role": "user", "content": QUESTION}])
    assert [r.stop_reason async for r in runner] == ["end_turn"]
    assert [r.json["messages"] for r in cloud.requests] == [[{"role": "user", "content": QUESTION}]]
    assert "thread" not in cloud.requests[0].json


async def test_a_thread_goes_to_the_routes_anthropic_channel_untouched(upstream: FakeUpstream,
                                                                       start_apex: StartApex) -> None:
    """An OpenAI channel cannot carry a thread, MCP servers or a container; the Anthropic channel
    after it serves the request with all three and the threads beta as sent. Skipping a channel
    that cannot carry the request is no fallback (nothing was sent to it)."""
    cfg = basic_config(upstream)
    cfg["routers"][0]["rules"].insert(0, {"match": {"model": "mix"}, "strategy": "priority",
                                          "channels": [{"name": "oa"}, {"name": "an"}]})
    inst = await start_apex(cfg)
    held = {name: value for fields in HELD.values() for name, value in fields.items()}
    raw = await ant(inst).beta.messages.with_raw_response.create(
        model="mix", max_tokens=50, betas=[THREADS_BETA], messages=[{"role": "user", "content": QUESTION}], **held)
    assert raw.headers["x-apex-channel"] == "an" and raw.headers["x-apex-attempts"] == "1"
    assert len(upstream.requests) == 1 and upstream.requests[0].path.endswith("/v1/messages")
    sent = upstream.requests[0]
    assert {name: sent.json[name] for name in held} == held
    assert THREADS_BETA in sent.headers["anthropic-beta"]
    assert inst.gateway.snapshot.health.is_available("oa", inst.gateway.clock())
    assert "apex_fallback_total{" not in (inst.gateway.metrics_response().text or "")


@pytest.mark.parametrize("field", list(HELD))
@pytest.mark.parametrize("kind", ["openai", "gemini", "converse"])
async def test_state_anthropic_keeps_is_refused_on_a_translated_route(
        upstream: FakeUpstream, cloud: CloudFake, start_apex: StartApex, kind: str, field: str) -> None:
    """Each field went nowhere (a 200 without it); now a 400 naming it, and for ``thread`` the
    details the SDK recovers from. Nothing reaches the upstream."""
    if kind == "converse":
        inst = await start_apex(one_channel_config("br", converse_channel(cloud), "vk-default"))
    else:
        inst = await start_apex(only(upstream, kind))
    with pytest.raises(anthropic.BadRequestError) as info:
        await ant(inst).beta.messages.create(model="gemini-2.5-flash" if kind == "gemini" else "gpt-4o", max_tokens=50,
                                             messages=[{"role": "user", "content": QUESTION}], **HELD[field])
    error = info.value.body["error"]  # type: ignore[index]
    assert error["type"] == "invalid_request_error" and error["message"].startswith(f"{field} is not supported")
    assert error.get("details") == (REFUSED_THREAD if field == "thread" else None)
    assert not upstream.requests and not cloud.requests


@pytest.mark.parametrize("provider", ["deepseek", "openai_compatible"])
async def test_a_thread_is_refused_by_other_anthropic_shaped_endpoints(upstream: FakeUpstream, start_apex: StartApex,
                                                                       provider: str) -> None:
    """DeepSeek's Anthropic endpoint, or a local server's given as anthropic_base_url, is spoken
    to natively but holds no threads: the thread went on untouched, and the next turn would
    reach it without the conversation. Refused with ``thread_unsupported_request`` (nothing
    sent); the SDK's runner then goes on unthreaded, and a request without thread passes."""
    channel = {"name": "x", "provider_type": provider, "base_url": upstream.openai_url, "api_key": "sk-x",
               "anthropic_base_url": upstream.url + "/anthropic"}
    inst = await start_apex(one_channel_config("x", channel, "vk"))
    with pytest.raises(anthropic.BadRequestError) as info:
        await ant(inst, "vk").beta.messages.create(model="deepseek-chat", max_tokens=50, betas=[THREADS_BETA],
                                                   messages=[{"role": "user", "content": QUESTION}], **HELD["thread"])
    assert info.value.body["error"]["details"] == REFUSED_THREAD  # type: ignore[index]
    assert not upstream.requests
    done = await ant(inst, "vk").messages.create(model="deepseek-chat", max_tokens=50,
                                                 messages=[{"role": "user", "content": QUESTION}])
    assert done.content and upstream.requests[-1].path == "/anthropic/v1/messages"
    assert "thread" not in upstream.requests[-1].json
