"""The built-in offline provider: answers in-process, in whatever dialect is asked.

Deterministic: the same request gets the same answer, streamed or not (the stream's text
joins to the non-stream text). ``latency_ms`` delays the response headers,
``tokens_per_s`` paces stream chunks (one word per chunk), ``response_text`` replaces the
default echo. It serves chat, messages, responses, count_tokens and embeddings
(deterministic unit vectors). Its replies look like ``aiohttp.ClientResponse`` to the
pipeline, so the mock exercises the same code path as a real upstream.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import struct
import time
from collections.abc import AsyncIterator, Mapping
from typing import Final

import msgspec

from apex.config.model import Channel
from apex.count import count_answer
from apex.errors import InvalidRequest
from apex.sse import DONE_EVENT, encode_event
from apex.tokens import estimate_text_tokens, estimate_tokens
from apex.types import Dialect
from apex.upstream.transport import UpstreamRequest
from apex.wire.gemini import whole
from apex.wire.request import LooseGeminiBatchEmbed, LooseGeminiRequest, LooseMessage, LooseRequest

__all__ = ["MockReply", "mock_reply"]

_ENC: Final = msgspec.json.Encoder()
_EMBED_DIMS: Final = 16
# The real APIs' bounds (OpenAI: dimensions up to text-embedding-3-large's 3,072 and 2,048
# inputs; Gemini: outputDimensionality up to 3,072 and 100 requests a batch): without them one
# request could ask the in-process provider for gigabytes and stop the gateway.
MAX_EMBED_DIMS: Final = 3072
MAX_EMBED_INPUTS: Final = 2048
MAX_GEMINI_BATCH: Final = 100


_REQ: Final = msgspec.json.Decoder(LooseRequest)


_GREQ: Final = msgspec.json.Decoder(LooseGeminiRequest)
_GEMBED: Final = msgspec.json.Decoder(LooseGeminiBatchEmbed)


def _gemini_view(body: bytes) -> LooseRequest:
    """A Gemini request read into the mock's view: last user text as a message, the output limit."""
    try:
        g = _GREQ.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"request body is not valid: {exc}") from exc
    messages = [LooseMessage(role="user" if c.role != "model" else "assistant",
                         content=" ".join(p.text for p in c.parts if p.text)) for c in g.contents]
    limit = g.generation_config.max_output_tokens if g.generation_config else None
    return LooseRequest(messages=messages, max_output_tokens=whole(limit) if limit is not None else None)


def _text_of(content: object) -> str:
    """A message's last text part: what the user typed, after any context a client put first
    (Claude Code leads with a ``<system-reminder>`` block)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        for p in reversed(content):
            t = p.get("text") if isinstance(p, dict) else None
            if isinstance(t, str):
                return t
    return ""


def _last_user_text(req: LooseRequest) -> str:
    for m in reversed(req.messages):
        if m.role == "user":
            return _text_of(m.content)
    if isinstance(req.input, str):
        return req.input
    if isinstance(req.input, list):
        for item in reversed(req.input):
            if isinstance(item, dict) and item.get("role") == "user":
                return _text_of(item.get("content"))
    return ""


class _Body:
    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks

    async def readany(self) -> bytes:
        try:
            return await anext(self._chunks)
        except StopAsyncIteration:
            return b""


class MockReply:
    """A finished-or-streaming in-process reply with ClientResponse's shape."""

    def __init__(self, status: int, content_type: str, chunks: AsyncIterator[bytes]) -> None:
        self.status = status
        self.content_type = content_type
        self.headers: Mapping[str, str] = {"Content-Type": content_type}
        self.content = _Body(chunks)

    async def read(self) -> bytes:
        out = []
        while chunk := await self.content.readany():
            out.append(chunk)
        return b"".join(out)

    def release(self) -> None:
        return None

    def close(self) -> None:
        return None


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _error(message: str) -> MockReply:
    return MockReply(400, "application/json", _one(_ENC.encode({"error": {"message": message, "type": "invalid_request_error"}})))


async def mock_reply(ch: Channel, dialect: Dialect, body: bytes, model: str, stream: bool = False) -> MockReply:
    """Answer ``body`` (a request in ``dialect``) as the upstream would, for model ``model``.

    ``stream`` matters for Gemini only, whose stream flag is in the URL, not the body."""
    if dialect is Dialect.GEMINI_EMBED:
        return _gemini_embeddings(body)
    if dialect is Dialect.GEMINI_GENERATE or dialect is Dialect.GEMINI_COUNT_TOKENS:
        req = _gemini_view(body)
        req.stream = stream
    else:
        try:
            req = _REQ.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvalidRequest(f"request body is not valid: {exc}") from exc
    if ch.latency_ms:
        await asyncio.sleep(ch.latency_ms / 1000)
    if dialect is Dialect.OPENAI_EMBEDDINGS:
        return _embeddings(req, model)
    if dialect is Dialect.ANTHROPIC_COUNT_TOKENS or dialect is Dialect.GEMINI_COUNT_TOKENS:
        # As Apex counts for a channel without a count endpoint: the body checked, then estimated.
        return MockReply(200, "application/json", _one(_ENC.encode(count_answer(dialect, body, estimate_tokens(body)))))
    prompt = _last_user_text(req)
    text = ch.response_text if ch.response_text is not None else f"This is Apex's mock provider. You said: {prompt[:200]}"
    words = [w + " " for w in text.split(" ")]
    words[-1] = words[-1][:-1]
    # 0 is no limit in every dialect: the chain passed a 0 max_tokens on but ended on a 0
    # maxOutputTokens, which left a Gemini stream no word to send (a 502 there, a 200 not streamed).
    limit = req.max_tokens or req.max_completion_tokens or req.max_output_tokens or None
    truncated = limit is not None and limit < len(words)
    if truncated:
        assert limit is not None
        words = words[:limit]
    prompt_tokens = estimate_tokens(body)
    out_tokens = len(words)
    gap = 1.0 / ch.tokens_per_s if ch.tokens_per_s else 0.0
    rid = hashlib.sha256(body).hexdigest()[:24]
    if dialect is Dialect.OPENAI_CHAT:
        return _openai_chat(req, model, words, truncated, prompt_tokens, out_tokens, gap, rid)
    if dialect is Dialect.ANTHROPIC_MESSAGES:
        return _anthropic(req, model, words, truncated, prompt_tokens, out_tokens, gap, rid)
    if dialect is Dialect.OPENAI_RESPONSES:
        return _responses(req, model, words, truncated, prompt_tokens, out_tokens, gap, rid)
    if dialect is Dialect.GEMINI_GENERATE:
        return _gemini(req, model, words, truncated, prompt_tokens, out_tokens, gap, rid)


async def _paced(events: list[bytes], gap: float, first: int) -> AsyncIterator[bytes]:
    for i, ev in enumerate(events):
        if gap and i >= first:
            await asyncio.sleep(gap)
        yield ev


def _openai_chat(req: LooseRequest, model: str, words: list[str], truncated: bool, pin: int, pout: int, gap: float, rid: str) -> MockReply:
    created = int(time.time())
    cid = f"chatcmpl-mock{rid}"
    finish = "length" if truncated else "stop"
    usage = {"prompt_tokens": pin, "completion_tokens": pout, "total_tokens": pin + pout}
    if not req.stream:
        return MockReply(200, "application/json", _one(_ENC.encode({
            "id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(words), "refusal": None},
                         "logprobs": None, "finish_reason": finish}],
            "usage": usage,
        })))

    def chunk(delta: dict[str, object], fin: str | None) -> bytes:
        return encode_event(_ENC.encode({
            "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": fin}],
        }))

    events = [chunk({"role": "assistant", "content": ""}, None)]
    events += [chunk({"content": w}, None) for w in words]
    events.append(chunk({}, finish))
    opts = req.stream_options or {}
    if opts.get("include_usage"):
        events.append(encode_event(_ENC.encode({
            "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": usage,
        })))
    events.append(DONE_EVENT)
    return MockReply(200, "text/event-stream", _paced(events, gap, 2))


def _anthropic(req: LooseRequest, model: str, words: list[str], truncated: bool, pin: int, pout: int, gap: float, rid: str) -> MockReply:
    mid = f"msg_mock{rid}"
    stop = "max_tokens" if truncated else "end_turn"
    if not req.stream:
        return MockReply(200, "application/json", _one(_ENC.encode({
            "id": mid, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": "".join(words)}],
            "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": pin, "output_tokens": pout,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        })))

    def ev(name: str, data: dict[str, object]) -> bytes:
        return encode_event(_ENC.encode(data), name)

    events = [
        ev("message_start", {"type": "message_start", "message": {
            "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": pin, "output_tokens": 1,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
        ev("content_block_start", {"type": "content_block_start", "index": 0,
                                   "content_block": {"type": "text", "text": ""}}),
    ]
    events += [ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta", "text": w}}) for w in words]
    events += [
        ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                             "usage": {"output_tokens": pout}}),
        ev("message_stop", {"type": "message_stop"}),
    ]
    return MockReply(200, "text/event-stream", _paced(events, gap, 3))


def _responses(req: LooseRequest, model: str, words: list[str], truncated: bool, pin: int, pout: int, gap: float, rid: str) -> MockReply:
    created = int(time.time())
    resp_id, msg_id = f"resp_mock{rid}", f"msg_mock{rid}"
    text = "".join(words)
    status = "incomplete" if truncated else "completed"
    usage = {"input_tokens": pin, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
             "output_tokens": pout, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": pin + pout}
    item_done = {"type": "message", "id": msg_id, "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": text, "annotations": []}]}

    def response(st: str, output: list[object], u: object) -> dict[str, object]:
        return {"id": resp_id, "object": "response", "created_at": created, "status": st, "model": model,
                "output": output, "usage": u, "error": None,
                "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],  # required by the SDK's Response
                "incomplete_details": {"reason": "max_output_tokens"} if st == "incomplete" else None}

    if not req.stream:
        return MockReply(200, "application/json", _one(_ENC.encode(response(status, [item_done], usage))))
    seq = 0
    events: list[bytes] = []

    def ev(name: str, data: dict[str, object]) -> None:
        nonlocal seq
        data = {"type": name, "sequence_number": seq, **data}
        seq += 1
        events.append(encode_event(_ENC.encode(data), name))

    ev("response.created", {"response": response("in_progress", [], None)})
    ev("response.in_progress", {"response": response("in_progress", [], None)})
    ev("response.output_item.added", {"output_index": 0, "item": {
        "type": "message", "id": msg_id, "status": "in_progress", "role": "assistant", "content": []}})
    ev("response.content_part.added", {"item_id": msg_id, "output_index": 0, "content_index": 0,
                                       "part": {"type": "output_text", "text": "", "annotations": []}})
    for w in words:
        ev("response.output_text.delta", {"item_id": msg_id, "output_index": 0, "content_index": 0, "delta": w, "logprobs": []})
    ev("response.output_text.done", {"item_id": msg_id, "output_index": 0, "content_index": 0, "text": text, "logprobs": []})
    ev("response.content_part.done", {"item_id": msg_id, "output_index": 0, "content_index": 0,
                                      "part": {"type": "output_text", "text": text, "annotations": []}})
    ev("response.output_item.done", {"output_index": 0, "item": item_done})
    ev(f"response.{status}", {"response": response(status, [item_done], usage)})
    return MockReply(200, "text/event-stream", _paced(events, gap, 4))


def _gemini(req: LooseRequest, model: str, words: list[str], truncated: bool, pin: int, pout: int, gap: float, rid: str) -> MockReply:
    usage = {"promptTokenCount": pin, "candidatesTokenCount": pout, "totalTokenCount": pin + pout}
    finish = "MAX_TOKENS" if truncated else "STOP"

    def chunk(text: str, fin: str | None, with_usage: bool) -> dict[str, object]:
        cand: dict[str, object] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        if fin is not None:
            cand["finishReason"] = fin
        out: dict[str, object] = {"candidates": [cand], "modelVersion": model, "responseId": f"mock{rid}"}
        if with_usage:
            out["usageMetadata"] = usage
        return out

    if not req.stream:
        return MockReply(200, "application/json", _one(_ENC.encode(chunk("".join(words), finish, True))))
    events = [b"data: " + _ENC.encode(chunk(w, finish if i == len(words) - 1 else None, i == len(words) - 1))
              + b"\r\n\r\n" for i, w in enumerate(words)]
    return MockReply(200, "text/event-stream", _paced(events, gap, 1))


def _gemini_embeddings(body: bytes) -> MockReply:
    try:
        batch = _GEMBED.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"request body is not valid: {exc}") from exc
    if len(batch.requests) > MAX_GEMINI_BATCH:
        raise InvalidRequest(f"at most {MAX_GEMINI_BATCH} requests can be in one batch")
    if any(r.output_dimensionality is not None and not 0 < r.output_dimensionality <= MAX_EMBED_DIMS
           for r in batch.requests):
        raise InvalidRequest(f"outputDimensionality must be between 1 and {MAX_EMBED_DIMS}")
    out = [{"values": _vector(" ".join(p.text for p in r.content.parts if p.text), r.output_dimensionality or _EMBED_DIMS)}
           for r in batch.requests]
    return MockReply(200, "application/json", _one(_ENC.encode({"embeddings": out})))


def _vector(text: str, dims: int) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    raw: list[float] = []
    block = seed
    while len(raw) < dims:
        block = hashlib.sha256(block).digest()
        raw.extend((b - 127.5) / 127.5 for b in block)
    vec = raw[:dims]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def _embeddings(req: LooseRequest, model: str) -> MockReply:
    inputs = req.input
    if isinstance(inputs, str):
        texts = [inputs]
    elif isinstance(inputs, list) and inputs and all(isinstance(i, str) for i in inputs):
        texts = [str(i) for i in inputs]
    elif isinstance(inputs, list) and inputs and all(isinstance(i, int) for i in inputs):
        texts = [msgspec.json.encode(inputs).decode()]  # one token array: one input, hashed
    elif isinstance(inputs, list) and inputs and all(isinstance(i, list) and i for i in inputs):
        texts = [msgspec.json.encode(i).decode() for i in inputs]  # token arrays: hash them
    else:
        return _error("'input' must be a non-empty string, array of strings, token array or array of token arrays")
    if req.encoding_format not in (None, "float", "base64"):
        return _error(f"'encoding_format' must be 'float' or 'base64', not {req.encoding_format!r}")
    if len(texts) > MAX_EMBED_INPUTS:
        return _error(f"'input' holds {len(texts)} items; at most {MAX_EMBED_INPUTS} can be embedded at once")
    if req.dimensions is not None and not 0 < req.dimensions <= MAX_EMBED_DIMS:
        return _error(f"'dimensions' must be between 1 and {MAX_EMBED_DIMS}")
    dims = req.dimensions or _EMBED_DIMS
    data = []
    for i, t in enumerate(texts):
        vec = _vector(t, dims)
        emb: object = vec
        if req.encoding_format == "base64":
            emb = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    tokens = sum(estimate_text_tokens(t) for t in texts)
    return MockReply(200, "application/json", _one(_ENC.encode({
        "object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))


class MockTransport:
    """The mock provider as a transport: answers in-process, in the dialect the request is in."""

    __slots__ = ("_channel",)

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    async def send(self, request: UpstreamRequest) -> MockReply:
        return await mock_reply(self._channel, request.dialect, request.body, request.model, request.stream)
