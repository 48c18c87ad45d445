"""The real Claude Code and Codex CLIs through Apex, one agent turn each, on native and translated channels.

``claude`` (@anthropic-ai/claude-code, the newest pinned and the previous one, whose requests
``tests/fixtures/clients`` holds) and ``codex`` (@openai/codex), at the versions
``.ci/install-deps`` pins, run non-interactively with telemetry off, a throw-away home and
working directory, against Apex on loopback. Behind Apex the strict agent fake (``agent_upstream``) first asks for the
CLI's shell tool to run ``echo apex-ok``, then answers quoting the tool result: the turn
passes when the CLI really ran the command (its output reached the upstream in the second
request), printed the answer and exited 0, with the upstream refusing nothing. Each run is
bounded in time; the tests skip, saying why, when the CLIs are not installed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartApex, one_channel_config
from tests.integration.agent_upstream import ANSWER_PREFIX, VIEW_IMAGE, AgentUpstream
from tests.integration.cloud_fakes import CloudFake, claude_channel
from tests.integration.fakes import FakeUpstream

PROMPT = "APEXPROBE: run the shell command 'echo apex-ok' with your shell tool and report its output."
RUN_TIMEOUT_S = 120.0
KEY = "vk-cli"
CLI_DIR = Path(os.environ.get("APEX_AGENT_CLIS", "/opt/apex-agent-clis")) / "node_modules" / ".bin"
# channel kind -> (fake upstream mode, channel config without base_url)
CHANNELS: dict[str, tuple[str, dict[str, Any]]] = {
    "anthropic": ("anthropic", {"provider_type": "anthropic", "api_key": "sk-ant-cli-test",
                                "model_map": {"gpt-*": "claude-sonnet-4-5"}}),
    # Opus renamed to a Claude that refuses the adaptive thinking Claude Code asks Opus for (a cost rule).
    "anthropic_opus_to_sonnet_4_5": ("anthropic", {"provider_type": "anthropic", "api_key": "sk-ant-cli-test",
                                                   "model_map": {"claude-opus-*": "claude-sonnet-4-5"}}),
    "openai_reasoning": ("openai", {"provider_type": "openai", "api_key": "sk-oa-cli", "model_map": {"*": "gpt-5-mini"}}),
    "openai_chat": ("openai", {"provider_type": "openai", "api_key": "sk-oa-cli", "model_map": {"*": "gpt-4.1"}}),
    "openai_compatible": ("compat", {"provider_type": "openai_compatible", "model_map": {"*": "deepseek-reasoner"}}),
    "gemini": ("gemini", {"provider_type": "gemini", "api_key": "g-cli", "model_map": {"*": "gemini-2.5-flash"}}),
}


def cli(name: str, *, previous: bool = False) -> str:
    """The CLI's path (``previous``: the older Claude Code of the captures), or skip saying how to get it."""
    where = CLI_DIR.parent.parent / "previous" / "node_modules" / ".bin" if previous else CLI_DIR
    path = where / name
    found = str(path) if path.exists() else None if previous else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} CLI not installed (run .ci/install-deps; looked in {where}{'' if previous else ' and PATH'})")
    return found


async def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*args, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT_S)
    except TimeoutError:
        proc.kill()  # our own child, by its handle
        out, err = await proc.communicate()
        pytest.fail(f"{args[0]} did not finish within {RUN_TIMEOUT_S:g} s: {err.decode()[-2000:]}")
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def serve(kind: str, start_apex: StartApex, *, load_first: str | None = None) -> tuple[str, AgentUpstream]:
    mode, channel = CHANNELS[kind]
    fake = AgentUpstream(mode, load_first=load_first)
    await fake.start()
    base = fake.url + ("/v1" if mode in ("openai", "compat") else "")
    inst = await start_apex(one_channel_config(kind, {"base_url": base, **channel}, KEY))
    return inst.url, fake


def base_env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}


def assert_turn(fake: AgentUpstream, code: int, out: str, err: str) -> None:
    """One tool call really ran and its output reached the upstream, then the answer came back."""
    assert code == 0, f"exit {code}\nstdout: {out[-2000:]}\nstderr: {err[-3000:]}\nrefused: {fake.refusals}"
    assert fake.refusals == []
    assert len(fake.seen) >= 2, [s.path for s in fake.seen]
    assert "apex-ok" in json.dumps(fake.seen[-1].body)  # the command's output went back upstream
    assert ANSWER_PREFIX in out and "apex-ok" in out, out


@pytest.mark.parametrize("previous", [False, True], ids=["newest", "previous"])
@pytest.mark.parametrize("model", [None, "claude-sonnet-4-5"], ids=["default-model", "sonnet"])
@pytest.mark.parametrize("kind", list(CHANNELS))
async def test_claude_code_turn(kind: str, model: str | None, previous: bool, start_apex: StartApex,
                                tmp_path: Path) -> None:
    """``claude -p`` runs Bash through Apex and answers, natively on Anthropic and translated elsewhere;
    with the newest pinned Claude Code and with the previous one (the captures' version)."""
    claude = cli("claude", previous=previous)
    url, fake = await serve(kind, start_apex)
    try:
        env = base_env(tmp_path) | {
            "ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": KEY,
            "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }
        work = tmp_path / "work"
        work.mkdir()
        args = [claude, "-p", PROMPT, "--allowedTools", "Bash", "--output-format", "text"]
        if model is not None:
            args += ["--model", model]
        code, out, err = await run_cli(args, env, work)
        assert_turn(fake, code, out, err)
        first = fake.seen[0]
        if kind == "anthropic":  # native: Claude Code's own request, with its beta query and headers
            assert first.query == "beta=true" and "claude-code" in first.headers["anthropic-beta"]
            assert first.headers["User-Agent"].startswith("claude-cli/")
    finally:
        await fake.stop()


@pytest.mark.parametrize("kind", ["anthropic", "openai_chat", "gemini"])
async def test_claude_code_tool_search(kind: str, start_apex: StartApex, tmp_path: Path) -> None:
    """Claude Code's tool search: its deferred tools reach a translated upstream only once loaded.

    The fake model first calls ToolSearch for the deferred WebFetch (Claude Code answers with
    a ``tool_reference`` block), must then see WebFetch declared, and only then runs Bash."""
    claude = cli("claude")
    url, fake = await serve(kind, start_apex, load_first="WebFetch")
    try:
        env = base_env(tmp_path) | {
            "ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": KEY, "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }
        work = tmp_path / "work"
        work.mkdir()
        code, out, err = await run_cli([claude, "-p", PROMPT, "--allowedTools", "Bash", "--output-format", "text"],
                                       env, work)
        turns = [s for s in fake.seen if "ToolSearch" in json.dumps(s.body.get("tools"))]
        if not turns:
            pytest.skip("this Claude Code sends no ToolSearch tool (tool search came after 2.1.197)")
        assert_turn(fake, code, out, err)
        assert fake.searches == 1
        after = json.dumps(turns[-1].body)
        assert "WebFetch" in after and ("Tool loaded: WebFetch" in after or '"tool_reference"' in after)
        if kind != "anthropic":  # translated: not declared before the search, declared after it
            assert '"WebFetch"' not in json.dumps(turns[0].body.get("tools"))
            assert '"WebFetch"' in json.dumps(turns[-1].body.get("tools"))
    finally:
        await fake.stop()


@pytest.mark.parametrize("previous", [False, True], ids=["newest", "previous"])
@pytest.mark.parametrize("kind", ["bedrock", "vertex"])
async def test_claude_code_on_claude_in_the_clouds(kind: str, previous: bool, start_apex: StartApex, cloud: CloudFake,
                                                   upstream: FakeUpstream, tmp_path: Path) -> None:
    """``claude -p`` through Apex to Claude on Bedrock and Vertex, whose fakes refuse what the
    clouds refuse (betas they do not take, a system turn or deferred tools without theirs):
    the first request is accepted, no retry needed, and the answer printed."""
    claude = cli("claude", previous=previous)
    cloud.call_tools = False  # the fake's Claude answers with text (its tool calls name no tool of Claude Code's)
    inst = await start_apex(one_channel_config(kind, claude_channel(kind, upstream, cloud, tmp_path), KEY))
    env = base_env(tmp_path) | {
        "ANTHROPIC_BASE_URL": inst.url, "ANTHROPIC_API_KEY": KEY, "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    work = tmp_path / "work"
    work.mkdir()
    code, out, err = await run_cli([claude, "-p", "What is 4200 + 42?", "--output-format", "text"], env, work)
    assert code == 0 and "4242" in out, f"exit {code}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    calls = [r for r in cloud.requests if "/model/" in r.path or "Predict" in r.path]
    assert len(calls) == 1, [(r.path, r.body[:300]) for r in calls]


@pytest.mark.parametrize("kind", ["bedrock", "vertex"])
async def test_codex_on_claude_in_the_clouds(kind: str, start_apex: StartApex, cloud: CloudFake, upstream: FakeUpstream,
                                             tmp_path: Path) -> None:
    """``codex exec`` through Apex (Responses translated to Messages) to Claude on Bedrock and Vertex."""
    codex = cli("codex")
    cloud.call_tools = False
    inst = await start_apex(one_channel_config(kind, claude_channel(kind, upstream, cloud, tmp_path), KEY))
    home = tmp_path / "codex-home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    provider = f'{{name="apex", base_url="{inst.url}/v1", env_key="APEX_KEY", wire_api="responses"}}'
    code, out, err = await run_cli([codex, "exec", "--skip-git-repo-check", "-c", "model_provider=apex",
                                    "-c", f"model_providers.apex={provider}", "-c", "analytics.enabled=false",
                                    "-c", 'otel.exporter="none"', "What is 4200 + 42?"],
                                   base_env(tmp_path) | {"APEX_KEY": KEY, "CODEX_HOME": str(home)}, work)
    assert code == 0 and "4242" in out, f"exit {code}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    assert len([r for r in cloud.requests if "/model/" in r.path or "Predict" in r.path]) == 1


@pytest.mark.parametrize("kind", ["openai_reasoning", "openai_chat", "openai_compatible", "anthropic", "gemini"])
async def test_codex_turn(kind: str, start_apex: StartApex, tmp_path: Path) -> None:
    """``codex exec`` (default model) runs its shell through Apex and answers, natively on OpenAI and translated elsewhere."""
    codex = cli("codex")
    url, fake = await serve(kind, start_apex)
    try:
        home = tmp_path / "codex-home"
        home.mkdir()
        work = tmp_path / "work"
        work.mkdir()
        env = base_env(tmp_path) | {"APEX_KEY": KEY, "CODEX_HOME": str(home)}
        provider = f'{{name="apex", base_url="{url}/v1", env_key="APEX_KEY", wire_api="responses"}}'
        args = [codex, "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
                "-c", "model_provider=apex", "-c", f"model_providers.apex={provider}",
                "-c", "analytics.enabled=false", "-c", 'otel.exporter="none"', PROMPT]
        code, out, err = await run_cli(args, env, work)
        assert_turn(fake, code, out, err)
        first = fake.seen[0]
        if kind in ("openai_reasoning", "openai_chat"):  # native: Codex's own Responses request
            assert first.path == "/v1/responses" and first.headers["User-Agent"].startswith("codex")
    finally:
        await fake.stop()


PNG_8X8 = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAEklEQVR4nGP4z8CAFWEXHbQSACj/P8Fu7N9hAAAAAElFTkSuQmCC"


def _sent_image(kind: str, body: dict[str, Any]) -> bool:
    """Whether the upstream request carries an image after the last tool call, where that upstream takes it."""
    if kind == "anthropic":
        results = [b for b in body["messages"][-1]["content"] if b.get("type") == "tool_result"]
        return any(x.get("type") == "image" for r in results for x in r.get("content") or [] if isinstance(x, dict))
    if kind == "gemini":
        parts = body["contents"][-1]["parts"]
        return any("functionResponse" in p for p in parts) and any(
            str(p.get("inlineData", {}).get("mimeType", "")).startswith("image/") for p in parts)
    messages = body["messages"]
    return messages[-2]["role"] == "tool" and any(p.get("type") == "image_url" for p in messages[-1]["content"])


@pytest.mark.parametrize("model", ["gpt-5.1", None], ids=["gpt-5.1", "default-model"])
@pytest.mark.parametrize("kind", ["anthropic", "gemini", "openai_compatible"])
async def test_codex_view_image(kind: str, model: str | None, start_apex: StartApex, tmp_path: Path) -> None:
    """``codex exec`` runs its view_image tool through Apex (with gpt-5.1 a function; with the
    default model inside its code-mode ``exec``): Codex sends the image back as a
    function_call_output / custom_tool_call_output whose output is an array of parts, which
    translated channels refused with 400 (the session died); the upstream gets the image and
    Codex the answer."""
    codex = cli("codex")
    mode, channel = CHANNELS[kind]
    fake = AgentUpstream(mode, view_image="pic.png")
    await fake.start()
    try:
        base = fake.url + ("/v1" if mode == "compat" else "")
        inst = await start_apex(one_channel_config(kind, {"base_url": base, **channel}, KEY))
        home = tmp_path / "codex-home"
        home.mkdir()
        work = tmp_path / "work"
        work.mkdir()
        (work / "pic.png").write_bytes(base64.b64decode(PNG_8X8))
        provider = f'{{name="apex", base_url="{inst.url}/v1", env_key="APEX_KEY", wire_api="responses"}}'
        args = [codex, "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
                *(["-m", model] if model else []), "-c", "model_provider=apex", "-c", f"model_providers.apex={provider}",
                "-c", "analytics.enabled=false", "-c", 'otel.exporter="none"', "Look at pic.png."]
        code, out, err = await run_cli(args, base_env(tmp_path) | {"APEX_KEY": KEY, "CODEX_HOME": str(home)}, work)
        assert code == 0, f"exit {code}\nstdout: {out[-2000:]}\nstderr: {err[-3000:]}\nrefused: {fake.refusals}"
        assert fake.refusals == []
        if VIEW_IMAGE not in json.dumps(fake.seen[0].body):  # a plain tool, or one that code-mode exec lists
            pytest.skip(f"this Codex offers no view_image tool for {model or 'its default model'}")
        assert _sent_image(kind, fake.seen[-1].body), json.dumps(fake.seen[-1].body)[-3000:]
        assert ANSWER_PREFIX in out, out
    finally:
        await fake.stop()
