"""Type-confused fields in realistic bodies, on every translated path: a 4xx, never a 500.

``test_fuzz_http`` throws random bytes at the HTTP layer; this one starts from real request
bodies (Claude Code's and Codex's captured turns, and hand-written ones with images, tools,
tool results and structured output for each protocol) and, for each distinct field shape
(list indices folded), sets that field to a value of the wrong type. Each variant goes to
every channel that must translate it (OpenAI, Anthropic, Gemini, Bedrock Converse).
Deterministic and bounded: a few thousand requests. It found ``{"type": [...]}`` in a Codex
namespace tool giving a 500 (an unhashable type in a set lookup), and a string image
``source`` or ``tool_choice`` towards Converse (attribute errors).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.conftest import StartApex, basic_config
from tests.fixtures import CLIENTS
from tests.integration.cloud_fakes import CloudFake
from tests.integration.fakes import FakeUpstream
from tests.integration.mutate import field_paths, with_value

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WRONG: list[Any] = [None, 7, "x", [], {}, [{}], {"type": []}]


def captured(name: str) -> dict[str, Any]:
    body = json.loads((CLIENTS / name).read_text())["body"]
    assert isinstance(body, dict)
    return body


CHAT: dict[str, Any] = {
    "model": "M", "max_tokens": 50, "temperature": 0.5, "stop": ["x"], "tool_choice": "auto", "reasoning_effort": "low",
    "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}},
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"},
                                     {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
}
MESSAGES: dict[str, Any] = {
    "model": "M", "max_tokens": 100, "system": [{"type": "text", "text": "s"}], "stream": True,
    "thinking": {"type": "enabled", "budget_tokens": 1024}, "tool_choice": {"type": "auto"},
    "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
    "messages": [
        {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                                     {"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "sig"},
                                          {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": [{"type": "text", "text": "42"}]}]},
    ],
}
RESPONSES: dict[str, Any] = {
    "model": "M", "instructions": "be brief",
    "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "hi"},
                                     {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
    ],
    "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
    "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}},
}
GEMINI: dict[str, Any] = {
    "contents": [
        {"role": "user", "parts": [{"text": "hi"}, {"inlineData": {"mimeType": "image/png", "data": PNG}}]},
        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"r": 1}}}]},
    ],
    "systemInstruction": {"parts": [{"text": "s"}]},
    "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT"}}]}],
    "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
    "generationConfig": {"maxOutputTokens": 50, "stopSequences": ["x"], "thinkingConfig": {"thinkingBudget": 100},
                         "responseMimeType": "application/json", "responseSchema": {"type": "OBJECT"}},
}
EMBEDDINGS: dict[str, Any] = {"model": "M", "input": ["a", "b"], "encoding_format": "float", "dimensions": 8}

# (client path, base body, the models whose channels translate it: claude-* Anthropic, gemini-* Gemini,
# llama-* Bedrock Converse, else OpenAI)
CASES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("/v1/chat/completions", CHAT, ("claude-x", "gemini-x", "llama-x")),
    ("/v1/messages", MESSAGES, ("gpt-4o", "gemini-x", "llama-x")),
    ("/v1/messages", captured("claude_code_default_turn2.json"), ("gpt-4o", "gemini-x", "llama-x")),
    ("/v1/messages/count_tokens", {k: v for k, v in MESSAGES.items() if k != "stream"}, ("gpt-4o",)),
    ("/v1/responses", RESPONSES, ("claude-x", "gemini-x")),
    ("/v1/responses", captured("codex_gpt51_turn2.json"), ("claude-x", "gemini-x")),
    ("/v1beta/models/{model}:generateContent", GEMINI, ("gpt-4o", "claude-x")),
    ("/v1beta/models/{model}:streamGenerateContent?alt=sse", GEMINI, ("gpt-4o",)),
    ("/v1/embeddings", EMBEDDINGS, ("gemini-x",)),
]


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{p.split('?')[0]}-{i}" for i, (p, _, _) in enumerate(CASES)])
async def test_wrong_types_anywhere_get_a_4xx(upstream: FakeUpstream, cloud: CloudFake, start_apex: StartApex,
                                              case: int) -> None:
    cfg = basic_config(upstream)
    cloud.bedrock_api_key = "ABSK-fuzz"
    cfg["channels"] += [
        {"name": "gm", "provider_type": "gemini", "base_url": upstream.url, "api_key": "g-key"},
        {"name": "br", "provider_type": "bedrock", "region": "us-west-2", "base_url": cloud.url, "api_key": "ABSK-fuzz",
         "model_map": {"llama-*": "meta.llama3-3-70b-instruct-v1:0"}},
    ]
    cfg["routers"][0]["rules"] += [{"match": {"model": "gemini-*"}, "channels": [{"name": "gm"}]},
                                   {"match": {"model": "llama-*"}, "channels": [{"name": "br"}]}]
    cfg["global"]["retries"] = {"max_attempts": 1}
    apex = await start_apex(cfg)
    path, base, models = CASES[case]
    failures: list[str] = []
    sent = 0
    headers = {"Authorization": "Bearer vk-default", "anthropic-version": "2023-06-01"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for at in field_paths(base):
            for value in WRONG:
                for model in models:
                    body = with_value({**base, "model": model} if "model" in base else base, at, value)
                    async with session.post(apex.url + path.format(model=model), json=body, headers=headers) as r:
                        text = await r.read()
                    sent += 1
                    if r.status >= 500 and r.status not in (502, 503, 504) or b"internal error" in text:
                        failures.append(f"{model} {'.'.join(map(str, at))} = {value!r}: {r.status} {text[:200]!r}")
    assert sent >= 4 * len(WRONG) * len(models)  # every case has several fields
    assert not failures, f"{len(failures)} of {sent} variants failed:\n" + "\n".join(failures[:20])
