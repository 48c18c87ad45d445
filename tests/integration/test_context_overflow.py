"""A prompt over the model's context window, refused by each upstream in its own words, reaches
every client in the words that client acts on: OpenAI's code ``context_length_exceeded`` (Codex
tells the user and compacts on it, in an HTTP 400 or a Responses stream's ``response.failed``),
Anthropic's "prompt is too long" (Claude Code compacts on it), Gemini's 400 INVALID_ARGUMENT.
It is the client's request: answered once, no failover, no verdict on the channel.

The fakes answer with the real APIs' bodies: Anthropic's invalid_request_error, Gemini's
INVALID_ARGUMENT, Bedrock's ValidationException (as a 400 and as a stream's exception frame),
vLLM's OpenAI-shaped error whose ``code`` is the HTTP status.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest
from aiohttp import web
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.conftest import ApexInstance, StartApex, ant, oai
from tests.integration.cloud_fakes import CloudFake, bedrock_exception
from tests.integration.fakes import CONTEXT_OVERFLOW, Behaviour, FakeUpstream, context_overflow

BEDROCK_KEY = "ABSK-test-key"
BEDROCK_WORDS = "Input is too long for requested model."
# The model each upstream is asked through, and the words it refuses the prompt in.
MODEL = {"openai": "gpt-big", "vllm": "qwen-big", "anthropic": "claude-big", "gemini": "gemini-big", "bedrock": "nova-big"}
WORDS = {"openai": "maximum context length is 128000 tokens", "vllm": "maximum context length is 32768 tokens",
         "anthropic": "prompt is too long: 210000 tokens > 200000 maximum",
         "gemini": "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
         "bedrock": BEDROCK_WORDS}
TRANSLATED_FOR_OPENAI = ("anthropic", "gemini", "vllm", "bedrock")


def config(upstream: FakeUpstream, cloud: CloudFake) -> dict[str, Any]:
    return {
        "global": {"auth": {"keys": ["k"]}, "retries": {"max_attempts": 1}},
        "logging": {"level": "error"},
        "channels": [
            {"name": "oa", "provider_type": "openai", "base_url": upstream.openai_url, "api_key": "sk-oa", "models": ["gpt-big"]},
            {"name": "vl", "provider_type": "openai_compatible", "base_url": upstream.openai_url, "models": ["qwen-big"]},
            {"name": "an", "provider_type": "anthropic", "base_url": upstream.url, "api_key": "sk-ant", "models": ["claude-big"]},
            {"name": "gm", "provider_type": "gemini", "base_url": upstream.url, "api_key": "g-key",
             "model_map": {"gemini-big": "gemini-2.5-pro"}, "models": ["gemini-big"]},
            {"name": "br", "provider_type": "bedrock", "region": "us-west-2", "base_url": cloud.url, "api_key": BEDROCK_KEY,
             "model_map": {"nova-big": "amazon.nova-pro-v1:0", "claude-br": "us.anthropic.claude-sonnet-4-20250514-v1:0"},
             "models": ["nova-big", "claude-br"]},
        ],
        "routers": [{"name": "r", "channels": [{"name": n} for n in ("oa", "vl", "an", "gm", "br")]}],
    }


@pytest.fixture
async def apex(upstream: FakeUpstream, cloud: CloudFake, start_apex: StartApex) -> ApexInstance:
    cloud.bedrock_api_key = BEDROCK_KEY
    return await start_apex(config(upstream, cloud))


def refuse(kind: str, upstream: FakeUpstream, cloud: CloudFake) -> None:
    """The next request to ``kind``'s upstream is refused as over the context window."""
    if kind == "bedrock":
        cloud.next_error = web.json_response({"message": BEDROCK_WORDS}, status=400, headers={
            "x-amzn-ErrorType": "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"})
    else:
        upstream.push(context_overflow(kind))


# A Chat client on vLLM speaks vLLM's own protocol: its body passes through as sent.
_OPENAI_CASES = [(kind, protocol) for kind in TRANSLATED_FOR_OPENAI for protocol in ("chat", "responses")
                 if (kind, protocol) != ("vllm", "chat")]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("kind", "protocol"), _OPENAI_CASES)
async def test_an_openai_client_gets_context_length_exceeded(apex: ApexInstance, upstream: FakeUpstream, cloud: CloudFake,
                                                            kind: str, protocol: str, stream: bool) -> None:
    """Chat and Responses clients (Codex) get 400 invalid_request_error with code
    context_length_exceeded and the upstream's words; they got code null (and "400", Gemini's
    HTTP status, from Gemini), so Codex printed the raw JSON instead of compacting."""
    refuse(kind, upstream, cloud)
    client = oai(apex, "k")
    with pytest.raises(openai.BadRequestError) as err:
        if protocol == "chat":
            await client.chat.completions.create(model=MODEL[kind], messages=[{"role": "user", "content": "hi"}], stream=stream)
        else:
            await client.responses.create(model=MODEL[kind], input="hi", stream=stream)
    assert err.value.code == "context_length_exceeded"  # a BadRequestError: HTTP 400
    assert isinstance(err.value.body, dict) and WORDS[kind] in err.value.body["message"]
    if kind != "vllm":  # an OpenAI-shaped upstream keeps its own type (vLLM's "BadRequestError")
        assert err.value.body["type"] == "invalid_request_error"


async def test_an_upstreams_http_status_is_never_an_openai_code(apex: ApexInstance, upstream: FakeUpstream) -> None:
    """Gemini's error ``code`` is its HTTP status (400): an OpenAI client's ``code`` is one of
    OpenAI's words or null, and it got "400"."""
    upstream.push(Behaviour(status=400, body=json.dumps({"error": {
        "code": 400, "message": "Request contains an invalid argument.", "status": "INVALID_ARGUMENT"}}).encode()))
    with pytest.raises(openai.BadRequestError) as err:
        await oai(apex, "k").chat.completions.create(model="gemini-big", messages=[{"role": "user", "content": "hi"}])
    assert err.value.code is None and "Request contains an invalid argument." in err.value.message


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("kind", ["openai", "vllm", "gemini", "bedrock"])
async def test_an_anthropic_client_reads_prompt_is_too_long(apex: ApexInstance, upstream: FakeUpstream, cloud: CloudFake,
                                                           kind: str, stream: bool) -> None:
    """Claude Code compacts on Anthropic's words, "prompt is too long": an overflow from
    OpenAI, vLLM, Gemini or Bedrock says them first, the upstream's own words after."""
    refuse(kind, upstream, cloud)
    client = ant(apex, "k")
    messages: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.BadRequestError) as err:
        if stream:
            async with client.messages.stream(model=MODEL[kind], max_tokens=50, messages=messages) as s:
                await s.get_final_message()
        else:
            await client.messages.create(model=MODEL[kind], max_tokens=50, messages=messages)
    body = err.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "invalid_request_error"
    message = body["error"]["message"]
    assert message.startswith("prompt is too long: ") and WORDS[kind] in message


async def test_anthropics_own_overflow_reaches_an_anthropic_client_as_sent(apex: ApexInstance, upstream: FakeUpstream) -> None:
    """Client and upstream speak Anthropic: Anthropic's body, untouched (no second prefix)."""
    upstream.push(context_overflow("anthropic"))
    with pytest.raises(anthropic.BadRequestError) as err:
        await ant(apex, "k").messages.create(model="claude-big", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert err.value.body == CONTEXT_OVERFLOW["anthropic"]


@pytest.mark.parametrize("kind", ["openai", "anthropic", "bedrock"])
async def test_a_gemini_client_gets_invalid_argument(apex: ApexInstance, upstream: FakeUpstream, cloud: CloudFake,
                                                     kind: str) -> None:
    """google-genai gets Gemini's own shape for an overflow: 400 INVALID_ARGUMENT, the upstream's words."""
    refuse(kind, upstream, cloud)
    client = genai.Client(api_key="k", http_options=types.HttpOptions(
        base_url=apex.url, retry_options=types.HttpRetryOptions(attempts=1)))
    try:
        with pytest.raises(genai_errors.ClientError) as err:
            await client.aio.models.generate_content(model=MODEL[kind], contents="hi")
    finally:
        await client.aio.aclose()
    assert err.value.code == 400 and err.value.status == "INVALID_ARGUMENT"
    assert WORDS[kind] in (err.value.message or "")


async def test_an_overflow_inside_a_bedrock_stream_fails_a_responses_stream_with_the_code(
        apex: ApexInstance, cloud: CloudFake) -> None:
    """Bedrock may refuse the prompt in the stream (a validationException frame after HTTP 200):
    Codex reads ``response.failed`` and keys on its ``error.code``, which was invalid_prompt.
    (The SDK's type lists fewer codes than OpenAI sends: ``context_length_exceeded`` is one.)"""
    cloud.stream_frames = [bedrock_exception("validationException", BEDROCK_WORDS)]
    stream = await oai(apex, "k").responses.create(model="claude-br", input="hi", stream=True)
    failed = [ev async for ev in stream if ev.type == "response.failed"]
    assert len(failed) == 1
    error = failed[0].response.error
    assert error is not None and str(error.code) == "context_length_exceeded" and BEDROCK_WORDS in error.message


async def test_an_overflow_inside_a_bedrock_stream_ends_a_chat_stream_with_the_code(
        apex: ApexInstance, cloud: CloudFake) -> None:
    """The same in-stream refusal reaches a Chat stream as ``data: {"error": ...}`` with code
    context_length_exceeded (it carried Anthropic's error type, invalid_request_error)."""
    cloud.stream_frames = [bedrock_exception("validationException", BEDROCK_WORDS)]
    stream = await oai(apex, "k").chat.completions.create(
        model="claude-br", messages=[{"role": "user", "content": "hi"}], stream=True)
    with pytest.raises(openai.APIError) as err:
        async for _ in stream:
            pass
    assert err.value.code == "context_length_exceeded" and BEDROCK_WORDS in err.value.message


async def test_an_overflow_inside_a_bedrock_stream_reaches_an_anthropic_client_in_anthropics_words(
        apex: ApexInstance, cloud: CloudFake) -> None:
    """Claude on Bedrock, an Anthropic client: the stream's error event says "prompt is too
    long" before Bedrock's own words (it said only "validationException: Input is too long...")."""
    cloud.stream_frames = [bedrock_exception("validationException", BEDROCK_WORDS)]
    with pytest.raises(anthropic.APIStatusError) as err:
        async with ant(apex, "k").messages.stream(model="claude-br", max_tokens=50,
                                                  messages=[{"role": "user", "content": "hi"}]) as s:
            await s.get_final_message()
    body = err.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"] == f"prompt is too long: validationException: {BEDROCK_WORDS}"


async def test_an_overflow_is_the_clients_request_not_a_channel_failure(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """Answered once: no failover to the next channel, and the channel is not cooled down even
    with a failure threshold of one (the next request goes to it)."""
    second = FakeUpstream()
    await second.start()
    try:
        cfg: dict[str, Any] = {
            "global": {"auth": {"keys": ["k"]}, "retries": {"max_attempts": 3, "backoff_ms": 1, "max_backoff_ms": 5},
                       "health": {"failure_threshold": 1, "cooldown_ms": 60000}},
            "logging": {"level": "error"},
            "channels": [
                {"name": "gm", "provider_type": "gemini", "base_url": upstream.url, "api_key": "g-key"},
                {"name": "oa", "provider_type": "openai", "base_url": second.openai_url, "api_key": "sk-oa"},
            ],
            "routers": [{"name": "r", "strategy": "priority", "channels": [{"name": "gm"}, {"name": "oa"}]}],
        }
        inst = await start_apex(cfg)
        upstream.push(context_overflow("gemini"))
        client = oai(inst, "k")
        with pytest.raises(openai.BadRequestError) as err:
            await client.chat.completions.create(model="gemini-2.5-pro", messages=[{"role": "user", "content": "hi"}])
        assert err.value.code == "context_length_exceeded"
        assert (upstream.hits(), second.hits()) == (1, 0)
        reply = await client.chat.completions.with_raw_response.create(
            model="gemini-2.5-pro", messages=[{"role": "user", "content": "hi"}])
        assert reply.headers["x-apex-channel"] == "gm" and second.hits() == 0
    finally:
        await second.stop()
