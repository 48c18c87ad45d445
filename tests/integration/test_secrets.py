"""A channel's credentials never come back out of Apex (issue 13, items 1 and 2).

Upstreams that quote the key they were given (OpenAI's 401 "Incorrect API key provided",
OpenAI-compatible servers that echo it whole, a stream error event) are played by the fake
upstream; the answer each SDK gets and every log line are searched for the key.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import StartApex, ant, oai
from tests.integration.fakes import Behaviour, FakeUpstream, error

KEY = "sk-upstream-SECRET-0123456789abcdef"
ORG_HEADER = "org-injected-SECRET-value"


def config(up: FakeUpstream) -> dict[str, Any]:
    return {
        "global": {"auth": {"keys": ["k"]}, "retries": {"max_attempts": 1, "backoff_ms": 1}},
        "logging": {"level": "warning"},
        "channels": [
            {"name": "oa", "provider_type": "openai", "base_url": up.openai_url, "api_key": KEY,
             "headers": {"OpenAI-Organization": ORG_HEADER}},
            {"name": "an", "provider_type": "anthropic", "base_url": up.url, "api_key": KEY,
             "headers": {"x-org": ORG_HEADER}},
        ],
        "routers": [{"name": "r", "rules": [{"match": {"model": "claude-*"}, "channels": [{"name": "an"}]}],
                     "channels": [{"name": "oa"}]}],
    }


def leaky(status: int, family: str = "openai") -> Behaviour:
    """An error body quoting the key and the injected header, JSON-escaped like a real server would."""
    return error(status, f"Incorrect API key provided: {KEY}. Organization {ORG_HEADER} / Bearer {KEY}", family=family)


def assert_clean(text: str) -> None:
    assert KEY not in text and "SECRET" not in text, text


@pytest.mark.parametrize("status", [401, 400, 500])
async def test_openai_error_message_is_scrubbed(upstream: FakeUpstream, start_apex: StartApex,
                                                caplog: pytest.LogCaptureFixture, status: int) -> None:
    inst = await start_apex(config(upstream))
    upstream.persistent = leaky(status)
    with caplog.at_level(logging.DEBUG), pytest.raises(openai.APIStatusError) as info:
        await oai(inst, "k").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    body = info.value.response.text
    assert "Incorrect API key provided" in body  # the message itself still reaches the client
    assert "[redacted]" in body
    assert_clean(body)
    assert_clean(caplog.text)
    assert upstream.requests[0].headers["Authorization"] == f"Bearer {KEY}"  # the key did go upstream


async def test_translated_error_is_scrubbed(upstream: FakeUpstream, start_apex: StartApex,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """An Anthropic client on an OpenAI channel: the translated error is scrubbed too."""
    inst = await start_apex(config(upstream))
    upstream.persistent = leaky(400)
    with caplog.at_level(logging.DEBUG), pytest.raises(anthropic.APIStatusError) as info:
        await ant(inst, "k").messages.create(model="gpt-4o", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert_clean(info.value.response.text)
    assert "Incorrect API key provided" in info.value.response.text
    assert_clean(caplog.text)


async def test_anthropic_native_error_is_scrubbed(upstream: FakeUpstream, start_apex: StartApex,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    inst = await start_apex(config(upstream))
    upstream.persistent = leaky(401, family="anthropic")
    with caplog.at_level(logging.DEBUG), pytest.raises(anthropic.APIStatusError) as info:
        await ant(inst, "k").messages.create(model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert_clean(info.value.response.text)
    assert_clean(caplog.text)


def _error_event(family: str) -> bytes:
    msg = f"invalid key {KEY}"
    if family == "anthropic":
        return b"event: error\ndata: " + json.dumps({"type": "error", "error": {"type": "api_error", "message": msg}}).encode() + b"\n\n"
    return b"data: " + json.dumps({"error": {"message": msg, "type": "server_error"}}).encode() + b"\n\n"


async def test_stream_error_events_are_scrubbed(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """Mid-stream error events quoting the key: pass-through (OpenAI, Anthropic) and translated."""
    inst = await start_apex(config(upstream))
    first_oa = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
    first_an = (b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","type":"message","role":"assistant",'
                b'"model":"claude-x","content":[],"stop_reason":null,"usage":{"input_tokens":3,"output_tokens":1}}}\n\n')
    cases = [
        ("openai", "gpt-4o", [first_oa, _error_event("openai")]),
        ("anthropic", "claude-x", [first_an, _error_event("anthropic")]),
        ("anthropic", "gpt-4o", [first_oa, _error_event("openai")]),  # translated: OpenAI upstream, Anthropic client
        ("openai", "claude-x", [first_an, _error_event("anthropic")]),  # translated the other way
    ]
    import aiohttp

    async with aiohttp.ClientSession() as s:
        for client, model, events in cases:
            upstream.push(Behaviour(content_type="text/event-stream", events=events))
            path = "/v1/messages" if client == "anthropic" else "/v1/chat/completions"
            async with s.post(inst.url + path, headers={"Authorization": "Bearer k", "anthropic-version": "2023-06-01"},
                              json={"model": model, "stream": True, "max_tokens": 5,
                                    "messages": [{"role": "user", "content": "x"}]}) as r:
                text = (await r.read()).decode()
            assert r.status == 200, text
            assert "invalid key" in text, (client, model, text)
            assert_clean(text)


SLASHY_KEY = "AKIAEXAMPLE/SECRET+part=="  # the shape of an AWS secret or a base64 key


@pytest.mark.parametrize("spelling", [
    SLASHY_KEY,
    "AKIAEXAMPLE%2FSECRET%2Bpart%3D%3D",  # percent-encoded, as in ?key= or a proxy URL
    "AKIAEXAMPLE%2fSECRET%2bpart%3d%3d",  # lower-case escapes
    "AKIAEXAMPLE/SECRET%2Bpart%3D%3D",    # '/' left as is (urllib's default)
])
async def test_url_encoded_key_in_an_upstream_error_is_scrubbed(
    upstream: FakeUpstream, start_apex: StartApex, caplog: pytest.LogCaptureFixture, spelling: str
) -> None:
    """An upstream quoting the key the way it appeared in a URL gets it scrubbed too."""
    cfg = config(upstream)
    cfg["channels"][0]["api_key"] = SLASHY_KEY
    inst = await start_apex(cfg)
    upstream.persistent = error(403, f"key {spelling} is not allowed for https://x/?key={spelling}")
    with caplog.at_level(logging.DEBUG), pytest.raises(openai.APIStatusError) as info:
        await oai(inst, "k").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    body = info.value.response.text
    assert "[redacted]" in body
    assert "SECRET" not in body and "SECRET" not in caplog.text, body


OTHER_KEY = "sk-proj-OTHERKEY999abcdef"  # not the channel's: caught by its shape


async def test_key_shapes_in_a_translated_error_and_its_log_line_are_redacted(
    upstream: FakeUpstream, start_apex: StartApex, caplog: pytest.LogCaptureFixture
) -> None:
    """A key that is not the channel's own (another tenant's, quoted by an upstream) is
    redacted by its shape on translated answers and in the log, as on native ones."""
    inst = await start_apex(config(upstream))
    upstream.persistent = error(400, f"bad request for key {OTHER_KEY}")
    with caplog.at_level(logging.DEBUG), pytest.raises(anthropic.APIStatusError) as info:
        await ant(inst, "k").messages.create(model="gpt-4o", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    text = info.value.response.text
    assert "bad request for key [redacted]" in text, text
    assert OTHER_KEY not in text and OTHER_KEY not in caplog.text
    assert "bad request for key" in caplog.text  # the log line is there, scrubbed


@pytest.mark.parametrize("translated", [True, False])
async def test_key_shapes_in_a_stream_error_event_are_redacted(upstream: FakeUpstream, start_apex: StartApex,
                                                                translated: bool) -> None:
    """An upstream's error event inside a 200 stream quoting a key (not the channel's own) reaches
    the client redacted, translated (Anthropic client, OpenAI channel) or passed through: only
    HTTP error answers were scrubbed by shape."""
    inst = await start_apex(config(upstream))
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "par"}, "finish_reason": None}]}
    failure = {"error": {"message": f"Incorrect API key provided: {OTHER_KEY}", "type": "server_error", "code": None}}
    upstream.push(Behaviour(content_type="text/event-stream",
                            events=[b"data: " + json.dumps(e).encode() + b"\n\n" for e in (chunk, failure)]))
    body: Any = {"model": "gpt-4o", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "x"}]}
    if translated:
        r = await ant(inst, "k").messages.with_raw_response.create(**body)
    else:
        r = await oai(inst, "k").chat.completions.with_raw_response.create(**body)
    text = (await r.http_response.aread()).decode()
    assert "Incorrect API key provided: [redacted]" in text, text
    assert OTHER_KEY not in text


def _data(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


_CREATED = {"type": "response.created", "sequence_number": 0,
            "response": {"id": "resp_1", "object": "response", "created_at": 1, "status": "in_progress",
                         "model": "gpt-4o", "output": []}}


async def test_stream_errors_in_shapes_apex_does_not_know_are_scrubbed(upstream: FakeUpstream,
                                                                     start_apex: StartApex) -> None:
    """Pass-through scrubbed only events it recognised as errors: a Chat {"object": "error"}
    event, or a Responses error written without an event: line (the SDK reads the type from
    the JSON), reached the client with the channel's key in it."""
    inst = await start_apex(config(upstream))
    first = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
    upstream.push(Behaviour(content_type="text/event-stream",
                            events=[first, _data({"object": "error", "message": f"invalid key {KEY}"})]))
    stream = await oai(inst, "k").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}],
                                                     stream=True)
    seen: list[str] = []
    with pytest.raises(openai.APIError) as err:  # the SDK raises on the error event; either way, no key
        seen.extend([chunk.model_dump_json() async for chunk in stream])
    assert_clean(str(err.value) + "".join(seen))
    upstream.push(Behaviour(content_type="text/event-stream",
                            events=[_data(_CREATED), _data({"type": "error", "code": "invalid_api_key",
                                                            "message": f"Incorrect API key provided: Bearer {KEY}",
                                                            "param": None, "sequence_number": 1})]))
    events = [e async for e in await oai(inst, "k").responses.create(model="gpt-4o", input="x", stream=True)]
    errors = [e for e in events if e.type == "error"]
    assert errors and "Incorrect API key" in errors[0].message
    assert_clean("".join(e.model_dump_json() for e in events))


async def test_a_data_only_responses_stream_is_whole_and_its_usage_read(upstream: FakeUpstream,
                                                                         start_apex: StartApex) -> None:
    """A compatible server's Responses stream without event: lines: its response.completed was
    not seen, so the client got "ended the stream early" after it and the usage was lost."""
    inst = await start_apex(config(upstream))
    done = {"type": "response.completed", "sequence_number": 1,
            "response": {**_CREATED["response"], "status": "completed",  # type: ignore[dict-item]
                         "usage": {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18}}}
    upstream.push(Behaviour(content_type="text/event-stream", events=[_data(_CREATED), _data(done)]))
    events = [e async for e in await oai(inst, "k").responses.create(model="gpt-4o", input="x", stream=True)]
    assert [e.type for e in events] == ["response.created", "response.completed"]
    import aiohttp

    async with aiohttp.ClientSession() as s, s.get(f"{inst.url}/metrics") as r:
        text = await r.text()
    assert any(line.startswith("apex_tokens_total") and 'type="prompt"' in line and line.endswith(" 11.0")
               for line in text.splitlines()), text


async def test_a_key_written_with_an_escaped_slash_is_scrubbed(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """JSON lets an encoder write / as \\/ (PHP, some Java): the key went out in that spelling."""
    cfg = config(upstream)
    cfg["channels"][0]["api_key"] = SLASHY_KEY
    inst = await start_apex(cfg)
    escaped = SLASHY_KEY.replace("/", "\\/").encode()
    first = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
    upstream.push(Behaviour(content_type="text/event-stream", events=[
        first, b'data: {"error": {"message": "bad key ' + escaped + b'", "type": "invalid_request_error"}}\n\n']))
    import aiohttp

    async with aiohttp.ClientSession() as s, s.post(inst.url + "/v1/chat/completions", headers={"Authorization": "Bearer k"},
                                                    json={"model": "gpt-4o", "stream": True,
                                                          "messages": [{"role": "user", "content": "x"}]}) as r:
        text = (await r.read()).decode()
    assert "bad key" in text and "SECRET" not in text, text


async def test_answers_keep_what_only_looks_like_a_key_or_names_the_app(upstream: FakeUpstream,
                                                                        start_apex: StartApex) -> None:
    """A stream's clean end was scrubbed of key shapes ("task-management-system" became
    "ta[redacted]"), and every header value was scrubbed from streamed answers (the site named
    in OpenRouter's HTTP-Referer became [redacted]). Only credentials leave answers now."""
    cfg = config(upstream)
    cfg["channels"][0]["headers"] = {"HTTP-Referer": "https://myapp.example.com", "X-Title": "Acme Assistant"}
    cfg["channels"].append({"name": "gm", "provider_type": "gemini", "base_url": upstream.url, "api_key": "AIza-upstream-gm-000000"})
    cfg["routers"][0]["rules"].insert(0, {"match": {"model": "gemini-*"}, "channels": [{"name": "gm"}]})
    inst = await start_apex(cfg)
    text = "Open the task-management-system at https://myapp.example.com, then pip install flask-sqlalchemy-utils."
    first = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":'
    upstream.push(Behaviour(content_type="text/event-stream", events=[
        first + json.dumps(text).encode() + b'},"finish_reason":null}]}\n\n',
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
        b"data: [DONE]\n\n"]))
    stream = await oai(inst, "k").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == text
    gemini = {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}],
              "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 20, "totalTokenCount": 23}}
    upstream.push(Behaviour(content_type="text/event-stream", events=[b"data: " + json.dumps(gemini).encode() + b"\r\n\r\n"]))
    done = await oai(inst, "k").responses.create(model="gemini-2.5-flash", input="x", stream=True)
    finals = [e.response.output_text async for e in done if e.type == "response.completed"]
    assert finals == [text]


@pytest.mark.parametrize("scheme", ["Bearer", "Basic"])
async def test_a_credential_given_as_an_authorization_header_is_scrubbed_bare(
        upstream: FakeUpstream, start_apex: StartApex, caplog: pytest.LogCaptureFixture, scheme: str) -> None:
    """A key written as headers: {"Authorization": "Bearer TOKEN"} (what the README suggests for
    servers with their own auth) was registered only whole, and upstreams quote the token
    without its scheme: it reached the client and the log. For Basic, the password inside."""
    import base64

    password = "pw-SECRET-basic-0123456789"
    bearer = "corpSECRETtoken0123456789"  # no key shape: only the channel's secrets can catch it
    token = bearer if scheme == "Bearer" else base64.b64encode(f"svc:{password}".encode()).decode()
    quoted = bearer if scheme == "Bearer" else password
    cfg = config(upstream)
    cfg["channels"][0] = {"name": "oa", "provider_type": "openai_compatible", "base_url": upstream.openai_url,
                          "headers": {"Authorization": f"{scheme} {token}"}}
    inst = await start_apex(cfg)
    upstream.persistent = error(401, f"Incorrect API key provided: {quoted}.")
    with caplog.at_level(logging.DEBUG), pytest.raises(openai.APIStatusError) as info:
        await oai(inst, "k").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    body = info.value.response.text
    assert "Incorrect API key provided: [redacted]" in body
    assert quoted not in body and quoted not in caplog.text


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("client", ["openai", "anthropic"])
async def test_an_answer_quoting_the_channels_key_is_scrubbed_whatever_the_path(
        upstream: FakeUpstream, start_apex: StartApex, client: str, stream: bool) -> None:
    """Only pass-through streams were scrubbed of the channel's credentials: a non-stream answer
    and a translated stream's deltas (an Anthropic client on the OpenAI channel) went out with
    the key an upstream echoed into its answer."""
    inst = await start_apex(config(upstream))
    text = f"your key is {KEY} and that is all"
    if stream:
        upstream.push(Behaviour(content_type="text/event-stream", events=[
            b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,'
            b'"delta":{"role":"assistant","content":' + json.dumps(text).encode() + b'},"finish_reason":null}]}\n\n',
            b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,'
            b'"delta":{"content":" more text follows"},"finish_reason":null}]}\n\n',
            b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,'
            b'"delta":{},"finish_reason":"stop"}]}\n\n',
            b"data: [DONE]\n\n"], gap=0.05))  # one event per chunk: the key's is not the last
    else:
        upstream.push(Behaviour(body=json.dumps({
            "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 9, "total_tokens": 10}}).encode()))
    if client == "openai":
        if stream:
            chunks = await oai(inst, "k").chat.completions.create(model="gpt-4o", stream=True,
                                                                  messages=[{"role": "user", "content": "x"}])
            got = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
        else:
            done = await oai(inst, "k").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
            got = done.choices[0].message.content or ""
    else:
        cfg_model = "gpt-4o"  # the OpenAI channel: an Anthropic client is translated
        if stream:
            async with ant(inst, "k").messages.stream(model=cfg_model, max_tokens=50,
                                                      messages=[{"role": "user", "content": "x"}]) as s:
                streamed = await s.get_final_message()
            got = "".join(b.text for b in streamed.content if b.type == "text")
        else:
            final = await ant(inst, "k").messages.create(model=cfg_model, max_tokens=50,
                                                         messages=[{"role": "user", "content": "x"}])
            got = "".join(b.text for b in final.content if b.type == "text")
    assert "your key is [redacted]" in got
    assert_clean(got)
