"""Every captured coding-agent request through every channel kind, over real HTTP.

Each capture in ``tests/fixtures/clients`` is replayed byte for byte (its path, headers and
body, streamed as sent and once more as a plain request) through Apex to a strict fake
upstream of each kind: Anthropic, OpenAI with a reasoning and with a non-reasoning model,
an OpenAI-compatible server that answers with ``reasoning_content``, Gemini, and the mock
provider. The upstream refuses what the real API refuses; the client must get a valid
answer in its own protocol (validated with the official SDK types), and where the answer
calls the client's shell tool, a second turn carrying the tool result must get the final
answer. Captured second turns are replayed as well.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import StartApex, one_channel_config
from tests.integration.agent_client import TOOL_OUTPUT, capture, is_anthropic, next_turn, send
from tests.integration.agent_upstream import ANSWER_PREFIX, AgentUpstream

KEY = "vk-agents"
CAPTURES = ["claude_code_default_turn1", "claude_code_sonnet_turn1", "claude_code_title_request",
            "claude_code_2_1_332_turn1", "codex_default_turn1", "codex_gpt51_turn1"]
SECOND_TURNS = ["claude_code_default_turn2", "claude_code_sonnet_turn2", "claude_code_2_1_332_toolsearch_turn3",
                "codex_gpt51_turn2"]
# kind -> (fake upstream mode, channel config without base_url, upstream model for Codex)
KINDS: dict[str, tuple[str | None, dict[str, Any], str]] = {
    "anthropic": ("anthropic", {"provider_type": "anthropic", "api_key": "sk-ant-test-0123456789abcdef"}, "claude-sonnet-4-5"),
    "openai_reasoning": ("openai", {"provider_type": "openai", "api_key": "sk-oa-test"}, "gpt-5-mini"),
    "openai_chat": ("openai", {"provider_type": "openai", "api_key": "sk-oa-test"}, "gpt-4.1"),
    "openai_compatible": ("compat", {"provider_type": "openai_compatible"}, "deepseek-reasoner"),
    "gemini": ("gemini", {"provider_type": "gemini", "api_key": "g-test"}, "gemini-2.5-flash"),
    "mock": (None, {"provider_type": "mock"}, "mock-model"),
}


def channel_config(kind: str, fake: AgentUpstream | None) -> dict[str, Any]:
    """A one-channel Apex config for ``kind``; Claude models keep their names on Anthropic."""
    mode, channel, model = KINDS[kind]
    ch: dict[str, Any] = dict(channel)
    if fake is not None:
        ch["base_url"] = fake.url + ("/v1" if mode in ("openai", "compat") else "")
    ch["model_map"] = {"gpt-*": model} if kind == "anthropic" else {"*": model}
    return one_channel_config(kind, ch, KEY)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def _serve(kind: str, start_apex: StartApex) -> tuple[str, AgentUpstream | None]:
    mode = KINDS[kind][0]
    fake = AgentUpstream(mode) if mode is not None else None
    if fake is not None:
        await fake.start()
    inst = await start_apex(channel_config(kind, fake))
    return inst.url, fake


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "body"])
@pytest.mark.parametrize("name", CAPTURES)
@pytest.mark.parametrize("kind", list(KINDS))
async def test_capture_gets_an_answer_and_a_second_turn(kind: str, name: str, stream: bool, start_apex: StartApex,
                                                       session: aiohttp.ClientSession) -> None:
    """The capture gets a valid answer in its protocol; a shell-tool call leads to a final answer."""
    base, fake = await _serve(kind, start_apex)
    try:
        cap = capture(name)
        body = {**cap["body"], "stream": stream}
        first = await send(session, base, KEY, cap, body)
        assert first.status == 200, (first.status, first.raw[:500], fake.refusals if fake else None)
        assert fake is None or fake.refusals == []
        calls = first.tool_calls()
        if fake is None or "title" in name:
            assert not calls and first.text  # mock and tool-less requests: a text answer
            return
        assert len(calls) == 1, first.raw[:800]
        call = calls[0]
        if is_anthropic(cap):
            assert call["name"] == "Bash" and call["input"]["command"] == "echo apex-ok"
        elif name == "codex_default_turn1":
            assert call["type"] == "custom_tool_call" and call["name"] == "exec"
            assert call.get("namespace") == "functions" or kind.startswith("openai_")
            assert "exec_command" in call["input"]
        else:
            assert call["type"] == "function_call" and call["name"] == "exec_command"
        second = await send(session, base, KEY, cap, next_turn(cap, body, first))
        assert second.status == 200, (second.status, second.raw[:500], fake.refusals)
        assert fake.refusals == []
        assert not second.tool_calls() and second.text == ANSWER_PREFIX + TOOL_OUTPUT.strip()
    finally:
        if fake is not None:
            await fake.stop()


@pytest.mark.parametrize("name", SECOND_TURNS)
@pytest.mark.parametrize("kind", list(KINDS))
async def test_captured_second_turn(kind: str, name: str, start_apex: StartApex, session: aiohttp.ClientSession) -> None:
    """A captured turn with the tool result in it gets the final answer on every channel kind."""
    base, fake = await _serve(kind, start_apex)
    try:
        cap = capture(name)
        answer = await send(session, base, KEY, cap)
        assert answer.status == 200, (answer.status, answer.raw[:500], fake.refusals if fake else None)
        assert not answer.tool_calls() and answer.text
        if fake is not None:
            assert fake.refusals == []
            assert answer.text.startswith(ANSWER_PREFIX) and "apex-ok" in answer.text
    finally:
        if fake is not None:
            await fake.stop()
