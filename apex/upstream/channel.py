"""A config channel compiled for the request path: one UpstreamPlan per client dialect.

Everything that depends only on the config is decided here, once: which upstream dialect
serves each client dialect (native or translated), the URL, the prebuilt headers (provider
auth, preset and channel headers), the translator, the model map and the timeouts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

import msgspec

from apex import __version__
from apex.config.clouds import CLOUD_PROVIDERS
from apex.config.model import Channel, Config, GlobalConfig
from apex.config.schema import is_secret_header
from apex.errors import ConfigError, InvalidRequest, Secrets, secrets_of
from apex.upstream.betas import BEDROCK_BETAS, VERTEX_BETAS
from apex.upstream.cloud import CloudChannel, CloudRoute, CloudSetup
from apex.upstream.egress import Egress, TlsOptions, build_egress
from apex.upstream.http import UpstreamPool, encode_header_fields
from apex.upstream.mock import MockTransport
from apex.upstream.transport import HttpTransport, Transport
from apex.upstream.presets import ANTHROPIC_VERSION, PRESETS, ProviderPreset
from apex.routing.match import ModelMap, PatternSet
from apex.translate import Translator, find_translator
from apex.translate.capabilities import CapabilityRow, CapabilityTable, override_row
from apex.translate.passthrough import ReasoningHistory
from apex.types import Dialect, ProviderFamily

__all__ = ["ChannelTimeouts", "CompiledChannel", "UpstreamPlan", "check_egress", "compile_channel"]

USER_AGENT: Final = f"apex/{__version__}"
_log: Final = logging.getLogger("apex.config")

_PATHS: Final[dict[Dialect, str]] = {
    Dialect.OPENAI_CHAT: "/chat/completions",
    Dialect.OPENAI_RESPONSES: "/responses",
    Dialect.OPENAI_EMBEDDINGS: "/embeddings",
    Dialect.ANTHROPIC_MESSAGES: "/v1/messages",
    Dialect.ANTHROPIC_COUNT_TOKENS: "/v1/messages/count_tokens",
}

# Which upstream dialects can serve a client dialect through a translator, in preference order.
_TRANSLATED: Final[dict[Dialect, tuple[Dialect, ...]]] = {
    Dialect.OPENAI_CHAT: (Dialect.ANTHROPIC_MESSAGES, Dialect.GEMINI_GENERATE),
    Dialect.ANTHROPIC_MESSAGES: (Dialect.OPENAI_CHAT, Dialect.GEMINI_GENERATE),
    Dialect.OPENAI_RESPONSES: (Dialect.OPENAI_CHAT, Dialect.ANTHROPIC_MESSAGES, Dialect.GEMINI_GENERATE),
    Dialect.OPENAI_EMBEDDINGS: (Dialect.GEMINI_EMBED,),
    Dialect.GEMINI_GENERATE: (Dialect.OPENAI_CHAT, Dialect.ANTHROPIC_MESSAGES),
    Dialect.GEMINI_EMBED: (Dialect.OPENAI_EMBEDDINGS,),
}
# Client dialects Apex answers itself (an estimate) on channels that lack a native endpoint.
_LOCAL_COUNT: Final = frozenset({Dialect.ANTHROPIC_COUNT_TOKENS, Dialect.GEMINI_COUNT_TOKENS})
_CLOUD_BETAS: Final[dict[str, frozenset[str]]] = {"vertex": VERTEX_BETAS, "bedrock": BEDROCK_BETAS}


@dataclass(frozen=True, slots=True)
class ChannelTimeouts:
    """Seconds. The upstream pool enforces ``connect``; the pipeline the others."""

    connect: float
    request: float
    first_byte: float
    stream_idle: float


# Native dialects whose requests are fitted to the upstream model (Attempt._upstream_body), by the
# upstream family whose capability rows apply.
_FITTED_NATIVE: Final = {Dialect.OPENAI_CHAT: "openai", Dialect.OPENAI_RESPONSES: "openai",
                         Dialect.ANTHROPIC_MESSAGES: "anthropic", Dialect.GEMINI_GENERATE: "gemini"}
_MODEL_IN_URL: Final = frozenset({Dialect.GEMINI_GENERATE, Dialect.GEMINI_COUNT_TOKENS, Dialect.GEMINI_EMBED})


@dataclass(frozen=True, slots=True)
class UpstreamPlan:
    """How one client dialect reaches this channel."""

    client: Dialect
    upstream: Dialect
    family: ProviderFamily       # error/usage shape of the upstream
    url: str                     # for Gemini: the prefix before ':method'
    headers: dict[str, str]      # prebuilt (Host and Content-Length are added per request)
    translator: Translator | None
    forward_anthropic_headers: bool
    add_stream_usage: bool        # OpenAI chat passthrough: ask for include_usage upstream
    fix_embedding_encoding: bool  # upstream may not honour encoding_format=base64
    local_estimate: bool = False  # count_tokens answered by Apex itself
    strip_unsigned_thinking: bool = False  # real Anthropic rejects thinking blocks Apex made up
    without_tool_search: bool = False  # an Anthropic-shaped upstream without Anthropic's tool search
    betas: frozenset[str] | None = None  # the anthropic-beta flags the upstream takes (None: any)
    betas_in_body: bool = False   # Bedrock: the client's betas go in the body as ``anthropic_beta``
    caps: CapabilityTable | None = None  # the upstream model capability table (translated plans)
    header_fields: bytes = b""    # ``headers`` encoded once: what goes on the wire
    # The same without User-Agent and anthropic-version: a native hop adds the client's own.
    header_fields_bare: bytes = b""
    keep_user_agent: bool = False  # the channel's headers name a User-Agent: it wins over the client's
    route: CloudRoute | None = None  # a cloud's URL shape, body edits, auth and stream framing
    stream_usage_option: bool = True  # an OpenAI-shaped upstream takes stream_options.include_usage
    compat_chat: bool = False  # Chat passthrough to a server that is not OpenAI's: compat_chat_request
    strict_fields: bool = False  # translated Chat to a server that refuses OpenAI's own fields
    reasoning_history: ReasoningHistory = "keep"  # translated Chat requests: passthrough.fit_reasoning_history
    repair_chat_chunks: bool = False  # a passed-through Chat stream is repaired (passthrough._ChunkRepair)
    # An Anthropic-shaped endpoint that is not Anthropic's API (DeepSeek's, Moonshot's, a local
    # server's): it holds no message threads, so a request with ``thread`` is refused there.
    refuses_threads: bool = False

    def __post_init__(self) -> None:
        if self.headers and not self.header_fields:
            object.__setattr__(self, "header_fields", encode_header_fields(self.headers))
            own_agent = any(k.lower() == "user-agent" and v != USER_AGENT for k, v in self.headers.items())
            object.__setattr__(self, "keep_user_agent", own_agent)
            bare = ("anthropic-version",) if own_agent else ("anthropic-version", "user-agent")
            rest = {k: v for k, v in self.headers.items() if k.lower() not in bare}
            object.__setattr__(self, "header_fields_bare", encode_header_fields(rest))

    @property
    def native(self) -> bool:
        """Client and upstream speak the same protocol: the client's bytes go through."""
        return self.translator is None and self.family != "local"

    @property
    def model_in_body(self) -> bool:
        """A renamed model goes into the body's ``model``. Not for Gemini: the model is in
        the URL, and Gemini refuses a body field it does not know ('Unknown name "model"')."""
        return self.upstream not in _MODEL_IN_URL

    def url_for(self, model: str, stream: bool) -> str:
        """The upstream URL for ``model``. Gemini and the clouds put the model (client input)
        into the URL: as one escaped path segment, so ``/``, ``?`` or ``#`` cannot reach another
        endpoint with the channel's key; ``..`` is refused outright."""
        if self.route is not None:
            return self.route.url(_path_segment(model), stream)
        if self.upstream is Dialect.GEMINI_GENERATE:
            segment = _path_segment(model)
            return f"{self.url}/{segment}:streamGenerateContent?alt=sse" if stream else f"{self.url}/{segment}:generateContent"
        if self.upstream is Dialect.GEMINI_EMBED:
            return f"{self.url}/{_path_segment(model)}:batchEmbedContents"
        if self.upstream is Dialect.GEMINI_COUNT_TOKENS:
            return f"{self.url}/{_path_segment(model)}:countTokens"
        return self.url


def _path_segment(model: str) -> str:
    if ".." in model:
        raise InvalidRequest("'model' must not contain '..'", param="model")
    return quote(model, safe="-._~@+,;=")


@dataclass(frozen=True, slots=True, eq=False)
class CompiledChannel:
    name: str
    provider_type: str
    preset: ProviderPreset
    config: Channel
    plans: dict[Dialect, UpstreamPlan]
    model_map: ModelMap
    models: PatternSet | None
    timeouts: ChannelTimeouts
    secrets: Secrets  # what this channel sends upstream that must never come back out of Apex
    cloud: CloudChannel | None = None
    kind_plans: dict[str, dict[Dialect, UpstreamPlan]] | None = None  # clouds: per model family
    egress: Egress | None = None  # proxy, TLS and connection budget (None for the mock provider)
    transport: Transport | None = None  # how attempts reach the upstream (set by compile_channel)

    @property
    def credentials_ok(self) -> bool:
        """False while a cloud channel's credentials fail to refresh (routing prefers others)."""
        return self.cloud is None or self.cloud.reason is None

    def plan_for(self, dialect: Dialect, upstream_model: str) -> UpstreamPlan | None:
        """The plan serving ``dialect`` for ``upstream_model`` (on a cloud, the model's family
        decides: Claude natively, the cloud's own models in their format)."""
        if self.kind_plans is None or self.cloud is None:
            return self.plans.get(dialect)
        plans = self.kind_plans.get(self.cloud.kind_of(upstream_model))
        return plans.get(dialect) if plans is not None else None

    def map_model(self, model: str) -> str:
        return self.model_map.map(model) if self.model_map else model


def _auth_headers(family: ProviderFamily, api_key: str | None) -> dict[str, str]:
    if not api_key:
        return {}
    if family == "anthropic":
        return {"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION}
    if family == "gemini":
        return {"x-goog-api-key": api_key}
    return {"Authorization": f"Bearer {api_key}"}


def _with_family(rows: list[CapabilityRow], family: str) -> list[CapabilityRow]:
    return [CapabilityRow(family, r.model, r.caps) for r in rows]


def _cloud_secrets(ch: Channel) -> list[str | None]:
    """Cloud credentials from the config that must never come back out of Apex either."""
    out: list[str | None] = []
    if ch.aws is not None:
        # The key id too: an upstream or proxy quoting the SigV4 Authorization header shows it.
        out += [ch.aws.access_key_id, ch.aws.secret_access_key, ch.aws.session_token]
    if ch.azure_ad is not None:
        out.append(ch.azure_ad.client_secret)
    return out


def _cloud_setup(ch: Channel, path: str, egress: Egress | None) -> tuple[str, CloudSetup]:
    """The base URL and setup of a cloud channel; each cloud's module is imported only
    when a channel uses it (its library is an optional extra). Token requests leave through
    the channel's ``egress``, like its model calls."""
    if ch.provider_type == "azure_openai":
        from apex.upstream.azure import azure_setup

        base = (ch.base_url or "").rstrip("/")
        return base, azure_setup(ch, base, egress)
    if ch.provider_type == "bedrock":
        from apex.upstream.bedrock import bedrock_setup

        base = (ch.base_url or f"https://bedrock-runtime.{ch.region}.amazonaws.com").rstrip("/")
        return base, bedrock_setup(ch, base)
    if ch.provider_type == "vertex":
        from apex.upstream.vertex import vertex_base_url, vertex_setup

        base = (ch.base_url or vertex_base_url(ch.location or "")).rstrip("/")
        _check_credentials_file(ch, path)
        return base, vertex_setup(ch, base, egress)
    raise ConfigError(f"not a cloud provider type: {ch.provider_type}", path=f"{path}.provider_type")


def compile_channel(ch: Channel, g: GlobalConfig, index: int, pool: UpstreamPool | None = None) -> CompiledChannel:
    """Compile one channel; raise ConfigError naming ``channels[index]`` when it cannot work."""
    preset = PRESETS[ch.provider_type]
    path = f"channels[{index}]"
    setup: CloudSetup | None = None
    egress = _compile_egress(ch, path, preset.family == "mock")
    if ch.provider_type in CLOUD_PROVIDERS:
        base, setup = _cloud_setup(ch, path, egress)
    else:
        base = (ch.base_url or preset.base_url or "").rstrip("/")
    if not base and preset.family != "mock":
        raise ConfigError(f"required for provider_type {ch.provider_type}", path=f"{path}.base_url")
    # A preset's own Anthropic endpoint only while base_url is the preset default (spec 2).
    anthropic_base = ch.anthropic_base_url
    if anthropic_base is None and (ch.base_url is None or ch.base_url.rstrip("/") == (preset.base_url or "")):
        anthropic_base = preset.anthropic_base_url
    if preset.family == "anthropic":
        anthropic_base = base

    common = {"Content-Type": "application/json", "Accept-Encoding": "identity", "User-Agent": USER_AGENT}
    native: dict[Dialect, tuple[str, ProviderFamily, CloudRoute | None]] = {}  # upstream dialect -> (url, family, route)
    if setup is None:
        for d in preset.dialects:
            if preset.family == "gemini":
                native[d] = (f"{base}/v1beta/models", "gemini", None)
            elif preset.family in ("openai", "mock"):
                native[d] = (base + _PATHS.get(d, ""), preset.family, None)
            else:
                native[d] = (base + _PATHS[d], "anthropic", None)
        if anthropic_base and preset.family == "openai":
            native[Dialect.ANTHROPIC_MESSAGES] = (
                anthropic_base.rstrip("/") + _PATHS[Dialect.ANTHROPIC_MESSAGES], "anthropic", None)

    def headers_for(family: ProviderFamily) -> dict[str, str]:
        auth = setup.auth_headers if setup is not None else _auth_headers(family, ch.api_key)
        return _layered(common, auth, preset.extra_headers, ch.headers)

    overrides = [
        override_row(preset.family, row.model, reasons=row.reasons, max_tokens_field=row.max_tokens_field,
                     knobs=row.reasoning, efforts=row.efforts, json_schema=row.json_schema,
                     one_sampling=row.one_sampling, max_output=row.max_output_tokens or 0)
        for row in ch.capabilities
    ]
    tables: dict[str, CapabilityTable] = {}

    def caps_for(family: str) -> CapabilityTable:
        # Override rows apply to the channel's models whatever protocol reaches them.
        if family not in tables:
            tables[family] = CapabilityTable(family, _with_family(overrides, family))
        return tables[family]

    # Anthropic's version/beta headers: Bedrock takes them in the body, not as headers.
    forward_anthropic = ch.provider_type != "bedrock"
    strip_thinking = ch.provider_type in ("anthropic", "bedrock", "vertex")
    # Messages upstreams other than Anthropic's own API: deferred tools are resolved by Apex.
    no_tool_search = ch.provider_type in ("bedrock", "vertex", "deepseek", "moonshot", "minimax")
    cloud_betas = _CLOUD_BETAS.get(ch.provider_type)

    # Groq, and Azure api-versions before 2024-09-01, answer 400 to stream_options.
    usage_option = preset.stream_usage_option and ch.stream_usage and not (
        ch.provider_type == "azure_openai" and ch.api_version not in (None, "v1") and ch.api_version[:10] < "2024-09-01")

    def plans_from(native: dict[Dialect, tuple[str, ProviderFamily, CloudRoute | None]]) -> dict[Dialect, UpstreamPlan]:
        plans: dict[Dialect, UpstreamPlan] = {}
        for client in (Dialect.OPENAI_CHAT, Dialect.OPENAI_RESPONSES, Dialect.OPENAI_EMBEDDINGS,
                       Dialect.ANTHROPIC_MESSAGES, Dialect.ANTHROPIC_COUNT_TOKENS,
                       Dialect.GEMINI_GENERATE, Dialect.GEMINI_EMBED, Dialect.GEMINI_COUNT_TOKENS):
            if client in native:
                url, family, route = native[client]
                plans[client] = UpstreamPlan(
                    client, client, family, url, headers_for(family), None,
                    forward_anthropic_headers=family == "anthropic" and forward_anthropic,
                    add_stream_usage=client is Dialect.OPENAI_CHAT and usage_option and family in ("openai", "mock"),
                    fix_embedding_encoding=client is Dialect.OPENAI_EMBEDDINGS and not preset.native_embedding_encoding,
                    strip_unsigned_thinking=client is Dialect.ANTHROPIC_MESSAGES and strip_thinking,
                    without_tool_search=client is Dialect.ANTHROPIC_MESSAGES and no_tool_search
                    and not (route is not None and route.resolves_tool_search),
                    betas=cloud_betas if family == "anthropic" else None,
                    betas_in_body=client is Dialect.ANTHROPIC_MESSAGES and ch.provider_type == "bedrock",
                    route=route,
                    caps=caps_for(family) if _FITTED_NATIVE.get(client) == family else None,
                    compat_chat=client is Dialect.OPENAI_CHAT and not preset.openai_vocabulary,
                    repair_chat_chunks=client is Dialect.OPENAI_CHAT and preset.repairs_chat_chunks,
                    refuses_threads=client is Dialect.ANTHROPIC_MESSAGES and route is None
                    and ch.provider_type not in ("anthropic", "mock"),
                )
                continue
            if client in _LOCAL_COUNT:
                plans[client] = UpstreamPlan(client, client, "local", "", {}, None, False, False, False, local_estimate=True)
                continue
            for upstream in _TRANSLATED.get(client, ()):
                if upstream not in native:
                    continue
                translator = find_translator(client, upstream)
                if translator is None:
                    continue
                url, family, route = native[upstream]
                plans[client] = UpstreamPlan(
                    client, upstream, family, url, headers_for(family), translator,
                    forward_anthropic_headers=family == "anthropic" and forward_anthropic,
                    add_stream_usage=False,
                    fix_embedding_encoding=False,
                    route=route,
                    caps=caps_for(family),
                    stream_usage_option=usage_option,
                    reasoning_history=preset.reasoning_history if upstream is Dialect.OPENAI_CHAT else "keep",
                    strict_fields=upstream is Dialect.OPENAI_CHAT and preset.strict_fields,
                )
                break
        return plans

    kind_plans: dict[str, dict[Dialect, UpstreamPlan]] | None = None
    cloud: CloudChannel | None = None
    if setup is None:
        plans = plans_from(native)
    else:
        kind_plans = {
            kind: plans_from({d: (n.url, n.family, n.route) for d, n in dialects.items()})
            for kind, dialects in setup.kinds.items()
        }
        plans = {}  # what the channel can serve for some model: routing checks this
        for kp in kind_plans.values():
            for d, p in kp.items():
                plans.setdefault(d, p)
        cloud = CloudChannel(setup.kind_of, setup.credentials)

    t = ch.timeouts
    gt = g.timeouts

    def pick(name: str) -> float:
        value: int | None = getattr(t, name) if t is not None else None
        chosen: int = value if value is not None else getattr(gt, name)
        return chosen / 1000.0

    connect = pick("connect_ms")
    timeouts = ChannelTimeouts(
        connect=connect,
        request=pick("request_ms"),
        first_byte=pick("first_byte_ms"),
        stream_idle=pick("stream_idle_ms"),
    )
    # A header named like a credential (Authorization, X-Api-Key, ...) is scrubbed from answers
    # too; the others (OpenAI-Organization, HTTP-Referer) only from errors: an answer may
    # rightly quote the app's own URL.
    credential_headers = [v for k, v in ch.headers.items() if is_secret_header(k)]
    other_headers = [v for k, v in ch.headers.items() if not is_secret_header(k)]
    secrets = secrets_of([ch.api_key, *credential_headers, *_cloud_secrets(ch), *_proxy_secrets(egress)], other_headers)
    if cloud is not None and cloud.credentials is not None:
        cloud.credentials.secrets = secrets  # keys and tokens fetched at run time are scrubbed too
    return CompiledChannel(
        name=ch.name,
        provider_type=ch.provider_type,
        preset=preset,
        config=ch,
        plans=plans,
        model_map=ModelMap(ch.model_map),
        models=PatternSet(ch.models) if ch.models is not None else None,
        timeouts=timeouts,
        secrets=secrets,
        cloud=cloud,
        kind_plans=kind_plans,
        egress=egress,
        transport=MockTransport(ch) if preset.family == "mock" else HttpTransport(pool or UpstreamPool(), egress, connect),
    )


def check_egress(config: Config) -> None:
    """Each channel's ``proxy`` and ``tls`` as the gateway's load compiles them (the proxy URL,
    the extra it needs, the CA and client-certificate files): ConfigError at the key path.
    For ``apex config validate``, which does not build a gateway. A value still holding an
    unset ``${VAR}`` (``--allow-missing-env``) is left for the gateway to check."""
    for index, ch in enumerate(config.channels):
        path = f"channels[{index}]"
        if ch.provider_type == "vertex" and "${" not in (ch.credentials_file or ""):
            _check_credentials_file(ch, path)
        tls = ch.tls
        if tls is not None and any("${" in (value or "") for value in (tls.ca_file, tls.cert_file, tls.key_file)):
            continue
        if "${" in (ch.proxy or ""):  # the proxy once its variable is set; the TLS files now
            ch = msgspec.structs.replace(ch, proxy="direct")
        _compile_egress(ch, path, PRESETS[ch.provider_type].family == "mock")


def _check_credentials_file(ch: Channel, path: str) -> None:
    """A vertex key file that is not there: a typo showed only as a 502 on every request."""
    if ch.credentials_file is not None and not os.path.isfile(ch.credentials_file):
        raise ConfigError(f"no such file: {ch.credentials_file}", path=f"{path}.credentials_file")


def _compile_egress(ch: Channel, path: str, mock: bool) -> Egress | None:
    if mock:
        return None
    tls = None
    if ch.tls is not None:
        tls = TlsOptions(ch.tls.ca_file, ch.tls.cert_file, ch.tls.key_file, ch.tls.verify)
    try:
        egress = build_egress(ch.name, ch.proxy, tls, ch.max_connections)
    except ValueError as exc:
        key, _, why = str(exc).partition(": ")
        raise ConfigError(why, path=f"{path}.{key}") from None
    if tls is not None and not tls.verify:
        _log.warning("channel %s: tls.verify is false: the upstream's certificate is not checked "
                     "(anyone on the path can read and change this channel's traffic)", ch.name)
    return egress


def _proxy_secrets(egress: Egress | None) -> list[str]:
    """The proxy's Proxy-Authorization value and password: scrubbed like the API key."""
    return egress.secrets() if egress is not None else []


def _layered(*layers: Mapping[str, str]) -> dict[str, str]:
    """Header layers merged, a later one replacing an earlier one's header whatever its letter
    case (a channel's ``authorization`` went out beside the key's ``Authorization``)."""
    out: dict[str, str] = {}
    names: dict[str, str] = {}  # lower-case name -> the spelling in ``out``
    for layer in layers:
        for name, value in layer.items():
            low = name.lower()
            old = names.get(low)
            if old is not None:
                del out[old]
            names[low] = name
            out[name] = value
    return out
