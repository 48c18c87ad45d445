"""A wrong-typed field on a translated path is a 400 naming it, in the client's protocol.

The translators read the client's JSON as dicts; what they did not recognise they skipped, so
the request went upstream without the system prompt, the tools or the user's turn (or with a
Python repr for image data) and the client got a 200. The client's own API answers 400.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.conftest import StartApex, ant, oai
from tests.integration.fakes import FakeUpstream
from tests.integration.test_translation_e2e import config


async def test_anthropic_client_on_openai_hears_which_field(upstream: FakeUpstream, start_apex: StartApex) -> None:
    inst = await start_apex(config(upstream))
    system: Any = ["be brief"]  # strings where Anthropic takes text blocks
    image: Any = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": {"a": 1}}}
    with pytest.raises(anthropic.BadRequestError) as info:
        await ant(inst, "k").messages.create(model="gpt-4o", max_tokens=50, system=system,
                                             messages=[{"role": "user", "content": "hi"}])
    assert "system[0]" in info.value.message
    with pytest.raises(anthropic.BadRequestError) as info:
        await ant(inst, "k").messages.create(model="gpt-4o", max_tokens=50, messages=[{"role": "user", "content": [image]}])
    assert "messages[0].content[0].source.data" in info.value.message
    assert upstream.requests == []


async def test_responses_client_on_anthropic_hears_which_field(upstream: FakeUpstream, start_apex: StartApex) -> None:
    inst = await start_apex(config(upstream))
    instructions: Any = {"text": "be brief"}
    call: Any = {"type": "function_call", "call_id": "c1", "name": 7, "arguments": "{}"}
    with pytest.raises(openai.BadRequestError) as info:
        await oai(inst, "k").responses.create(model="claude-apex", input="hi", instructions=instructions)
    assert info.value.param == "instructions"
    with pytest.raises(openai.BadRequestError) as info:
        await oai(inst, "k").responses.create(model="claude-apex", input=[
            {"role": "user", "content": "hi"},
            call,
            {"type": "function_call_output", "call_id": "c1", "output": "ok"}])
    assert info.value.param == "input[1].name"
    assert upstream.requests == []


@pytest.mark.parametrize(("change", "path"), [
    ({"systemInstruction": {"text": "be brief"}}, "systemInstruction"),
    ({"contents": [{"text": "the question"}, {"role": "user", "parts": [{"text": "hi"}]}]}, "contents[0]"),
    ({"contents": [{"role": "user", "parts": [{"text": "hi"}]}, {"role": "model", "parts": [{"functionCall": {"args": {}}}]}]},
     "contents[1].parts[0].functionCall.name"),
])
async def test_gemini_client_on_openai_hears_which_field(upstream: FakeUpstream, start_apex: StartApex,
                                                         change: dict[str, Any], path: str) -> None:
    """Raw JSON: google-genai's pydantic models refuse to send these shapes."""
    inst = await start_apex(config(upstream))
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], **change}
    async with aiohttp.ClientSession() as s, s.post(f"{inst.url}/v1beta/models/gpt-4o:generateContent", json=body,
                                                    headers={"x-goog-api-key": "k"}) as r:
        answer = await r.json()
        assert r.status == 400, answer
    assert answer["error"]["status"] == "INVALID_ARGUMENT" and path in answer["error"]["message"]
    assert upstream.requests == []
