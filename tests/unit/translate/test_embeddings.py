"""Tests for apex.translate.write.embeddings and the OpenAI -> Gemini embeddings direction."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apex.errors import InvalidRequest, UpstreamMalformed
from apex.translate.base import TranslateContext
from apex.translate.write.embeddings import (
    base64_to_floats,
    floats_to_base64,
    openai_to_jina_embeddings_request,
    reencode_embeddings_response,
    requested_encoding,
)
from apex.translate.directions.openai_embeddings_to_gemini import OpenAIEmbeddingsToGemini
from tests.fixtures import REAL

FIXTURES = REAL


def test_openai_base64_fixture_decodes_to_unit_vector() -> None:
    """The real OpenAI base64 embedding decodes to 128 float32 values of unit norm and re-encodes identically."""
    b64 = json.loads((FIXTURES / "openai_embeddings_base64.json").read_bytes())["data"][0]["embedding"]
    values = base64_to_floats(b64)
    assert len(values) == 128
    assert math.isclose(math.fsum(v * v for v in values), 1.0, rel_tol=1e-5)
    assert floats_to_base64(values) == b64


@given(st.lists(st.floats(width=32, allow_nan=False), max_size=64))
def test_base64_round_trip(values: list[float]) -> None:
    """float32 values survive floats -> base64 -> floats exactly."""
    assert base64_to_floats(floats_to_base64(values)) == values


def test_malformed_base64_raises_value_error() -> None:
    """Non-base64 text and partial floats are rejected."""
    with pytest.raises(ValueError):
        base64_to_floats("!!!")
    with pytest.raises(ValueError):
        base64_to_floats("AAAAAAA=")


def test_requested_encoding_defaults_to_float() -> None:
    """Absent encoding_format means float; base64 is honoured; anything else is a 400."""
    assert requested_encoding(b'{"input":"x"}') == "float"
    assert requested_encoding(b'{"input":"x","encoding_format":"base64"}') == "base64"
    with pytest.raises(InvalidRequest):
        requested_encoding(b'{"input":"x","encoding_format":"int8"}')


def test_reencode_floats_to_base64_and_back() -> None:
    """A float response is turned into base64 (other fields kept) and back to the same floats."""
    body = json.dumps({"object": "list", "model": "m", "usage": {"prompt_tokens": 1, "total_tokens": 1},
                       "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0, 0.25]}]}).encode()
    as_b64 = json.loads(reencode_embeddings_response(body, "base64"))
    assert isinstance(as_b64["data"][0]["embedding"], str) and as_b64["usage"]["prompt_tokens"] == 1
    back = json.loads(reencode_embeddings_response(json.dumps(as_b64).encode(), "float"))
    assert back["data"][0]["embedding"] == [0.5, -1.0, 0.25]


def test_reencode_is_identity_when_format_already_matches() -> None:
    """Nothing to convert returns the very same bytes."""
    body = b'{"object":"list","data":[{"index":0,"embedding":[1.0]}]}'
    assert reencode_embeddings_response(body, "float") is body


def test_reencode_rejects_non_embedding_bodies() -> None:
    """A body without a data list is an UpstreamMalformed."""
    with pytest.raises(UpstreamMalformed):
        reencode_embeddings_response(b'{"detail":"nope"}', "float")


def test_jina_request_uses_embedding_type() -> None:
    """encoding_format becomes embedding_type and OpenAI-only fields are dropped."""
    out = json.loads(openai_to_jina_embeddings_request(
        b'{"model":"jina-embeddings-v3","input":["a"],"encoding_format":"base64","dimensions":256,"user":"u"}'))
    assert out == {"model": "jina-embeddings-v3", "input": ["a"], "dimensions": 256, "embedding_type": "base64"}
    assert json.loads(openai_to_jina_embeddings_request(b'{"model":"j","input":"a"}'))["embedding_type"] == "float"


def test_gemini_embeddings_request_one_entry_per_input() -> None:
    """A list input becomes one batchEmbedContents request per text with the upstream model name."""
    ctx = TranslateContext("alias", "text-embedding-004", False, "r")
    out = json.loads(OpenAIEmbeddingsToGemini().request(b'{"model":"alias","input":["a","b"]}', ctx))
    assert [r["content"]["parts"][0]["text"] for r in out["requests"]] == ["a", "b"]
    assert {r["model"] for r in out["requests"]} == {"models/text-embedding-004"}
    assert all("outputDimensionality" not in r for r in out["requests"])


@pytest.mark.parametrize("body", [b'{"model":"m","input":[1,2,3]}', b'{"model":"m","input":[[1,2]]}',
                                  b'{"model":"m","input":[]}'])
def test_gemini_embeddings_reject_token_arrays(body: bytes) -> None:
    """Token-array and empty inputs are InvalidRequest for a Gemini upstream."""
    with pytest.raises(InvalidRequest):
        OpenAIEmbeddingsToGemini().request(body, TranslateContext("a", "b", False, "r"))


def test_gemini_embeddings_malformed_response() -> None:
    """A body that is not batchEmbedContents is UpstreamMalformed."""
    with pytest.raises(UpstreamMalformed):
        OpenAIEmbeddingsToGemini().response(b'{"embedding":{"values":[1]}}', TranslateContext("a", "b", False, "r"))
