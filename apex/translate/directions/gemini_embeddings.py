"""Gemini embeddings clients: ``:embedContent`` / ``:batchEmbedContents`` (docs/protocols.md 6.5, 8.9).

Apex serves both Gemini methods as ``batchEmbedContents``: a single ``embedContent`` body
is wrapped as a batch of one on the way in (``single_to_batch``) and its answer unwrapped
on the way out (``batch_to_single``). On a Gemini channel the batch passes through with
every ``requests[].model`` set to the upstream model (``with_upstream_model``: Gemini
checks it against the path). On an OpenAI-shaped channel ``GeminiEmbedToOpenAI`` sends
one ``input`` per request text (the parts of one content joined with newlines),
``outputDimensionality`` as ``dimensions`` and ``encoding_format: "float"``, and reads
``data[i].embedding`` (floats or base64) back as ``embeddings[i].values``; usage comes from
the upstream's ``usage``. ``taskType`` and ``title`` have no OpenAI form: dropped.
What this module must not do: I/O.
"""

from __future__ import annotations

from typing import Final, final

import msgspec

from apex.errors import InternalError, InvalidRequest, UpstreamMalformed
from apex.translate.base import StreamTranslator, TranslateContext
from apex.translate.request.gemini_conversation import SNAKE_KEY, camel_case_request
from apex.translate.write.embeddings import base64_to_floats
from apex.types import Dialect, Usage
from apex.wire.gemini import BatchEmbedRequest, RawBatchEmbedRequest, RawEmbeddingsAnswer, decode_batch_embed_request
from apex.wire.openai import EmbeddingsAnswer

__all__ = ["GEMINI_MAX_BATCH", "GeminiEmbedToOpenAI", "batch_to_single", "join_embed_answers", "single_to_batch",
           "split_embed_batch", "with_upstream_model"]

GEMINI_MAX_BATCH: Final = 100  # batchEmbedContents: "at most 100 requests can be in one batch"

_ENCODER: Final = msgspec.json.Encoder()


_OPENAI: Final = msgspec.json.Decoder(EmbeddingsAnswer)


_BATCH: Final = msgspec.json.Decoder(RawEmbeddingsAnswer)


INPUTS_KEY: Final = "embeddings.inputs"


def check_vector_count(got: int, ctx: TranslateContext) -> None:
    """UpstreamMalformed unless the answer has one vector per input (an empty list went to the
    client as a success)."""
    asked = ctx.extras.get(INPUTS_KEY)
    if isinstance(asked, int) and got != asked:
        raise UpstreamMalformed(f"the upstream answered {got} embeddings for {asked} inputs")


def single_to_batch(body: bytes, model: str) -> bytes:
    """An ``embedContent`` body -> a ``batchEmbedContents`` body of one request."""
    try:
        top = _RAW_OBJECT.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"request body is not a JSON object: {exc}") from exc
    if "content" not in top:
        raise InvalidRequest("'content' is required", param="content")
    top["model"] = msgspec.Raw(_ENCODER.encode(f"models/{model}"))
    return b'{"requests":[' + _ENCODER.encode(top) + b"]}"


def batch_to_single(body: bytes) -> bytes:
    """A ``batchEmbedContents`` answer -> the ``embedContent`` answer ``{"embedding": ...}``."""
    try:
        batch = _BATCH.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UpstreamMalformed(f"embeddings answer is not valid: {exc}") from exc
    if len(batch.embeddings) != 1:
        raise UpstreamMalformed(f"expected one embedding, got {len(batch.embeddings)}")
    return b'{"embedding":' + bytes(batch.embeddings[0]) + b"}"


def _decode(body: bytes) -> BatchEmbedRequest:
    if SNAKE_KEY.search(body):  # output_dimensionality: Google's REST API reads both spellings
        body = camel_case_request(body)
    try:
        return decode_batch_embed_request(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"invalid batchEmbedContents request: {exc}") from exc


_RAW_BATCH: Final = msgspec.json.Decoder(RawBatchEmbedRequest)


def with_upstream_model(body: bytes, model: str) -> bytes:
    """The batch with every request naming ``models/<model>`` (other fields kept as sent)."""
    try:
        batch = _RAW_BATCH.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"invalid batchEmbedContents request: {exc}") from exc
    name = msgspec.Raw(_ENCODER.encode(f"models/{model}"))
    for req in batch.requests:
        req["model"] = name
    return _ENCODER.encode(batch)


_RAW_OBJECT: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])


def count_request_with_model(body: bytes, model: str) -> bytes:
    """A countTokens body whose ``generateContentRequest`` names ``models/<model>``, the model
    of the URL after a model_map (it kept the client's alias, a model the upstream does not
    know). Other bodies (``contents`` alone) unchanged."""
    if body.find(b'"generateContentRequest"') < 0:
        return body
    try:
        top = _RAW_OBJECT.decode(body)
        inner = _RAW_OBJECT.decode(top["generateContentRequest"])
    except (msgspec.DecodeError, msgspec.ValidationError, KeyError):
        return body  # not for Apex to judge: the upstream answers it
    inner["model"] = msgspec.Raw(_ENCODER.encode(f"models/{model}"))
    top["generateContentRequest"] = msgspec.Raw(_ENCODER.encode(inner))
    return _ENCODER.encode(top)


def gemini_to_openai_embeddings_request(body: bytes, ctx: TranslateContext) -> bytes:
    """A batchEmbedContents body -> an OpenAI embeddings request."""
    batch = _decode(body)
    if not batch.requests:
        raise InvalidRequest("'requests' must not be empty", param="requests")
    texts: list[str] = []
    dims: set[int] = set()
    for req in batch.requests:
        text = "\n".join(p.text for p in req.content.parts if isinstance(p.text, str))
        if not text:
            raise InvalidRequest("each request needs text content for this channel", param="requests")
        texts.append(text)
        if isinstance(req.output_dimensionality, int):
            dims.add(req.output_dimensionality)
    if len(dims) > 1:
        raise InvalidRequest("requests ask for different outputDimensionality", param="requests")
    out: dict[str, object] = {"model": ctx.upstream_model, "input": texts, "encoding_format": "float"}
    if dims:
        out["dimensions"] = dims.pop()
    ctx.extras[INPUTS_KEY] = len(texts)
    return _ENCODER.encode(out)


def openai_to_gemini_embeddings_response(body: bytes, ctx: TranslateContext) -> bytes:
    """An OpenAI embeddings answer -> ``{"embeddings": [{"values": [...]}]}``; sets ctx.usage."""
    try:
        resp = _OPENAI.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UpstreamMalformed(f"embeddings answer is not valid: {exc}") from exc
    vectors: list[list[float]] = []
    for item in sorted(resp.data, key=lambda i: i.index):
        if isinstance(item.embedding, str):
            try:
                vectors.append(base64_to_floats(item.embedding))
            except ValueError as exc:
                raise UpstreamMalformed(f"embeddings answer: {exc}") from exc
        else:
            vectors.append(item.embedding)
    check_vector_count(len(vectors), ctx)
    if resp.usage is not None:
        ctx.usage = Usage(prompt_tokens=resp.usage.prompt_tokens)
    return _ENCODER.encode({"embeddings": [{"values": v} for v in vectors]})


@final
class GeminiEmbedToOpenAI:
    """The GEMINI_EMBED client -> OPENAI_EMBEDDINGS upstream direction."""

    client = Dialect.GEMINI_EMBED
    upstream = Dialect.OPENAI_EMBEDDINGS

    def request(self, body: bytes, ctx: TranslateContext) -> bytes:
        return gemini_to_openai_embeddings_request(body, ctx)

    def response(self, body: bytes, ctx: TranslateContext) -> bytes:
        return openai_to_gemini_embeddings_response(body, ctx)

    def stream(self, ctx: TranslateContext) -> StreamTranslator:
        raise InternalError("embeddings responses do not stream")


def split_embed_batch(body: bytes, size: int = GEMINI_MAX_BATCH) -> list[bytes]:
    """A batchEmbedContents body as bodies of at most ``size`` requests each (one when it fits)."""
    if body.count(b'"content"') <= size:  # each request has one content: most bodies fit, unparsed
        return [body]
    try:
        batch = _RAW_BATCH.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return [body]  # the upstream answers it in its own words
    items = batch.requests
    if len(items) <= size:
        return [body]
    return [_ENCODER.encode({"requests": items[i:i + size]}) for i in range(0, len(items), size)]


def join_embed_answers(answers: list[bytes]) -> bytes:
    """The answers to a split batch as one answer, vectors in request order."""
    vectors: list[bytes] = []
    for body in answers:
        try:
            vectors.extend(bytes(e) for e in _BATCH.decode(body).embeddings)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpstreamMalformed(f"embeddings answer is not valid: {exc}") from exc
    return b'{"embeddings":[' + b",".join(vectors) + b"]}"
