"""The upstream reply seam and the boundary that maps transport failures to ApexError.

An upstream reply is anything with the small subset of an HTTP response the
pipeline uses (``status``, ``headers``, ``content_type``, ``read()``,
``content.readany()``, ``release()``, ``close()``), so the in-process mock provider and
real HTTP upstreams go through the same code. Error bodies are classified by status and
by their decoded JSON, never by matching message text. Reply implementations:
``apex.upstream.http.HttpReply`` (real upstreams) and ``apex.upstream.mock.MockReply``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Final, Protocol

import msgspec

from apex.errors import (
    CONTEXT_LENGTH_EXCEEDED,
    ChannelBusy,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamMalformed,
    UpstreamStatus,
    UpstreamTimeout,
    kind_for_status,
)
from apex.routing.policy import parse_retry_after as parse_retry_after_at
from apex.routing.policy import parse_retry_after_ms
from apex.translate.neutral.errortypes import context_overflow
from apex.translate.read.gemini_errors import gemini_error
from apex.types import ProviderFamily
from apex.upstream.egress import connect_reason
from apex.upstream.http import ConnectFailed, HttpClientError, InvalidResponse, PoolExhausted, exchange_failure
from apex.wire.openai import ErrorEnvelope, ErrorView

__all__ = [
    "TRANSPORT_ERRORS",
    "ReplyBody",
    "UpstreamReply",
    "map_transport_errors",
    "scrub_key_shapes",
    "scrub_key_shapes_text",
    "transport_error",
    "upstream_status_error",
]


class ReplyBody(Protocol):
    async def readany(self) -> bytes: ...


class UpstreamReply(Protocol):
    status: int

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content_type(self) -> str: ...

    @property
    def content(self) -> ReplyBody: ...

    async def read(self) -> bytes: ...

    def release(self) -> object: ...

    def close(self) -> None: ...


BUSY_RETRY_AFTER_S: Final = 1.0  # Retry-After on the 503 for a channel at its max_connections


def transport_error(channel: str, exc: BaseException) -> UpstreamError:
    """The UpstreamError for a socket/HTTP failure or timeout talking to ``channel``.

    Three cases an operator must tell apart, each naming the upstream's host:port and why:
    could not connect (nothing was sent), failed after sending, and a bad answer.
    """
    if isinstance(exc, HttpClientError):
        message = f"upstream channel {channel}: {exchange_failure(exc)}"
        if isinstance(exc, PoolExhausted):
            return ChannelBusy(message, channel=channel, retry_after=BUSY_RETRY_AFTER_S)
        if isinstance(exc, ConnectFailed) and exc.timed_out:
            return UpstreamTimeout(message, channel=channel)
        if isinstance(exc, InvalidResponse):  # reached, but what came back is not HTTP: a malformed answer
            return UpstreamMalformed(message, channel=channel)
        return UpstreamConnectionError(message, channel=channel)
    if isinstance(exc, asyncio.TimeoutError):
        return UpstreamTimeout(f"upstream channel {channel} timed out", channel=channel)
    return UpstreamConnectionError(
        f"upstream channel {channel}: failed after sending the request: {connect_reason(exc)}", channel=channel
    )


TRANSPORT_ERRORS: Final = (asyncio.TimeoutError, HttpClientError, OSError)


@contextmanager
def map_transport_errors(channel: str) -> Iterator[None]:
    """Turn socket/HTTP failures inside the block into UpstreamError subclasses."""
    try:
        yield
    except TRANSPORT_ERRORS as exc:
        raise transport_error(channel, exc) from exc


_ENVELOPE: Final = msgspec.json.Decoder(ErrorEnvelope)


# Key shapes of the providers Apex speaks to (OpenAI/Anthropic/DeepSeek ``sk-``, Google ``AIza``,
# Groq ``gsk_``), for error bodies that echo a key back.
# Not inside a word: "task-force-alignment-notes" holds no key (it was scrubbed to "ta[redacted]").
_KEY_SHAPES: Final = re.compile(rb"(?<![A-Za-z0-9_\-])(?:sk-|gsk_|AIza)[A-Za-z0-9_\-]{12,}")
_KEY_SHAPES_TEXT: Final = re.compile(_KEY_SHAPES.pattern.decode())
REDACTED: Final = b"[redacted]"


def scrub_key_shapes(body: bytes) -> bytes:
    """``body`` with anything shaped like a provider key replaced by ``[redacted]`` (the
    channel's own secrets are scrubbed by ``apex.errors.Secrets``); the same object when
    there is nothing to hide."""
    return _KEY_SHAPES.sub(REDACTED, body) if _KEY_SHAPES.search(body) else body


def scrub_key_shapes_text(text: str) -> str:
    """``scrub_key_shapes`` for a message: what translated answers and log lines quote."""
    return _KEY_SHAPES_TEXT.sub(REDACTED.decode(), text) if _KEY_SHAPES_TEXT.search(text) else text


def retry_after_of(headers: Mapping[str, str]) -> float | None:
    """Seconds an upstream asks Apex to stay away: ``retry-after-ms`` (OpenAI, Anthropic), else
    ``Retry-After`` in seconds or as an HTTP date (a date was read as absent: the channel was
    retried at once and the client's 429 lost its Retry-After)."""
    ms = headers.get("retry-after-ms")
    if ms:
        seconds = parse_retry_after_ms(ms)
        if seconds is not None:
            return seconds
    value = headers.get("Retry-After")
    return parse_retry_after_at(value, time.time) if value else None


_AWS_THROTTLES: Final = frozenset({"ServiceQuotaExceededException", "ThrottlingException"})


def upstream_status_error(
    channel: str, family: ProviderFamily, status: int, body: bytes, headers: Mapping[str, str], retry_on: frozenset[int]
) -> UpstreamStatus:
    """Classify a non-2xx upstream answer: its message and type, and whether to fail over.

    401/403 mean the channel's own key was refused, so they fail over too. Gemini bodies are
    classified by ``gemini_error`` (the one Gemini classifier, shared with the stream
    readers): a key refused as 400 INVALID_ARGUMENT + API_KEY_INVALID / _EXPIRED /
    _SERVICE_BLOCKED, or UNAUTHENTICATED, is a 401.
    """
    message = ""
    upstream_type: str | None = None
    code: str | None = None
    effective = status
    try:
        env = _ENVELOPE.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        env = None
    if env is not None:
        err = env.error
        if isinstance(err, ErrorView):
            message = err.message or ""
            upstream_type = err.type
            # OpenAI's codes are words; a number there (Gemini's, Azure's, OpenRouter's) is
            # the HTTP status again, which an OpenAI client must not read as a code
            code = err.code if isinstance(err.code, str) and not err.code.isdigit() else None
        elif isinstance(err, str):
            message = err
        elif env.detail is not None:
            message = env.detail if isinstance(env.detail, str) else msgspec.json.encode(env.detail).decode()
        elif env.message:
            message = env.message
    if status == 400 and headers.get("x-amzn-ErrorType", "").partition(":")[0] in _AWS_THROTTLES:
        effective = 429  # Bedrock's quota refusal is a 400 that may be resubmitted later: a rate limit
    retry_after = retry_after_of(headers)
    if family == "gemini":
        gemini = gemini_error(status, body)
        effective = gemini.status
        upstream_type = gemini.rpc_status or upstream_type
        if retry_after is None:
            retry_after = gemini.retry_after
    if context_overflow(kind_for_status(effective), message, code, upstream_type):
        code = CONTEXT_LENGTH_EXCEEDED  # said in Anthropic's, Gemini's, Bedrock's... words: OpenAI's code
    if 300 <= status < 400:
        message = f"upstream answered with a redirect (HTTP {status}); Apex does not follow redirects: check the channel's base_url"
    elif not message:
        message = f"upstream returned HTTP {status}"
    else:
        message = scrub_key_shapes_text(message)  # the channel's own key is scrubbed later, by its Secrets
    message = f"{message} (channel {channel})" if family != "mock" else message
    retryable = effective in retry_on or effective in (401, 403) or 300 <= effective < 400
    return UpstreamStatus(
        effective,
        message,
        channel=channel,
        body=body,
        upstream_type=upstream_type,
        upstream_dialect=family,
        retryable=retryable,
        retry_after=retry_after,
        code=code,
    )
