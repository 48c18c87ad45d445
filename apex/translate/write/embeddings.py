"""OpenAI embeddings vectors in the encoding the client asked for, whatever the upstream gave.

The OpenAI Python SDK asks for ``encoding_format: "base64"`` by default and decodes the
result as little-endian float32 (docs/protocols.md 4.1, P21); Gemini, Ollama and (by default)
Jina return float lists. The pipeline's API, all pure functions:

- ``requested_encoding(body) -> "float" | "base64"``: the format an OpenAI embeddings
  request asks for (default "float"); raises InvalidRequest for anything else.
- ``reencode_embeddings_response(body, encoding) -> bytes``: an OpenAI-shaped embeddings
  response with every ``data[i].embedding`` in ``encoding``; vectors already in that
  form and every other field pass through unchanged. Raises UpstreamMalformed when the
  body is not an embeddings list.
- ``openai_to_jina_embeddings_request(body) -> bytes``: Jina names the field
  ``embedding_type`` instead of ``encoding_format`` (and rejects OpenAI-only ``user``).
- ``floats_to_base64`` / ``base64_to_floats``: the float32 LE codec (struct, no numpy).

What this module must not do: know any upstream but by its body shape.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Sequence
from typing import Final, Literal

import msgspec

from apex.errors import InvalidRequest, UpstreamMalformed
from apex.wire.openai import EmbeddingsEncoding

__all__ = [
    "Encoding",
    "base64_to_floats",
    "floats_to_base64",
    "openai_to_jina_embeddings_request",
    "reencode_embeddings_response",
    "requested_encoding",
]

Encoding = Literal["float", "base64"]

_DECODER: Final = msgspec.json.Decoder()
_ENCODER: Final = msgspec.json.Encoder()


_ENCODING_VIEW: Final = msgspec.json.Decoder(EmbeddingsEncoding)


def floats_to_base64(values: Sequence[float]) -> str:
    """Base64 of ``values`` packed as little-endian float32 (OpenAI's ``base64`` format)."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def base64_to_floats(data: str) -> list[float]:
    """Little-endian float32 values from base64; raises ValueError for malformed input."""
    try:
        raw = base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64: {exc}") from exc
    if len(raw) % 4:
        raise ValueError("base64 embedding is not a whole number of float32 values")
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def requested_encoding(body: bytes) -> Encoding:
    """The ``encoding_format`` an OpenAI embeddings request asks for ("float" when absent)."""
    try:
        fmt = _ENCODING_VIEW.decode(body).encoding_format
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"invalid embeddings request: {exc}") from exc
    if fmt is None or fmt == "float":
        return "float"
    if fmt == "base64":
        return "base64"
    raise InvalidRequest(f"encoding_format must be 'float' or 'base64', not {fmt!r}", param="encoding_format")


def reencode_embeddings_response(body: bytes, encoding: Encoding) -> bytes:
    """The response with every vector in ``encoding``; unchanged bytes when nothing differs."""
    try:
        tree = _DECODER.decode(body)
    except msgspec.DecodeError as exc:
        raise UpstreamMalformed(f"embeddings response is not JSON: {exc}") from exc
    data = tree.get("data") if isinstance(tree, dict) else None
    if not isinstance(data, list):
        raise UpstreamMalformed("embeddings response has no data list")
    changed = False
    for item in data:
        vector = item.get("embedding") if isinstance(item, dict) else None
        if encoding == "base64" and isinstance(vector, list):
            item["embedding"] = floats_to_base64(_floats(vector))
            changed = True
        elif encoding == "float" and isinstance(vector, str):
            try:
                item["embedding"] = base64_to_floats(vector)
            except ValueError as exc:
                raise UpstreamMalformed(f"embeddings response: {exc}") from exc
            changed = True
        elif not isinstance(vector, (list, str)):
            raise UpstreamMalformed("embeddings response item has no embedding")
    return _ENCODER.encode(tree) if changed else body


def _floats(vector: list[object]) -> list[float]:
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vector):
        raise UpstreamMalformed("embedding vector holds non-numbers")
    return vector  # type: ignore[return-value]  # checked element by element just above


def openai_to_jina_embeddings_request(body: bytes) -> bytes:
    """OpenAI embeddings request -> Jina: ``encoding_format`` becomes ``embedding_type``.

    Raises InvalidRequest for a body that is not a JSON object or asks for an unknown
    encoding."""
    encoding = requested_encoding(body)
    tree = _DECODER.decode(body)
    if not isinstance(tree, dict):
        raise InvalidRequest("embeddings request must be a JSON object")
    inputs = tree.get("input")
    if isinstance(inputs, list) and any(isinstance(i, (int, list)) for i in inputs):  # docs/protocols.md 8.9
        raise InvalidRequest("token-array input is not supported by this model's provider; send text", param="input")
    tree.pop("encoding_format", None)
    tree.pop("user", None)
    tree["embedding_type"] = encoding
    return _ENCODER.encode(tree)
