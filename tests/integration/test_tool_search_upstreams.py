"""Claude Code's tool search on Messages-shaped upstreams that are not Anthropic's own API.

Claude Code 2.1.332's captured third turn (most tools ``defer_loading: true``, a ToolSearch
result holding a ``tool_reference`` block) goes, unchanged, to Anthropic itself; to Claude on
Bedrock (InvokeModel) and Vertex, and to DeepSeek's Anthropic endpoint, Apex resolves the
deferred tools first (they lack Anthropic's first-party tool search): only the loaded ones are
declared, without ``defer_loading``, and the reference is text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import StartApex, one_channel_config
from tests.fixtures import CLIENTS
from tests.integration.cloud_fakes import CloudFake, claude_channel
from tests.integration.fakes import FakeUpstream

CAPTURE = json.loads((CLIENTS / "claude_code_2_1_332_toolsearch_turn3.json").read_text())


def sent_body(kind: str, upstream: FakeUpstream, cloud: CloudFake) -> dict[str, Any]:
    if kind in ("anthropic", "deepseek"):
        body: dict[str, Any] = json.loads(upstream.requests[-1].body)
    else:
        body = cloud.last("Predict" if kind == "vertex" else "/invoke").json
    return body


@pytest.mark.parametrize("kind", ["anthropic", "deepseek", "bedrock", "vertex"])
async def test_deferred_tools_resolved_for_upstreams_without_tool_search(
        kind: str, upstream: FakeUpstream, cloud: CloudFake, start_apex: StartApex, tmp_path: Path) -> None:
    inst = await start_apex(one_channel_config(kind, claude_channel(kind, upstream, cloud, tmp_path), "vk"))
    body = {**CAPTURE["body"], "stream": False}
    headers = {**CAPTURE["headers"], "x-api-key": "vk"}
    async with aiohttp.ClientSession() as s, \
            s.post(f"{inst.url}/v1/messages?beta=true", data=json.dumps(body), headers=headers) as r:
        assert r.status == 200, await r.text()
    sent = sent_body(kind, upstream, cloud)
    deferred = [t["name"] for t in body["tools"] if t.get("defer_loading")]
    names = [t["name"] for t in sent["tools"]]
    text = json.dumps(sent["messages"])
    if kind == "anthropic":  # Anthropic's own API has tool search: the client's request as sent
        assert names == [t["name"] for t in body["tools"]]
        assert '"tool_reference"' in text
        return
    assert "WebFetch" in deferred and len(deferred) > 1
    assert "WebFetch" in names and not (set(deferred) - {"WebFetch"}) & set(names)
    assert "defer_loading" not in json.dumps(sent["tools"])
    assert '"tool_reference"' not in text and "Tool loaded: WebFetch" in text


@pytest.mark.parametrize("kind", ["bedrock", "vertex"])
@pytest.mark.parametrize("capture", ["claude_code_2_1_332_turn1", "claude_code_default_turn2"])
async def test_claude_code_betas_and_system_turn_on_the_clouds(
        kind: str, capture: str, upstream: FakeUpstream, cloud: CloudFake, start_apex: StartApex, tmp_path: Path) -> None:
    """The clouds refuse betas they do not know (Vertex in the header, Bedrock in the body's
    ``anthropic_beta``) and a system turn without theirs: Apex passes on the betas each takes and
    moves Claude Code's mid-conversation system message into the system prompt."""
    cap = json.loads((CLIENTS / f"{capture}.json").read_text())
    inst = await start_apex(one_channel_config(kind, claude_channel(kind, upstream, cloud, tmp_path), "vk"))
    body = {**cap["body"], "stream": False}
    async with aiohttp.ClientSession() as s, s.post(f"{inst.url}/v1/messages?beta=true", data=json.dumps(body),
                                                    headers={**cap["headers"], "x-api-key": "vk"}) as r:
        assert r.status == 200, await r.text()
    sent_to = cloud.last("Predict" if kind == "vertex" else "/invoke")
    sent = sent_to.json
    client_betas = cap["headers"]["anthropic-beta"].split(",")
    betas = sent.get("anthropic_beta") if kind == "bedrock" else sent_to.headers.get("anthropic-beta", "").split(",")
    assert betas and set(betas) < set(client_betas)  # some pass, not all
    assert "claude-code-20250219" not in betas and "advanced-tool-use-2025-11-20" not in betas
    assert [m["role"] for m in sent["messages"]] == [m["role"] for m in body["messages"] if m["role"] != "system"]
    system_text = json.dumps(sent["system"])
    moved = next(m["content"] for m in body["messages"] if m["role"] == "system")
    assert json.dumps(moved if isinstance(moved, str) else moved[0]["text"])[1:60] in system_text
