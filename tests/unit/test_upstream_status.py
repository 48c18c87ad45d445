"""How ``upstream_status_error`` classifies a refused request: an HTTP status never becomes an
OpenAI code; other refusals keep their own code."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apex.types import ProviderFamily
from apex.upstream.base import upstream_status_error

RETRY_ON = frozenset({429, 500, 502, 503, 504})


def classify(family: ProviderFamily, body: Any, status: int = 400, headers: dict[str, str] | None = None) -> tuple[int, str | None, bool]:
    err = upstream_status_error("c", family, status, json.dumps(body).encode(), headers or {}, RETRY_ON)
    return err.status, err.code, err.retryable


@pytest.mark.parametrize(("family", "body", "status", "code"), [
    ("gemini", {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "Request contains an invalid argument."}},
     400, None),
    ("openai", {"error": {"code": "429", "message": "Requests to the ChatCompletions_Create Operation have exceeded "
                "call rate limit."}}, 429, None),  # Azure: the status as a string
    ("openai", {"error": {"message": "Rate limit reached for gpt-4.1 on tokens per min (TPM): Limit 30000, Requested "
                "40000.", "type": "tokens", "param": None, "code": "rate_limit_exceeded"}}, 429, "rate_limit_exceeded"),
    ("anthropic", {"type": "error", "error": {"type": "invalid_request_error",
                   "message": "max_tokens: 100000 > 64000, which is the maximum allowed number of output tokens"}},
     400, None),
    ("openai", {"error": {"message": "Invalid 'messages[0].content': string too long. Expected a string with maximum "
                "length 10485760, but got a string with length 10485761 instead.", "type": "invalid_request_error",
                "param": "messages[0].content", "code": "string_above_max_length"}}, 400, "string_above_max_length"),
])
def test_other_refusals_keep_their_own_code(family: ProviderFamily, body: Any, status: int, code: str | None) -> None:
    """OpenAI's own codes pass; Gemini's numeric code and Azure's "429" are the HTTP status
    again, not an OpenAI code (a Chat or Responses client got "400")."""
    assert classify(family, body, status)[:2] == (status, code)
