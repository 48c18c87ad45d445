"""Every Prometheus collector Apex exports, defined once, plus the cheap per-request binding.

``Metrics`` owns one ``CollectorRegistry`` per Gateway (never the process-global default,
so several gateways in one process do not collide). Label children are bound once and
cached in ``RequestSeries`` objects keyed by ``(router, model, team_id, channel)``; the
cache belongs to one config generation and is dropped by ``new_generation()`` when a
reload swaps the Snapshot, so the steady-state request path is one dict look-up and a few
``inc``/``observe`` calls. The ``model`` label is bounded by ``ModelLabels`` (see there).
This is the only module that imports prometheus_client; it imports nothing from apex and
knows nothing about HTTP: callers hand it plain strings and numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Final, final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.registry import Collector

__all__ = [
    "GLOB_MODEL_CAP",
    "Metrics",
    "ModelLabels",
    "NONE",
    "DURATION_BUCKETS_S",
    "OVERHEAD_BUCKETS_MS",
    "RequestSeries",
    "TTFT_BUCKETS_MS",
    "UNMATCHED",
    "UPSTREAM_BUCKETS_MS",
]

NONE: Final = "none"            # a label whose value is not known for this request
UNMATCHED: Final = "unmatched"  # a model no routing rule matched (never its own label value)
GLOB_MODEL_CAP: Final = 50      # distinct glob-matched model names per rule before the pattern stands in

# Upstream calls of LLM APIs run from tens of ms (embeddings, cached) to minutes (long streams).
UPSTREAM_BUCKETS_MS: Final = (25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
                              20000.0, 30000.0, 60000.0, 120000.0, 300000.0)
# Time to first token: interactive models answer in 100 ms .. a few s; reasoning models later.
TTFT_BUCKETS_MS: Final = (10.0, 25.0, 50.0, 100.0, 200.0, 300.0, 500.0, 750.0, 1000.0, 1500.0,
                          2000.0, 3000.0, 5000.0, 10000.0, 30000.0)
# Apex's own share: tens of µs to a few ms when healthy; the top buckets catch loop stalls.
OVERHEAD_BUCKETS_MS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0)

# A whole request as the client sees it (Prometheus base units: seconds).
DURATION_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                             120.0, 300.0)

_REQ_LABELS: Final = ("router", "model", "team_id", "channel")


def _go_float(v: float) -> str:
    """A bucket bound as Prometheus writes it (``0.025``, ``1.0``, ``300.0``)."""
    return repr(round(v, 9))


@final
class SecondsView(Collector):
    """A millisecond histogram re-exported in seconds, converted at scrape time.

    The contract keeps the ``_ms`` names; Prometheus convention wants base units. Observing
    twice per request would cost the request path; scaling the ``_ms`` series' bucket bounds
    and sums when scraped costs it nothing, and the two can never disagree.
    """

    def __init__(self, source: Histogram, name: str, documentation: str, labelnames: tuple[str, ...]) -> None:
        self._source = source
        self._name = name
        self._doc = documentation
        self._labelnames = labelnames

    def describe(self) -> Iterator[Metric]:
        return iter(())  # nothing to declare up front; the registry then collects on register

    def collect(self) -> Iterator[Metric]:
        out = HistogramMetricFamily(self._name, self._doc, labels=self._labelnames)
        series: dict[tuple[str, ...], tuple[list[tuple[str, float]], list[float]]] = {}
        for family in self._source.collect():
            for sample in family.samples:
                key = tuple(sample.labels[n] for n in self._labelnames)
                buckets, total = series.setdefault(key, ([], [0.0]))
                if sample.name.endswith("_bucket"):
                    le = sample.labels["le"]
                    buckets.append((le if le == "+Inf" else _go_float(float(le) / 1000), sample.value))
                elif sample.name.endswith("_sum"):
                    total[0] = sample.value / 1000
        for key, (buckets, total) in series.items():
            out.add_metric(list(key), buckets, total[0])
        yield out


@final
class ModelLabels:
    """Turn the client's model name into a bounded ``model`` label value.

    - no model in the request: ``none``; a model no rule of the router matched (not routed
      at all, or served by the router's default ``channels``): ``unmatched``;
    - a name a rule lists exactly: that name;
    - a name a rule matched by glob: the name itself for the first ``GLOB_MODEL_CAP``
      distinct names per (router, rule patterns), then the rule's pattern text (``gpt-*``).
      The admitted names survive reloads that keep the rule, so reloads cannot grow them.
    ``rule_patterns(router, rule)`` gives a rule's patterns (None when it no longer exists);
    it is asked once per rule per config generation.
    """

    __slots__ = ("_rule_patterns", "_rules", "_admitted", "cap")

    def __init__(self, rule_patterns: Callable[[str, str], tuple[str, ...] | None], cap: int = GLOB_MODEL_CAP) -> None:
        self._rule_patterns = rule_patterns
        self._rules: dict[tuple[str, str], _RuleModels | None] = {}
        self._admitted: dict[tuple[str, tuple[str, ...]], set[str]] = {}
        self.cap = cap

    def new_generation(self) -> None:
        """Forget per-config rule look-ups (the admitted glob names are kept)."""
        self._rules.clear()

    def label(self, model: str | None, router: str | None, rule: str | None, routed: bool) -> str:
        if model is None:
            return NONE
        if not routed or router is None or rule is None or rule == "default":
            return UNMATCHED
        key = (router, rule)
        rm = self._rules.get(key, _MISSING)
        if rm is _MISSING:
            rm = self._compile(router, rule)
            self._rules[key] = rm
        if rm is None:
            return UNMATCHED
        assert isinstance(rm, _RuleModels)
        if model in rm.exact or model in rm.admitted:
            return model
        if len(rm.admitted) < self.cap:
            rm.admitted.add(model)
            return model
        return rm.overflow

    def _compile(self, router: str, rule: str) -> _RuleModels | None:
        patterns = self._rule_patterns(router, rule)
        if patterns is None:
            return None
        admitted = self._admitted.setdefault((router, patterns), set())
        exact = frozenset(p for p in patterns if not any(c in p for c in "*?["))
        return _RuleModels(exact, admitted, "|".join(patterns))


@final
class _RuleModels:
    __slots__ = ("exact", "admitted", "overflow")

    def __init__(self, exact: frozenset[str], admitted: set[str], overflow: str) -> None:
        self.exact = exact
        self.admitted = admitted
        self.overflow = overflow


_MISSING: Final = object()


@final
class RequestSeries:
    """The bound children for one (router, model, team_id, channel); lazily per status etc."""

    __slots__ = ("_m", "_labels", "_requests", "_errors", "_tokens", "_estimated", "_upstream", "_ttft", "_overhead",
                 "_duration", "_cost", "_unpriced")

    def __init__(self, metrics: Metrics, labels: tuple[str, str, str, str]) -> None:
        self._m = metrics
        self._labels = labels
        self._requests: dict[int, Counter] = {}
        self._errors: dict[str, Counter] = {}
        self._tokens: tuple[Counter, Counter, Counter] | None = None
        self._estimated: tuple[Counter, Counter, Counter] | None = None
        self._upstream: Histogram | None = None
        self._ttft: Histogram | None = None
        self._overhead: Histogram = metrics.overhead.labels(labels[0])
        self._duration: Histogram = metrics.duration.labels(labels[0], labels[1], labels[3])
        self._cost: Counter | None = None
        self._unpriced: Counter | None = None

    @property
    def model(self) -> str:
        return self._labels[1]

    def record(
        self,
        status: int,
        error_type: str | None,
        upstream_ms: float,
        ttft_ms: float | None,
        overhead_ms: float,
        duration_ms: float,
    ) -> None:
        """Count one finished request and observe its times (ms; duration exported in seconds)."""
        child = self._requests.get(status)
        if child is None:
            child = self._requests[status] = self._m.requests.labels(*self._labels, str(status))
        child.inc()
        if error_type is not None:
            err = self._errors.get(error_type)
            if err is None:
                err = self._errors[error_type] = self._m.errors.labels(*self._labels, error_type)
            err.inc()
        if upstream_ms > 0.0:
            up = self._upstream
            if up is None:
                r, m, _, c = self._labels
                up = self._upstream = self._m.upstream_latency.labels(r, m, c)
            up.observe(upstream_ms)
        if ttft_ms is not None:
            tt = self._ttft
            if tt is None:
                r, m, _, c = self._labels
                tt = self._ttft = self._m.ttft.labels(r, m, c)
            tt.observe(ttft_ms)
        self._overhead.observe(overhead_ms)
        self._duration.observe(duration_ms / 1000)

    def add_tokens(self, prompt: int, completion: int, cached: int, estimated: bool) -> None:
        """Add one request's token usage; estimated usage is also counted on its own."""
        toks = self._tokens
        if toks is None:
            t = self._m.tokens
            toks = self._tokens = (t.labels(*self._labels, "prompt"), t.labels(*self._labels, "completion"),
                                   t.labels(*self._labels, "cached"))
        _add3(toks, prompt, completion, cached)
        if estimated:
            est = self._estimated
            if est is None:
                e = self._m.tokens_estimated
                est = self._estimated = (e.labels(*self._labels, "prompt"), e.labels(*self._labels, "completion"),
                                         e.labels(*self._labels, "cached"))
            _add3(est, prompt, completion, cached)


    def add_cost(self, usd: float | None) -> None:
        """Add one request's cost in USD; None (no price known) is counted apart."""
        if usd is None:
            up = self._unpriced
            if up is None:
                up = self._unpriced = self._m.cost_unknown.labels(*self._labels)
            up.inc()
            return
        c = self._cost
        if c is None:
            c = self._cost = self._m.cost.labels(*self._labels)
        if usd > 0.0:
            c.inc(usd)


def _add3(children: tuple[Counter, Counter, Counter], a: int, b: int, c: int) -> None:
    if a:
        children[0].inc(a)
    if b:
        children[1].inc(b)
    if c:
        children[2].inc(c)


@final
class Metrics:
    """One registry with Apex's collectors, and the per-generation cache of bound series."""

    def __init__(
        self,
        version: str,
        rule_patterns: Callable[[str, str], tuple[str, ...] | None],
        *,
        process_metrics: bool = True,
    ) -> None:
        # The *_created series would double every scrape and no Apex dashboard uses them.
        # The switch is process-wide, which is fine: this process is Apex.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
        reg = self.registry = CollectorRegistry(auto_describe=True)
        if process_metrics:
            ProcessCollector(registry=reg)
            PlatformCollector(registry=reg)
            GCCollector(registry=reg)
        self.models = ModelLabels(rule_patterns)
        self.requests = Counter("apex_requests_total", "API requests served, by final HTTP status.",
                                (*_REQ_LABELS, "status"), registry=reg)
        self.errors = Counter("apex_errors_total",
                              "API requests that ended in an error (HTTP error, stream error, client disconnect).",
                              (*_REQ_LABELS, "error_type"), registry=reg)
        self.attempt_failures = Counter("apex_attempt_failures_total",
                                        "Upstream attempts that failed and were retried or moved on from.",
                                        ("router", "channel", "error_type"), registry=reg)
        self.upstream_latency = Histogram("apex_upstream_latency_ms",
                                          "Time spent waiting on upstreams per request, ms (whole stream for streams).",
                                          ("router", "model", "channel"), buckets=UPSTREAM_BUCKETS_MS, registry=reg)
        self.ttft = Histogram("apex_ttft_ms", "Time to the upstream's first stream event, ms (streams only).",
                              ("router", "model", "channel"), buckets=TTFT_BUCKETS_MS, registry=reg)
        self.overhead = Histogram("apex_overhead_ms", "Time Apex itself adds to a request (total minus upstream wait), ms.",
                                  ("router",), buckets=OVERHEAD_BUCKETS_MS, registry=reg)
        self.duration = Histogram("apex_request_duration_seconds",
                                  "Whole request as the client sees it, from its arrival to the last byte, seconds.",
                                  ("router", "model", "channel"), buckets=DURATION_BUCKETS_S, registry=reg)
        for source, name, doc, labels in (
            (self.upstream_latency, "apex_upstream_latency_seconds", "apex_upstream_latency_ms in seconds.",
             ("router", "model", "channel")),
            (self.ttft, "apex_ttft_seconds", "apex_ttft_ms in seconds.", ("router", "model", "channel")),
            (self.overhead, "apex_overhead_seconds", "apex_overhead_ms in seconds.", ("router",)),
        ):
            reg.register(SecondsView(source, name, doc, labels))
        self.fallbacks = Counter("apex_fallback_total", "Moves of a request from one channel to another.",
                                 ("router", "model", "from_channel", "to_channel"), registry=reg)
        self.tokens = Counter("apex_tokens_total", "Tokens used, from upstream usage (or Apex's estimate when none).",
                              (*_REQ_LABELS, "type"), registry=reg)
        self.tokens_estimated = Counter("apex_tokens_estimated_total",
                                        "The part of apex_tokens_total that Apex estimated (upstream gave no usage).",
                                        (*_REQ_LABELS, "type"), registry=reg)
        self.cost = Counter("apex_cost_usd", "What requests cost in USD, from their usage and the price table.",
                            _REQ_LABELS, registry=reg)
        self.cost_unknown = Counter("apex_cost_unknown",
                                    "Requests with token usage but no known price for their upstream model.",
                                    _REQ_LABELS, registry=reg)
        self.budget_remaining = Gauge("apex_budget_remaining_usd",
                                      "USD left in a budgeted team's current period, as this process last saw it.",
                                      ("team_id",), registry=reg)
        self.request_log_dropped = Counter("apex_request_log_dropped",
                                           "Request log records dropped (queue full, store slow or down).",
                                           registry=reg)
        self.rate_limited = Counter("apex_rate_limited_total", "Requests refused by a team's rate limit.",
                                    ("router", "model", "team_id"), registry=reg)
        self.reloads = Counter("apex_config_reloads_total", "Config reloads, by result.", ("result",), registry=reg)
        self.store_errors = Counter("apex_rate_limit_store_errors_total",
                                    "Rate-limit checks the shared store (Redis) could not serve (down or backing off).",
                                    registry=reg)
        self.in_flight = Gauge("apex_in_flight_requests", "API requests being served now.", registry=reg)
        self.channel_states = Counter("apex_channel_state_changes_total",
                                      "Channel health transitions, by the state entered.",
                                      ("channel", "state"), registry=reg)
        self.channel_up = Gauge("apex_channel_up", "1 while a channel takes traffic, 0 while it cools down or is half-open.",
                                ("channel",), registry=reg)
        self.upstream_connections = Gauge(
            "apex_upstream_connections",
            "Upstream connections open now per channel: active (carrying or opening a request) or idle (pooled).",
            ("channel", "state"), registry=reg)
        Gauge("apex_build_info", "Apex version.", ("version",), registry=reg).labels(version).set(1)
        for result in ("success", "failure"):
            self.reloads.labels(result)  # both series exist from the start: rate() needs a zero
        self._reload_ok = self.reloads.labels("success")
        self._reload_failed = self.reloads.labels("failure")
        self._series: dict[tuple[str, str, str, str], RequestSeries] = {}
        self._small: dict[tuple[object, ...], Counter] = {}

    def new_generation(self) -> None:
        """A new config is live: drop cached bindings (existing series keep their values)."""
        self._series = {}
        self._small = {}
        self.models.new_generation()

    def series(self, router: str, model: str, team_id: str, channel: str) -> RequestSeries:
        """The bound series for these (already bounded) label values."""
        key = (router, model, team_id, channel)
        s = self._series.get(key)
        if s is None:
            s = self._series[key] = RequestSeries(self, key)
        return s

    def _counter(self, family: Counter, *labels: str) -> Counter:
        key = (id(family), *labels)
        child = self._small.get(key)
        if child is None:
            child = self._small[key] = family.labels(*labels)
        return child

    def record_fallback(self, router: str, model: str, from_channel: str, to_channel: str) -> None:
        self._counter(self.fallbacks, router, model, from_channel, to_channel).inc()

    def record_attempt_failure(self, router: str, channel: str, error_type: str) -> None:
        self._counter(self.attempt_failures, router, channel, error_type).inc()

    def record_rate_limited(self, router: str, model: str, team_id: str) -> None:
        self._counter(self.rate_limited, router, model, team_id).inc()

    def record_store_error(self) -> None:
        self.store_errors.inc()

    def set_budget_remaining(self, team_id: str, usd: float) -> None:
        self.budget_remaining.labels(team_id).set(usd)

    def record_reload(self, ok: bool) -> None:
        (self._reload_ok if ok else self._reload_failed).inc()

    def record_channel_state(self, channel: str, state: str) -> None:
        self._counter(self.channel_states, channel, state).inc()

    def set_channel_states(self, up: dict[str, bool]) -> None:
        """Export each current channel's health; channels no longer configured disappear."""
        self.channel_up.clear()
        for channel, is_up in up.items():
            self.channel_up.labels(channel).set(1 if is_up else 0)

    def set_upstream_connections(self, counts: dict[str, tuple[int, int]], channels: Iterable[str]) -> None:
        """Export ``{channel: (active, idle)}`` (read from the pool at scrape time; configured
        channels without connections show 0, removed ones disappear)."""
        gauge = self.upstream_connections
        gauge.clear()
        for channel in channels:
            active, idle = counts.get(channel, (0, 0))
            gauge.labels(channel, "active").set(active)
            gauge.labels(channel, "idle").set(idle)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
