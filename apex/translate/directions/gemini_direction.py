"""What every client -> Gemini generateContent direction shares: the seam, wired once.

A direction subclass names its client dialect, the prefix of the tool-call ids it hands
out (``call_`` / ``toolu_``), its request builder, and its client-side body and stream
writers. Responses go Gemini body -> ``Reply`` (``reply_from_gemini``) -> client body;
streams are ``PipedStream(GeminiReader, client writer)``. Both share the direction's
SignatureStore and id factory (injectable for tests). What this module must not do: know
either client dialect's wire shapes.
"""

from __future__ import annotations

from apex.translate.base import StreamTranslator, TranslateContext
from apex.translate.read.gemini_parts import IdFactory, random_call_id, reply_from_gemini
from apex.translate.neutral.parts import PartWriter, PipedStream, Reply
from apex.translate.neutral.reply import encode_body
from apex.translate.neutral.signatures import DEFAULT_STORE, SignatureStore
from apex.translate.read.gemini import GeminiReader
from apex.types import Dialect

__all__ = ["GeminiDirection"]


class GeminiDirection:
    """Base of the X -> GEMINI_GENERATE translators; subclasses fill in the client side."""

    upstream = Dialect.GEMINI_GENERATE
    id_prefix: str  # generated tool-call ids start with it

    def __init__(self, signatures: SignatureStore = DEFAULT_STORE, new_id: IdFactory = random_call_id) -> None:
        self._signatures = signatures
        self._new_id = new_id

    def request(self, body: bytes, ctx: TranslateContext) -> bytes:
        """Client request body -> Gemini request body (raises InvalidRequest)."""
        return self._request(body, self._signatures, ctx)

    def response(self, body: bytes, ctx: TranslateContext) -> bytes:
        """Gemini non-stream body -> client body; sets ``ctx.usage`` (raises UpstreamMalformed)."""
        reply = reply_from_gemini(body, self.id_prefix, self._signatures, self._new_id, ctx.estimated_input_tokens)
        ctx.usage = reply.usage
        return encode_body(self._body(reply, ctx))

    def stream(self, ctx: TranslateContext) -> StreamTranslator:
        """A Gemini reader piped into the client's stream writer."""
        reader = GeminiReader(self.id_prefix, self._signatures, self._new_id, ctx.estimated_input_tokens)
        return PipedStream(reader, self._writer(ctx))

    def _request(self, body: bytes, signatures: SignatureStore, ctx: TranslateContext) -> bytes:
        raise NotImplementedError

    def _body(self, reply: Reply, ctx: TranslateContext) -> dict[str, object]:
        raise NotImplementedError

    def _writer(self, ctx: TranslateContext) -> PartWriter:
        raise NotImplementedError
