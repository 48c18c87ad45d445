"""OpenAI Embeddings client <-> Gemini ``:batchEmbedContents`` upstream (docs/protocols.md 8.9).

Request: ``input`` (a string or a list of strings) becomes one ``requests[]`` entry per
text with ``model: "models/<ctx.upstream_model>"``; ``dimensions`` becomes
``outputDimensionality``. Token-array inputs cannot be expressed: InvalidRequest. The
request remembers the client's ``encoding_format`` and a token estimate in
``ctx.extras`` for the response side. Response: ``embeddings[i].values`` become
``data[i]`` in the requested encoding (base64 = float32 LE); Gemini reports no usage,
so usage is the estimate (``ctx.usage.estimated``). Embeddings never stream. What this
module must not do: I/O.
"""

from __future__ import annotations

from typing import Final, final

import msgspec

from apex.errors import InternalError, InvalidRequest, UpstreamMalformed
from apex.tokens import estimate_text_tokens
from apex.translate.base import StreamTranslator, TranslateContext
from apex.translate.directions.gemini_embeddings import INPUTS_KEY, check_vector_count
from apex.translate.write.embeddings import floats_to_base64, requested_encoding
from apex.types import Dialect, Usage
from apex.wire.gemini import (
    BatchEmbedRequest,
    Content,
    EmbedRequest,
    Part,
    RawBatchEmbedResponse,
    encode,
)
from apex.wire.openai import EmbeddingsRequest

__all__ = ["OpenAIEmbeddingsToGemini", "gemini_to_openai_embeddings", "openai_to_gemini_embeddings"]

_ENCODING_KEY: Final = "embeddings.encoding"
_TOKENS_KEY: Final = "embeddings.tokens"
_ENCODER: Final = msgspec.json.Encoder()


_REQUEST: Final = msgspec.json.Decoder(EmbeddingsRequest)
_RAW_ANSWER: Final = msgspec.json.Decoder(RawBatchEmbedResponse)
_VALUES: Final = msgspec.json.Decoder(list[float])
MAX_INPUTS: Final = 2048  # OpenAI Embeddings: "at most 2048 inputs"


def openai_to_gemini_embeddings(body: bytes, ctx: TranslateContext) -> bytes:
    """OpenAI embeddings request -> batchEmbedContents body; notes encoding and estimate in ctx.

    Raises InvalidRequest for a malformed body, an empty input or token-array input."""
    encoding = requested_encoding(body)
    try:
        req = _REQUEST.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"invalid embeddings request: {exc}", param="input") from exc
    texts = [req.input] if isinstance(req.input, str) else req.input
    if not texts:
        raise InvalidRequest("input must not be empty", param="input")
    if not all(isinstance(t, str) for t in texts):
        raise InvalidRequest("token-array input is not supported by this model's provider; send text", param="input")
    if len(texts) > MAX_INPUTS:  # OpenAI's own limit; past it one request held gigabytes of vectors
        raise InvalidRequest(f"input: at most {MAX_INPUTS} inputs per request, not {len(texts)}", param="input")
    model = "models/" + ctx.upstream_model.removeprefix("models/")
    requests = []
    for text in texts:
        item = EmbedRequest(model=model, content=Content(parts=[Part(text=str(text))]))
        if req.dimensions is not None:
            item.output_dimensionality = req.dimensions
        requests.append(item)
    ctx.extras[_ENCODING_KEY] = encoding
    ctx.extras[INPUTS_KEY] = len(texts)
    ctx.extras[_TOKENS_KEY] = sum(estimate_text_tokens(str(t)) for t in texts)
    return encode(BatchEmbedRequest(requests=requests))


def gemini_to_openai_embeddings(body: bytes, ctx: TranslateContext) -> bytes:
    """batchEmbedContents response -> OpenAI embeddings list; sets ``ctx.usage`` (estimated).

    Raises UpstreamMalformed when the body is not a batchEmbedContents response."""
    try:
        resp = _RAW_ANSWER.decode(body)
        check_vector_count(len(resp.embeddings), ctx)
        as_base64 = ctx.extras.get(_ENCODING_KEY) == "base64"
        # Floats go on as the JSON Gemini wrote (no Python float per value); base64 is made
        # one vector at a time.
        data = [
            {"object": "embedding", "index": i,
             "embedding": floats_to_base64(_VALUES.decode(e.values)) if as_base64 else e.values}
            for i, e in enumerate(resp.embeddings)
        ]
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UpstreamMalformed(f"Gemini embeddings response is not valid: {exc}") from exc
    tokens = ctx.extras.get(_TOKENS_KEY)
    prompt = tokens if isinstance(tokens, int) else 0
    ctx.usage = Usage(prompt_tokens=prompt, estimated=True)
    out = {"object": "list", "data": data, "model": ctx.client_model,
           "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}
    return _ENCODER.encode(out)


@final
class OpenAIEmbeddingsToGemini:
    """The OPENAI_EMBEDDINGS -> GEMINI_EMBED direction."""

    client = Dialect.OPENAI_EMBEDDINGS
    upstream = Dialect.GEMINI_EMBED

    def request(self, body: bytes, ctx: TranslateContext) -> bytes:
        return openai_to_gemini_embeddings(body, ctx)

    def response(self, body: bytes, ctx: TranslateContext) -> bytes:
        return gemini_to_openai_embeddings(body, ctx)

    def stream(self, ctx: TranslateContext) -> StreamTranslator:
        raise InternalError("embeddings responses do not stream")

