"""Stream relays: what turns an upstream's SSE bytes into the client's, behind one interface.

``PassthroughRelay`` forwards the upstream's own events (same dialect), rewriting only the
model name or the usage chunk Apex asked for, and watches them for usage and the end marker.
``TranslatingRelay`` parses the events and writes them anew in the client's dialect. The
attempt drives either the same way: ``feed`` bytes until ``started``, commit, ``feed`` the
rest, then ``finish`` with the failure (if any) for the closing bytes.
"""

from __future__ import annotations

from typing import Final, Protocol

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from apex.errors import ErrorKind, Secrets, UpstreamMalformed
from apex.server.responses import SSE_HEADERS, stream_error_event
from apex.sse import SseParser, event_data_ok
from apex.translate import StreamTranslator
from apex.translate.neutral.errortypes import event_blames_request
from apex.translate.passthrough import PassthroughStream
from apex.types import Dialect, Usage
from apex.upstream.base import scrub_key_shapes

__all__ = ["PassthroughRelay", "Relay", "TranslatingRelay"]

_STREAM_FAMILY: Final[dict[Dialect, str]] = {
    Dialect.OPENAI_CHAT: "openai_chat",
    Dialect.ANTHROPIC_MESSAGES: "anthropic",
    Dialect.OPENAI_RESPONSES: "responses",
    Dialect.GEMINI_GENERATE: "gemini",
}


class Relay(Protocol):
    """Upstream SSE bytes in, client bytes out."""

    @property
    def started(self) -> bool:
        """A whole first event has been seen: the stream may be committed to the client."""
        ...

    @property
    def usage(self) -> Usage | None: ...

    @property
    def ended(self) -> bool:
        """The stream's last event (terminator or error) has been produced."""
        ...

    @property
    def events(self) -> int:
        """Upstream events seen so far (a usage estimate when the upstream reports none)."""
        ...

    @property
    def stream_error(self) -> str | None:
        """The stream-error label for logs and metrics once finished (None when clean)."""
        ...

    @property
    def blames_request(self) -> bool:
        """The stream ended on an upstream error event that blamed the request (malformed,
        over the context window): the client's doing, no mark against the channel."""
        ...

    def response(self, headers: dict[str, str]) -> web.StreamResponse:
        """The (unprepared) client response this relay writes into."""
        ...

    def feed(self, chunk: bytes) -> bytes:
        """Client bytes for an upstream ``chunk`` (possibly empty)."""
        ...

    def finish(self, failure: tuple[str, ErrorKind] | None) -> bytes:
        """Closing client bytes: the end of a clean stream, or an error event for ``failure``
        (message, kind); an unfinished pass-through stream becomes a failure here."""
        ...


class PassthroughRelay:
    """Same dialect both sides: the upstream's bytes, whole events only, rewritten only when needed."""

    __slots__ = ("_dialect", "_error_chunk", "_label", "_observer", "_secrets", "stream_error")

    def __init__(self, dialect: Dialect, *, channel: str, client_model: str | None, strip_usage_chunk: bool,
                 secrets: Secrets, repair_chat_chunks: bool = False) -> None:
        self._dialect = dialect
        self._label = channel
        self._observer = PassthroughStream(_STREAM_FAMILY[dialect], client_model=client_model,
                                           strip_usage_chunk=strip_usage_chunk, repair_chat_chunks=repair_chat_chunks)
        self._secrets = secrets
        self.stream_error: str | None = None
        self._error_chunk = b""  # the upstream chunk that carried its error event, judged at the end

    @property
    def blames_request(self) -> bool:
        if self.stream_error != "upstream_error_event":
            return False
        events = SseParser().feed(self._error_chunk + b"\n\n")
        return any(event_blames_request(ev.data) for ev in events)

    @property
    def started(self) -> bool:
        return self._observer.first_event_seen

    @property
    def usage(self) -> Usage | None:
        return self._observer.usage

    @property
    def ended(self) -> bool:
        return self._observer.terminated or self._observer.errored

    @property
    def events(self) -> int:
        return self._observer.events

    def response(self, headers: dict[str, str]) -> web.StreamResponse:
        resp = web.StreamResponse(headers=headers)
        resp.headers.update(SSE_HEADERS)
        return resp

    def feed(self, chunk: bytes) -> bytes:
        observer = self._observer
        out = observer.feed(chunk)
        if observer.errored:
            if not self._error_chunk:
                self._error_chunk = chunk
            out = _scrubbed(self._secrets, out)  # an upstream error event may quote the key
        elif self._secrets.has_credentials:
            # An error in a shape the observer does not know (a data-only Responses error,
            # Chat's {"object": "error"}) is forwarded as is: the channel's own key must not
            # ride along. One substring search per spelling of the key, per chunk.
            out = self._secrets.credentials_data(out)
        return out

    def finish(self, failure: tuple[str, ErrorKind] | None) -> bytes:
        observer = self._observer
        tail: list[bytes] = []
        if failure is None:
            tail.append(observer.flush())
            if observer.cut:
                early = f"upstream channel {self._label} ended the stream inside an event"
                failure = (early, "api_error")
                tail.append(stream_error_event(self._dialect, early, "api_error"))
            elif not (observer.terminated or observer.finished or observer.errored):
                early = f"upstream channel {self._label} ended the stream early"
                failure = (early, "api_error")
                tail.append(stream_error_event(self._dialect, early, "api_error"))
        else:
            observer.drop()  # an event the break cut short is never forwarded
            tail.append(stream_error_event(self._dialect, *failure))
        if failure is not None:
            self.stream_error = failure[1]
        elif observer.errored:
            self.stream_error = "upstream_error_event"
        return _tail(self._secrets, b"".join(tail), failure is not None or observer.errored)


class TranslatingRelay:
    """Another dialect upstream: events parsed and written anew by the direction's translator."""

    __slots__ = ("_parser", "_secrets", "_translating", "_usage_of", "events", "started", "stream_error")

    def __init__(self, translating: StreamTranslator, usage_of: _UsageSource, secrets: Secrets) -> None:
        self._translating = translating
        self._parser = SseParser()
        self._secrets = secrets
        self._usage_of = usage_of
        self.started = False
        self.stream_error: str | None = None
        self.events = 0

    @property
    def blames_request(self) -> bool:
        return self._translating.blames_request

    @property
    def usage(self) -> Usage | None:
        return self._usage_of.usage

    @property
    def ended(self) -> bool:
        return self._translating.done

    def response(self, headers: dict[str, str]) -> web.StreamResponse:
        # Events Apex writes itself go out through aiohttp-sse (keep-alive pings included).
        return EventSourceResponse(sep="\n", allow_all_methods=True, headers=headers)

    def feed(self, chunk: bytes) -> bytes:
        translating = self._translating
        parts: list[bytes] = []
        events = self._parser.feed(chunk)
        if events and not self.started and not event_data_ok(events[0].data):
            # not committed yet: a failed attempt (the plan goes on), not a 200 and an error event
            raise UpstreamMalformed("upstream's first stream event is not JSON")
        for event in events:
            parts.extend(translating.feed(event))
        if events:
            if not self.started:  # a keep-alive ping is no answer (see PassthroughStream._observe)
                self.started = any(ev.event != "ping" for ev in events)
            self.events += len(events)
        out = b"".join(parts)
        if translating.done and translating.failure_label is not None:  # an upstream error event: it may quote a key
            out = _scrubbed(self._secrets, out)
        elif out and self._secrets.has_credentials:
            # The channel's own credentials never leave, answers included (as on pass-through
            # streams): one substring search per spelling of the key, per chunk.
            out = self._secrets.credentials_data(out)
        return out

    def finish(self, failure: tuple[str, ErrorKind] | None) -> bytes:
        translating = self._translating
        tail: list[bytes] = []
        if failure is None:
            for event in self._parser.flush():
                tail.extend(translating.feed(event))
            tail.extend(translating.finish())
            self.stream_error = translating.failure_label  # an upstream error event, or a cut stream
        else:
            tail.extend(translating.fail(*failure))
            self.stream_error = failure[1]
        return _tail(self._secrets, b"".join(tail), self.stream_error is not None)


def _tail(secrets: Secrets, data: bytes, failed: bool) -> bytes:
    """A stream's last bytes: an error's scrubbed of key shapes as well; a clean end, which
    carries the answer's last words (a whole Gemini answer ends so), of the channel's
    credentials only (the key-shape scrub rewrote ``task-...`` and ``flask-...`` in answers)."""
    if failed:
        return _scrubbed(secrets, data)
    return secrets.credentials_data(data) if secrets.has_credentials else data


def _scrubbed(secrets: Secrets, data: bytes) -> bytes:
    """An error's bytes without the channel's own secrets nor anything shaped like a
    provider key (README "Errors": an upstream may quote a key, its own or another's)."""
    if secrets:
        data = secrets.data(data)
    return scrub_key_shapes(data)


class _UsageSource(Protocol):
    @property
    def usage(self) -> Usage | None: ...
