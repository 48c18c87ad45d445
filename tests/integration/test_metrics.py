"""/metrics over real HTTP: a known mix of traffic through the official SDKs, parsed back exactly."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ApexInstance, StartApex, ant, basic_config, oai
from tests.integration.fakes import Behaviour, FakeUpstream, error, fixture_bytes, split_events

MSG: Any = [{"role": "user", "content": "What is 4200 + 42?"}]
Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def metrics_config(upstream: FakeUpstream) -> dict[str, Any]:
    """Rules for gpt-4o (exact, with a fallback channel) and claude-* (glob); no router default."""
    cfg = basic_config(upstream)
    cfg["channels"].append(
        {"name": "oa2", "provider_type": "openai", "base_url": upstream.openai_url, "api_key": "sk-upstream-oa2"}
    )
    cfg["routers"][0]["rules"] = [
        {"match": {"model": "gpt-4o"}, "strategy": "priority", "channels": [{"name": "oa"}], "fallback": ["oa2"]},
        {"match": {"model": "claude-*"}, "channels": [{"name": "an"}]},
    ]
    del cfg["routers"][0]["channels"]
    cfg["teams"] = [{"id": "t1", "api_key": "tk-team-1",
                     "policy": {"allowed_routers": ["default"], "rate_limit": {"rpm": 1}}}]
    return cfg


async def scrape(inst: ApexInstance, path: str = "/metrics") -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(inst.url + path) as r:
        return r.status, await r.text()


def parse(text: str) -> Samples:
    """sample name -> {sorted label items: value}, via prometheus-client's own parser."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def nonzero(samples: Samples, name: str, drop: tuple[str, ...] = ()) -> dict[tuple[tuple[str, str], ...], float]:
    """Non-zero samples of ``name``, labels in ``drop`` summed away."""
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for labels, value in samples.get(name, {}).items():
        key = tuple((k, v) for k, v in labels if k not in drop)
        out[key] = out.get(key, 0.0) + value
    return {k: v for k, v in out.items() if v}


def L(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def fixture_usage() -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Usage the fake upstream reports: OpenAI non-stream, OpenAI stream, Anthropic stream."""
    ns = json.loads(fixture_bytes("openai_chat_nonstream.json"))["usage"]
    stream = next(json.loads(e.split(b"data: ", 1)[1]) for e in split_events(fixture_bytes("openai_chat_stream_text.sse"))
                  if b'"choices":[]' in e)["usage"]
    ant_events = [e for e in split_events(fixture_bytes("anthropic_messages_stream_text.sse")) if b"usage" in e]
    start = json.loads(ant_events[0].split(b"data: ", 1)[1])["message"]["usage"]
    delta = json.loads(ant_events[-1].split(b"data: ", 1)[1])["usage"]
    return (
        {"prompt": ns["prompt_tokens"], "completion": ns["completion_tokens"]},
        {"prompt": stream["prompt_tokens"], "completion": stream["completion_tokens"]},
        {"prompt": start["input_tokens"], "completion": delta["output_tokens"]},
    )


async def test_known_traffic_mix_counts_exactly(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """After success, fallback, 429, error, streams, 404 and 401, every counter and label equals what was sent."""
    inst = await start_apex(metrics_config(upstream))
    client, team = oai(inst), oai(inst, "tk-team-1")
    u_ns, u_stream, u_ant = fixture_usage()

    raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG)       # A: 200 oa
    assert float(raw.headers["x-apex-overhead-ms"]) >= 0.0
    cached_body = json.loads(fixture_bytes("openai_chat_nonstream.json"))
    cached_body["usage"] = {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107,
                            "prompt_tokens_details": {"cached_tokens": 40}}
    upstream.push(error(500), Behaviour(body=json.dumps(cached_body).encode()))
    await client.chat.completions.create(model="gpt-4o", messages=MSG)                                # B: oa 500 -> oa2 200
    await team.chat.completions.create(model="gpt-4o", messages=MSG)                                  # C: team 200
    with pytest.raises(openai.RateLimitError):
        await team.chat.completions.create(model="gpt-4o", messages=MSG)                              # D: team 429
    upstream.push(error(400, "bad temperature"))
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="gpt-4o", messages=MSG)                            # E: 400
    chunks = [c async for c in await client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True)]  # F
    assert all(c.usage is None for c in chunks), "the usage chunk Apex asked for reached a client that did not"
    chunks = [c async for c in await client.chat.completions.create(                                  # G
        model="gpt-4o", messages=MSG, stream=True, stream_options={"include_usage": True})]
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == u_stream["prompt"]
    async with ant(inst).messages.stream(model="claude-apex-test", max_tokens=64, messages=MSG) as s:  # H
        async for _ in s:
            pass
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="no-such-model-xyz", messages=MSG)                 # I: 404
    with pytest.raises(openai.AuthenticationError):
        await oai(inst, "wrong-key").chat.completions.create(model="gpt-4o", messages=MSG)            # J: 401
    for path in ("/health", "/metrics", "/metrics"):
        assert (await scrape(inst, path))[0] == 200

    status, text = await scrape(inst)
    assert status == 200
    m = parse(text)
    gpt = {"router": "default", "model": "gpt-4o"}
    assert nonzero(m, "apex_requests_total") == {
        L(**gpt, team_id="none", channel="oa", status="200"): 3,                 # A, F, G
        L(**gpt, team_id="none", channel="oa2", status="200"): 1,                # B
        L(**gpt, team_id="t1", channel="oa", status="200"): 1,                   # C
        L(**gpt, team_id="t1", channel="none", status="429"): 1,                 # D
        L(**gpt, team_id="none", channel="oa", status="400"): 1,                 # E
        L(router="default", model="claude-apex-test", team_id="none", channel="an", status="200"): 1,  # H
        L(router="none", model="unmatched", team_id="none", channel="none", status="404"): 1,  # I
        L(router="none", model="none", team_id="none", channel="none", status="401"): 1,       # J
    }
    assert nonzero(m, "apex_errors_total") == {
        L(**gpt, team_id="t1", channel="none", error_type="rate_limit"): 1,
        L(**gpt, team_id="none", channel="oa", error_type="invalid_request"): 1,
        L(router="none", model="unmatched", team_id="none", channel="none", error_type="not_found"): 1,
        L(router="none", model="none", team_id="none", channel="none", error_type="authentication"): 1,
    }
    assert nonzero(m, "apex_fallback_total") == {L(**gpt, from_channel="oa", to_channel="oa2"): 1}
    assert nonzero(m, "apex_attempt_failures_total") == {L(router="default", channel="oa", error_type="api_error"): 1}
    assert nonzero(m, "apex_rate_limited_total") == {L(**gpt, team_id="t1"): 1}
    assert nonzero(m, "apex_tokens_total") == {
        L(**gpt, team_id="none", channel="oa", type="prompt"): u_ns["prompt"] + 2 * u_stream["prompt"],
        L(**gpt, team_id="none", channel="oa", type="completion"): u_ns["completion"] + 2 * u_stream["completion"],
        L(**gpt, team_id="none", channel="oa2", type="prompt"): 100,
        L(**gpt, team_id="none", channel="oa2", type="completion"): 7,
        L(**gpt, team_id="none", channel="oa2", type="cached"): 40,
        L(**gpt, team_id="t1", channel="oa", type="prompt"): u_ns["prompt"],
        L(**gpt, team_id="t1", channel="oa", type="completion"): u_ns["completion"],
        L(router="default", model="claude-apex-test", team_id="none", channel="an", type="prompt"): u_ant["prompt"],
        L(router="default", model="claude-apex-test", team_id="none", channel="an", type="completion"): u_ant["completion"],
    }
    assert nonzero(m, "apex_tokens_estimated_total") == {}
    assert nonzero(m, "apex_ttft_ms_count") == {
        L(**gpt, channel="oa"): 2, L(router="default", model="claude-apex-test", channel="an"): 1,
    }
    assert sum(nonzero(m, "apex_upstream_latency_ms_count").values()) == 7   # all but D, I, J reached an upstream
    assert nonzero(m, "apex_overhead_ms_count") == {L(router="default"): 8, L(router="none"): 2}
    assert m["apex_in_flight_requests"][()] == 0
    assert nonzero(m, "apex_config_reloads_total") == {}
    assert "no-such-model-xyz" not in text and "wrong-key" not in text and "vk-default" not in text

    # A reload rebinds the children; counting goes on in the same series.
    assert not inst.gateway.reload_bytes(b"{not json")
    assert inst.gateway.reload_bytes(json.dumps(metrics_config(upstream)).encode())
    await client.chat.completions.create(model="gpt-4o", messages=MSG)
    m = parse((await scrape(inst))[1])
    assert m["apex_config_reloads_total"] == {L(result="success"): 1, L(result="failure"): 1}
    assert m["apex_requests_total"][L(**gpt, team_id="none", channel="oa", status="200")] == 4


async def test_glob_rule_model_names_are_capped(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """Glob-matched names are their own label only up to the cap; past it the rule's pattern stands in."""
    inst = await start_apex(metrics_config(upstream))
    inst.gateway.metrics.models.cap = 2
    client = ant(inst)
    for name in ("claude-a", "claude-b", "claude-c", "claude-d", "claude-a"):
        await client.messages.create(model=name, max_tokens=8, messages=MSG)
    m = parse((await scrape(inst))[1])
    models = {dict(k)["model"]: v for k, v in nonzero(m, "apex_requests_total").items()}
    assert models == {"claude-a": 2, "claude-b": 1, "claude-*": 2}


async def test_names_the_upstream_refused_take_no_glob_slot(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """Junk names the upstream refused (404) used up the cap, and the real model that came next
    was counted under the rule's pattern until a restart."""
    inst = await start_apex(metrics_config(upstream))
    inst.gateway.metrics.models.cap = 2
    client = ant(inst)
    for i in range(3):
        upstream.push(error(404, "no such model", family="anthropic"))
        with pytest.raises(anthropic.NotFoundError):
            await client.messages.create(model=f"claude-junk{i}", max_tokens=8, messages=MSG)
    await client.messages.create(model="claude-real", max_tokens=8, messages=MSG)
    m = parse((await scrape(inst))[1])
    models = {dict(k)["model"]: v for k, v in nonzero(m, "apex_requests_total").items()}
    assert models == {"claude-*": 3, "claude-real": 1}


async def test_a_glob_names_first_fallback_has_the_model_label_of_its_request(
    upstream: FakeUpstream, start_apex: StartApex
) -> None:
    """The first request of a new glob-matched name that fails over: apex_fallback_total carries
    the name, as its apex_requests_total does (it carried the rule's pattern: the name was
    admitted only when the request ended, after the fallback was counted)."""
    cfg = metrics_config(upstream)
    cfg["routers"][0]["rules"].insert(0, {"match": {"model": "gpt-4*"}, "strategy": "priority",
                                          "channels": [{"name": "oa"}], "fallback": ["oa2"]})
    inst = await start_apex(cfg)
    upstream.push(error(500))
    await oai(inst).chat.completions.create(model="gpt-4.1-mini", messages=MSG)
    m = parse((await scrape(inst))[1])
    assert {dict(k)["model"] for k in nonzero(m, "apex_requests_total")} == {"gpt-4.1-mini"}
    assert nonzero(m, "apex_fallback_total") == {
        L(router="default", model="gpt-4.1-mini", from_channel="oa", to_channel="oa2"): 1}


async def test_default_route_model_is_unmatched(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A model served by the router's default channels (no rule matched) is labelled unmatched."""
    inst = await start_apex(basic_config(upstream))
    await oai(inst).chat.completions.create(model="some-random-model-123", messages=MSG)
    status, text = await scrape(inst)
    assert status == 200
    assert "some-random-model-123" not in text
    assert nonzero(parse(text), "apex_requests_total") == {
        L(router="default", model="unmatched", team_id="none", channel="oa", status="200"): 1,
    }


async def test_metrics_disabled_is_404_and_moves_on_reload(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """metrics.enabled false: the path is 404; a reload to a new path serves it there and not at the old one."""
    cfg = basic_config(upstream, metrics={"enabled": False})
    inst = await start_apex(cfg)
    await oai(inst).chat.completions.create(model="gpt-4o", messages=MSG)
    assert (await scrape(inst))[0] == 404
    cfg["metrics"] = {"enabled": True, "path": "/internal/prom"}
    assert inst.gateway.reload_bytes(json.dumps(cfg).encode())
    assert (await scrape(inst))[0] == 404
    status, text = await scrape(inst, "/internal/prom")
    assert status == 200
    # The request made while disabled was not counted; the scrape of the old path after the
    # reload was (an unknown path now, answered 404 like any other).
    counted = nonzero(parse(text), "apex_requests_total")
    assert list(counted.values()) == [1.0] and ("status", "404") in next(iter(counted)), counted


async def test_client_disconnect_counts_499(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A client that goes away mid-request is counted with status 499 and error_type client_closed."""
    inst = await start_apex(basic_config(upstream))
    upstream.push(Behaviour(stall=5.0))
    async with aiohttp.ClientSession() as s:
        try:
            async with s.post(inst.openai_url + "/chat/completions", json={"model": "gpt-4o", "messages": MSG},
                              headers={"Authorization": "Bearer vk-default"},
                              timeout=aiohttp.ClientTimeout(total=0.3)):
                pass
        except TimeoutError:
            pass
    m: Samples = {}
    for _ in range(100):
        m = parse((await scrape(inst))[1])
        if nonzero(m, "apex_requests_total"):
            break
        await asyncio.sleep(0.02)
    assert nonzero(m, "apex_requests_total", drop=("router", "model", "team_id", "channel")) == {L(status="499"): 1}
    assert nonzero(m, "apex_errors_total", drop=("router", "model", "team_id", "channel")) == {
        L(error_type="client_closed"): 1}
    assert m["apex_in_flight_requests"][()] == 0
