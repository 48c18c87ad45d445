"""apex.metrics and Gateway.finish: bounded model labels, bound children, registry isolation, estimates."""

from __future__ import annotations

import json
from typing import Any

from apex.config.load import load_config_bytes
from apex.metrics import NONE, UNMATCHED, Metrics, ModelLabels
from apex.server.exchange import Exchange
from apex.share import GRAFANA_DASHBOARD, share_path
from apex.server.gateway import Gateway
from apex.types import Dialect, Usage


def _patterns(router: str, rule: str) -> tuple[str, ...] | None:
    return {("r", "rules[0]"): ("gpt-4o", "o1"), ("r", "rules[1]"): ("claude-*", "gemini-?")}.get((router, rule))


def _config(**extra: Any) -> bytes:
    cfg: dict[str, Any] = {
        "channels": [{"name": "m", "provider_type": "mock"}],
        "routers": [{"name": "r", "vkey": "vk", "rules": [{"match": {"model": "gpt-*"}, "channels": [{"name": "m"}]}],
                     "channels": [{"name": "m"}]}],
    }
    cfg.update(extra)
    return json.dumps(cfg).encode()


class TestModelLabels:
    def test_unknown_and_unrouted(self) -> None:
        """No model is ``none``; a model not routed, or routed by the default, is ``unmatched``."""
        labels = ModelLabels(_patterns)
        assert labels.label(None, None, None, False) == NONE
        assert labels.label("gpt-4o", None, None, False) == UNMATCHED
        assert labels.label("anything", "r", "default", True) == UNMATCHED
        assert labels.label("gpt-4o", "r", "rules[9]", True) == UNMATCHED  # rule gone after a reload

    def test_exact_names_are_never_capped(self) -> None:
        """Names a rule lists exactly are always their own label, even with the glob cap at zero."""
        labels = ModelLabels(_patterns, cap=0)
        assert labels.label("o1", "r", "rules[0]", True) == "o1"
        assert labels.label("claude-x", "r", "rules[1]", True) == "claude-*|gemini-?"

    def test_glob_cap_survives_new_generation(self) -> None:
        """Admitted glob names stay admitted after a reload, and the cap still holds."""
        labels = ModelLabels(_patterns, cap=2)
        assert [labels.label(m, "r", "rules[1]", True, admit=True) for m in ("claude-a", "claude-b", "claude-c")] == [
            "claude-a", "claude-b", "claude-*|gemini-?"]
        labels.new_generation()
        assert labels.label("claude-a", "r", "rules[1]", True) == "claude-a"
        assert labels.label("claude-d", "r", "rules[1]", True, admit=True) == "claude-*|gemini-?"

    def test_only_answered_names_take_a_glob_slot(self) -> None:
        """Junk names the upstream refused (404) took the slots, and the real models were counted
        under the pattern until a restart."""
        labels = ModelLabels(_patterns, cap=2)
        assert [labels.label(f"claude-junk{i}", "r", "rules[1]", True) for i in range(5)] == ["claude-*|gemini-?"] * 5
        assert labels.label("claude-real", "r", "rules[1]", True, admit=True) == "claude-real"
        assert labels.label("claude-real", "r", "rules[1]", True) == "claude-real"  # its failures keep its name


class TestMetrics:
    def test_registries_are_independent(self) -> None:
        """Two Metrics in one process have separate registries (no duplicate-timeseries error)."""
        a, b = Metrics("1", _patterns, process_metrics=False), Metrics("1", _patterns, process_metrics=False)
        a.series("r", "gpt-4o", NONE, "m").record(200, None, 10.0, None, 0.2, 12.0)
        assert a.registry.get_sample_value("apex_requests_total", {"router": "r", "model": "gpt-4o", "team_id": NONE,
                                                                   "channel": "m", "status": "200"}) == 1
        assert b.registry.get_sample_value("apex_requests_total", {"router": "r", "model": "gpt-4o", "team_id": NONE,
                                                                   "channel": "m", "status": "200"}) is None

    def test_series_keep_their_numbers_across_generations(self) -> None:
        """The same label values give the same series, also after new_generation() (a reload
        does not reset counters); series of other teams share the team-less histograms."""
        m = Metrics("1", _patterns, process_metrics=False)
        s = m.series("r", "gpt-4o", NONE, "m")
        assert m.series("r", "gpt-4o", NONE, "m") is s
        m.new_generation()
        s2 = m.series("r", "gpt-4o", NONE, "m")
        assert s2 is s
        other_team = m.series("r", "gpt-4o", "t", "m")
        s.record(200, None, 0.0, None, 1.0, 1.0)
        other_team.record(200, None, 0.0, None, 1.0, 1.0)
        assert m.registry.get_sample_value("apex_overhead_ms_count", {"router": "r"}) == 2
        assert m.registry.get_sample_value("apex_requests_total", {"router": "r", "model": "gpt-4o", "team_id": NONE,
                                                                   "channel": "m", "status": "200"}) == 1

    def test_record_and_tokens(self) -> None:
        """record() counts status, error type and times; add_tokens() counts each type and estimates apart."""
        m = Metrics("1", _patterns, process_metrics=False)
        s = m.series("r", "gpt-4o", "t", "m")
        s.record(502, "api_error", 120.0, 30.0, 0.4, 121.0)
        s.add_tokens(10, 5, 2, False)
        s.add_tokens(3, 0, 0, True)
        get = m.registry.get_sample_value
        base = {"router": "r", "model": "gpt-4o", "team_id": "t", "channel": "m"}
        assert get("apex_requests_total", {**base, "status": "502"}) == 1
        assert get("apex_errors_total", {**base, "error_type": "api_error"}) == 1
        assert get("apex_tokens_total", {**base, "type": "prompt"}) == 13
        assert get("apex_tokens_total", {**base, "type": "cached"}) == 2
        assert get("apex_tokens_estimated_total", {**base, "type": "prompt"}) == 3
        assert get("apex_upstream_latency_ms_bucket", {"router": "r", "model": "gpt-4o", "channel": "m", "le": "250.0"}) == 1
        assert get("apex_ttft_ms_sum", {"router": "r", "model": "gpt-4o", "channel": "m"}) == 30.0


class TestGatewayFinish:
    def _exchange(self, gw: Gateway, **fields: Any) -> Exchange:
        ex = Exchange("req_1", None, Dialect.OPENAI_CHAT)
        ex.model, ex.router, ex.rule, ex.routed, ex.channel, ex.attempts, ex.status = "gpt-4o", "r", "rules[0]", True, "m", 1, 200
        for k, v in fields.items():
            setattr(ex, k, v)
        return ex

    def test_missing_usage_is_estimated_and_marked(self) -> None:
        """A 2xx with no upstream usage is estimated from the kept bodies and counted as estimated."""
        gw = Gateway(load_config_bytes(_config()))
        body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 400}]}).encode()
        ex = self._exchange(gw, request_body=body, response_body=b'{"choices":[{"message":{"content":"' + b"y" * 80 + b'"}}]}')
        gw.finish(ex)
        assert ex.usage is not None and ex.usage.estimated
        assert ex.usage.prompt_tokens >= 100 and ex.usage.completion_tokens >= 20
        labels = {"router": "r", "model": "gpt-4o", "team_id": NONE, "channel": "m", "type": "prompt"}
        assert gw.metrics.registry.get_sample_value("apex_tokens_estimated_total", labels) == ex.usage.prompt_tokens

    def test_reported_usage_is_not_estimated(self) -> None:
        """Upstream usage is counted as is; count_tokens and errors never get an estimate."""
        gw = Gateway(load_config_bytes(_config()))
        gw.finish(self._exchange(gw, usage=Usage(prompt_tokens=7, completion_tokens=3), request_body=b"{}"))
        ct = self._exchange(gw, request_body=b'{"model":"gpt-4o"}')
        ct.dialect = Dialect.ANTHROPIC_COUNT_TOKENS
        gw.finish(ct)
        failed = self._exchange(gw, status=502, error_kind="api_error", request_body=b'{"model":"gpt-4o"}')
        gw.finish(failed)
        assert ct.usage is None and failed.usage is None
        get = gw.metrics.registry.get_sample_value
        base = {"router": "r", "model": "gpt-4o", "team_id": NONE, "channel": "m"}
        assert get("apex_tokens_total", {**base, "type": "prompt"}) == 7
        assert get("apex_tokens_estimated_total", {**base, "type": "prompt"}) is None
        assert get("apex_errors_total", {**base, "error_type": "api_error"}) == 1

    def test_overhead_header_figure_is_reused(self) -> None:
        """A non-stream request's overhead is the figure measured for its header, not re-measured."""
        gw = Gateway(load_config_bytes(_config()))
        ex = self._exchange(gw, overhead_ms=0.123)
        gw.finish(ex)
        assert gw.metrics.registry.get_sample_value("apex_overhead_ms_sum", {"router": "r"}) == 0.123

    def test_disabled_metrics_count_nothing(self) -> None:
        """With metrics.enabled false, finish() records no series; the in-flight gauge stays balanced."""
        gw = Gateway(load_config_bytes(_config(metrics={"enabled": False})))
        ex = self._exchange(gw)
        gw.in_flight_changed(ex, +1)
        gw.in_flight_changed(ex, -1)
        gw.finish(ex)
        assert gw.metrics.registry.get_sample_value("apex_overhead_ms_count", {"router": "r"}) is None
        assert gw.metrics.registry.get_sample_value("apex_in_flight_requests") == 0


def test_dashboard_and_docs_name_only_real_metrics() -> None:
    """Every apex_* name in the Grafana dashboard and the README is a metric Apex exports, and the doc lists them all."""
    import re
    from pathlib import Path

    from prometheus_client.parser import text_string_to_metric_families

    m = Metrics("1", _patterns, process_metrics=False)
    s = m.series("r", "x", NONE, "m")
    s.record(200, "api_error", 1.0, 1.0, 1.0, 3.0)
    s.add_tokens(1, 1, 1, True)
    s.add_cost(0.5)
    s.add_cost(None)
    m.set_budget_remaining("t", 1.5)
    m.request_log_dropped.inc()
    m.record_fallback("r", "x", "a", "b")
    m.record_attempt_failure("r", "a", "api_error")
    m.record_rate_limited("r", "x", "t")
    m.record_channel_state("a", "cooling")
    exported = {s.name for fam in text_string_to_metric_families(m.render()[0].decode()) for s in fam.samples}
    families = {fam.name for fam in m.registry.collect()}
    dashboard = set(re.findall(r"apex_[a-z_]+", share_path(GRAFANA_DASHBOARD).read_text()))
    doc = set(re.findall(r"`(apex_[a-z_]+)`", (Path(__file__).resolve().parents[2] / "README.md").read_text()))
    # Counters are exported as <family>_total; histograms as _bucket/_sum/_count; families without suffix otherwise.
    assert dashboard - exported == set()
    assert doc - exported - families == set()
    assert {f if f + "_total" not in exported else f + "_total" for f in families} - doc == set()
