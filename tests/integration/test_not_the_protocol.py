"""Upstream answers that are not what the protocol promises (spec 2: a malformed answer is a
failed attempt): a redirect, an error page that is not JSON, an error object sent with a 200.

Each fails the attempt: the route's next channel serves the request, and with none left the
client gets a 502 (or the upstream's status) as an error in its own protocol, never the
upstream's bytes labelled as something they are not, and never an empty "success".
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import StartApex, ant, basic_config, oai
from tests.integration.fakes import Behaviour, FakeUpstream

HTML = b"<html><body><h1>503 Service Temporarily Unavailable</h1>nginx</body></html>"
USER = [{"role": "user", "content": "hi"}]


def two_channels(up: FakeUpstream) -> dict[str, Any]:
    """gpt-* and claude-* each on a bad channel first, then a healthy one of the same family."""
    cfg = basic_config(up)
    cfg["channels"] += [
        {"name": "oa2", "provider_type": "openai", "base_url": up.openai_url, "api_key": "sk-upstream-oa2"},
        {"name": "an2", "provider_type": "anthropic", "base_url": up.url, "api_key": "sk-ant-upstream2"},
    ]
    cfg["routers"][0]["rules"] = [
        {"match": {"model": "claude-*"}, "strategy": "priority", "channels": [{"name": "an"}, {"name": "an2"}]},
        {"match": {"model": "gpt-*"}, "strategy": "priority", "channels": [{"name": "oa"}, {"name": "oa2"}]},
    ]
    return cfg


def one_try(up: FakeUpstream) -> dict[str, Any]:
    cfg = basic_config(up)
    cfg["global"]["retries"]["max_attempts"] = 1
    return cfg


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_fails_over_and_alone_is_a_502(upstream: FakeUpstream, start_apex: StartApex, status: int) -> None:
    """Apex follows no redirect (a moved base_url must be fixed in the config, and following
    one would send the key to another host): the attempt fails, the next channel serves."""
    inst = await start_apex(two_channels(upstream))
    upstream.push(Behaviour(status=status, body=b"moved", content_type="text/plain", headers={"Location": "http://elsewhere/"}))
    raw = await oai(inst).chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)  # type: ignore[arg-type]
    assert raw.headers["x-apex-attempts"] == "2"
    assert raw.parse().choices[0].message.content
    inst = await start_apex(one_try(upstream))
    upstream.push(Behaviour(status=status, body=b"moved", content_type="text/plain", headers={"Location": "http://elsewhere/"}))
    with pytest.raises(anthropic.APIStatusError) as info:
        await ant(inst).messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=USER)  # type: ignore[arg-type]
    assert info.value.status_code == 502
    assert "redirect" in info.value.message and "moved" not in info.value.response.text
    assert info.value.response.json()["type"] == "error"


@pytest.mark.parametrize(("model", "path"), [("gpt-4o", "chat"), ("claude-sonnet-4-5", "messages")])
async def test_a_native_error_page_that_is_not_json_becomes_an_error_in_the_clients_protocol(
    upstream: FakeUpstream, start_apex: StartApex, model: str, path: str,
) -> None:
    """A proxy's HTML 503 on a same-protocol channel: the SDK gets an error object it can read
    (it used to get the HTML labelled application/json)."""
    inst = await start_apex(one_try(upstream))
    upstream.persistent = Behaviour(status=503, body=HTML, content_type="text/html")
    err: openai.APIStatusError | anthropic.APIStatusError
    if path == "chat":
        with pytest.raises(openai.APIStatusError) as oinfo:
            await oai(inst).chat.completions.create(model=model, messages=USER)  # type: ignore[arg-type]
        err = oinfo.value
        body = err.response.json()["error"]
    else:
        with pytest.raises(anthropic.APIStatusError) as ainfo:
            await ant(inst).messages.create(model=model, max_tokens=5, messages=USER)  # type: ignore[arg-type]
        err = ainfo.value
        assert err.response.json()["type"] == "error"
        body = err.response.json()["error"]
    assert err.status_code == 503
    assert err.response.headers["content-type"].startswith("application/json")
    assert "upstream returned HTTP 503" in body["message"] and "<html>" not in err.response.text


async def test_a_native_json_error_body_still_passes_through(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """The other half: a JSON error from a same-protocol upstream reaches the client as sent."""
    inst = await start_apex(one_try(upstream))
    sent = {"error": {"message": "The model `gpt-9` does not exist", "type": "invalid_request_error", "code": "model_not_found"}}
    upstream.persistent = Behaviour(status=404, body=json.dumps(sent).encode())
    with pytest.raises(openai.NotFoundError) as info:
        await oai(inst).chat.completions.create(model="gpt-9", messages=USER)  # type: ignore[arg-type]
    assert info.value.response.json() == sent


ANTHROPIC_ERROR_200 = json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}).encode()
OPENAI_ERROR_200 = json.dumps({"error": {"message": "upstream model crashed", "type": "server_error"}}).encode()


@pytest.mark.parametrize(("client", "model", "body"), [
    ("openai", "gpt-4o", OPENAI_ERROR_200),  # native pass-through
    ("anthropic", "claude-sonnet-4-5", ANTHROPIC_ERROR_200),  # native pass-through
    ("openai", "claude-sonnet-4-5", ANTHROPIC_ERROR_200),  # translated: was an empty 200
    ("openai", "claude-sonnet-4-5", b'{"unexpected": true}'),  # translated: was an empty 200
    ("anthropic", "claude-sonnet-4-5", OPENAI_ERROR_200),  # native, an OpenAI-shaped error: the key leaked
    ("anthropic", "claude-sonnet-4-5", b"{}"),  # native: no message at all
    ("openai", "gpt-4o", b"{}"),  # native: no choices
    ("openai", "gpt-4o", b'{"choices": null}'),
])
async def test_an_error_sent_with_a_200_fails_over(
    upstream: FakeUpstream, start_apex: StartApex, client: str, model: str, body: bytes,
) -> None:
    """An error object (or no message at all) with a 200 is a failed attempt, not an empty
    answer: the next channel answers, and alone it is a 502."""
    inst = await start_apex(two_channels(upstream))
    upstream.push(Behaviour(status=200, body=body))
    if client == "openai":
        raw = await oai(inst).chat.completions.with_raw_response.create(model=model, messages=USER)  # type: ignore[arg-type]
        assert raw.parse().choices[0].message.content
        attempts = raw.headers["x-apex-attempts"]
    else:
        raw_a = await ant(inst).messages.with_raw_response.create(model=model, max_tokens=5, messages=USER)  # type: ignore[arg-type]
        assert (await raw_a.parse()).content
        attempts = raw_a.headers["x-apex-attempts"]
    assert attempts == "2"
    inst = await start_apex(one_try(upstream))
    upstream.push(Behaviour(status=200, body=body))
    with pytest.raises(openai.APIStatusError) as info:
        await oai(inst).chat.completions.create(model=model, messages=USER)  # type: ignore[arg-type]
    assert info.value.status_code == 502


async def test_a_gemini_answer_without_candidates_or_feedback_is_malformed(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """``{}``, ``candidates: null`` or an error object from Gemini with a 200 is no answer (a
    blocked prompt says so in promptFeedback), translated or to a Gemini client."""
    from google import genai
    from google.genai import errors as genai_errors

    cfg = one_try(upstream)
    cfg["channels"].append({"name": "gm", "provider_type": "gemini", "base_url": upstream.url, "api_key": "AIza-upstream-gm-000000"})
    cfg["routers"][0]["rules"].insert(0, {"match": {"model": "gemini-*"}, "channels": [{"name": "gm"}]})
    inst = await start_apex(cfg)
    bodies = (b"{}", b'{"candidates": null, "usageMetadata": {"promptTokenCount": 3}}',
              b'{"error": {"code": 500, "message": "internal with AIza-upstream-gm-000000", "status": "INTERNAL"}}')
    for body in bodies:
        upstream.push(Behaviour(status=200, body=body))
        with pytest.raises(openai.APIStatusError) as info:
            await oai(inst).chat.completions.create(model="gemini-2.5-flash", messages=USER)  # type: ignore[arg-type]
        assert info.value.status_code == 502, body
    client = genai.Client(api_key="vk-default", http_options={"base_url": inst.url, "api_version": "v1beta"})
    for body in bodies:
        upstream.push(Behaviour(status=200, body=body))
        with pytest.raises(genai_errors.APIError) as gerr:
            await client.aio.models.generate_content(model="gemini-2.5-flash", contents="hi")
        assert gerr.value.code == 502 and "AIza-upstream" not in str(gerr.value), body


CHAT_EVENTS = [
    b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}\n\n',
    b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}\n\n',
    b"data: [DONE]\n\n",
]


@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet-4-5"])  # pass-through, translated
async def test_a_stream_whose_first_event_is_not_json_fails_over(upstream: FakeUpstream, start_apex: StartApex, model: str) -> None:
    """Spec 2: a stream commits once its first event arrived; a first event that is not JSON
    is a malformed answer, so the next channel serves (it was forwarded, or a 200 + error)."""
    inst = await start_apex(two_channels(upstream))
    if model.startswith("gpt"):
        upstream.push(Behaviour(events=[b"data: {not json at all}\n\n", *CHAT_EVENTS[1:]], content_type="text/event-stream"))
        stream = await oai(inst).chat.completions.with_raw_response.create(model=model, messages=USER, stream=True)  # type: ignore[arg-type]
        text = "".join([c.choices[0].delta.content or "" async for c in stream.parse() if c.choices])  # type: ignore[union-attr]
        attempts = stream.headers["x-apex-attempts"]
    else:
        upstream.push(Behaviour(events=[b"event: message_start\ndata: {\"type\": \"message_st\n\n"], content_type="text/event-stream"))
        async with ant(inst).messages.stream(model=model, max_tokens=5, messages=USER) as s:  # type: ignore[arg-type]
            text = await s.get_final_text()
            attempts = s.response.headers["x-apex-attempts"]
    assert text and attempts == "2"


@pytest.mark.parametrize(("model", "path"), [("gpt-4o", "/v1/responses"), ("claude-sonnet-4-5", "/v1/messages")])
async def test_a_passed_through_stream_cut_inside_its_last_event_ends_with_an_error_event(
    upstream: FakeUpstream, start_apex: StartApex, model: str, path: str,
) -> None:
    """The upstream ends cleanly but inside its last event (message_stop / response.completed
    cut short): the half event is not forwarded, and the client gets an error event, not a
    stream that looks complete (or ends with broken JSON)."""
    inst = await start_apex(one_try(upstream))
    if path == "/v1/messages":
        events = [
            b'event: message_start\ndata: {"type":"message_start","message":{"id":"m1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"usage":{"input_tokens":3,"output_tokens":1}}}\n\n',
            b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n',
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\n\n',
            b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
            b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}\n\n',
            b'event: message_stop\ndata: {"type":"mess',
        ]
        body = {"model": model, "max_tokens": 5, "stream": True, "messages": USER}
        headers = {"x-api-key": "vk-default", "anthropic-version": "2023-06-01"}
    else:
        events = [
            b'event: response.created\ndata: {"type":"response.created","response":{"id":"r1","object":"response","status":"in_progress","model":"gpt-4o","output":[]}}\n\n',
            b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":"m1","output_index":0,"content_index":0,"delta":"Hi"}\n\n',
            b'event: response.completed\ndata: {"type":"response.completed","response":{"id":"r1","object":"response","status":"completed","usage":{"input_tokens":3,"output_tok',
        ]
        body = {"model": model, "input": "hi", "stream": True}
        headers = {"Authorization": "Bearer vk-default"}
    upstream.push(Behaviour(events=events, content_type="text/event-stream"))
    import aiohttp

    async with aiohttp.ClientSession() as session, session.post(inst.url + path, json=body, headers=headers) as resp:
        assert resp.status == 200
        text = (await resp.read()).decode()
    blocks = [b for b in text.split("\n\n") if b.strip()]
    for block in blocks:  # every event the client got is whole JSON
        data = [ln[5:].strip() for ln in block.splitlines() if ln.startswith("data:")]
        assert all(json.loads(d) is not None for d in data), block
    assert "event: error" in blocks[-1] and "inside an event" in blocks[-1], text
    assert "message_stop" not in text and "response.completed" not in text


async def test_a_translated_stream_ending_in_an_upstream_error_is_recorded_as_one(
    upstream: FakeUpstream, start_apex: StartApex,
) -> None:
    """An Anthropic client on an OpenAI channel whose stream ends in the upstream's error
    chunk: counted as upstream_error_event like a passed-through one (it was a success)."""
    inst = await start_apex(one_try(upstream))
    events = [CHAT_EVENTS[0], b'data: {"error": {"message": "upstream overloaded", "type": "server_error"}}\n\n']
    upstream.push(Behaviour(events=events, content_type="text/event-stream"))
    with pytest.raises(anthropic.APIStatusError):
        async with ant(inst).messages.stream(model="gpt-4o", max_tokens=5, messages=USER) as s:  # type: ignore[arg-type]
            await s.get_final_message()
    errors: float | None = None
    for _ in range(50):
        errors = inst.gateway.metrics.registry.get_sample_value("apex_errors_total", {
            "router": "default", "model": "unmatched", "team_id": "none", "channel": "oa", "error_type": "upstream_error_event"})
        if errors:
            break
        await asyncio.sleep(0.02)
    assert errors == 1


async def test_n_above_one_on_a_gemini_channel_is_a_400_in_openais_shape(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """The OpenAI SDK asking n=2 of a Gemini channel gets a 400 naming n (Gemini would bill
    two candidates and the answer carry one); nothing reaches the upstream."""
    cfg = one_try(upstream)
    cfg["channels"].append({"name": "gm", "provider_type": "gemini", "base_url": upstream.url, "api_key": "AIza-upstream-gm-000000"})
    cfg["routers"][0]["rules"].insert(0, {"match": {"model": "gemini-*"}, "channels": [{"name": "gm"}]})
    inst = await start_apex(cfg)
    with pytest.raises(openai.BadRequestError) as info:
        await oai(inst).chat.completions.create(model="gemini-2.5-flash", messages=USER, n=2)  # type: ignore[arg-type]
    assert info.value.body["param"] == "n" and "n > 1" in info.value.body["message"]  # type: ignore[index]
    assert not upstream.requests


@pytest.mark.parametrize("strategy", ["priority", "round_robin"])
async def test_a_request_one_channel_cannot_carry_goes_to_one_that_can(upstream: FakeUpstream, start_apex: StartApex,
                                                                        strategy: str) -> None:
    """n=2 on a rule of a Gemini and an OpenAI channel: the Gemini channel's translation refuses
    it, so the OpenAI channel serves it (a priority rule answered 400 every time, a round-robin
    one every other time), and the Gemini channel's health is untouched."""
    cfg = one_try(upstream)
    cfg["channels"].append({"name": "gm", "provider_type": "gemini", "base_url": upstream.url, "api_key": "AIza-upstream-gm-000000"})
    cfg["routers"][0]["rules"].insert(0, {"match": {"model": "mix"}, "strategy": strategy,
                                          "channels": [{"name": "gm"}, {"name": "oa"}]})
    inst = await start_apex(cfg)
    for _ in range(4):
        done = await oai(inst).chat.completions.with_raw_response.create(model="mix", messages=USER, n=2)  # type: ignore[arg-type]
        assert done.headers["x-apex-channel"] == "oa" and done.headers["x-apex-attempts"] == "1"
    assert all(r.path.endswith("/chat/completions") for r in upstream.requests)
    assert inst.gateway.snapshot.health.is_available("gm", inst.gateway.clock())
    # Skipping a channel that cannot carry the request is no fallback (nothing was sent to it).
    assert "apex_fallback_total{" not in (inst.gateway.metrics_response().text or "")


async def test_a_request_no_channel_can_carry_is_the_first_refusal(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """When every channel of the route refuses to translate it, the client gets the first refusal's 400."""
    cfg = one_try(upstream)
    cfg["channels"].append({"name": "gm", "provider_type": "gemini", "base_url": upstream.url, "api_key": "AIza-upstream-gm-000000"})
    cfg["routers"][0]["rules"].insert(0, {"match": {"model": "mix"}, "strategy": "priority",
                                          "channels": [{"name": "gm"}, {"name": "an"}]})
    inst = await start_apex(cfg)
    with pytest.raises(openai.BadRequestError) as info:
        await oai(inst).chat.completions.create(model="mix", messages=USER, n=2)  # type: ignore[arg-type]
    assert info.value.body["param"] == "n" and "Gemini" in info.value.body["message"]  # type: ignore[index]
    assert not upstream.requests


@pytest.mark.parametrize("model", ["gpt-4o", "claude-x"])
async def test_a_malformed_answer_body_names_the_channel_and_where(upstream: FakeUpstream, start_apex: StartApex,
                                                                   model: str) -> None:
    """A 200 whose body is cut short said only "upstream answered with a malformed body": it now
    says which channel and host:port, as transport errors do."""
    inst = await start_apex(one_try(upstream))
    upstream.push(Behaviour(body=b'{"id": "c1", "choices": [{"index": 0, "mess'))
    with pytest.raises(openai.APIStatusError) as caught:
        await oai(inst, "vk-default").with_options(max_retries=0).chat.completions.create(
            model=model, messages=USER)  # type: ignore[arg-type]
    host = upstream.url.split("//", 1)[1].split("/", 1)[0]
    assert caught.value.status_code == 502
    message = str(caught.value)
    assert f"bad answer from {host}" in message and ("channel oa" in message or "channel an" in message), message
