"""Frozen msgspec Structs mirroring the JSON config file (spec section 2).

Decoding is strict: an unknown key anywhere is an error. These types say what the file
may contain, its defaults and every rule about one value (ranges, non-empty strings,
patterns, closed vocabularies as ``Literal``): msgspec checks them while decoding and names
the key path (``Expected `int` >= 1 - at `$.global.retries.max_attempts```), and the JSON
Schema shows them to editors. Rules relating several values (references, duplicates, a
glob that must compile, keys one provider type needs) live in ``apex.config.load``.
Nothing here is read per request: the Snapshot compiles it first.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

__all__ = [
    "AuthConfig",
    "AwsCredentials",
    "AzureAd",
    "Channel",
    "ChannelHealth",
    "ChannelRef",
    "ChannelTimeouts",
    "ClientTimeouts",
    "Config",
    "GlobalConfig",
    "LoggingConfig",
    "Match",
    "MetricsConfig",
    "ModelCapability",
    "PROVIDER_TYPES",
    "Budget",
    "Policy",
    "Price",
    "RequestLogConfig",
    "ProviderType",
    "RateLimit",
    "RateLimitStore",
    "Retries",
    "Router",
    "Rule",
    "Strategy",
    "Team",
    "TracingConfig",
    "Timeouts",
]

# --- value rules, as types ---------------------------------------------------------------
# Patterns are searched with Python's re and read by editors as ECMA-262 (JSON Schema), so
# they use the common subset. Python's `$` also matches before a final newline: `$(?!\n)`
# is the end of the string in both, where a smuggled newline would matter (HTTP headers).

Positive = Annotated[int, Meta(ge=1)]
NonNegative = Annotated[int, Meta(ge=0)]
# Durations in ms: at most a week. Larger ones are typos, and 10**20 overflowed the loop's
# timers (a request whose first attempt failed hung instead of getting its 502).
_WEEK_MS: Final = 7 * 24 * 3600 * 1000
Millis = Annotated[int, Meta(ge=0, le=_WEEK_MS)]
PositiveMillis = Annotated[int, Meta(ge=1, le=_WEEK_MS)]
NonEmpty = Annotated[str, Meta(min_length=1)]
# A name that reaches response headers, metric labels and log lines (a channel's, a router's,
# a model_map target): no control characters (a newline in one left every request it served
# without an answer).
Name = Annotated[str, Meta(min_length=1, pattern=r"^[^\x00-\x1f\x7f]+$(?!\n)")]
Usd = Annotated[float, Meta(ge=0)]  # JSON has no NaN and msgspec refuses an infinite number
HttpStatus = Annotated[int, Meta(ge=100, le=599)]
# A scheme and a host; or a ${VAR} reference left unresolved (a CLI edit or `config validate
# --allow-missing-env` in a shell without the gateway's environment; the gateway resolves first).
HttpUrl = Annotated[str, Meta(pattern=r"^(https?://[^/?#\s]|\$\{)")]
# RFC 9110: a header name is a token; a value is visible ASCII, Latin-1 (obs-text), space and tab.
HeaderName = Annotated[str, Meta(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$(?!\n)")]
HeaderValue = Annotated[str, Meta(pattern=r"^[\t\x20-\x7e\x80-\xff]*$(?!\n)")]
CloudRegion = Annotated[str, Meta(pattern=r"^([a-z0-9][a-z0-9-]*$(?!\n)|\$\{)")]  # us-east-1, us-east5, global
AzureApiVersion = Annotated[str, Meta(pattern=r"^(v1|\d{4}-\d{2}-\d{2}(-preview)?)$(?!\n)")]

# Apex's own endpoints, which the metrics path must not shadow: these paths, and every path
# under the two model prefixes (a model's own path; Gemini's generateContent and friends).
RESERVED_PATHS: Final[tuple[str, ...]] = (
    "/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/models", "/v1/messages",
    "/v1/messages/count_tokens", "/v1beta/models", "/health", "/ready",
)
RESERVED_PREFIXES: Final[tuple[str, ...]] = ("/v1/models/", "/v1beta/models/")
# Letters, digits and -._~/ only: a query, fragment or percent-escape could never match a request's path.
MetricsPath = Annotated[str, Meta(pattern="^/(?!((" + "|".join(re.escape(p[1:]) for p in RESERVED_PATHS) + ")$|"
                                          + "|".join(re.escape(p[1:]) for p in RESERVED_PREFIXES) + "))"
                                          + r"[A-Za-z0-9._~/-]*$(?!\n)")]

ProviderType = Literal[
    "openai",
    "anthropic",
    "gemini",
    "deepseek",
    "moonshot",
    "minimax",
    "ollama",
    "jina",
    "openrouter",
    "groq",
    "openai_compatible",
    "azure_openai",
    "bedrock",
    "vertex",
    "mock",
]
PROVIDER_TYPES: Final[tuple[str, ...]] = ProviderType.__args__  # type: ignore[attr-defined]  # Literal keeps its members in __args__
Strategy = Literal["round_robin", "random", "priority"]


class _Base(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True, omit_defaults=True):
    """Strict, immutable, keyword-only; encodes without default-valued fields."""


class AuthConfig(_Base, frozen=True):
    keys: tuple[NonEmpty, ...] = ()
    anonymous: bool = False


class Timeouts(_Base, frozen=True):
    connect_ms: PositiveMillis = 5000
    request_ms: PositiveMillis = 600_000
    first_byte_ms: PositiveMillis = 120_000
    stream_idle_ms: PositiveMillis = 120_000


class ChannelTimeouts(_Base, frozen=True):
    """Per-channel overrides; an absent field takes the global value."""

    connect_ms: PositiveMillis | None = None
    request_ms: PositiveMillis | None = None
    first_byte_ms: PositiveMillis | None = None
    stream_idle_ms: PositiveMillis | None = None


class ClientTimeouts(_Base, frozen=True):
    """How long a client may take: to send its request head, to send its body, to stay
    connected idle between requests (slowloris protection), and to take a stream's next bytes
    (a client that stops reading holds an upstream connection)."""

    header_read_ms: PositiveMillis = 10_000
    body_read_ms: PositiveMillis = 60_000
    keepalive_idle_ms: PositiveMillis = 75_000
    send_ms: PositiveMillis = 60_000


class Retries(_Base, frozen=True):
    max_attempts: Annotated[int, Meta(ge=1, le=100)] = 3  # 10**400 retried a refusing upstream for ever
    backoff_ms: Millis = 200
    max_backoff_ms: Millis = 5000
    retry_on_status: tuple[HttpStatus, ...] = (429, 500, 502, 503, 504)


class ChannelHealth(_Base, frozen=True):
    """Circuit breaker: ``failure_threshold`` failures in a row cool a channel down."""

    failure_threshold: Positive = 5
    cooldown_ms: Millis = 30_000


class RateLimitStore(_Base, frozen=True):
    type: Literal["memory", "redis"] = "memory"
    url: str | None = None
    fail_mode: Literal["open", "closed"] = "open"
    key_prefix: str = "apex:rl:"


class RequestLogConfig(_Base, frozen=True):
    """``global.request_log``: where finished requests are recorded (``off`` records none)."""

    type: Literal["sqlite", "postgres", "off"] = "sqlite"
    path: str | None = None  # sqlite file; default: requests.db in the state directory
    dsn: str | None = None   # postgres
    retention_days: Positive = 30
    capture_content: bool = False
    capture_max_bytes: NonNegative = 16384
    queue_size: Positive = 10_000
    batch_size: Positive = 500


class TracingConfig(_Base, frozen=True):
    otlp_endpoint: HttpUrl  # the collector's base URL; spans go to {otlp_endpoint}/v1/traces (OTLP/HTTP)
    service_name: str = "apex"
    sample_ratio: Annotated[float, Meta(ge=0, le=1)] = 1.0  # of traces started here; a client's sampled flag is followed
    headers: dict[HeaderName, HeaderValue] = {}  # sent with every export, e.g. a collector's auth header


class GlobalConfig(_Base, frozen=True):
    listen: str = "127.0.0.1:8080"
    auth: AuthConfig = AuthConfig()
    timeouts: Timeouts = Timeouts()
    client_timeouts: ClientTimeouts = ClientTimeouts()
    retries: Retries = Retries()
    health: ChannelHealth = ChannelHealth()
    max_body_bytes: Annotated[int, Meta(ge=1, le=1 << 30)] = 32 * 1024 * 1024  # at most 1 GiB
    shutdown_grace_ms: Millis = 10_000
    drain_delay_ms: Millis = 0  # SIGTERM: /ready says 503 and Apex keeps serving this long before it drains
    rate_limit_store: RateLimitStore = RateLimitStore()
    request_log: RequestLogConfig = RequestLogConfig()
    tracing: TracingConfig | None = None


class LoggingConfig(_Base, frozen=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "pretty"] = "json"
    file: str | None = None
    access_log: bool = True


class MetricsConfig(_Base, frozen=True):
    enabled: bool = True
    path: MetricsPath = "/metrics"


class AzureAd(_Base, frozen=True):
    """Microsoft Entra ID client credentials (azure_openai): a token for Cognitive Services."""

    tenant_id: NonEmpty
    client_id: NonEmpty
    client_secret: NonEmpty
    authority_host: HttpUrl = "https://login.microsoftonline.com"


class AwsCredentials(_Base, frozen=True):
    """Static AWS keys (bedrock); when absent the standard AWS credential chain is used."""

    access_key_id: NonEmpty
    secret_access_key: NonEmpty
    session_token: str | None = None


class Price(_Base, frozen=True):
    """USD per million tokens. Absent cache prices cost what ``input`` costs, except an absent
    ``cache_write_1h``: 1.6x ``cache_write`` (Anthropic's 2x input against 1.25x for five
    minutes); an absent ``reasoning`` price costs what ``output`` costs (reasoning tokens are
    output tokens)."""

    input: Usd
    output: Usd = 0.0
    cached_input: Usd | None = None  # cached (read) input tokens
    cache_read: Usd | None = None  # the same price under its earlier name; one of the two
    cache_write: Usd | None = None
    cache_write_1h: Usd | None = None  # Anthropic's one-hour cache writes; absent: 1.6x cache_write
    reasoning: Usd | None = None


class ChannelTls(_Base, frozen=True):
    """TLS to the upstream: a private CA bundle (replaces the system store), a client
    certificate for mTLS, and ``verify: false`` only when written out (warned at every load)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True


class ModelCapability(_Base, frozen=True):
    """One row of a channel's model capability table (overrides the built-in rows)."""

    model: str                                   # glob over upstream model names
    reasons: bool = False                        # the model thinks: map thinking / reasoning_effort
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] | None = None
    reasoning: tuple[Literal["effort", "budget", "adaptive"], ...] | None = None  # knobs it takes
    efforts: tuple[str, ...] | None = None       # reasoning_effort values it accepts
    json_schema: bool = False                    # Anthropic output_config.format
    one_sampling: bool = False                   # takes temperature or top_p, not both
    max_output_tokens: Positive | None = None    # translated output limits are cut to it


class Channel(_Base, frozen=True):
    name: Name
    provider_type: ProviderType
    base_url: HttpUrl | None = None
    anthropic_base_url: HttpUrl | None = None
    api_key: HeaderValue | None = None  # sent in a header as is
    headers: dict[HeaderName, HeaderValue] = msgspec.field(default_factory=dict)
    model_map: dict[str, Name] = msgspec.field(default_factory=dict)
    models: tuple[str, ...] | None = None
    timeouts: ChannelTimeouts | None = None
    capabilities: tuple[ModelCapability, ...] = ()
    # False: never ask an OpenAI-shaped server for stream usage (stream_options.include_usage);
    # for servers that refuse the field (a 422 on every stream). Usage is then estimated.
    stream_usage: bool = True
    # azure_openai only
    api_version: AzureApiVersion | None = None
    azure_ad: AzureAd | None = None
    # bedrock only
    region: CloudRegion | None = None
    aws: AwsCredentials | None = None
    # vertex only
    project: NonEmpty | None = None
    location: CloudRegion | None = None
    credentials_file: str | None = None
    prices: dict[str, Price] = msgspec.field(default_factory=dict)  # model glob -> negotiated price
    # egress: "http://user:pass@host:port" (or https://), "socks5://" or "socks5h://" (the socks extra), "direct",
    # or absent (HTTPS_PROXY/HTTP_PROXY/ALL_PROXY/NO_PROXY apply)
    proxy: str | None = None
    tls: ChannelTls | None = None
    max_connections: Positive | None = None  # per origin; None: apex.upstream.egress.DEFAULT_MAX_CONNECTIONS
    # mock provider only
    latency_ms: Millis = 0
    tokens_per_s: Annotated[float, Meta(gt=0)] | None = None
    response_text: str | None = None


class ChannelRef(_Base, frozen=True):
    name: str
    weight: Positive = 1


class Match(_Base, frozen=True):
    model: str | Annotated[tuple[str, ...], Meta(min_length=1)]


class Rule(_Base, frozen=True):
    match: Match
    channels: Annotated[tuple[ChannelRef, ...], Meta(min_length=1)]
    strategy: Strategy = "round_robin"
    fallback: tuple[str, ...] = ()


class Router(_Base, frozen=True):
    name: Name
    vkey: NonEmpty | None = None
    rules: tuple[Rule, ...] = ()
    channels: tuple[ChannelRef, ...] = ()
    strategy: Strategy = "round_robin"


class RateLimit(_Base, frozen=True):
    rpm: Positive | None = None
    tpm: Positive | None = None


class Budget(_Base, frozen=True):
    """A team's spending cap per calendar period in ``timezone`` (IANA name)."""

    usd: Usd
    period: Literal["day", "week", "month"] = "month"
    timezone: str = "UTC"


class Policy(_Base, frozen=True):
    allowed_routers: tuple[str, ...] | None = None
    allowed_models: tuple[str, ...] | None = None
    rate_limit: RateLimit | None = None
    budget: Budget | None = None


class Team(_Base, frozen=True):
    id: NonEmpty
    api_key: NonEmpty
    policy: Policy = Policy()


class Config(_Base, frozen=True):
    # An editor's schema hint ("$schema": ".../config.schema.json"); Apex ignores its value.
    schema: str | None = msgspec.field(default=None, name="$schema")
    global_: GlobalConfig = msgspec.field(default_factory=GlobalConfig, name="global")
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()
    channels: tuple[Channel, ...] = ()
    routers: tuple[Router, ...] = ()
    teams: tuple[Team, ...] = ()
    prices: dict[str, Price] = msgspec.field(default_factory=dict)  # model glob -> price (over the built-in table)
