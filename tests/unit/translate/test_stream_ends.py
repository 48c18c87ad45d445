"""How the stream readers judge an upstream stream's end and its error events."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from apex.sse import SseParser
from apex.translate.neutral.parts import Ended, Failed, Finished, PartReader
from apex.translate.neutral.signatures import SignatureStore
from apex.translate.read.anthropic import AnthropicReader
from apex.translate.read.gemini import GeminiReader
from apex.translate.read.openai import OpenAIChatReader


def _event(name: str, data: dict[str, object]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def test_a_claude_stream_that_said_why_it_stopped_is_whole_without_message_stop() -> None:
    """The stop reason and usage arrived, then EOF without message_stop: the answer is whole
    (passed through it already counted as complete); translated it ended in an error event
    after finish_reason stop, and Gemini clients got a 500."""
    raw = b"".join([
        _event("message_start", {"type": "message_start", "message": {
            "id": "m", "type": "message", "role": "assistant", "model": "c", "content": [],
            "usage": {"input_tokens": 3, "output_tokens": 1}}}),
        _event("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}}),
        _event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": "hi"}}),
        _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                 "usage": {"output_tokens": 2}}),
    ])
    reader = AnthropicReader()
    parts = [p for ev in SseParser().feed(raw) for p in reader.feed(ev)]
    assert any(isinstance(p, Finished) for p in parts)
    end = reader.finish()
    assert [type(p) for p in end] == [Ended]
    cut = AnthropicReader()  # no stop reason: still a cut stream
    for ev in SseParser().feed(raw.rsplit(b"event: message_delta", 1)[0]):
        cut.feed(ev)
    assert any(isinstance(p, Failed) for p in cut.finish())


def test_a_gemini_error_chunk_is_the_upstreams_own_error_event() -> None:
    """Labelled upstream_error_event like the other upstreams' (it was api_error)."""
    reader = GeminiReader("call_", SignatureStore())
    raw = b'data: {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}\n\n'
    parts = [p for ev in SseParser().feed(raw) for p in reader.feed(ev)]
    failed = [p for p in parts if isinstance(p, Failed)]
    assert failed and failed[0].upstream_event


@pytest.mark.parametrize(("reader", "raw"), [
    (AnthropicReader, _event("error", {"type": "error", "error": {
        "type": "invalid_request_error", "message": "prompt is too long: 210000 tokens > 200000 maximum"}})),
    (lambda: GeminiReader("call_", SignatureStore()), b'data: {"error": {"code": 400, "status": "INVALID_ARGUMENT", '
     b'"message": "The input token count exceeds the maximum number of tokens allowed (1048576)."}}\n\n'),
    (OpenAIChatReader, b'data: {"error": {"message": "This model\'s maximum context length is 32768 tokens. However, '
     b'you requested 40000 tokens.", "type": "BadRequestError", "param": null, "code": 400}}\n\n'),
])
def test_an_overflow_in_a_stream_carries_context_length_exceeded(reader: Callable[[], PartReader], raw: bytes) -> None:
    """An upstream's in-stream refusal of a prompt over the context window, in its own words,
    is a Failed with OpenAI's code: the writers say it in each client's (Codex keys on it in
    response.failed). It carried the upstream's type, its RPC status or nothing."""
    r = reader()
    failed = [p for ev in SseParser().feed(raw) for p in r.feed(ev) if isinstance(p, Failed)]
    assert [(f.kind, f.code) for f in failed] == [("invalid_request", "context_length_exceeded")]


def test_another_refusal_in_a_stream_keeps_its_own_code() -> None:
    """Not every invalid request is an overflow; an HTTP status is no OpenAI code."""
    raw = b'data: {"error": {"message": "Invalid tool schema", "type": "BadRequestError", "param": null, "code": 400}}\n\n'
    r = OpenAIChatReader()
    failed = [p for ev in SseParser().feed(raw) for p in r.feed(ev) if isinstance(p, Failed)]
    assert [(f.kind, f.code) for f in failed] == [("invalid_request", None)]
