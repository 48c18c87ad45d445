"""The neutral middle of every translation: stream parts, whole replies, and the glue.

Every upstream dialect has a *reader* (upstream SSE event -> parts) and every client
dialect a *writer* (parts -> client SSE bytes); a stream translator is one reader piped
into one writer (``PipedStream``), so N upstreams and M clients need N + M state machines,
not N x M. Non-stream bodies go through ``Reply`` the same way. Other translate modules
(Gemini) may produce parts and reuse the writers; the part types below are that API and
stay small: add a part only when a dialect cannot be expressed with these.

Part order a reader promises: ``Started`` first (once); then any mix of text, reasoning
and tool-call parts; ``UsageUpdated`` whenever numbers are known (cumulative, last wins);
``Finished`` at most once per reader (readers drop repeats, P20); then ``Ended`` (the
upstream's terminator) or ``Failed`` (an upstream error, or EOF without terminator).
Token log probabilities, when the client asked for them, ride on the ``TextDelta`` of the
same upstream event (and on ``Reply.logprobs``): no part of their own, so a writer that
has no place for them ignores them, and nothing changes when none were asked for.
What this module must not do: know any wire format.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol, final

from apex.errors import ErrorKind
from apex.sse import SseEvent
from apex.translate.base import StreamTranslator
from apex.translate.neutral.errortypes import blames_request
from apex.translate.neutral.reasons import Finish
from apex.types import Usage

__all__ = [
    "attach_logprobs",
    "Ended",
    "Failed",
    "Finished",
    "Part",
    "PartReader",
    "PartWriter",
    "PipedStream",
    "ReasoningDelta",
    "RefusalDelta",
    "ReasoningSignature",
    "Reply",
    "ReplyReasoning",
    "ReplyText",
    "ReplyToolCall",
    "Started",
    "TextDelta",
    "TokenLogprob",
    "ToolArgsDelta",
    "ToolCallEnded",
    "ToolCallStarted",
    "UsageUpdated",
]


@dataclass(slots=True, frozen=True)
class Started:
    """The upstream began answering; ``upstream_id`` is its message/chunk id when known."""

    upstream_id: str = ""


@dataclass(slots=True, frozen=True)
class TokenLogprob:
    """One answer token and its log probability; ``top`` holds the likeliest alternatives at
    that step (their own ``top`` empty), as many as the client asked for."""

    token: str
    logprob: float
    top: tuple[TokenLogprob, ...] = ()


@dataclass(slots=True, frozen=True)
class TextDelta:
    text: str
    logprobs: tuple[TokenLogprob, ...] = ()  # the tokens of the upstream event this text came in


@dataclass(slots=True, frozen=True)
class RefusalDelta(TextDelta):
    """A refusal's text (OpenAI's ``delta.refusal``): text to every writer but the Responses
    one, which has a refusal part for it."""


@dataclass(slots=True, frozen=True)
class ReasoningDelta:
    text: str


@dataclass(slots=True, frozen=True)
class ReasoningSignature:
    """A genuine signature for the reasoning just streamed (Anthropic only)."""

    signature: str


@dataclass(slots=True, frozen=True)
class ToolCallStarted:
    """A new tool call; ``key`` identifies it in later parts of this stream.

    ``arguments`` is set when the upstream sends each call whole (Gemini): the complete
    JSON arguments, after which no ``ToolArgsDelta`` follows and the call is complete.
    """

    key: int
    call_id: str
    name: str
    arguments: str | None = None


@dataclass(slots=True, frozen=True)
class ToolArgsDelta:
    key: int
    fragment: str


@dataclass(slots=True, frozen=True)
class ToolCallEnded:
    """The upstream says this call's arguments are complete (Anthropic block stop)."""

    key: int


@dataclass(slots=True, frozen=True)
class UsageUpdated:
    usage: Usage


@dataclass(slots=True, frozen=True)
class Finished:
    reason: Finish
    stop_sequence: str | None = None


@dataclass(slots=True, frozen=True)
class Ended:
    """The upstream's normal terminator arrived."""


@dataclass(slots=True, frozen=True)
class Failed:
    """The stream failed: an upstream error event, a malformed event, or a cut stream."""

    message: str
    kind: ErrorKind
    code: str | None = None
    upstream_event: bool = False  # the upstream's own error event (else a malformed or cut stream)


Part = (Started | TextDelta | ReasoningDelta | ReasoningSignature | ToolCallStarted
        | ToolArgsDelta | ToolCallEnded | UsageUpdated | Finished | Ended | Failed)


def attach_logprobs(out: list[Part], first: int, tokens: tuple[TokenLogprob, ...]) -> bool:
    """Give ``tokens`` to the last ``TextDelta`` of ``out[first:]`` (the parts of the upstream
    event they came in); False when that event made no text part."""
    for i in range(len(out) - 1, first - 1, -1):
        part = out[i]
        if isinstance(part, TextDelta):
            out[i] = replace(part, logprobs=tokens)
            return True
    return False


class PartReader(Protocol):
    """Upstream events -> parts, for one stream."""

    def feed(self, event: SseEvent) -> list[Part]:
        """Parts for one upstream event (malformed events become ``Failed``)."""
        ...

    def finish(self) -> list[Part]:
        """The upstream body ended: ``Failed`` unless the terminator was seen."""
        ...


class PartWriter(Protocol):
    """Parts -> client SSE bytes, for one stream."""

    def write(self, part: Part) -> list[bytes]:
        """Client events for one part; ignores everything after ``Ended``/``Failed``."""
        ...

    @property
    def done(self) -> bool:
        """True once the client's terminator or error event was produced."""
        ...


@final
class PipedStream:
    """A StreamTranslator made of one reader and one writer."""

    __slots__ = ("_reader", "_writer", "blames_request", "failure_label")

    def __init__(self, reader: PartReader, writer: PartWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.failure_label: str | None = None  # how the upstream's stream failed, for logs and metrics
        self.blames_request = False  # its error event blamed the request (no mark against the channel)

    def feed(self, event: SseEvent) -> list[bytes]:
        """Translate one upstream event into client events."""
        if self._writer.done:
            return []
        return self._write(self._reader.feed(event))

    def finish(self) -> list[bytes]:
        """Upstream EOF: the client's closing events or an error event."""
        if self._writer.done:
            return []
        return self._write(self._reader.finish())

    def fail(self, message: str, kind: ErrorKind) -> list[bytes]:
        """Abort with an error event in the client's dialect."""
        if self._writer.done:
            return []
        return self._writer.write(Failed(message, kind))

    @property
    def done(self) -> bool:
        """True once a terminator or an error event went out."""
        return self._writer.done

    def _write(self, parts: list[Part]) -> list[bytes]:
        out: list[bytes] = []
        for part in parts:
            if isinstance(part, Failed):
                self.failure_label = "upstream_error_event" if part.upstream_event else "api_error"
                self.blames_request = part.upstream_event and blames_request(part.kind, part.code)
            out.extend(self._writer.write(part))
            if self._writer.done:
                break
        return out


_check: type[StreamTranslator] = PipedStream  # PipedStream satisfies the seam


@dataclass(slots=True)
class ReplyText:
    text: str


@dataclass(slots=True)
class ReplyReasoning:
    text: str
    signature: str | None = None  # genuine Anthropic signature, when the source had one


@dataclass(slots=True)
class ReplyToolCall:
    call_id: str
    name: str
    arguments: str  # JSON text as the model wrote it (normalized by writers)


@dataclass(slots=True)
class Reply:
    """One non-stream assistant answer in neutral form."""

    upstream_id: str
    parts: list[ReplyText | ReplyReasoning | ReplyToolCall] = field(default_factory=list)
    finish: Finish = Finish.STOP
    stop_sequence: str | None = None
    refusal: str | None = None
    usage: Usage | None = None
    logprobs: list[TokenLogprob] | None = None  # the answer's tokens, when the client asked
