"""Cost per request over real HTTP with the official SDKs: access line, metrics, cached tokens, unknown prices."""

from __future__ import annotations

import asyncio
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


async def test_one_hour_cache_writes_are_priced_at_their_own_rate(upstream: FakeUpstream, start_apex: StartApex,
                                                                 log_file: Path) -> None:
    """Anthropic's cache_creation.ephemeral_1h_input_tokens (ttl "1h") cost 2x input, not the
    five-minute 1.25x: built in, and from a config price's cache_write_1h (they were all 1.25x)."""
    cfg = basic_config(upstream)
    cfg["prices"] = {"claude-own": {"input": 1.0, "output": 2.0, "cache_write": 1.5, "cache_write_1h": 4.0}}
    inst = await start_apex(cfg)
    for model in ("claude-sonnet-4-20250514", "claude-own"):
        upstream.push(Behaviour(body=json.dumps({
            "id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": "4242"}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 100, "cache_creation_input_tokens": 3000, "output_tokens": 200,
                      "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000}},
        }).encode()))
        await ant(inst, "global-key").messages.create(model=model, max_tokens=300, messages=MSG)
    builtin, own = access_lines(log_file)
    assert builtin["cost_usd"] == pytest.approx((100 * 3.0 + 1000 * 3.75 + 2000 * 6.0 + 200 * 15.0) / 1e6)
    assert own["cost_usd"] == pytest.approx((100 * 1.0 + 1000 * 1.5 + 2000 * 4.0 + 200 * 2.0) / 1e6)
    assert builtin["tokens"]["cache_write"] == 3000


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


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "house-model-1",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


NO_USAGE_STREAM = [_chunk({"role": "assistant", "content": ""}), *(_chunk({"content": f" w{i}"}) for i in range(40)),
                   _chunk({}, "stop"), b"data: [DONE]\n\n"]


async def test_a_stream_without_usage_is_estimated_from_what_it_carried(
    upstream: FakeUpstream, start_apex: StartApex, log_file: Path,
) -> None:
    """An upstream that reports no usage in a stream (it ignored include_usage): Apex estimates
    the completion from the stream's events (it charged 0), marked estimated."""
    inst = await start_apex(basic_config(upstream))
    upstream.push(Behaviour(events=NO_USAGE_STREAM, content_type="text/event-stream"))
    stream = await oai(inst).chat.completions.create(model="house-model-1", messages=MSG, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text.count(" w") == 40
    await asyncio.sleep(0.05)
    line = access_lines(log_file)[-1]
    assert line["tokens"]["estimated"] is True
    assert 30 <= line["tokens"]["completion"] <= 50, line["tokens"]


async def test_a_stream_the_client_leaves_keeps_its_upstream_time(
    upstream: FakeUpstream, start_apex: StartApex, log_file: Path,
) -> None:
    """A client that hangs up mid-stream (499): the time the upstream took is upstream time,
    not Apex's overhead (upstream_ms was 0 and the whole stream counted as overhead), and the
    completion it got so far is estimated."""
    inst = await start_apex(basic_config(upstream))
    upstream.push(Behaviour(events=NO_USAGE_STREAM, content_type="text/event-stream", gap=0.02))
    stream = await oai(inst).chat.completions.create(model="house-model-1", messages=MSG, stream=True)
    seen = 0
    async for _ in stream:
        seen += 1
        if seen == 10:
            break
    await stream.close()
    lines: list[dict[str, Any]] = []
    for _ in range(100):
        await asyncio.sleep(0.02)
        lines = access_lines(log_file)
        if lines:
            break
    line = lines[-1]
    assert line["status"] == 499
    assert line["error_type"] == "client_closed"  # as in the request log and metrics (it was null here)
    assert line["upstream_ms"] >= 150, line  # ten events 20 ms apart
    assert line["overhead_ms"] < line["upstream_ms"], line
    assert line["tokens"]["estimated"] is True and line["tokens"]["completion"] >= 5, line["tokens"]


def _counting_config(upstream: FakeUpstream) -> dict[str, Any]:
    cfg = basic_config(upstream)
    cfg["channels"].append({"name": "gm", "provider_type": "gemini", "base_url": upstream.url, "api_key": "g-key"})
    cfg["routers"][0]["rules"].append({"match": {"model": "gemini-*"}, "channels": [{"name": "gm"}]})
    cfg["teams"] = [{"id": "t1", "api_key": "tk-1", "policy": {"rate_limit": {"tpm": 300}}}]
    return cfg


async def test_token_counts_use_no_tokens(upstream: FakeUpstream, start_apex: StartApex, log_file: Path) -> None:
    """Counting tokens generates nothing and is free at the providers: Gemini's countTokens (on a
    Gemini channel and estimated on an OpenAI one) is no usage and no cost (it was priced as
    prompt tokens), and no count, of either protocol, takes tokens from a team's TPM (three
    ~200-token counts under tpm 300 got 429s)."""
    import aiohttp

    inst = await start_apex(_counting_config(upstream))
    text = "count these words please " * 40
    headers = {"Authorization": "Bearer tk-1"}
    async with aiohttp.ClientSession(headers=headers) as s:
        for model in ("gemini-2.5-flash", "gpt-4o", "gemini-2.5-flash"):
            async with s.post(f"{inst.url}/v1beta/models/{model}:countTokens",
                              json={"contents": [{"role": "user", "parts": [{"text": text}]}]}) as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["totalTokens"] > 0
        for _ in range(3):
            async with s.post(f"{inst.url}/v1/messages/count_tokens", headers={"anthropic-version": "2023-06-01"},
                              json={"model": "claude-sonnet-4-20250514", "messages": [{"role": "user", "content": text}]}) as r:
                assert r.status == 200, await r.text()
    lines = access_lines(log_file)
    assert len(lines) == 6
    assert all(line["tokens"] is None and line["cost_usd"] is None for line in lines), lines
    get = inst.gateway.metrics.registry.get_sample_value
    for channel, model in (("gm", "gemini-2.5-flash"), ("oa", "unmatched")):
        assert get("apex_tokens_total", {"router": "default", "model": model, "team_id": "t1", "channel": channel,
                                         "type": "prompt"}) in (None, 0.0)


async def test_embeddings_without_usage_are_all_prompt(upstream: FakeUpstream, start_apex: StartApex,
                                                       log_file: Path) -> None:
    """An embeddings answer with no usage is estimated as prompt tokens only: the vectors are no
    completion (the list's "data" was counted as an 800-token image and priced as output)."""
    inst = await start_apex(_counting_config(upstream))
    body = {"object": "list", "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5, 0.125]}]}
    upstream.push(Behaviour(body=json.dumps(body).encode()))
    got = await oai(inst, "tk-1").embeddings.create(model="text-embedding-3-small", input="hi there",
                                                    encoding_format="float")
    assert got.data[0].embedding == [0.25, -0.5, 0.125]
    tokens = access_lines(log_file)[-1]["tokens"]
    assert tokens["estimated"] is True and tokens["completion"] == 0 and 0 < tokens["prompt"] < 20, tokens


async def test_moonshot_usage_shapes_are_read(upstream: FakeUpstream, start_apex: StartApex, log_file: Path) -> None:
    """Kimi puts a stream's usage on its finishing choice and cache hits in a top-level
    usage.cached_tokens: both were missed (the stream was estimated at a few tokens; the
    cached prompt was priced as uncached)."""
    cfg = basic_config(upstream)
    cfg["channels"][0] = {"name": "oa", "provider_type": "moonshot", "base_url": upstream.openai_url, "api_key": "sk-m"}
    inst = await start_apex(cfg)
    usage = {"prompt_tokens": 10000, "completion_tokens": 100, "total_tokens": 10100, "cached_tokens": 9000}

    def chunk(delta: dict[str, object], finish: str | None = None, **extra: object) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, **extra}
        return b"data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "kimi-k2",
                                       "choices": [choice]}).encode() + b"\n\n"

    upstream.push(Behaviour(content_type="text/event-stream", events=[
        chunk({"role": "assistant", "content": "4242"}), chunk({}, "stop", usage=usage), b"data: [DONE]\n\n"]))
    stream = await oai(inst).chat.completions.create(model="kimi-k2", messages=MSG, stream=True)
    _ = [c async for c in stream]
    upstream.push(Behaviour(body=json.dumps({
        "id": "c", "object": "chat.completion", "created": 1, "model": "kimi-k2",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "4242"}, "finish_reason": "stop"}],
        "usage": usage}).encode()))
    reply = await ant(inst).messages.create(model="kimi-k2", max_tokens=50, messages=MSG)  # translated
    assert reply.usage.cache_read_input_tokens == 9000
    upstream.push(Behaviour(content_type="text/event-stream", events=[
        chunk({"role": "assistant", "content": "4242"}), chunk({}, "stop", usage=usage), b"data: [DONE]\n\n"]))
    async with ant(inst).messages.stream(model="kimi-k2", max_tokens=50, messages=MSG) as translated:
        final = await translated.get_final_message()
    assert final.usage.output_tokens == 100
    streamed, whole, translated_line = access_lines(log_file)[-3:]
    for line in (streamed, whole, translated_line):
        assert line["tokens"]["estimated"] is False, line["tokens"]
        assert line["tokens"]["prompt"] == 10000 and line["tokens"]["completion"] == 100
        assert line["tokens"]["cached"] == 9000
