"""The translator seam: one Translator per (client dialect, upstream dialect) direction.

A Translator is stateless and shared; per-request state lives in the TranslateContext and
in the StreamTranslator it creates for one stream. Translators never do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Protocol

import msgspec

from apex.errors import ErrorKind, InvalidRequest
from apex.sse import SseEvent
from apex.translate.capabilities import NO_CAPS, ModelCaps
from apex.types import Dialect, Usage

__all__ = ["StreamTranslator", "TranslateContext", "Translator", "decode_json_object"]


@dataclass(slots=True)
class TranslateContext:
    """What one request's translation needs to know and what it learned on the way."""

    client_model: str          # the model name the client asked for; echoed back to it
    upstream_model: str        # the model name sent upstream (after model_map)
    stream: bool
    request_id: str
    include_usage: bool = False   # OpenAI client asked stream_options.include_usage
    upstream_takes_stream_usage: bool = True  # an OpenAI-shaped upstream may be sent stream_options
    # A Messages-shaped upstream that runs Anthropic's server tools (web search); Bedrock
    # Converse speaks Messages through Apex but refuses them.
    upstream_server_tools: bool = True
    estimated_input_tokens: int = 0
    usage: Usage | None = None    # filled by response()/stream translators when known
    extras: dict[str, object] = field(default_factory=dict)  # per-direction scratch (tool-id maps...)
    caps: ModelCaps = NO_CAPS     # what the upstream model accepts (capability table, per channel)
    notices: dict[str, str] | None = None  # response headers a translation adds (what it dropped)
    tool_names: dict[str, str] | None = None  # upstream tool name -> the client's, where Apex fitted one (toolids)
    # The OpenAI client declared legacy ``functions`` (not ``tools``): it reads the answer's call
    # from ``function_call`` (finish_reason "function_call"), as OpenAI answers that form.
    legacy_functions: bool = False

    def notice(self, header: str, value: str) -> None:
        """Tell the client something through a response header (comma-joined when repeated)."""
        if self.notices is None:
            self.notices = {}
        old = self.notices.get(header)
        self.notices[header] = value if old is None or value in old.split(",") else f"{old},{value}"

    def learn_tool_names(self, renamed: dict[str, str]) -> None:
        """Keep the declared tool names the request translation changed (merged: a chained
        translation fits twice, and each writer undoes one step)."""
        if renamed:
            self.tool_names = renamed if self.tool_names is None else {**self.tool_names, **renamed}

    def client_tool_name(self, name: str) -> str:
        """The client's name for the tool the upstream called ``name``."""
        names = self.tool_names
        return name if names is None else names.get(name, name)


class StreamTranslator(Protocol):
    """Incremental stream translation: upstream events in, client SSE bytes out."""

    def feed(self, event: SseEvent) -> list[bytes]:
        """Translate one upstream event; return complete client SSE events (may be empty).

        Raises UpstreamStatus-free errors only as client-visible events: an upstream error
        event becomes an error event in the client dialect and ``done`` turns True.
        """
        ...

    def finish(self) -> list[bytes]:
        """The upstream body ended: emit the client's closing events (or an error event when
        the upstream ended without its terminator)."""
        ...

    def fail(self, message: str, kind: ErrorKind) -> list[bytes]:
        """Apex must abort the stream (idle timeout, connection reset): an error event."""
        ...

    @property
    def done(self) -> bool:
        """True once a terminator or error event was emitted; later input is ignored."""
        ...

    @property
    def failure_label(self) -> str | None:
        """How the upstream's stream failed (``upstream_error_event``, or ``api_error`` for a
        malformed or cut one), None while it has not: the request's stream error."""
        ...

    @property
    def blames_request(self) -> bool:
        """The upstream's error event blamed the request (malformed, over the context window):
        the client's doing, no mark against the channel."""
        ...


class Translator(Protocol):
    """One direction: client dialect -> upstream dialect and back."""

    client: Dialect
    upstream: Dialect

    def request(self, body: bytes, ctx: TranslateContext) -> bytes:
        """Client request body -> upstream request body (with ctx.upstream_model).

        Raises InvalidRequest for input the upstream cannot express."""
        ...

    def response(self, body: bytes, ctx: TranslateContext) -> bytes:
        """Upstream non-stream 2xx body -> client body; sets ctx.usage.

        Raises UpstreamMalformed when the body is not what the protocol promises."""
        ...

    def stream(self, ctx: TranslateContext) -> StreamTranslator:
        """A fresh StreamTranslator for one streamed response."""
        ...


_JSON: Final = msgspec.json.Decoder()


def decode_json_object(body: bytes) -> dict[str, object]:
    """A client's request bytes -> its top-level JSON object, or InvalidRequest."""
    try:
        req = _JSON.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(req, dict):
        raise InvalidRequest("request body must be a JSON object")
    return req
