"""OpenTelemetry tracing (optional: ``apex-gateway[otel]``, on with ``global.tracing``).

A SERVER span per API request and a CLIENT child span per upstream attempt, with the
OpenTelemetry GenAI semantic-convention attributes (provider, operation, request and
response model, token usage, error type). The client's W3C ``traceparent`` is continued and
the attempt's own context goes to the upstream, so a provider's or a proxy's spans join the
trace. Spans are exported over OTLP/HTTP to ``{otlp_endpoint}/v1/traces`` by the SDK's batch
processor on its own thread: the event loop only creates and ends spans.

With tracing off, nothing here is imported: the Gateway's ``tracer`` is None and the request
path checks one attribute.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from urllib.parse import urlsplit
from typing import TYPE_CHECKING, Final, Protocol

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from apex import __version__
from apex.types import Dialect, Usage

if TYPE_CHECKING:
    from apex.config.model import TracingConfig

__all__ = ["RequestTrace", "Tracer", "build_tracer"]

_PROPAGATOR: Final = TraceContextTextMapPropagator()
SHUTDOWN_FLUSH_S: Final = 2.0  # the most a stopping gateway waits for its last spans to go out

# gen_ai.operation.name by client dialect (the semantic conventions' well-known values).
_OPERATION: Final = {
    Dialect.OPENAI_CHAT: "chat",
    Dialect.OPENAI_RESPONSES: "chat",
    Dialect.ANTHROPIC_MESSAGES: "chat",
    Dialect.OPENAI_EMBEDDINGS: "embeddings",
    Dialect.ANTHROPIC_COUNT_TOKENS: "count_tokens",
    Dialect.GEMINI_GENERATE: "chat",
    Dialect.GEMINI_EMBED: "embeddings",
    Dialect.GEMINI_COUNT_TOKENS: "count_tokens",
}
# gen_ai.provider.name by Apex provider family / type (well-known values where they exist).
_PROVIDER: Final = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "azure_openai": "azure.ai.openai",
    "bedrock": "aws.bedrock",
    "vertex": "gcp.vertex_ai",
    "deepseek": "deepseek",
    "groq": "groq",
    "mock": "apex.mock",
}


class Traced(Protocol):
    """What tracing reads of a request (apex.server.exchange.Exchange has it all)."""

    request_id: str
    dialect: Dialect
    model: str | None
    upstream_model: str | None
    router: str | None
    channel: str | None
    team: str | None
    status: int
    stream: bool
    stream_error: str | None
    attempts: int
    usage: Usage | None


class RequestTrace:
    """The spans of one request: the request span and the attempt span in progress."""

    __slots__ = ("_tracer", "span", "attempt", "operation")

    def __init__(self, tracer: trace.Tracer, span: Span, operation: str) -> None:
        self._tracer = tracer
        self.span = span
        self.attempt: Span | None = None
        self.operation = operation

    def dialect_known(self, dialect: Dialect) -> None:
        """The request's dialect was learned after the span began (a Gemini URL's method)."""
        self.operation = _OPERATION.get(dialect, "chat")
        self.span.update_name(self.operation)
        self.span.set_attributes({"gen_ai.operation.name": self.operation, "apex.dialect": dialect.value})

    def begin_attempt(self, channel: str, provider: str, url: str) -> None:
        """Start the CLIENT span of one upstream attempt (ends the previous one if left open);
        ``url`` is the one the attempt calls: its host and port are the span's server.*."""
        if self.attempt is not None:
            self.attempt.end()
        attrs: dict[str, str | int] = {
            "gen_ai.operation.name": self.operation,
            "gen_ai.provider.name": _PROVIDER.get(provider, provider),
            "apex.channel": channel,
        }
        parts = urlsplit(url)
        if parts.hostname:
            attrs["server.address"] = parts.hostname
            attrs["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
        name = f"{self.operation} {channel}"
        ctx = trace.set_span_in_context(self.span)
        self.attempt = self._tracer.start_span(name, context=ctx, kind=SpanKind.CLIENT, attributes=attrs)

    def traceparent(self) -> dict[str, str]:
        """W3C trace-context headers naming the attempt in progress (or the request)."""
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(self.attempt or self.span))
        return carrier

    def end_attempt(self, error_type: str | None, response_model: str | None = None) -> None:
        span = self.attempt
        if span is None:
            return
        self.attempt = None
        if response_model:
            span.update_name(f"{self.operation} {response_model}")
            span.set_attribute("gen_ai.request.model", response_model)
            span.set_attribute("gen_ai.response.model", response_model)
        if error_type is not None:
            span.set_attribute("error.type", error_type)
            span.set_status(Status(StatusCode.ERROR))
        span.end()


class Tracer:
    """Starts request traces; owns the SDK provider and its exporter."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("apex", __version__)

    def start_request(self, ex: Traced, headers: Mapping[str, str]) -> RequestTrace:
        parent = _PROPAGATOR.extract(headers) if "traceparent" in headers else None
        operation = _OPERATION.get(ex.dialect, "chat")
        span = self._tracer.start_span(operation, context=parent, kind=SpanKind.SERVER,
                                       attributes={"gen_ai.operation.name": operation,
                                                   "apex.request_id": ex.request_id,
                                                   "apex.dialect": ex.dialect.value})
        return RequestTrace(self._tracer, span, operation)

    def end_request(self, ex: Traced, rt: RequestTrace, error_type: str | None) -> None:
        """Close the request's spans with what the request learned (called from Gateway.finish)."""
        rt.end_attempt(error_type if ex.status >= 400 or ex.stream_error else None, ex.upstream_model)
        span = rt.span
        if ex.model:
            span.update_name(f"{rt.operation} {ex.model}")
            span.set_attribute("gen_ai.request.model", ex.model)
        if ex.upstream_model:
            span.set_attribute("gen_ai.response.model", ex.upstream_model)
        attrs: dict[str, str | int | bool] = {"http.response.status_code": ex.status, "apex.stream": ex.stream,
                                              "apex.attempts": ex.attempts}
        attrs.update({k: v for k, v in (("apex.router", ex.router), ("apex.channel", ex.channel),
                                          ("apex.team_id", ex.team)) if v})
        usage = ex.usage
        if usage is not None:
            attrs["gen_ai.usage.input_tokens"] = usage.prompt_tokens
            attrs["gen_ai.usage.output_tokens"] = usage.completion_tokens
            if usage.cached_tokens:
                attrs["gen_ai.usage.cache_read.input_tokens"] = usage.cached_tokens
            if usage.reasoning_tokens:
                attrs["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
            attrs["apex.usage.estimated"] = usage.estimated
        span.set_attributes(attrs)
        if error_type is not None:
            span.set_attribute("error.type", error_type)
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    def shutdown(self, timeout_s: float = SHUTDOWN_FLUSH_S) -> bool:
        """Flush what is queued and stop the export thread, waiting at most ``timeout_s``; True
        when it finished. A collector that is down or never answers holds each export for
        the exporter's timeout, retried: stopping the gateway took 8-30 s. The flush goes on in
        a daemon thread, so the process does not wait for it past this bound."""
        done = threading.Event()

        def flush() -> None:
            try:
                self.provider.shutdown()
            finally:
                done.set()

        threading.Thread(target=flush, name="apex-tracing-shutdown", daemon=True).start()
        return done.wait(timeout_s)


def build_tracer(config: TracingConfig, exporter: SpanExporter | None = None) -> Tracer:
    """A Tracer exporting to ``config.otlp_endpoint`` (or to ``exporter``, for tests)."""
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=config.otlp_endpoint.rstrip("/") + "/v1/traces",
                                    headers=dict(config.headers), timeout=10)
    provider = TracerProvider(
        resource=Resource.create({"service.name": config.service_name, "service.version": __version__}),
        sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
    return Tracer(provider)
