"""Structured output from OpenAI, Responses and Gemini clients on Claude 4.5+, over real HTTP.

Those models take the schema natively (``output_config.format``), and Anthropic refuses a
schema it cannot compile: an object without ``additionalProperties: false``, ``minimum`` and
the other constraints (the strict fakes refuse them as it does). Each client's own dialect has
no such rule, so Apex fits the schema (``apex.translate.neutral.outputschema``); a free-form
object, which has no fitting, is asked for in the system prompt instead.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai import types
from pydantic import BaseModel, Field

from tests.conftest import StartApex, oai, one_channel_config
from tests.integration.agent_upstream import AgentUpstream
from tests.integration.cloud_fakes import CloudFake, claude_channel
from tests.integration.fakes import FakeUpstream

KEY = "vk-so"
ANSWER = {"title": "Run echo apex-ok"}  # what the strict fake answers a structured-output request with
# Valid for OpenAI without strict mode: open objects, a length limit.
LOOSE: dict[str, Any] = {"type": "object", "properties": {"title": {"type": "string", "maxLength": 80}}, "required": ["title"]}


class Title(BaseModel):
    title: str = Field(min_length=1, max_length=80)
    words: int = Field(default=4, ge=1, le=12)


@pytest.fixture
async def claude() -> AsyncIterator[AgentUpstream]:
    fake = AgentUpstream("anthropic")
    await fake.start()
    yield fake
    await fake.stop()


def config(claude: AgentUpstream) -> dict[str, Any]:
    return one_channel_config("an", {"provider_type": "anthropic", "base_url": claude.url, "api_key": "sk-ant"}, KEY)


def sent_schema(claude: AgentUpstream) -> dict[str, Any]:
    assert claude.seen and not claude.refusals, claude.refusals
    fmt = claude.seen[-1].body["output_config"]["format"]
    assert fmt["type"] == "json_schema"
    schema: dict[str, Any] = fmt["schema"]
    return schema


async def test_a_gemini_response_schema_reaches_claude_fitted(claude: AgentUpstream, start_apex: StartApex) -> None:
    """google-genai's response_schema from a pydantic model (Gemini's Schema, with min/max
    constraints and open objects) is closed for Claude, its limits told in the descriptions,
    and the answer parses into the model."""
    inst = await start_apex(config(claude))
    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(
        base_url=inst.url, retry_options=types.HttpRetryOptions(attempts=1)))
    try:
        resp = await client.aio.models.generate_content(model="claude-sonnet-4-5", contents="A title?", config=types.GenerateContentConfig(
            response_mime_type="application/json", response_schema=Title))
    finally:
        await client.aio.aclose()
    assert resp.parsed == Title(title=ANSWER["title"])
    schema = sent_schema(claude)
    assert schema["additionalProperties"] is False and set(schema["properties"]) == {"title", "words"}
    words = schema["properties"]["words"]
    assert "minimum" not in words and "maximum" not in words
    assert "minimum: 1" in words["description"] and "maximum: 12" in words["description"]
    assert "maxLength" not in schema["properties"]["title"]


async def test_a_non_strict_chat_json_schema_reaches_claude_fitted(claude: AgentUpstream, start_apex: StartApex) -> None:
    """An OpenAI response_format json_schema without strict (open objects, maxLength) is fitted."""
    inst = await start_apex(config(claude))
    done = await oai(inst, KEY).chat.completions.create(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "A title?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": LOOSE}})
    assert json.loads(done.choices[0].message.content or "") == ANSWER
    schema = sent_schema(claude)
    assert schema["additionalProperties"] is False and schema["required"] == ["title"]
    assert schema["properties"]["title"] == {"type": "string", "description": "{maxLength: 80}"}
    assert "system" not in claude.seen[-1].body  # enforced by the model, not asked for in the prompt


async def test_a_responses_text_format_not_strict_reaches_claude_fitted(claude: AgentUpstream,
                                                                        start_apex: StartApex) -> None:
    """A Responses text.format json_schema with strict false is fitted the same way."""
    inst = await start_apex(config(claude))
    resp = await oai(inst, KEY).responses.create(model="claude-sonnet-4-5", input="A title?", text={"format": {
        "type": "json_schema", "name": "t", "strict": False, "schema": LOOSE}})
    assert json.loads(resp.output_text) == ANSWER
    assert sent_schema(claude)["additionalProperties"] is False


async def test_a_free_form_object_is_asked_for_in_the_prompt(claude: AgentUpstream, start_apex: StartApex) -> None:
    """``{"type": "object"}`` has no closed form but ``{}``: Claude is asked for JSON in the
    system prompt instead of getting output_config.format."""
    inst = await start_apex(config(claude))
    done = await oai(inst, KEY).chat.completions.create(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "Some JSON?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "any", "schema": {"type": "object"}}})
    assert done.choices[0].message.content
    assert not claude.refusals, claude.refusals
    sent = claude.seen[-1].body
    assert "output_config" not in sent and '{"type":"object"}' in sent["system"]


@pytest.mark.parametrize("kind", ["bedrock", "vertex"])
async def test_claude_on_the_clouds_gets_the_fitted_schema(kind: str, upstream: FakeUpstream, cloud: CloudFake,
                                                         start_apex: StartApex, tmp_path: Path) -> None:
    """Claude on Bedrock (InvokeModel) and Vertex takes the same Messages body: fitted there too."""
    channel = claude_channel(kind, upstream, cloud, tmp_path)
    if kind == "bedrock":  # the built-in table knows Anthropic's names, not Bedrock's inference profiles
        channel["capabilities"] = [{"model": "*anthropic.claude-opus-4-5*", "reasons": True, "json_schema": True}]
    inst = await start_apex(one_channel_config(kind, channel, KEY))
    done = await oai(inst, KEY).chat.completions.create(
        model="claude-opus-4-5", messages=[{"role": "user", "content": "A title?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": LOOSE}})
    assert done.choices[0].message.content
    sent = cloud.last("Predict" if kind == "vertex" else "/invoke").json
    assert sent["output_config"]["format"]["schema"]["additionalProperties"] is False
