"""What Claude Code and Codex need from a translated channel, item by item, over real HTTP.

Each test replays a real capture (``tests/fixtures/clients``) through Apex to the strict
agent fake (``agent_upstream``) and asserts on what the upstream received and what the
client got back (validated with the official SDK types by ``agent_client``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from tests.conftest import StartApex
from tests.integration.agent_client import capture, next_turn, send
from tests.integration.agent_upstream import AgentUpstream, Seen
from tests.integration.fakes import Behaviour, FakeUpstream, split_events

KEY = "vk-agents"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def fakes() -> AsyncIterator[dict[str, AgentUpstream]]:
    made = {mode: AgentUpstream(mode) for mode in ("openai", "compat", "anthropic", "gemini")}
    for fake in made.values():
        await fake.start()
    yield made
    for fake in made.values():
        await fake.stop()


def config(fakes: dict[str, AgentUpstream], **channel_extra: Any) -> dict[str, Any]:
    """Channels of every kind; the client's model picks one through a model_map prefix."""
    def ch(name: str, provider: str, url: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "provider_type": provider, "base_url": url, **extra, **channel_extra.get(name, {})}
    oa, compat, an, gm = (fakes[m].url for m in ("openai", "compat", "anthropic", "gemini"))
    return {
        "global": {"retries": {"max_attempts": 1}},
        "logging": {"level": "error"},
        "channels": [
            ch("oa-reasoning", "openai", oa + "/v1", api_key="sk-oa-secret-0123456789abcdef", model_map={"*": "gpt-5-mini"}),
            ch("oa-chat", "openai", oa + "/v1", api_key="sk-oa-secret-0123456789abcdef", model_map={"*": "gpt-4.1"}),
            ch("compat", "openai_compatible", compat + "/v1", model_map={"*": "deepseek-reasoner"}),
            ch("an", "anthropic", an, api_key="sk-ant-secret-0123456789abcdef", model_map={"gpt-*": "claude-sonnet-4-5"}),
            ch("gm", "gemini", gm, api_key="g-secret", model_map={"*": "gemini-2.5-flash"}),
            ch("gm-old", "gemini", gm, api_key="g-secret", model_map={"*": "gemini-2.0-flash"}),
        ],
        "routers": [{"name": name, "vkey": f"vk-{name}", "channels": [{"name": name}]}
                    for name in ("oa-reasoning", "oa-chat", "compat", "an", "gm", "gm-old")],
    }


async def run(session: aiohttp.ClientSession, base: str, channel: str, name: str,
              body: dict[str, Any] | None = None, **kw: Any) -> Any:
    cap = capture(name)
    return await send(session, base, f"vk-{channel}", cap, body if body is not None else dict(cap["body"]), **kw)


def last(fake: AgentUpstream) -> Seen:
    assert fake.seen, "the upstream saw no request"
    return fake.seen[-1]


# --- 1. mid-conversation system messages ---------------------------------------------


async def test_mid_conversation_system_message_on_openai_and_gemini(
        fakes: dict[str, AgentUpstream], start_apex: StartApex, session: aiohttp.ClientSession) -> None:
    """Claude Code's role:system turn becomes a system message in place (Chat) and joins the system instruction (Gemini)."""
    inst = await start_apex(config(fakes))
    for channel in ("oa-chat", "compat"):
        answer = await run(session, inst.url, channel, "claude_code_default_turn1")
        assert answer.status == 200, answer.raw
    mode_msgs = last(fakes["compat"]).body["messages"]
    roles = [m["role"] for m in mode_msgs]
    assert roles[:3] == ["system", "user", "system"]  # the top-level system first, then the turns in order
    assert mode_msgs[2]["content"].startswith("Available agent types")
    answer = await run(session, inst.url, "gm", "claude_code_default_turn1")
    assert answer.status == 200, answer.raw
    sent = last(fakes["gemini"]).body
    system = " ".join(p["text"] for p in sent["systemInstruction"]["parts"])
    assert "Available agent types" in system
    assert all(c["role"] in ("user", "model") for c in sent["contents"])


# --- 2 + 3. the capability table ------------------------------------------------------


async def test_thinking_maps_only_where_the_model_reasons(
        fakes: dict[str, AgentUpstream], start_apex: StartApex, session: aiohttp.ClientSession) -> None:
    """Adaptive thinking + effort becomes reasoning_effort and max_completion_tokens on gpt-5, nothing on gpt-4.1."""
    inst = await start_apex(config(fakes))
    assert (await run(session, inst.url, "oa-reasoning", "claude_code_default_turn1")).status == 200
    sent = last(fakes["openai"]).body
    assert sent["model"] == "gpt-5-mini" and sent["reasoning_effort"] == "high"
    assert sent["max_completion_tokens"] == 64000 and "max_tokens" not in sent
    assert (await run(session, inst.url, "oa-reasoning", "claude_code_sonnet_turn1")).status == 200
    assert last(fakes["openai"]).body["reasoning_effort"] == "high"  # budget 31999
    assert (await run(session, inst.url, "oa-chat", "claude_code_default_turn1")).status == 200
    sent = last(fakes["openai"]).body
    assert sent["model"] == "gpt-4.1" and "reasoning_effort" not in sent
    assert sent["max_tokens"] == 32768  # Claude Code asks 64,000; OpenAI refuses more than gpt-4.1 gives
    assert (await run(session, inst.url, "gm", "claude_code_sonnet_turn1")).status == 200
    assert last(fakes["gemini"]).body["generationConfig"]["thinkingConfig"]["includeThoughts"] is True
    assert (await run(session, inst.url, "gm-old", "claude_code_sonnet_turn1")).status == 200
    assert "thinkingConfig" not in last(fakes["gemini"]).body["generationConfig"]
    assert fakes["openai"].refusals == [] and fakes["gemini"].refusals == []


async def test_codex_effort_on_openai_reasoner_and_dropped_for_chat_model(
        fakes: dict[str, AgentUpstream], start_apex: StartApex, session: aiohttp.ClientSession) -> None:
    """Codex's reasoning settings reach a reasoning model and are removed for a known non-reasoning one (native Responses)."""
    inst = await start_apex(config(fakes))
    assert (await run(session, inst.url, "oa-reasoning", "codex_default_turn1")).status == 200
    sent = last(fakes["openai"]).body
    assert sent["reasoning"]["effort"] == "low" and "reasoning.encrypted_content" in sent["include"]
    assert (await run(session, inst.url, "oa-chat", "codex_default_turn1")).status == 200
    sent = last(fakes["openai"]).body
    assert "reasoning" not in sent and sent["include"] == [] and sent["model"] == "gpt-4.1"
    assert fakes["openai"].refusals == []


async def test_channel_capability_override(
        fakes: dict[str, AgentUpstream], start_apex: StartApex, session: aiohttp.ClientSession) -> None:
    """A channel's ``capabilities`` row makes an unknown compatible model a reasoner with max_completion_tokens."""
    row = {"model": "deepseek-*", "reasons": True, "max_tokens_field": "max_completion_tokens", "efforts": ["low", "high"]}
    inst = await start_apex(config(fakes, compat={"capabilities": [row]}))
    assert (await run(session, inst.url, "compat", "claude_code_default_turn1")).status == 200
    sent = last(fakes["compat"]).body
    assert sent["reasoning_effort"] == "high" and sent["max_completion_tokens"] == 64000 and "max_tokens" not in sent
    inst2 = await start_apex(config(fakes))
    assert (await run(session, inst2.url, "compat", "claude_code_default_turn1")).status == 200
    sent = last(fakes["compat"]).body  # built in: deepseek-reasoner thinks on its own, no knob
    assert "reasoning_effort" not in sent and sent["max_tokens"] == 64000


async def test_renamed_chat_model_gets_the_fields_it_takes(fakes: dict[str, AgentUpstream], start_apex: StartApex) -> None:
    """A Chat request for gpt-4.1 (max_tokens, temperature) that a model_map sends to gpt-5-mini reaches it with
    max_completion_tokens and no sampling settings; one with reasoning_effort renamed to gpt-4.1 loses the knob.
    Without the fit OpenAI answers 400 (LiteLLM's and the OpenAI SDK's defaults for gpt-4.1 hit it)."""
    inst = await start_apex(config(fakes))
    messages: Any = [{"role": "user", "content": "Say hi."}]
    to_reasoner = openai.AsyncOpenAI(base_url=inst.url + "/v1", api_key="vk-oa-reasoning", max_retries=0)
    to_chat = openai.AsyncOpenAI(base_url=inst.url + "/v1", api_key="vk-oa-chat", max_retries=0)
    try:
        answer = await to_reasoner.chat.completions.create(model="gpt-4.1", messages=messages, max_tokens=300,
                                                           temperature=0.2, top_p=0.9)
        assert answer.choices[0].message.content and answer.model == "gpt-4.1"  # the client's name on the way back
        sent = last(fakes["openai"]).body
        assert sent["model"] == "gpt-5-mini" and sent["max_completion_tokens"] == 300
        assert "max_tokens" not in sent and "temperature" not in sent and "top_p" not in sent
        await to_reasoner.chat.completions.create(model="gpt-4.1", messages=messages, max_tokens=300,
                                                  max_completion_tokens=500)
        sent = last(fakes["openai"]).body
        assert sent["max_completion_tokens"] == 500 and "max_tokens" not in sent  # the client's own limit wins
        await to_chat.chat.completions.create(model="o4-mini", messages=messages, reasoning_effort="high",
                                              max_completion_tokens=300, temperature=0.3)
        sent = last(fakes["openai"]).body
        assert sent["model"] == "gpt-4.1" and "reasoning_effort" not in sent
        assert sent["max_completion_tokens"] == 300 and sent["temperature"] == 0.3  # what gpt-4.1 takes stays
        # Responses pass-through: max_output_tokens suits both; the sampling settings go for the reasoner.
        await to_reasoner.responses.create(model="gpt-4.1", input="Say hi.", temperature=0.2, top_p=0.5,
                                           max_output_tokens=300)
        sent = last(fakes["openai"]).body
        assert sent["model"] == "gpt-5-mini" and sent["max_output_tokens"] == 300
        assert "temperature" not in sent and "top_p" not in sent
    finally:
        await to_reasoner.close()
        await to_chat.close()
    assert fakes["openai"].refusals == []


async def gemini_generate(base_url: str, key: str, model: str,
                          cfg: genai_types.GenerateContentConfig) -> genai_types.GenerateContentResponse:
    """One generateContent through Apex with the google-genai SDK (no retries)."""
    client = genai.Client(api_key=key, http_options=genai_types.HttpOptions(
        base_url=base_url, retry_options=genai_types.HttpRetryOptions(attempts=1)))
    try:
        return await client.aio.models.generate_content(model=model, contents="Say hi.", config=cfg)
    finally:
        await client.aio.aclose()


async def test_gemini_client_sampling_reaches_a_reasoning_model_without_it(
        fakes: dict[str, AgentUpstream], start_apex: StartApex) -> None:
    """A Gemini client's temperature/topP (LangChain sends a temperature by default) are dropped for gpt-5-mini,
    which refuses them, and kept for gpt-4.1."""
    inst = await start_apex(config(fakes))
    cfg = genai_types.GenerateContentConfig(temperature=0.2, top_p=0.5, max_output_tokens=200)
    for channel, kept in (("oa-reasoning", False), ("oa-chat", True)):
        answer = await gemini_generate(inst.url, f"vk-{channel}", "gemini-x", cfg)
        assert answer.candidates
        sent = last(fakes["openai"]).body
        assert {"temperature", "top_p"} & sent.keys() == ({"temperature", "top_p"} if kept else set())
    assert fakes["openai"].refusals == []


async def test_claude_code_adaptive_thinking_on_an_older_claude_it_was_renamed_to(
        fakes: dict[str, AgentUpstream], start_apex: StartApex, session: aiohttp.ClientSession) -> None:
    """Claude Code asks opus (adaptive thinking, effort high); a model_map sends it to claude-sonnet-4-5, which
    refuses adaptive thinking: it gets a 16k budget instead and no effort. Unrenamed, the request goes as sent."""
    inst = await start_apex(config(fakes, an={"model_map": {"claude-opus-*": "claude-sonnet-4-5"}}))
    assert (await run(session, inst.url, "an", "claude_code_default_turn1")).status == 200
    sent = last(fakes["anthropic"]).body
    assert sent["model"] == "claude-sonnet-4-5" and sent["thinking"] == {"type": "enabled", "budget_tokens": 16384}
    assert "effort" not in sent.get("output_config", {}) and sent["max_tokens"] == 64000
    assert any(e["type"].startswith("clear_thinking") for e in sent["context_management"]["edits"])  # thinking is on
    inst2 = await start_apex(config(fakes, an={"model_map": {}}))
    assert (await run(session, inst2.url, "an", "claude_code_default_turn1")).status == 200
    sent = last(fakes["anthropic"]).body
    assert sent["thinking"]["type"] == "adaptive" and sent["output_config"]["effort"] == "high"
    assert fakes["anthropic"].refusals == []


async def test_anthropic_sdk_sampling_on_a_claude_it_was_renamed_to(
        fakes: dict[str, AgentUpstream], start_apex: StartApex) -> None:
    """A client sends temperature and top_p for claude-3-7-sonnet (which takes both; older Anthropic SDKs and
    LiteLLM, LangChain pass them; the newest SDK has no such arguments, hence extra_body); a model_map sends it
    to claude-sonnet-4-5, which refuses the pair (400): top_p goes, temperature stays. Either alone goes as sent."""
    inst = await start_apex(config(fakes, an={"model_map": {"claude-3-7-*": "claude-sonnet-4-5"}}))
    client = anthropic.AsyncAnthropic(base_url=inst.url, api_key="vk-an", max_retries=0)
    try:
        answer = await client.messages.create(model="claude-3-7-sonnet-latest", max_tokens=200,
                                              messages=[{"role": "user", "content": "Say hi."}],
                                              extra_body={"temperature": 0.2, "top_p": 0.9})
        assert answer.content and answer.model == "claude-3-7-sonnet-latest"
        sent = last(fakes["anthropic"]).body
        assert sent["model"] == "claude-sonnet-4-5" and sent["temperature"] == 0.2 and "top_p" not in sent
        await client.messages.create(model="claude-3-7-sonnet-latest", max_tokens=200,
                                     messages=[{"role": "user", "content": "Say hi."}], extra_body={"top_p": 0.9})
        assert last(fakes["anthropic"]).body["top_p"] == 0.9  # one of them alone goes as sent
    finally:
        await client.close()
    assert fakes["anthropic"].refusals == []
    # A channel's capability row says so for a model the built-in table does not know to take one setting.
    row = {"model": "claude-house-*", "reasons": True, "one_sampling": True}
    inst2 = await start_apex(config(fakes, an={"model_map": {"claude-3-7-*": "claude-house-1"}, "capabilities": [row]}))
    client2 = anthropic.AsyncAnthropic(base_url=inst2.url, api_key="vk-an", max_retries=0)
    try:
        await client2.messages.create(model="claude-3-7-sonnet-latest", max_tokens=200,
                                      messages=[{"role": "user", "content": "Say hi."}],
                                      extra_body={"temperature": 0.2, "top_p": 0.9})
        sent = last(fakes["anthropic"]).body
        assert sent["model"] == "claude-house-1" and sent["temperature"] == 0.2 and "top_p" not in sent
    finally:
        await client2.close()


async def test_gemini_client_thinking_on_a_gemini_model_without_it(
        fakes: dict[str, AgentUpstream], start_apex: StartApex) -> None:
    """A Gemini client's thinkingConfig (Gemini CLI sends one for 2.5) is dropped when a model_map sends the
    request to gemini-2.0-flash, which refuses it, and kept on 2.5."""
    inst = await start_apex(config(fakes))
    cfg = genai_types.GenerateContentConfig(thinking_config=genai_types.ThinkingConfig(thinking_budget=1024))
    for channel, upstream_model in (("gm-old", "gemini-2.0-flash"), ("gm", "gemini-2.5-flash")):
        answer = await gemini_generate(inst.url, f"vk-{channel}", "gemini-2.5-pro", cfg)
        assert answer.candidates
        seen = last(fakes["gemini"])
        assert f"/models/{upstream_model}:" in seen.path
        assert ("thinkingConfig" in seen.body.get("generationConfig", {})) is (channel == "gm")
    assert fakes["gemini"].refusals == []


# --- 4. structured output ------------------------------------------------------------------


async def test_output_config_format_both_ways(
        fakes: dict[str, AgentUpstream], start_apex: StartApex, session: aiohttp.ClientSession) -> None:
    """output_config.format -> response_format json_schema (Chat) / responseJsonSchema (Gemini), and back to Anthropic."""
    inst = await start_apex(config(fakes))
    schema = capture("claude_code_title_request")["body"]["output_config"]["format"]["schema"]
    answer = await run(session, inst.url, "oa-chat", "claude_code_title_request")
    assert answer.status == 200 and json.loads(answer.text) == {"title": "Run echo apex-ok"}
    sent = last(fakes["openai"]).body
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    assert "output_config" not in sent and "reasoning_effort" not in sent  # thinking disabled
    assert (await run(session, inst.url, "gm", "claude_code_title_request")).status == 200
    gen = last(fakes["gemini"]).body["generationConfig"]
    assert gen["responseMimeType"] == "application/json" and gen["responseJsonSchema"] == schema
    # The reverse: an OpenAI client's json_schema reaches a Claude model as output_config.format.
    async with session.post(inst.url + "/v1/chat/completions", headers={"Authorization": "Bearer vk-an"}, json={
            "model": "gpt-anything", "messages": [{"role": "user", "content": "title?"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": schema}}}) as resp:
        assert resp.status == 200, await resp.text()
    sent = last(fakes["anthropic"]).body
    assert sent["output_config"] == {"format": {"type": "json_schema", "schema": schema}} and "system" not in sent


# --- 5. Codex's tools ---------------------------------------------------------------------


async def test_codex_namespace_custom_and_additional_tools(
        fakes: dict[str, AgentUpstream], start_apex: StartApex, session: aiohttp.ClientSession) -> None:
    """additional_tools and namespace tools are flattened for Chat; the call comes back with the client's names."""
    inst = await start_apex(config(fakes))
    answer = await run(session, inst.url, "compat", "codex_default_turn1")
    assert answer.status == 200, answer.raw
    names = [t["function"]["name"] for t in last(fakes["compat"]).body["tools"]]
    assert "functions__exec" in names and "clock__sleep" in names and "collaboration__spawn_agent" in names
    exec_tool = next(t["function"] for t in last(fakes["compat"]).body["tools"] if t["function"]["name"] == "functions__exec")
    assert exec_tool["parameters"]["required"] == ["input"] and "lark" in exec_tool["description"]
    [call] = answer.tool_calls()
    assert call["type"] == "custom_tool_call" and call["name"] == "exec" and call["namespace"] == "functions"
    assert call["input"].startswith("const r = await tools.exec_command")
    second = await send(session, inst.url, "vk-compat", capture("codex_default_turn1"),
                        next_turn(capture("codex_default_turn1"), capture("codex_default_turn1")["body"], answer))
    assert second.status == 200 and "apex-ok" in second.text
    sent = last(fakes["compat"]).body["messages"]
    assert sent[-2]["tool_calls"][0]["function"]["name"] == "functions__exec"
    assert json.loads(sent[-2]["tool_calls"][0]["function"]["arguments"]) == {"input": call["input"]}
    assert sent[-1] == {"role": "tool", "tool_call_id": call["call_id"], "content": "apex-ok\n"}


async def test_codex_web_search_mapped_or_dropped(
        fakes: dict[str, AgentUpstream], start_apex: StartApex, session: aiohttp.ClientSession) -> None:
    """web_search becomes Anthropic's web search tool; on Chat and Gemini it is dropped and a header says so."""
    inst = await start_apex(config(fakes))
    answer = await run(session, inst.url, "an", "codex_gpt51_turn1")
    assert answer.status == 200 and "x-apex-dropped-tools" not in answer.headers
    tools = last(fakes["anthropic"]).body["tools"]
    assert {"type": "web_search_20250305", "name": "web_search"} in tools
    assert "multi_agent_v1__spawn_agent" in [t.get("name") for t in tools]
    for channel in ("compat", "gm"):
        answer = await run(session, inst.url, channel, "codex_gpt51_turn1")
        assert answer.status == 200 and answer.headers["x-apex-dropped-tools"] == "web_search"
        assert answer.tool_calls()[0]["name"] == "exec_command"


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAEklEQVR4nGP4z8CAFWEXHbQSACj/P8Fu7N9hAAAAAElFTkSuQmCC"
PDF = "JVBERi0xLjQKJSVFT0YK"
# Codex's view_image (a function) and code-mode exec (a custom tool) called in parallel, their
# outputs arrays of parts as Codex sends them (the second one a file the script read).
IMAGE_TOOLS: Any = [{"type": "function", "name": "view_image", "description": "View an image",
                     "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}},
                    {"type": "custom", "name": "exec", "description": "Run JavaScript"}]
IMAGE_HISTORY: Any = [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "look at pic.png and a.pdf"}]},
    {"type": "function_call", "call_id": "call_img", "name": "view_image", "arguments": '{"path": "pic.png"}'},
    {"type": "custom_tool_call", "call_id": "call_js", "name": "exec", "input": "image(await tools.view_image(...))"},
    {"type": "function_call_output", "call_id": "call_img", "output": [
        {"type": "input_text", "text": "here is the image"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"}]},
    {"type": "custom_tool_call_output", "call_id": "call_js", "output": [
        {"type": "input_text", "text": "Script completed"},
        {"type": "input_file", "filename": "a.pdf", "file_data": f"data:application/pdf;base64,{PDF}"}]},
]


@pytest.mark.parametrize("channel", ["an", "gm", "compat"])
async def test_codex_image_tool_outputs_reach_translated_upstreams(
        channel: str, fakes: dict[str, AgentUpstream], start_apex: StartApex) -> None:
    """Codex's view_image answers with a function_call_output whose output is an array of
    input_text / input_image (/ input_file) parts, as OpenAI's Responses API takes it: Apex
    answered 400 "function_call_output must be text", and as every later request carries it,
    the session was dead. Each upstream now gets the text and the media where it takes them."""
    inst = await start_apex(config(fakes))
    client = openai.AsyncOpenAI(base_url=inst.url + "/v1", api_key=f"vk-{channel}", max_retries=0)
    async with client:
        answer = await client.responses.create(model="gpt-5.1", input=IMAGE_HISTORY, tools=IMAGE_TOOLS)
    assert answer.output_text.startswith("The command printed: ")
    image = {"type": "base64", "media_type": "image/png", "data": PNG}
    pdf = {"type": "base64", "media_type": "application/pdf", "data": PDF}
    if channel == "an":  # in each tool_result, as Claude Code sends them
        sent = last(fakes["anthropic"]).body["messages"]
        called = [b["id"] for b in sent[-2]["content"] if b["type"] == "tool_use"]
        assert sent[-1] == {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": called[0],
             "content": [{"type": "text", "text": "here is the image"}, {"type": "image", "source": image}]},
            {"type": "tool_result", "tool_use_id": called[1],
             "content": [{"type": "text", "text": "Script completed"}, {"type": "document", "source": pdf}]}]}
    elif channel == "gm":  # the functionResponses, then the media: as for Claude Code's image results
        parts = last(fakes["gemini"]).body["contents"][-1]["parts"]
        assert [p["functionResponse"]["response"] for p in parts[:2]] == [{"output": "here is the image"},
                                                                          {"output": "Script completed"}]
        assert parts[2:] == [{"inlineData": {"mimeType": "image/png", "data": PNG}},
                             {"inlineData": {"mimeType": "application/pdf", "data": PDF}}]
    else:  # Chat takes text only in tool messages: the media follow the batch in a user message
        sent = last(fakes["compat"]).body["messages"]
        assert sent[-3:] == [
            {"role": "tool", "tool_call_id": "call_img", "content": "here is the image"},
            {"role": "tool", "tool_call_id": "call_js", "content": "Script completed"},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "a.pdf"}}]}]
    assert all(fake.refusals == [] for fake in fakes.values())


# --- 6. thinking off when the history cannot carry signatures -----------------------------


async def test_thinking_turned_off_for_unsignable_history(
        fakes: dict[str, AgentUpstream], start_apex: StartApex, session: aiohttp.ClientSession) -> None:
    """A tool turn another provider answered (unsigned or no thinking) reaches Anthropic with thinking off, not a 400."""
    inst = await start_apex(config(fakes))
    cap = capture("claude_code_sonnet_turn1")
    first = await run(session, inst.url, "compat", "claude_code_sonnet_turn1")  # reasoning_content -> unsigned thinking
    assert first.status == 200 and first.message.content[0].type == "thinking"
    assert first.message.content[0].signature == ""
    body = next_turn(cap, cap["body"], first)
    second = await send(session, inst.url, "vk-an", cap, body)  # failover / re-routing to Anthropic
    assert second.status == 200, second.raw
    sent = last(fakes["anthropic"]).body
    assert "thinking" not in sent and "context_management" not in sent
    assert all(b["type"] != "thinking" for m in sent["messages"] for b in m["content"] if isinstance(m["content"], list))
    first_plain = await run(session, inst.url, "oa-chat", "claude_code_sonnet_turn1")  # no thinking at all
    second = await send(session, inst.url, "vk-an", cap, next_turn(cap, cap["body"], first_plain))
    assert second.status == 200 and "thinking" not in last(fakes["anthropic"]).body
    # A history with genuine signatures keeps thinking on.
    assert (await run(session, inst.url, "an", "claude_code_sonnet_turn2")).status == 200
    assert last(fakes["anthropic"]).body["thinking"] == {"budget_tokens": 31999, "type": "enabled"}
    assert fakes["anthropic"].refusals == []


# --- 7. max_tokens sized to budget + room -----------------------------------------------------


async def test_effort_without_max_tokens_leaves_room_for_the_answer(
        fakes: dict[str, AgentUpstream], start_apex: StartApex, session: aiohttp.ClientSession) -> None:
    """reasoning_effort high with no max tokens: Anthropic gets budget 16384 and max_tokens 20480."""
    inst = await start_apex(config(fakes, an={"model_map": {"*": "claude-sonnet-4-20250514"}}))
    async with session.post(inst.url + "/v1/chat/completions", headers={"Authorization": "Bearer vk-an"}, json={
            "model": "gpt-x", "reasoning_effort": "high", "messages": [{"role": "user", "content": "think"}]}) as resp:
        assert resp.status == 200, await resp.text()
    sent = last(fakes["anthropic"]).body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 16384} and sent["max_tokens"] == 16384 + 4096
    inst = await start_apex(config(fakes))  # an adaptive model: thinking adaptive + effort
    async with session.post(inst.url + "/v1/chat/completions", headers={"Authorization": "Bearer vk-an"}, json={
            "model": "claude-opus-4-8", "reasoning_effort": "medium",
            "messages": [{"role": "user", "content": "think"}]}) as resp:
        assert resp.status == 200, await resp.text()
    sent = last(fakes["anthropic"]).body
    assert sent["thinking"] == {"type": "adaptive"} and sent["output_config"] == {"effort": "medium"}
    assert sent["max_tokens"] == 4096 + 4096


# --- 8. model name in Responses pass-through streams -------------------------------------------


async def test_mapped_model_in_every_responses_stream_event(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """Every pass-through Responses event that carries the model says the client's name, as the body does."""
    cfg = {"global": {"retries": {"max_attempts": 1}}, "logging": {"level": "error"},
           "channels": [{"name": "oa", "provider_type": "openai", "base_url": upstream.openai_url, "api_key": "sk-x",
                         "model_map": {"my-alias": "gpt-5-mini-2026-01-01"}}],
           "routers": [{"name": "r", "vkey": KEY, "channels": [{"name": "oa"}]}]}
    inst = await start_apex(cfg)
    resp_obj = {"id": "resp_1", "object": "response", "created_at": 1, "status": "completed", "model": "gpt-5-mini-2026-01-01",
                "output": [], "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
                "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}
    events = [("response.created", {"response": {**resp_obj, "status": "in_progress"}}),
              ("response.in_progress", {"response": {**resp_obj, "status": "in_progress"}}),
              ("response.completed", {"response": resp_obj})]
    sse = b"".join(f"event: {n}\ndata: {json.dumps({'type': n, 'sequence_number': i, **d})}\n\n".encode()
                   for i, (n, d) in enumerate(events))
    upstream.push(Behaviour(content_type="text/event-stream", events=split_events(sse)))
    async with aiohttp.ClientSession() as s, s.post(inst.url + "/v1/responses", headers={"Authorization": f"Bearer {KEY}"},
                                                    json={"model": "my-alias", "input": "hi", "stream": True}) as resp:
        text = await resp.text()
    models = [json.loads(line[6:])["response"]["model"] for line in text.splitlines() if line.startswith("data: ")]
    assert models == ["my-alias"] * 3
    assert upstream.requests[-1].json["model"] == "gpt-5-mini-2026-01-01"


# --- 9. caches ----------------------------------------------------------------------------------


async def test_prompt_cache_key_and_cache_control(
        fakes: dict[str, AgentUpstream], start_apex: StartApex, session: aiohttp.ClientSession) -> None:
    """prompt_cache_key reaches a Chat upstream; cache_control reaches Anthropic untouched on the native path."""
    inst = await start_apex(config(fakes))
    cap = capture("codex_gpt51_turn2")
    assert (await run(session, inst.url, "compat", "codex_gpt51_turn2")).status == 200
    assert last(fakes["compat"]).body["prompt_cache_key"] == cap["body"]["prompt_cache_key"]
    cc = capture("claude_code_default_turn2")
    assert (await run(session, inst.url, "an", "claude_code_default_turn2")).status == 200
    sent = last(fakes["anthropic"]).body
    assert sent["system"] == cc["body"]["system"] and sent["messages"] == cc["body"]["messages"]
    assert sent["messages"][-1]["content"][0]["cache_control"] == {"type": "ephemeral"}


# --- 10. Anthropic's gateway contract ------------------------------------------------------------


async def test_native_anthropic_headers_query_agent_and_unknown_fields(
        fakes: dict[str, AgentUpstream], start_apex: StartApex, session: aiohttp.ClientSession) -> None:
    """anthropic-* headers (an open list), the User-Agent, ?beta=true and unknown body fields reach Anthropic as sent."""
    inst = await start_apex(config(fakes))
    cap = capture("claude_code_default_turn1")
    body = {**cap["body"], "some_future_field": {"x": 1}}
    fakes["anthropic"].seen.clear()
    answer = await run(session, inst.url, "an", "claude_code_default_turn1", body,
                       extra_headers={"User-Agent": "claude-cli/2.1.197 (external, cli)",
                                      "anthropic-dangerous-direct-browser-access": "true"})
    # The strict fake refuses the unknown field like Anthropic: its own body comes back untouched.
    assert answer.status == 400
    assert json.loads(answer.raw) == {"type": "error", "request_id": "req_fake", "error": {
        "type": "invalid_request_error", "message": "some_future_field: Extra inputs are not permitted"}}
    seen = last(fakes["anthropic"])
    assert seen.query == "beta=true" and seen.body["some_future_field"] == {"x": 1}
    assert seen.headers["anthropic-beta"] == cap["headers"]["anthropic-beta"]
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.headers["anthropic-dangerous-direct-browser-access"] == "true"
    assert seen.headers["User-Agent"] == "claude-cli/2.1.197 (external, cli)"
    assert seen.headers["x-api-key"] == "sk-ant-secret-0123456789abcdef"


async def test_native_error_body_scrubbed(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A native upstream's error body reaches the client as it is, except the channel's key."""
    cfg = {"global": {"retries": {"max_attempts": 1}}, "logging": {"level": "error"},
           "channels": [{"name": "an", "provider_type": "anthropic", "base_url": upstream.url,
                         "api_key": "sk-ant-api03-very-secret-key"}],
           "routers": [{"name": "r", "vkey": KEY, "channels": [{"name": "an"}]}]}
    inst = await start_apex(cfg)
    body = {"type": "error", "error": {"type": "invalid_request_error",
                                       "message": "bad key sk-ant-api03-very-secret-key; other sk-proj-abcdefghijklmnopqrstuv"},
            "request_id": "req_011"}
    upstream.push(Behaviour(status=400, body=json.dumps(body).encode()))
    client = anthropic.AsyncAnthropic(base_url=inst.url, api_key=KEY, max_retries=0)
    try:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    finally:
        await client.close()
    got = caught.value.body
    assert got == {"type": "error", "request_id": "req_011", "error": {
        "type": "invalid_request_error", "message": "bad key [redacted]; other [redacted]"}}


async def test_cache_control_survives_bedrock(start_apex: StartApex, session: aiohttp.ClientSession) -> None:
    """Claude Code's cache_control reaches Bedrock (an Anthropic-family cloud path) where it was."""
    from tests.integration.cloud_fakes import CloudFake, SigV4

    cloud = CloudFake()
    cloud.sigv4 = SigV4("AKIDEXAMPLE", "secret-example-key", "us-west-2")
    await cloud.start()
    try:
        inst = await start_apex({
            "global": {"retries": {"max_attempts": 1}}, "logging": {"level": "error"},
            "channels": [{"name": "br", "provider_type": "bedrock", "region": "us-west-2", "base_url": cloud.url,
                          "aws": {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "secret-example-key"},
                          "model_map": {"claude-*": "us.anthropic.claude-opus-4-8-v1:0"}}],
            "routers": [{"name": "r", "vkey": KEY, "channels": [{"name": "br"}]}]})
        cap = capture("claude_code_default_turn2")
        answer = await send(session, inst.url, KEY, cap)
        assert answer.status == 200, answer.raw[:500]
        sent = cloud.last("/model/").json
        turns = [m for m in cap["body"]["messages"] if m["role"] != "system"]
        moved = [m["content"] for m in cap["body"]["messages"] if m["role"] == "system"]
        # The system turn (a first-party beta Bedrock lacks) joins the system prompt, after the client's blocks.
        assert sent["system"] == cap["body"]["system"] + [{"type": "text", "text": t} for t in moved]
        assert sent["messages"] == turns
        assert sent["messages"][-1]["content"][0]["cache_control"] == {"type": "ephemeral"}
    finally:
        await cloud.stop()


async def test_a_channel_capability_row_sets_the_output_limit(
        fakes: dict[str, AgentUpstream], start_apex: StartApex, session: aiohttp.ClientSession) -> None:
    """``capabilities[].max_output_tokens`` cuts a translated output limit for the models it
    matches (a self-hosted model with a small limit); the built-in rows do it for OpenAI's."""
    cfg = config(fakes, compat={"capabilities": [{"model": "deepseek-*", "reasons": True, "max_output_tokens": 8000}]})
    inst = await start_apex(cfg)
    assert (await run(session, inst.url, "compat", "claude_code_default_turn1")).status == 200
    assert last(fakes["compat"]).body["max_tokens"] == 8000
    body = dict(capture("claude_code_default_turn1")["body"])
    body["max_tokens"] = 1000  # below the limit: untouched
    assert (await run(session, inst.url, "compat", "claude_code_default_turn1", body)).status == 200
    assert last(fakes["compat"]).body["max_tokens"] == 1000



async def test_claude_codes_output_limit_is_cut_for_a_renamed_claude_and_for_gemini(
        fakes: dict[str, AgentUpstream], start_apex: StartApex, session: aiohttp.ClientSession) -> None:
    """Claude Code asks 128,000 output tokens of its default Opus: a model_map to Sonnet 4.5
    (64,000 at most) or to Gemini 2.5 (65,536) cuts it, as the real APIs refuse more (the
    fakes do too); the thinking budget still fits under it."""
    cfg = config(fakes)
    cfg["channels"].append({"name": "an-sonnet", "provider_type": "anthropic", "base_url": fakes["anthropic"].url,
                            "api_key": "sk-ant-secret-0123456789abcdef", "model_map": {"*": "claude-sonnet-4-5"}})
    cfg["routers"].append({"name": "an-sonnet", "vkey": "vk-an-sonnet", "channels": [{"name": "an-sonnet"}]})
    inst = await start_apex(cfg)
    body = dict(capture("claude_code_default_turn1")["body"])
    body["max_tokens"] = 128_000
    answer = await run(session, inst.url, "an-sonnet", "claude_code_default_turn1", body)
    assert answer.status == 200, answer.raw
    sent = last(fakes["anthropic"]).body
    assert sent["model"] == "claude-sonnet-4-5" and sent["max_tokens"] == 64_000
    thinking = sent.get("thinking") or {}
    assert thinking.get("type") != "enabled" or thinking["budget_tokens"] < 64_000
    answer = await run(session, inst.url, "gm", "claude_code_default_turn1", body)
    assert answer.status == 200, answer.raw
    assert last(fakes["gemini"]).body["generationConfig"]["maxOutputTokens"] == 65_536
    assert fakes["anthropic"].refusals == [] and fakes["gemini"].refusals == []
