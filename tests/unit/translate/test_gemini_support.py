"""Unit tests for the Gemini support modules: signatures, error classification, finish and usage mapping."""

from __future__ import annotations

import json

import pytest

from apex.translate.read.gemini_errors import gemini_error
from apex.translate.neutral.usage import usage_from_gemini
from apex.translate.read.gemini_parts import FinishKind, finish_kind
from apex.translate.neutral.signatures import FOREIGN_SIGNATURE, SignatureStore
from apex.wire.gemini import UsageMetadata


def test_signature_store_is_bounded_lru() -> None:
    """The least recently used id is evicted first; recall refreshes an entry."""
    store = SignatureStore(maxsize=2)
    store.remember("a", "fa", "SA")
    store.remember("b", "fb", None)
    assert store.recall("a") is not None  # a is now the most recent
    store.remember("c", "fc", "SC")
    assert len(store) == 2 and store.recall("b") is None
    assert store.signature_for("a") == "SA"
    assert store.signature_for("b") == FOREIGN_SIGNATURE


def test_signature_store_rejects_zero_size() -> None:
    """A store that could hold nothing is a programming error."""
    with pytest.raises(ValueError):
        SignatureStore(maxsize=0)


def test_bad_api_key_400_becomes_401() -> None:
    """Gemini's 400 INVALID_ARGUMENT with reason API_KEY_INVALID is an authentication failure (P19)."""
    body = json.dumps({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                                 "status": "INVALID_ARGUMENT", "details": [
                                     {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                                      "domain": "googleapis.com"}]}}).encode()
    err = gemini_error(400, body)
    assert (err.status, err.kind) == (401, "authentication")
    assert err.message.startswith("API key not valid")


def test_plain_400_stays_invalid_request() -> None:
    """An ordinary INVALID_ARGUMENT stays a 400 invalid_request."""
    body = b'{"error":{"code":400,"message":"bad field","status":"INVALID_ARGUMENT"}}'
    assert gemini_error(400, body)[:2] == (400, "invalid_request")


def test_in_stream_error_uses_the_body_code() -> None:
    """An error chunk in a 200 stream is classified by its own code."""
    body = b'{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}'
    assert gemini_error(200, body)[:2] == (429, "rate_limit")


def test_non_json_error_keeps_an_excerpt() -> None:
    """An HTML error page becomes a short message, classified by HTTP status."""
    err = gemini_error(502, b"<html>Bad Gateway</html>" + b"x" * 1000)
    assert err.status == 502 and err.kind == "api_error" and err.rpc_status is None
    assert err.message.startswith("<html>Bad Gateway") and len(err.message) <= 200


@pytest.mark.parametrize(("reason", "saw_call", "expected"), [
    ("STOP", False, FinishKind.STOP),
    ("STOP", True, FinishKind.TOOL_CALLS),
    (None, True, FinishKind.TOOL_CALLS),
    ("MAX_TOKENS", True, FinishKind.LENGTH),
    ("SAFETY", False, FinishKind.FILTER),
    ("RECITATION", False, FinishKind.FILTER),
    ("OTHER", False, FinishKind.STOP),
    ("SOMETHING_NEW", False, FinishKind.STOP),
])
def test_finish_mapping(reason: str | None, saw_call: bool, expected: FinishKind) -> None:
    """Gemini finish reasons map per 8.5, with a seen function call turning STOP into tool calls."""
    assert finish_kind(reason, saw_call) is expected


def test_blocked_prompt_is_a_filter_finish() -> None:
    """A prompt blocked by promptFeedback ends as a content filter."""
    assert finish_kind(None, False, blocked=True) is FinishKind.FILTER


def test_usage_adds_thoughts_and_tool_prompt() -> None:
    """completion = candidates + thoughts; prompt includes tool-use prompt tokens; cached kept (8.6)."""
    usage = usage_from_gemini(UsageMetadata(prompt_token_count=10, candidates_token_count=5, thoughts_token_count=7,
                                   cached_content_token_count=4, tool_use_prompt_token_count=2))
    assert (usage.prompt_tokens, usage.completion_tokens, usage.reasoning_tokens, usage.cached_tokens) == (12, 12, 7, 4)
    assert not usage.estimated


def test_usage_without_metadata_is_the_estimate() -> None:
    """No usageMetadata at all falls back to the prompt estimate, marked estimated."""
    usage = usage_from_gemini(None, 99)
    assert usage.prompt_tokens == 99 and usage.estimated
