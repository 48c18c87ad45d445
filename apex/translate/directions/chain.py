"""Two translators composed through OpenAI Chat: client -> Chat -> upstream, and back.

Used where no direct direction exists: an OpenAI Responses client on a Gemini channel is
Responses -> Chat (8.8) composed with Chat -> Gemini (8.3). Requests pass through both
request translators, answers through both response translators in reverse, and streams
through both stream translators event by event (the middle Chat events are re-parsed as
they are produced, so nothing is buffered). Pure: no I/O.
"""

from __future__ import annotations

from typing import final

from apex.errors import ErrorKind
from apex.sse import SseEvent, SseParser
from apex.translate.base import StreamTranslator, TranslateContext, Translator
from apex.types import Dialect

__all__ = ["ChainedTranslator"]


@final
class _ChainedStream:
    """inner (upstream -> Chat events) piped into outer (Chat events -> client events)."""

    def __init__(self, inner: StreamTranslator, outer: StreamTranslator) -> None:
        self._inner = inner
        self._outer = outer
        self._parser = SseParser()

    def _through(self, middle: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        for data in middle:
            for event in self._parser.feed(data):
                out.extend(self._outer.feed(event))
        return out

    def feed(self, event: SseEvent) -> list[bytes]:
        return self._through(self._inner.feed(event))

    def finish(self) -> list[bytes]:
        out = self._through(self._inner.finish())
        for event in self._parser.flush():
            out.extend(self._outer.feed(event))
        if not self._outer.done:
            out.extend(self._outer.finish())
        return out

    def fail(self, message: str, kind: ErrorKind) -> list[bytes]:
        return self._outer.fail(message, kind)

    @property
    def done(self) -> bool:
        return self._outer.done

    @property
    def failure_label(self) -> str | None:
        return self._inner.failure_label or self._outer.failure_label

    @property
    def blames_request(self) -> bool:
        return self._inner.blames_request or self._outer.blames_request


@final
class ChainedTranslator:
    """``outer`` (client -> Chat) composed with ``inner`` (Chat -> upstream)."""

    def __init__(self, outer: Translator, inner: Translator) -> None:
        assert outer.upstream is Dialect.OPENAI_CHAT and inner.client is Dialect.OPENAI_CHAT
        self.client = outer.client
        self.upstream = inner.upstream
        self._outer = outer
        self._inner = inner

    def request(self, body: bytes, ctx: TranslateContext) -> bytes:
        return self._inner.request(self._outer.request(body, ctx), ctx)

    def response(self, body: bytes, ctx: TranslateContext) -> bytes:
        return self._outer.response(self._inner.response(body, ctx), ctx)

    def stream(self, ctx: TranslateContext) -> StreamTranslator:
        outer = self._outer.stream(ctx)
        ctx.include_usage = True  # the middle Chat stream must carry usage for the outer side
        return _ChainedStream(self._inner.stream(ctx), outer)
