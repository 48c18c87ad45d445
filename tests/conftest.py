"""Shared fixtures: a fake upstream, and Apex itself served over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anthropic
import hypothesis  # imported at a shallow stack: CPython 3.11.7's AST validator miscounts depth when pytest rewrites it deep inside a test
import openai
import pytest
import uvloop
from aiohttp import web

from apex.config.load import load_config_bytes
from apex.server.app import build_app
from apex.server.conn import ApexRunner
from apex.server.gateway import Gateway
from tests.fakeclock import FakeTime
from tests.integration.fakes import FakeUpstream
from tests.redis_server import redis_server  # noqa: F401  # re-exported fixture


class ApexInstance:
    """A running Apex: its base URL and the Gateway behind it."""

    def __init__(self, gateway: Gateway, runner: web.AppRunner, port: int) -> None:
        self.gateway = gateway
        self.runner = runner
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        return f"{self.url}/v1"


StartApex = Callable[..., Awaitable[ApexInstance]]

# No per-example deadline: CI machines are shared and slow examples are not failures here.
hypothesis.settings.register_profile("apex", deadline=None)
hypothesis.settings.load_profile("apex")

_CLIENTS: list[openai.AsyncOpenAI | anthropic.AsyncAnthropic] = []


def oai(inst: ApexInstance, key: str = "vk-default") -> openai.AsyncOpenAI:
    """An official OpenAI SDK client pointed at ``inst`` (closed after the test)."""
    client = openai.AsyncOpenAI(base_url=inst.openai_url, api_key=key, max_retries=0)
    _CLIENTS.append(client)
    return client


def ant(inst: ApexInstance, key: str = "vk-default") -> anthropic.AsyncAnthropic:
    """An official Anthropic SDK client pointed at ``inst`` (closed after the test)."""
    client = anthropic.AsyncAnthropic(base_url=inst.url, api_key=key, max_retries=0)
    _CLIENTS.append(client)
    return client


@pytest.fixture(autouse=True)
def private_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI remembers the last config started under $XDG_STATE_HOME/apex: keep tests (and
    the gateways they start as subprocesses) out of the real home directory."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))


@pytest.fixture(autouse=True)
async def sdk_clients() -> AsyncIterator[None]:
    """Close every SDK client a test made, inside the test's own event loop."""
    yield
    while _CLIENTS:
        await _CLIENTS.pop().close()


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def start_apex() -> AsyncIterator[StartApex]:
    """Factory: ``await start_apex(config_dict, env=...)`` serves Apex on 127.0.0.1:<free>.

    ``time=FakeTime()`` puts the gateway's routing clock and backoff sleep on fake time;
    ``rng=`` seeds its balancing and jitter."""
    started: list[ApexInstance] = []

    async def start(
        config: dict[str, Any],
        env: dict[str, str] | None = None,
        config_path: Any = None,
        *,
        time: FakeTime | None = None,
        rng: random.Random | None = None,
    ) -> ApexInstance:
        cfg = load_config_bytes(json.dumps(config).encode(), env or {})
        seams: dict[str, Any] = {} if time is None else {"clock": time.clock, "sleep": time.sleep}
        gateway = Gateway(cfg, config_path, rng=rng, **seams)
        app = build_app(gateway, watch=config_path is not None)
        runner = ApexRunner(app, gateway, handler_cancellation=True, access_log=None, shutdown_timeout=2)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        inst = ApexInstance(gateway, runner, runner.addresses[0][1])  # the bound port of an ephemeral listen
        started.append(inst)
        return inst

    yield start
    for inst in started:
        await inst.runner.cleanup()


def one_channel_config(name: str, channel: dict[str, Any], vkey: str) -> dict[str, Any]:
    """One channel ``name`` (its other keys in ``channel``) behind one router reached with
    ``vkey``; one attempt per request, logs at error level."""
    return {
        "global": {"retries": {"max_attempts": 1}},
        "logging": {"level": "error"},
        "channels": [{"name": name, **channel}],
        "routers": [{"name": "r", "vkey": vkey, "channels": [{"name": name}]}],
    }


def basic_config(upstream: FakeUpstream, **overrides: Any) -> dict[str, Any]:
    """OpenAI + Anthropic channels on the fake upstream, a router with a vkey, a global key."""
    cfg: dict[str, Any] = {
        "global": {
            "auth": {"keys": ["global-key"]},
            "retries": {"max_attempts": 3, "backoff_ms": 1, "max_backoff_ms": 50},
        },
        "logging": {"level": "warning"},
        "channels": [
            {"name": "oa", "provider_type": "openai", "base_url": upstream.openai_url, "api_key": "sk-upstream-oa",
             "headers": {"OpenAI-Organization": "org-test"}},
            {"name": "an", "provider_type": "anthropic", "base_url": upstream.url, "api_key": "sk-ant-upstream"},
        ],
        "routers": [
            {"name": "default", "vkey": "vk-default",
             "rules": [{"match": {"model": "claude-*"}, "channels": [{"name": "an"}]}],
             "channels": [{"name": "oa"}]},
        ],
    }
    cfg.update(overrides)
    return cfg


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Tests run on uvloop, the loop Apex runs on in production (``apex gateway start``)."""
    return {"uvloop": uvloop.new_event_loop}
