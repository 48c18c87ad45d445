"""OpenTelemetry tracing over real HTTP: spans exported by OTLP/HTTP to a receiver the test runs.

A SERVER span per request continuing the client's ``traceparent``, a CLIENT child span per
upstream attempt with the GenAI semantic-convention attributes, and the attempt's context sent
to the upstream. With tracing off nothing of OpenTelemetry is imported.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from aiohttp import web

pytest.importorskip("opentelemetry.sdk", reason="tracing needs the otel extra: pip install 'apex-gateway[otel]'")
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import Span  # noqa: E402

from tests.conftest import StartApex, ant, basic_config, oai  # noqa: E402
from tests.integration.conftest import free_port  # noqa: E402
from tests.integration.fakes import FakeUpstream, error  # noqa: E402

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
MSG: Any = [{"role": "user", "content": "hi"}]


class OtlpReceiver:
    """An OTLP/HTTP trace endpoint: POST /v1/traces with a protobuf ExportTraceServiceRequest."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], Span]] = []  # (resource attributes, span)
        self.arrived = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        msg = ExportTraceServiceRequest.FromString(await request.read())
        for rs in msg.resource_spans:
            resource = {a.key: a.value.string_value for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                self.spans.extend((resource, s) for s in ss.spans)
        self.arrived.set()
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def wait_for(self, count: int) -> list[Span]:
        async with asyncio.timeout(10.0):
            while len(self.spans) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return [s for _, s in self.spans]


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    r = OtlpReceiver()
    app = web.Application()
    app.router.add_post("/v1/traces", r.handle)
    r.runner = web.AppRunner(app, access_log=None)
    await r.runner.setup()
    site = web.TCPSite(r.runner, "127.0.0.1", 0)
    await site.start()
    r.url = f"http://127.0.0.1:{r.runner.addresses[0][1]}"
    yield r
    await r.runner.cleanup()


def attrs(span: Span) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in span.attributes:
        v = a.value
        out[a.key] = v.string_value if v.HasField("string_value") else (
            v.int_value if v.HasField("int_value") else v.bool_value if v.HasField("bool_value") else v.double_value)
    return out


def traced_config(upstream: FakeUpstream, receiver: OtlpReceiver) -> dict[str, Any]:
    cfg = basic_config(upstream)
    cfg["global"]["tracing"] = {"otlp_endpoint": receiver.url, "service_name": "apex-test"}
    cfg["channels"][0]["model_map"] = {"gpt-4o": "gpt-4o-2024-08-06"}
    return cfg


async def test_request_and_attempt_spans_continue_the_client_trace(
    upstream: FakeUpstream, start_apex: StartApex, receiver: OtlpReceiver
) -> None:
    inst = await start_apex(traced_config(upstream, receiver))
    reply = await oai(inst).chat.completions.create(
        model="gpt-4o", messages=MSG, extra_headers={"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"})
    await inst.runner.cleanup()  # Gateway.close flushes the exporter
    spans = await receiver.wait_for(2)
    server = next(s for s in spans if s.kind == Span.SPAN_KIND_SERVER)
    client = next(s for s in spans if s.kind == Span.SPAN_KIND_CLIENT)
    assert server.trace_id.hex() == TRACE_ID and server.parent_span_id.hex() == CLIENT_SPAN
    assert client.trace_id.hex() == TRACE_ID and client.parent_span_id == server.span_id
    assert receiver.spans[0][0]["service.name"] == "apex-test"
    s, c = attrs(server), attrs(client)
    assert server.name == "chat gpt-4o"
    assert s["gen_ai.operation.name"] == "chat" and s["gen_ai.request.model"] == "gpt-4o"
    assert s["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert reply.usage is not None
    assert s["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    assert s["gen_ai.usage.output_tokens"] == reply.usage.completion_tokens
    assert s["http.response.status_code"] == 200 and s["apex.channel"] == "oa"
    assert c["gen_ai.provider.name"] == "openai" and c["gen_ai.request.model"] == "gpt-4o-2024-08-06"
    assert c["server.address"] == "127.0.0.1" and c["server.port"] == upstream.port
    assert client.status.code != client.status.STATUS_CODE_ERROR
    # The upstream saw the attempt's context: its own spans would join this trace under the attempt.
    sent = upstream.requests[-1].headers["traceparent"]
    assert sent == f"00-{TRACE_ID}-{client.span_id.hex()}-01"


async def test_failover_gives_one_client_span_per_attempt(
    upstream: FakeUpstream, start_apex: StartApex, receiver: OtlpReceiver
) -> None:
    cfg = traced_config(upstream, receiver)
    cfg["channels"].append({"name": "oa2", "provider_type": "openai", "base_url": upstream.openai_url,
                            "api_key": "sk-2"})
    cfg["routers"][0]["channels"] = [{"name": "oa"}]
    cfg["routers"][0]["rules"] = [{"match": {"model": "gpt-*"}, "strategy": "priority",
                                   "channels": [{"name": "oa"}], "fallback": ["oa2"]}]
    inst = await start_apex(cfg)
    upstream.push(error(500))
    await oai(inst).chat.completions.create(model="gpt-4o", messages=MSG)
    await inst.runner.cleanup()
    spans = await receiver.wait_for(3)
    server = next(s for s in spans if s.kind == Span.SPAN_KIND_SERVER)
    attempts = sorted((s for s in spans if s.kind == Span.SPAN_KIND_CLIENT), key=lambda s: s.start_time_unix_nano)
    assert [attrs(a)["apex.channel"] for a in attempts] == ["oa", "oa2"]
    assert all(a.parent_span_id == server.span_id for a in attempts)
    assert attrs(attempts[0])["error.type"] == "api_error"
    assert attempts[0].status.code == attempts[0].status.STATUS_CODE_ERROR
    assert "error.type" not in attrs(attempts[1]) and "error.type" not in attrs(server)
    assert attrs(server)["apex.attempts"] == 2
    # Each attempt told its upstream its own span id.
    sent = [r.headers["traceparent"].split("-")[2] for r in upstream.requests[-2:]]
    assert sent == [a.span_id.hex() for a in attempts]


async def test_error_status_and_sampling_off(upstream: FakeUpstream, start_apex: StartApex,
                                             receiver: OtlpReceiver) -> None:
    """A request that fails is an ERROR span with error.type; sample_ratio 0 exports nothing new
    (but a client's sampled parent is still followed)."""
    cfg = traced_config(upstream, receiver)
    cfg["global"]["tracing"]["sample_ratio"] = 0.0
    inst = await start_apex(cfg)
    await oai(inst).chat.completions.create(model="gpt-4o", messages=MSG)  # not sampled
    upstream.push(error(400, "bad thing"))
    with pytest.raises(openai.BadRequestError):
        await oai(inst).chat.completions.create(
            model="gpt-4o", messages=MSG, extra_headers={"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"})
    await inst.runner.cleanup()
    spans = await receiver.wait_for(2)
    assert {s.trace_id.hex() for s in spans} == {TRACE_ID}  # only the client-sampled request
    server = next(s for s in spans if s.kind == Span.SPAN_KIND_SERVER)
    assert attrs(server)["error.type"] == "invalid_request" and attrs(server)["http.response.status_code"] == 400
    assert server.status.code == server.status.STATUS_CODE_ERROR


def test_tracing_off_imports_nothing_of_opentelemetry() -> None:
    """Without global.tracing a served request leaves opentelemetry unimported."""
    code = """
import asyncio, sys
from aiohttp import web
import aiohttp
from apex.config.load import load_config_bytes
from apex.server.app import build_app
from apex.server.gateway import Gateway
cfg = b'{"global": {"auth": {"keys": ["k"]}}, "channels": [{"name": "m", "provider_type": "mock", "models": ["*"]}],' \\
      b' "routers": [{"name": "r", "channels": [{"name": "m"}]}]}'
async def main():
    runner = web.AppRunner(build_app(Gateway(load_config_bytes(cfg))))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as s:
        async with s.post(f"http://127.0.0.1:{port}/v1/chat/completions", headers={"Authorization": "Bearer k"},
                          json={"model": "x", "messages": [{"role": "user", "content": "hi"}]}) as r:
            assert r.status == 200, await r.text()
    await runner.cleanup()
asyncio.run(main())
print(sorted(m for m in sys.modules if m.startswith(("opentelemetry", "apex.tracing"))))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_tracing_without_the_extra_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A config asking for tracing where OpenTelemetry is not installed names the extra to install."""
    import importlib.util

    from apex.config.load import load_config_bytes
    from apex.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("opentelemetry") else real(name, *a))
    cfg = (b'{"global": {"tracing": {"otlp_endpoint": "http://127.0.0.1:4318"}}, "channels": '
           b'[{"name": "m", "provider_type": "mock"}], "routers": [{"name": "r", "channels": [{"name": "m"}]}]}')
    with pytest.raises(ConfigError) as info:
        load_config_bytes(cfg)
    assert info.value.path == "global.tracing" and "apex-gateway[otel]" in info.value.message
    bad = cfg.replace(b"http://127.0.0.1:4318", b"127.0.0.1:4318")
    monkeypatch.setattr(importlib.util, "find_spec", real)
    with pytest.raises(ConfigError) as info:
        load_config_bytes(bad)
    assert info.value.path == "global.tracing.otlp_endpoint"


def test_shutdown_does_not_wait_on_a_collector_that_never_answers() -> None:
    """With the collector down or hanging, the flush at shutdown held the stopping gateway for
    the exporter's timeout and its retries (8-30 s). It waits at most the bound it is given;
    the spans it could not send are given up (the gateway logs it)."""
    import threading

    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    from apex.config.model import TracingConfig
    from apex.tracing import build_tracer

    release = threading.Event()

    class Hanging(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            release.wait(30)
            return SpanExportResult.SUCCESS

    tracer = build_tracer(TracingConfig(otlp_endpoint="http://127.0.0.1:9"), exporter=Hanging())
    tracer.provider.get_tracer("t").start_span("s").end()
    try:
        assert tracer.shutdown(timeout_s=0.3) is False
    finally:
        release.set()


async def test_gemini_methods_and_local_counts_are_traced_as_what_they_are(
    upstream: FakeUpstream, start_apex: StartApex, receiver: OtlpReceiver
) -> None:
    """A Gemini embedContent span says embeddings and countTokens count_tokens (both said chat
    and gemini_generate); a count Apex answers itself has no upstream attempt span."""
    inst = await start_apex(traced_config(upstream, receiver))
    import aiohttp

    async with aiohttp.ClientSession(headers={"x-goog-api-key": "vk-default"}) as s:
        async with s.post(f"{inst.url}/v1beta/models/gpt-4o:embedContent",
                          json={"content": {"parts": [{"text": "hi"}]}}) as r:
            assert r.status == 200, await r.text()
        async with s.post(f"{inst.url}/v1beta/models/gpt-4o:countTokens",
                          json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}) as r:
            assert r.status == 200, await r.text()
    await inst.runner.cleanup()
    spans = await receiver.wait_for(3)
    servers = [attrs(s) for s in spans if s.kind == Span.SPAN_KIND_SERVER]
    assert [(a["gen_ai.operation.name"], a["apex.dialect"]) for a in servers] == [
        ("embeddings", "gemini_embed"), ("count_tokens", "gemini_count_tokens")]
    assert len([s for s in spans if s.kind == Span.SPAN_KIND_CLIENT]) == 1  # the embedding's only


async def test_attempt_spans_name_the_host_each_attempt_calls(
    upstream: FakeUpstream, start_apex: StartApex, receiver: OtlpReceiver
) -> None:
    """server.address/server.port come from the URL the attempt calls: a channel on its
    provider's default base_url had neither, and a dual-protocol channel's Anthropic hop
    named base_url's host instead of anthropic_base_url's."""
    cfg = traced_config(upstream, receiver)
    refused = f"http://127.0.0.1:{free_port()}"  # a proxy nobody listens on: nothing leaves the machine
    cfg["global"]["retries"] = {"max_attempts": 1}
    cfg["channels"] += [
        {"name": "oa-default", "provider_type": "openai", "api_key": "sk-d", "proxy": refused},
        {"name": "dual", "provider_type": "openai_compatible", "base_url": f"http://127.0.0.1:{free_port()}/v1",
         "anthropic_base_url": upstream.url, "api_key": "sk-dual"},
    ]
    cfg["routers"][0]["rules"] = [{"match": {"model": "default-*"}, "channels": [{"name": "oa-default"}]},
                                  {"match": {"model": "dual-*"}, "channels": [{"name": "dual"}]}]
    inst = await start_apex(cfg)
    with pytest.raises(openai.APIStatusError):
        await oai(inst).chat.completions.create(model="default-1", messages=MSG)
    await ant(inst).messages.create(model="dual-1", max_tokens=5, messages=MSG)
    assert upstream.requests[-1].path == "/v1/messages"
    await inst.runner.cleanup()
    spans = await receiver.wait_for(4)
    calls = {attrs(s)["apex.channel"]: attrs(s) for s in spans if s.kind == Span.SPAN_KIND_CLIENT}
    assert (calls["oa-default"]["server.address"], calls["oa-default"]["server.port"]) == ("api.openai.com", 443)
    assert (calls["dual"]["server.address"], calls["dual"]["server.port"]) == ("127.0.0.1", upstream.port)
