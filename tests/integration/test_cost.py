"""Cost per request over real HTTP with the official SDKs: access line, metrics, cached tokens, unknown prices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartApex, ant, basic_config, oai
from tests.integration.access import access_lines
from tests.integration.fakes import Behaviour, FakeUpstream

MSG: Any = [{"role": "user", "content": "what is 4200 + 42?"}]


def _cost_metric(inst: Any, **labels: str) -> float | None:
    value: float | None = inst.gateway.metrics.registry.get_sample_value("apex_cost_usd_total", labels)
    return value


async def test_costs_in_access_line_and_metrics(upstream: FakeUpstream, start_apex: StartApex, log_file: Path) -> None:
    """OpenAI (cached tokens inside prompt_tokens) and Anthropic (cache reads/writes outside input_tokens) are priced
    on the upstream model, both in the access line and in apex_cost_usd_total."""
    cfg = basic_config(upstream)
    cfg["channels"][0]["model_map"] = {"gpt-cheap": "gpt-4o-mini-2024-07-18"}
    cfg["teams"] = [{"id": "t1", "api_key": "tk-1"}]
    inst = await start_apex(cfg)
    upstream.push(Behaviour(body=json.dumps({
        "id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "4242"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2000, "completion_tokens": 100, "total_tokens": 2100,
                  "prompt_tokens_details": {"cached_tokens": 1000}},
    }).encode()))
    await oai(inst, "tk-1").chat.completions.create(model="gpt-cheap", messages=MSG)
    upstream.push(Behaviour(body=json.dumps({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514",
        "content": [{"type": "text", "text": "4242"}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 100, "cache_read_input_tokens": 3000, "cache_creation_input_tokens": 1000,
                  "output_tokens": 200},
    }).encode()))
    await ant(inst, "tk-1").messages.create(model="claude-sonnet-4-20250514", max_tokens=300, messages=MSG)
    stream = await oai(inst, "tk-1").chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
    _ = [c async for c in stream]

    oa_line, an_line, stream_line = access_lines(log_file)
    oa_cost = (1000 * 0.15 + 1000 * 0.075 + 100 * 0.60) / 1e6
    an_cost = (100 * 3.0 + 3000 * 0.30 + 1000 * 3.75 + 200 * 15.0) / 1e6
    assert oa_line["cost_usd"] == pytest.approx(oa_cost)
    assert an_line["cost_usd"] == pytest.approx(an_cost)
    assert an_line["tokens"]["cache_write"] == 1000 and an_line["tokens"]["cached"] == 3000
    tokens = stream_line["tokens"]  # the fixture stream's own usage, priced as gpt-4o
    assert not tokens["estimated"]
    assert stream_line["cost_usd"] == pytest.approx((tokens["prompt"] * 2.5 + tokens["completion"] * 10.0) / 1e6)
    assert stream_line["cost_usd"] > 0
    assert _cost_metric(inst, router="default", model="unmatched", team_id="t1", channel="oa") == pytest.approx(
        oa_cost + stream_line["cost_usd"])
    assert _cost_metric(inst, router="default", model="claude-sonnet-4-20250514", team_id="t1", channel="an") == (
        pytest.approx(an_cost))


async def test_unknown_price_is_null_and_counted(upstream: FakeUpstream, start_apex: StartApex, log_file: Path) -> None:
    """A model nobody priced has cost null in the access line and counts in apex_cost_unknown_total;
    a config price for it makes it priced; usage Apex had to estimate says so."""
    cfg = basic_config(upstream)
    inst = await start_apex(cfg)
    await oai(inst).chat.completions.create(model="house-model-1", messages=MSG)
    line = access_lines(log_file)[-1]
    assert line["cost_usd"] is None and line["tokens"]["prompt"] == 16
    assert inst.gateway.metrics.registry.get_sample_value(
        "apex_cost_unknown_total", {"router": "default", "model": "unmatched", "team_id": "none", "channel": "oa"}) == 1

    cfg["prices"] = {"house-*": {"input": 1.0, "output": 4.0}}
    inst2 = await start_apex(cfg)
    body = {"id": "c1", "object": "chat.completion", "created": 1, "model": "house-model-1",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "4242 is the answer"},
                         "finish_reason": "stop"}]}
    upstream.push(Behaviour(body=json.dumps(body).encode()))  # no usage at all: Apex estimates it
    await oai(inst2).chat.completions.create(model="house-model-1", messages=MSG)
    line = access_lines(log_file)[-1]
    assert line["tokens"]["estimated"] is True
    assert line["cost_usd"] == pytest.approx((line["tokens"]["prompt"] * 1.0 + line["tokens"]["completion"] * 4.0) / 1e6)
