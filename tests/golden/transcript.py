"""Test support for golden transcripts: load captures, run translators, read client events.

Client-side checks use the official SDKs' own types and accumulators, so "the SDK accepts
it" is what the golden tests assert, not a hand-written idea of the format.
"""

from __future__ import annotations

import json
from typing import Any

from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from openai.lib.streaming.chat._completions import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from apex.sse import SseParser
from apex.translate.base import StreamTranslator, TranslateContext, Translator
from tests.fixtures import REAL


CLIENT_MODEL = "client-alias"

_ANTHROPIC_EVENT: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
_RESPONSES_EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


def capture(name: str) -> bytes:
    """The bytes of one real capture."""
    return (REAL / name).read_bytes()


def make_ctx(**overrides: Any) -> TranslateContext:
    """A TranslateContext with fixed, recognisable values."""
    ctx = TranslateContext(client_model=CLIENT_MODEL, upstream_model="upstream-model",
                           stream=True, request_id="req123", estimated_input_tokens=99)
    ctx.extras["created"] = 1_700_000_000
    for key, value in overrides.items():
        setattr(ctx, key, value)
    return ctx


def feed_bytes(stream: StreamTranslator, pieces: list[bytes]) -> bytes:
    """Feed upstream byte pieces through an SseParser into ``stream``; then EOF."""
    parser = SseParser()
    out: list[bytes] = []
    for piece in pieces:
        for event in parser.feed(piece):
            out.extend(stream.feed(event))
    for event in parser.flush():
        out.extend(stream.feed(event))
    out.extend(stream.finish())
    return b"".join(out)


def run_stream(translator: Translator, upstream: bytes, ctx: TranslateContext | None = None) -> bytes:
    """Translate a whole upstream SSE body in one piece."""
    return feed_bytes(translator.stream(ctx or make_ctx()), [upstream])


def client_events(out: bytes) -> list[tuple[str | None, Any]]:
    """Client SSE bytes -> (event name, decoded JSON or the string '[DONE]')."""
    parser = SseParser()
    events = parser.feed(out) + parser.flush()
    return [(e.event, "[DONE]" if e.data == b"[DONE]" else json.loads(e.data)) for e in events]


def openai_data(out: bytes) -> list[Any]:
    """The data payloads of an OpenAI Chat client stream."""
    return [data for _, data in client_events(out)]


def accumulate_openai(out: bytes) -> ChatCompletion:
    """Run OpenAI chunks through the OpenAI SDK's accumulator (validates every chunk)."""
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for data in openai_data(out):
        if data == "[DONE]" or "error" in data:
            continue
        state.handle_chunk(ChatCompletionChunk.model_validate(data))
    return state.get_final_completion()


def accumulate_anthropic(out: bytes) -> Message:
    """Run Anthropic events through the Anthropic SDK's accumulator (validates each event)."""
    snapshot: Any = None
    json_bufs: dict[int, bytes] = {}
    for name, data in client_events(out):
        assert name == data["type"], "event name and data type differ"
        if name == "error":
            continue
        snapshot = accumulate_event(event=_ANTHROPIC_EVENT.validate_python(data),
                                    current_snapshot=snapshot, json_bufs=json_bufs)
    assert snapshot is not None
    return Message.model_validate(snapshot.model_dump())


def check_block_discipline(out: bytes) -> None:
    """P12: start, deltas of the block's kind, stop; indices strictly increasing, no reuse."""
    open_index: int | None = None
    open_type = ""
    next_index = 0
    kinds = {"text": {"text_delta"}, "thinking": {"thinking_delta", "signature_delta"},
             "tool_use": {"input_json_delta"}}
    for name, data in client_events(out):
        if name == "content_block_start":
            assert open_index is None, "a block started before the previous one stopped"
            assert data["index"] == next_index, "block indices must be 0, 1, 2..."
            open_index, open_type = data["index"], data["content_block"]["type"]
            next_index += 1
        elif name == "content_block_delta":
            assert data["index"] == open_index, "delta for a block that is not open"
            assert data["delta"]["type"] in kinds[open_type], "delta of the wrong kind"
            if data["delta"]["type"] == "text_delta":
                assert data["delta"]["text"], "empty text delta"
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
        elif name in ("message_delta", "message_stop"):
            assert open_index is None, "message ended with an open block"


def responses_events(out: bytes) -> list[Any]:
    """Validate Responses events with the OpenAI SDK types; return decoded data."""
    events = client_events(out)
    for number, (name, data) in enumerate(events):
        assert name == data["type"]
        assert data["sequence_number"] == number
        _RESPONSES_EVENT.validate_python(data)
    return [data for _, data in events]


def upstream_events(name: str) -> list[tuple[str | None, Any]]:
    """The capture's own events decoded with the stdlib (an independent oracle)."""
    parser = SseParser()
    events = parser.feed(capture(name)) + parser.flush()
    return [(e.event, "[DONE]" if e.data == b"[DONE]" else json.loads(e.data)) for e in events]
