"""Bedrock's streamed answers, turned from AWS event-stream frames into SSE events as they arrive.

Bedrock frames a stream in ``application/vnd.amazon.eventstream``: binary messages with a
length prelude, typed headers and CRCs, decoded here by botocore's ``EventStreamBuffer``.
InvokeModelWithResponseStream sends ``chunk`` events whose JSON payload carries the
model's own event base64-encoded in ``bytes`` (for Anthropic models, a Messages stream
event): it becomes ``event: <its type>`` / ``data: <it>``. Other events (ConverseStream's
``messageStart``, ``contentBlockDelta``...) become ``event: <event type>`` with the payload
as data. An exception message (throttling, a model error mid-stream) becomes an Anthropic
``error`` event, so the stream readers end the client's stream with a proper error (a prompt
over the context window in Anthropic's words, "prompt is too long").
The wrapper has the UpstreamReply shape, so the pipeline streams it like any SSE reply.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Final, Protocol

import msgspec
from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError

from apex.errors import CONTEXT_LENGTH_EXCEEDED
from apex.translate.neutral.errortypes import anthropic_error_message, context_overflow
from apex.upstream.base import UpstreamReply
from apex.upstream.http import InvalidResponse
from apex.wire.bedrock import StreamChunk, StreamException, TypedEvent

__all__ = ["EventStreamReply", "FrameTranslator", "event_stream_reply", "frame_to_sse"]


_CHUNK: Final = msgspec.json.Decoder(StreamChunk)
_TYPED: Final = msgspec.json.Decoder(TypedEvent)
_MESSAGE: Final = msgspec.json.Decoder(StreamException)
_ENC: Final = msgspec.json.Encoder()
# Bedrock exception names -> Anthropic error types (what the stream readers understand).
_ERROR_TYPES: Final[dict[str, str]] = {
    "throttlingException": "rate_limit_error",
    "serviceUnavailableException": "overloaded_error",
    "modelNotReadyException": "overloaded_error",
    "validationException": "invalid_request_error",
    "accessDeniedException": "permission_error",
}


def _sse(name: str, data: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def frame_to_sse(msg: EventStreamMessage) -> bytes:
    """One decoded event-stream message as one SSE event."""
    headers: Mapping[str, object] = msg.headers
    kind = headers.get(":message-type")
    if kind == "event":
        event = str(headers.get(":event-type", "message"))
        if event == "chunk":
            try:
                inner = base64.b64decode(_CHUNK.decode(msg.payload).bytes, validate=True)
                name = _TYPED.decode(inner).type
            except (msgspec.DecodeError, msgspec.ValidationError, binascii.Error) as exc:
                raise InvalidResponse(f"a Bedrock stream chunk is not a base64 JSON event: {exc}") from exc
            return _sse(name, inner)
        return _sse(event, bytes(msg.payload))
    # An exception (or error) message: what went wrong mid-stream.
    name = str(headers.get(":exception-type") or headers.get(":error-code") or "internalServerException")
    try:
        decoded = _MESSAGE.decode(msg.payload)
        text = decoded.message or decoded.Message or name
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = str(headers.get(":error-message") or name)
    etype = _ERROR_TYPES.get(name, "api_error")
    message = f"{name}: {text}"
    if etype == "invalid_request_error" and context_overflow("invalid_request", text):
        # "Input is too long for requested model.": in the words an Anthropic client compacts on
        message = anthropic_error_message(message, CONTEXT_LENGTH_EXCEEDED)
    body = {"type": "error", "error": {"type": etype, "message": message}}
    return _sse("error", _ENC.encode(body))


class FrameTranslator(Protocol):
    """Turns decoded frames into SSE bytes; ``end`` adds what the stream's end implies."""

    def frame(self, msg: EventStreamMessage) -> bytes: ...

    def end(self) -> bytes: ...


class _Chunks:
    """InvokeModelWithResponseStream: each chunk carries one model event (stateless)."""

    def frame(self, msg: EventStreamMessage) -> bytes:
        return frame_to_sse(msg)

    def end(self) -> bytes:
        return b""


class EventStreamReply:
    """An UpstreamReply whose body is re-framed from event-stream to SSE as it is read."""

    def __init__(self, reply: UpstreamReply, frames: FrameTranslator | None = None) -> None:
        self._reply = reply
        self._buffer = EventStreamBuffer()
        self._frames: FrameTranslator = frames if frames is not None else _Chunks()
        self._ended = False
        self.status = reply.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._reply.headers

    @property
    def content_type(self) -> str:
        return "text/event-stream"

    @property
    def content(self) -> EventStreamReply:
        return self

    async def readany(self) -> bytes:
        """The SSE events of the next frames; b"" at the end. Never b"" mid-stream: a
        partial frame waits for more bytes."""
        while True:
            data = await self._reply.content.readany()
            if not data:
                if self._ended:
                    return b""
                self._ended = True
                return self._frames.end()
            self._buffer.add_data(data)
            frame = self._frames.frame
            try:
                out = [sse for msg in self._buffer if (sse := frame(msg))]
            except ParserError as exc:
                raise InvalidResponse(f"bad Bedrock event-stream frame: {type(exc).__name__}") from exc
            if out:
                return out[0] if len(out) == 1 else b"".join(out)

    async def read(self) -> bytes:
        out = []
        while chunk := await self.readany():
            out.append(chunk)
        return b"".join(out)

    def release(self) -> object:
        return self._reply.release()

    def close(self) -> None:
        self._reply.close()


def event_stream_reply(reply: UpstreamReply, stream: bool, url: str) -> UpstreamReply:
    """Wrap a 2xx event-stream answer; error answers (JSON) and others pass as they are."""
    if not stream or reply.status >= 300 or "amazon.eventstream" not in reply.content_type:
        return reply
    return EventStreamReply(reply)
