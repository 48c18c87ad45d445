"""How ``upstream_status_error`` classifies a refused request: a prompt over the context window in
each upstream's words carries OpenAI's ``context_length_exceeded``; an HTTP status never becomes
an OpenAI code; other refusals keep their own code."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apex.types import ProviderFamily
from apex.upstream.base import upstream_status_error

RETRY_ON = frozenset({429, 500, 502, 503, 504})
AWS_VALIDATION = {"x-amzn-ErrorType": "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"}


def classify(family: ProviderFamily, body: Any, status: int = 400, headers: dict[str, str] | None = None) -> tuple[int, str | None, bool]:
    err = upstream_status_error("c", family, status, json.dumps(body).encode(), headers or {}, RETRY_ON)
    return err.status, err.code, err.retryable


@pytest.mark.parametrize(("family", "body", "headers"), [
    ("anthropic", {"type": "error", "error": {"type": "invalid_request_error",
                                              "message": "prompt is too long: 210000 tokens > 200000 maximum"}}, None),
    ("anthropic", {"type": "error", "error": {"type": "invalid_request_error", "message":
                   "input length and `max_tokens` exceed context limit: 199759 + 8192 > 200000, decrease input length "
                   "or `max_tokens` and try again"}}, None),
    ("gemini", {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message":
                "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."}}, None),
    ("gemini", {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                          "message": "The input token count exceeds the maximum number of tokens allowed (1048576)."}}, None),
    ("anthropic", {"message": "Input is too long for requested model."}, AWS_VALIDATION),  # Bedrock Converse
    ("anthropic", {"message": "The model returned the following errors: prompt is too long: 200049 tokens > 200000 maximum"},
     AWS_VALIDATION),  # Claude through Bedrock InvokeModel
    ("anthropic", {"message": "Too many input tokens. Max input tokens: 8192, request input token count: 9000"}, AWS_VALIDATION),
    ("openai", {"error": {"message": "This model's maximum context length is 128000 tokens. However, your messages "
                "resulted in 200000 tokens.", "type": "invalid_request_error", "param": "messages",
                "code": "context_length_exceeded"}}, None),
    ("openai", {"error": {"message": "This model's maximum context length is 32768 tokens. However, you requested "
                "40000 tokens.", "type": "BadRequestError", "param": None, "code": 400}}, None),  # vLLM
    ("openai", {"object": "error", "message": "This model's maximum context length is 4096 tokens. However, you "
                "requested 5000 tokens.", "type": "BadRequestError", "param": None, "code": 400}, None),  # older vLLM
    ("openai", {"error": {"message": "The decoder prompt (length 5000) is longer than the maximum model length of 4096.",
                "type": "BadRequestError", "param": None, "code": 400}}, None),  # vLLM V1
    ("openai", {"error": {"code": 400, "message": "the request exceeds the available context size, try increasing it",
                "type": "exceed_context_size_error", "n_prompt_tokens": 9000, "n_ctx": 8192}}, None),  # llama.cpp
])
def test_an_overflow_in_each_upstreams_words_is_context_length_exceeded(family: ProviderFamily, body: Any,
                                                                      headers: dict[str, str] | None) -> None:
    """The client's request: a 400, not retried, with OpenAI's code (it had none, or "400")."""
    assert classify(family, body, headers=headers) == (400, "context_length_exceeded", False)


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
    again, not an OpenAI code (a Chat or Responses client got "400"); an invalid request that
    is no overflow keeps its code."""
    assert classify(family, body, status)[:2] == (status, code)
