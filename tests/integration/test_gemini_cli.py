"""The real Gemini CLI (pinned in .ci/install-deps) runs one headless prompt through Apex on translated channels.

The CLI is pointed at Apex with ``GOOGLE_GEMINI_BASE_URL`` and ``GEMINI_API_KEY``, in a
throwaway HOME whose settings turn telemetry, usage statistics and update checks off; each
run is bounded in time. The fake upstream answers every request with a captured text stream.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartApex
from tests.integration.fakes import Behaviour, FakeUpstream, fixture_bytes, split_events

GEMINI = shutil.which("gemini")
pytestmark = pytest.mark.skipif(GEMINI is None, reason="Gemini CLI not installed (.ci/install-deps installs @google/gemini-cli)")

KEY = "gk-cli-client-key"
RUN_TIMEOUT_S = 120
SETTINGS = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "telemetry": {"enabled": False},
    "privacy": {"usageStatisticsEnabled": False},
    "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
}
ANSWERS = {
    "openai": ("openai_chat_stream_text.sse", "text/event-stream", "The capital of the UK is London."),
    "anthropic": ("anthropic_messages_stream_text.sse", "text/event-stream; charset=utf-8", "4200 + 42 = 4242"),
}


async def run_cli(home: Path, base_url: str, prompt: str) -> tuple[int, dict[str, Any], str]:
    """Run ``gemini -p`` against ``base_url``; (exit code, its JSON output, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "GOOGLE_"))}
    env.update(HOME=str(home), GEMINI_API_KEY=KEY, GOOGLE_GEMINI_BASE_URL=base_url, GEMINI_CLI_TRUST_WORKSPACE="true",
               GEMINI_TELEMETRY_ENABLED="false", NO_COLOR="1", CI="1")
    assert GEMINI is not None
    proc = await asyncio.create_subprocess_exec(
        GEMINI, "-p", prompt, "-m", "gemini-2.5-flash", "-o", "json", env=env, cwd=str(home),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    text = out.decode()
    return proc.returncode or 0, json.loads(text[text.index("{"):]) if "{" in text else {}, err.decode()


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_gemini_cli_headless_prompt_on_translated_channel(
    kind: str, upstream: FakeUpstream, start_apex: StartApex, tmp_path: Path
) -> None:
    """Gemini CLI's own requests (system prompt, its tool declarations, streaming) are translated for an
    OpenAI or Anthropic channel, and the answer, usage included, comes back to the CLI."""
    name, content_type, expected = ANSWERS[kind]
    upstream.persistent = Behaviour(content_type=content_type, events=split_events(fixture_bytes(name)))
    channel = ({"name": "up", "provider_type": "openai", "base_url": upstream.openai_url, "api_key": "sk-up"}
               if kind == "openai" else
               {"name": "up", "provider_type": "anthropic", "base_url": upstream.url, "api_key": "sk-up"})
    inst = await start_apex({"global": {"auth": {"keys": [KEY]}, "retries": {"max_attempts": 1}},
                             "logging": {"level": "error"}, "channels": [channel],
                             "routers": [{"name": "r", "channels": [{"name": "up"}]}]})
    (tmp_path / ".gemini").mkdir()
    (tmp_path / ".gemini" / "settings.json").write_text(json.dumps(SETTINGS))  # noqa: ASYNC240 -- test setup
    code, output, stderr = await run_cli(tmp_path, inst.url, "What is 4200 + 42?")
    assert code == 0, stderr[-2000:]
    assert output["response"].strip() == expected
    tokens = output["stats"]["models"]["gemini-2.5-flash"]["tokens"]
    assert tokens["prompt"] > 0 and tokens["candidates"] > 0
    sent = [r for r in upstream.requests if r.method == "POST"]
    assert sent and all(KEY not in str(r.headers) and KEY.encode() not in r.body for r in sent)
    main = sent[-1].json
    assert main["stream"] is True
    if kind == "openai":
        assert main["messages"][0]["role"] == "system" and main["messages"][-1]["role"] == "user"
        assert main["tools"] and all(t["function"]["parameters"]["type"] == "object" for t in main["tools"])
    else:
        assert main["system"] and main["messages"][-1]["role"] == "user"
        assert main["tools"] and all(t["input_schema"]["type"] == "object" for t in main["tools"])
