"""What a cloud channel adds to an upstream attempt: its URL shape, body edits, auth, stream framing.

Azure OpenAI, Bedrock and Vertex speak the OpenAI, Anthropic and Gemini wire formats Apex
already translates, but reach them differently: the model (or deployment) goes in the
URL, Anthropic bodies carry an ``anthropic_version`` of the cloud's own instead of the
``model`` field, auth is a signature or a short-lived token, and Bedrock frames streams
in AWS's binary event-stream. A ``CloudRoute`` holds those differences for one upstream
dialect of one channel, decided when the Snapshot is built; per request it builds the
URL, edits the body only when the cloud needs it, and adds the auth header lines.
A ``CloudChannel`` picks the route family for a model (Claude vs the cloud's own models).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final, Protocol

import msgspec

from apex.errors import InvalidRequest, Untranslatable
from apex.translate.neutral.serverstate import refuse_thread
from apex.upstream.base import UpstreamReply
from apex.upstream.credentials import CredentialSlot
from apex.upstream.egress import Egress
from apex.upstream.http import UpstreamPool
from apex.types import Dialect, ProviderFamily

__all__ = ["Authorizer", "CloudChannel", "CloudRoute", "CloudSetup", "Native", "anthropic_body_for", "bearer_fields"]


class Authorizer(Protocol):
    """Header lines that authorize one request (a signature, or the current token)."""

    def __call__(self, url: str, body: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class CloudRoute:
    """How one upstream dialect of a cloud channel is reached."""

    url: Callable[[str, bool], str]                  # (model as an escaped path segment, stream) -> URL
    prepare: Callable[[bytes], bytes] | None        # body -> the body the cloud takes (when the attempt is prepared)
    authorize: Authorizer | None                     # per-request auth header lines
    reply: Callable[[UpstreamReply, bool, str], UpstreamReply] | None = None  # (reply, stream, url): framing, format
    # The route turns a Messages body into another dialect and resolves Anthropic's tool search
    # there itself (Converse): the body reaches it with its deferred tools and references.
    resolves_tool_search: ClassVar[bool] = False
    # Anthropic's server tools (web search) reach a model that runs them (not Converse's).
    server_tools: ClassVar[bool] = True

    def convert(self, body: bytes) -> tuple[bytes, CloudRoute]:
        """The body in the dialect the cloud takes, and the route that sends it and reads its
        answer. Called when the attempt is prepared, before anything is sent or counted: a
        conversion's refusal is Untranslatable there (the route's next channel may serve the
        request). Most routes take the body as it is, or edited by ``prepare``."""
        if self.prepare is None:
            return body, self
        try:
            return self.prepare(body), self
        except InvalidRequest as err:  # this cloud cannot carry it; the route's next channel may
            raise Untranslatable.of(err) from err

    async def send(
        self, pool: UpstreamPool, url: str, header_fields: bytes, body: bytes, stream: bool, connect_timeout: float,
        egress: Egress | None = None, queued: Callable[[bool], None] | None = None,
    ) -> UpstreamReply:
        """Authorize and POST ``body`` (as ``convert`` made it); the answer with its stream framing undone."""
        if self.authorize is not None:
            header_fields += self.authorize(url, body)
        reply: UpstreamReply = await pool.post(url, header_fields, body, connect_timeout=connect_timeout, egress=egress,
                                               queued=queued)
        if self.reply is not None:
            return self.reply(reply, stream, url)
        return reply


@dataclass(frozen=True, slots=True, eq=False)
class CloudChannel:
    """The cloud side of a compiled channel: which model family a model belongs to, and the
    credentials the Gateway keeps fresh for it (None when the auth is a static header)."""

    kind_of: Callable[[str], str]
    credentials: CredentialSlot | None

    @property
    def reason(self) -> str | None:
        """Why the channel cannot authorize requests right now, or None."""
        return self.credentials.reason if self.credentials is not None else None


@dataclass(frozen=True, slots=True)
class Native:
    """One upstream dialect a cloud model family speaks: where, in which error/usage shape."""

    url: str                 # the fixed URL, or a prefix the route completes
    family: ProviderFamily   # openai | anthropic | gemini
    route: CloudRoute | None  # None: a plain POST to ``url`` with the static headers


@dataclass(frozen=True, slots=True, eq=False)
class CloudSetup:
    """Everything a cloud module decides for one channel at config load."""

    kinds: dict[str, dict[Dialect, Native]]  # model family -> upstream dialect -> how
    kind_of: Callable[[str], str]            # upstream model -> its family (a key of ``kinds``)
    auth_headers: dict[str, str]             # static auth header (an API key), else empty
    credentials: CredentialSlot | None       # refreshed credentials, else None


def bearer_fields(slot: CredentialSlot, channel: str) -> Authorizer:
    """An Authorizer sending the slot's current token as ``Authorization: Bearer``."""

    def authorize(url: str, body: bytes) -> bytes:
        token = slot.current(channel)
        assert isinstance(token, bytes)  # refreshers of bearer tokens keep the encoded header line
        return token

    return authorize


_TOP: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ENC: Final = msgspec.json.Encoder()


def anthropic_body_for(version: str, *, keep_stream: bool) -> Callable[[bytes], bytes]:
    """A body editor for an Anthropic model on a cloud: the model goes in the URL (dropped
    from the body), ``anthropic_version`` names the cloud's version (a client's own value
    wins), and Bedrock, which rejects unknown keys, also loses ``stream``. A mid-conversation
    ``role: "system"`` message (Claude Code, under a first-party beta the clouds do not take)
    joins the system prompt, as it does on Gemini and Converse. A ``thread`` (Anthropic's
    server-held conversation) is refused: the route's next channel may hold it, else the
    anthropic SDK resends the turn unthreaded (``apex.translate.neutral.serverstate``)."""
    version_raw = msgspec.Raw(_ENC.encode(version))

    def prepare(body: bytes) -> bytes:
        try:
            top = _TOP.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvalidRequest(f"request body is not a JSON object: {exc}") from exc
        thread = top.get("thread")
        if thread is not None:  # neither cloud holds Anthropic's message threads (nor takes their beta)
            refuse_thread(msgspec.json.decode(thread))
        top.pop("model", None)
        if not keep_stream:
            top.pop("stream", None)
        top.setdefault("anthropic_version", version_raw)
        if body.find(b'"role":"system"') >= 0 or body.find(b'"role": "system"') >= 0:
            _fold_system_turns(top)
        return _ENC.encode(top)

    return prepare


def _fold_system_turns(top: dict[str, msgspec.Raw]) -> None:
    """Move ``role: "system"`` messages into ``system`` (text blocks after the client's own)."""
    try:
        messages = msgspec.json.decode(top["messages"]) if "messages" in top else None
        system = msgspec.json.decode(top["system"]) if "system" in top else None
    except msgspec.DecodeError:
        return
    if not isinstance(messages, list):
        return
    moved = [m for m in messages if isinstance(m, dict) and m.get("role") == "system"]
    if not moved:
        return
    blocks: list[object] = [{"type": "text", "text": system}] if isinstance(system, str) and system else []
    if isinstance(system, list):
        blocks.extend(system)
    for m in moved:
        content = m.get("content")
        if isinstance(content, str):
            blocks.append({"type": "text", "text": content})
        elif isinstance(content, list):
            blocks.extend(b for b in content if isinstance(b, dict) and b.get("type") == "text")
    top["system"] = msgspec.Raw(_ENC.encode(blocks))
    top["messages"] = msgspec.Raw(_ENC.encode([m for m in messages if not (isinstance(m, dict) and m.get("role") == "system")]))
