"""Every Prometheus collector Apex exports, defined once, plus the cheap per-request binding.

``Metrics`` owns one ``CollectorRegistry`` per Gateway (never the process-global default,
so several gateways in one process do not collide). The per-request families (requests,
errors, latencies, tokens, cost) are plain numbers in ``RequestSeries`` objects keyed by
``(router, model, team_id, channel)`` and rendered by ``RequestCollector`` at scrape time,
so the steady-state request path is one dict look-up and a few additions (~1.8 µs against
~6 µs through prometheus_client's locked children). The ``model`` label is bounded by
``ModelLabels`` (see there).
This is the only module that imports prometheus_client; it imports nothing from apex and
knows nothing about HTTP: callers hand it plain strings and numbers.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Final, final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString
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
class ModelLabels:
    """Turn the client's model name into a bounded ``model`` label value.

    - no model in the request: ``none``; a model no rule of the router matched (not routed
      at all, or served by the router's default ``channels``): ``unmatched``;
    - a name a rule lists exactly: that name;
    - a name a rule matched by glob: the name itself for the first ``GLOB_MODEL_CAP``
      distinct names per (router, rule patterns) that were answered successfully (``admit``),
      else the rule's pattern text (``gpt-*``): junk names the upstream refused used up the
      slots, and the real models were counted under the pattern until a restart.
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

    def label(self, model: str | None, router: str | None, rule: str | None, routed: bool, admit: bool = False) -> str:
        """The label for ``model``; ``admit``: a successful answer, whose new glob-matched name
        may take a free slot."""
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
        if admit and len(rm.admitted) < self.cap:
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
class _Hist:
    """One histogram series as plain numbers: per-bucket (not cumulative) counts and the sum.

    prometheus_client's children take a lock and check observability on every call (~1 µs
    each, ~6 µs per request for Apex's series); the event loop is the only writer here, and
    ``RequestCollector`` turns these into the same exposition at scrape time."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value


@final
class RequestSeries:
    """The numbers of one (router, model, team_id, channel): requests by status, errors by
    type, tokens, cost, and the histograms it shares with other teams (those are labelled
    without ``team_id``)."""

    __slots__ = ("labels", "requests", "errors", "tokens", "estimated", "cost", "unpriced", "upstream", "ttft",
                 "overhead", "duration")

    def __init__(self, labels: tuple[str, str, str, str], upstream: _Hist, ttft: _Hist, overhead: _Hist,
                 duration: _Hist) -> None:
        self.labels = labels
        self.requests: dict[int, int] = {}
        self.errors: dict[str, int] = {}
        self.tokens: list[int] | None = None     # prompt, completion, cached; None until a first usage
        self.estimated: list[int] | None = None  # the part of ``tokens`` Apex estimated
        self.cost: float | None = None   # None until a priced request (the series appears then)
        self.unpriced = 0
        self.upstream = upstream
        self.ttft = ttft
        self.overhead = overhead
        self.duration = duration

    @property
    def model(self) -> str:
        return self.labels[1]

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
        requests = self.requests
        requests[status] = requests.get(status, 0) + 1
        if error_type is not None:
            self.errors[error_type] = self.errors.get(error_type, 0) + 1
        if upstream_ms > 0.0:
            self.upstream.observe(upstream_ms)
        if ttft_ms is not None:
            self.ttft.observe(ttft_ms)
        self.overhead.observe(overhead_ms)
        self.duration.observe(duration_ms / 1000)

    def add_tokens(self, prompt: int, completion: int, cached: int, estimated: bool) -> None:
        """Add one request's token usage; estimated usage is also counted on its own."""
        self.tokens = _add3(self.tokens, prompt, completion, cached)
        if estimated:
            self.estimated = _add3(self.estimated, prompt, completion, cached)

    def add_cost(self, usd: float | None) -> None:
        """Add one request's cost in USD; None (no price known) is counted apart."""
        if usd is None:
            self.unpriced += 1
            return
        self.cost = (self.cost or 0.0) + max(usd, 0.0)


_TOKEN_TYPES: Final = ("prompt", "completion", "cached")


def _add3(counts: list[int] | None, prompt: int, completion: int, cached: int) -> list[int]:
    """``counts`` (prompt, completion, cached; created at the first usage) plus one request's."""
    if counts is None:
        return [prompt, completion, cached]
    counts[0] += prompt
    counts[1] += completion
    counts[2] += cached
    return counts


def _hist(hists: dict[tuple[str, ...], _Hist], key: tuple[str, ...], bounds: tuple[float, ...]) -> _Hist:
    h = hists.get(key)
    if h is None:
        h = hists[key] = _Hist(bounds)
    return h


@final
class RequestCollector(Collector):
    """The per-request families, rendered from ``RequestSeries`` numbers at scrape time.

    Names, help texts, label order and bucket bounds are what prometheus_client's own
    Counter/Histogram wrote for them before (the ``_seconds`` twins of the ``_ms``
    histograms are scaled here too, so the two can never disagree)."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def describe(self) -> Iterator[Metric]:
        return iter(())  # nothing to declare up front; the registry then collects on register

    def collect(self) -> Iterator[Metric]:
        m = self._m
        series = list(m.all_series.values())
        requests = CounterMetricFamily("apex_requests_total", "API requests served, by final HTTP status.",
                                       labels=(*_REQ_LABELS, "status"))
        errors = CounterMetricFamily(
            "apex_errors_total", "API requests that ended in an error (HTTP error, stream error, client disconnect).",
            labels=(*_REQ_LABELS, "error_type"))
        tokens = CounterMetricFamily("apex_tokens_total",
                                     "Tokens used, from upstream usage (or Apex's estimate when none).",
                                     labels=(*_REQ_LABELS, "type"))
        estimated = CounterMetricFamily(
            "apex_tokens_estimated_total", "The part of apex_tokens_total that Apex estimated (upstream gave no usage).",
            labels=(*_REQ_LABELS, "type"))
        cost = CounterMetricFamily("apex_cost_usd", "What requests cost in USD, from their usage and the price table.",
                                   labels=_REQ_LABELS)
        unpriced = CounterMetricFamily("apex_cost_unknown",
                                       "Requests with token usage but no known price for their upstream model.",
                                       labels=_REQ_LABELS)
        for s in series:
            labels = list(s.labels)
            for status, n in s.requests.items():
                requests.add_metric([*labels, str(status)], n)
            for kind, n in s.errors.items():
                errors.add_metric([*labels, kind], n)
            if s.tokens is not None:
                for name, n in zip(_TOKEN_TYPES, s.tokens, strict=True):
                    tokens.add_metric([*labels, name], n)
            if s.estimated is not None:
                for name, n in zip(_TOKEN_TYPES, s.estimated, strict=True):
                    estimated.add_metric([*labels, name], n)
            if s.cost is not None:
                cost.add_metric(labels, s.cost)
            if s.unpriced:
                unpriced.add_metric(labels, s.unpriced)
        yield requests
        yield errors
        yield from _histograms(m.upstream_hists, "apex_upstream_latency",
                               "Time spent waiting on upstreams per request, ms (whole stream for streams).",
                               "apex_upstream_latency_ms in seconds.", ("router", "model", "channel"))
        yield from _histograms(m.ttft_hists, "apex_ttft", "Time to the upstream's first stream event, ms (streams only).",
                               "apex_ttft_ms in seconds.", ("router", "model", "channel"))
        yield from _histograms(m.overhead_hists, "apex_overhead",
                               "Time Apex itself adds to a request (total minus upstream wait), ms.",
                               "apex_overhead_ms in seconds.", ("router",))
        duration = HistogramMetricFamily(
            "apex_request_duration_seconds",
            "Whole request as the client sees it, from its arrival to the last byte, seconds.",
            labels=("router", "model", "channel"))
        for key, h in m.duration_hists.items():
            if any(h.counts):
                duration.add_metric(list(key), _buckets(h, floatToGoString, 1.0), h.total)
        yield duration
        yield tokens
        yield estimated
        yield cost
        yield unpriced


def _buckets(h: _Hist, fmt: Callable[[float], str], scale: float) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    acc = 0
    for bound, n in zip(h.bounds, h.counts, strict=False):
        acc += n
        out.append((fmt(bound / scale), acc))
    out.append(("+Inf", acc + h.counts[-1]))
    return out


def _histograms(hists: dict[tuple[str, ...], _Hist], base: str, doc_ms: str, doc_s: str,
                labels: tuple[str, ...]) -> Iterator[Metric]:
    """A ``_ms`` histogram family and its ``_seconds`` twin from the same numbers."""
    ms = HistogramMetricFamily(f"{base}_ms", doc_ms, labels=labels)
    seconds = HistogramMetricFamily(f"{base}_seconds", doc_s, labels=labels)
    for key, h in hists.items():
        if not any(h.counts):
            continue  # a child prometheus_client would not have created yet
        ms.add_metric(list(key), _buckets(h, floatToGoString, 1.0), h.total)
        seconds.add_metric(list(key), _buckets(h, _go_float, 1000.0), h.total / 1000)
    yield ms
    yield seconds


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
        # The per-request families (requests, errors, latencies, tokens, cost): plain numbers
        # per series, rendered at scrape time (see RequestCollector).
        self.all_series: dict[tuple[str, str, str, str], RequestSeries] = {}
        self.upstream_hists: dict[tuple[str, ...], _Hist] = {}
        self.ttft_hists: dict[tuple[str, ...], _Hist] = {}
        self.overhead_hists: dict[tuple[str, ...], _Hist] = {}
        self.duration_hists: dict[tuple[str, ...], _Hist] = {}
        reg.register(RequestCollector(self))
        self.attempt_failures = Counter("apex_attempt_failures_total",
                                        "Upstream attempts that failed and were retried or moved on from.",
                                        ("router", "channel", "error_type"), registry=reg)
        self.fallbacks = Counter("apex_fallback_total", "Moves of a request from one channel to another.",
                                 ("router", "model", "from_channel", "to_channel"), registry=reg)
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
        self._small: dict[tuple[object, ...], Counter] = {}

    def new_generation(self) -> None:
        """A new config is live: drop cached bindings (existing series keep their values)."""
        self._small = {}
        self.models.new_generation()

    def series(self, router: str, model: str, team_id: str, channel: str) -> RequestSeries:
        """The series for these (already bounded) label values; it keeps its numbers across reloads."""
        key = (router, model, team_id, channel)
        s = self.all_series.get(key)
        if s is None:
            s = self.all_series[key] = self._new_series(key)
        return s

    def _new_series(self, key: tuple[str, str, str, str]) -> RequestSeries:
        router, model, _, channel = key
        by_channel = (router, model, channel)
        return RequestSeries(
            key,
            _hist(self.upstream_hists, by_channel, UPSTREAM_BUCKETS_MS),
            _hist(self.ttft_hists, by_channel, TTFT_BUCKETS_MS),
            _hist(self.overhead_hists, (router,), OVERHEAD_BUCKETS_MS),
            _hist(self.duration_hists, by_channel, DURATION_BUCKETS_S),
        )

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

    def keep_budgets(self, team_ids: Collection[str]) -> None:
        """A reload removed teams or their budgets: their remaining-USD series disappear (a
        low-budget alert would otherwise never clear), as removed channels' do."""
        gauge = self.budget_remaining
        shown = {sample.labels["team_id"] for family in gauge.collect() for sample in family.samples}
        for team_id in shown.difference(team_ids):
            gauge.remove(team_id)

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
