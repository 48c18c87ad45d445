"""OpenAI Responses client -> OpenAI Chat upstream (docs/protocols.md 8.8, 8.7.3).

Request via ``responses_to_chat_request``; the Chat answer comes back as a Responses
object (non-stream) or Responses events (``OpenAIChatReader`` -> ``ResponsesWriter``).
What this module must not do: any I/O.
"""

from __future__ import annotations

from typing import Final, final

import msgspec

from apex.translate.base import StreamTranslator, TranslateContext, decode_json_object
from apex.translate.neutral.parts import PipedStream
from apex.translate.neutral.reply import encode_body, reply_from_openai
from apex.translate.neutral.toolids import fit_chat_tool_names
from apex.translate.write.responses_reply import responses_body
from apex.translate.request.responses import chat_tool_media, responses_to_chat_request
from apex.translate.write.responses import ResponsesWriter
from apex.translate.read.openai import OpenAIChatReader
from apex.types import Dialect

__all__ = ["ResponsesToOpenAI"]

_ENCODER: Final = msgspec.json.Encoder()


@final
class ResponsesToOpenAI:
    """The OPENAI_RESPONSES client -> OPENAI_CHAT upstream Translator."""

    client: Dialect = Dialect.OPENAI_RESPONSES
    upstream: Dialect = Dialect.OPENAI_CHAT

    def request(self, body: bytes, ctx: TranslateContext) -> bytes:
        """Responses request bytes -> Chat request bytes (tool names fitted: a namespaced
        ``<namespace>__<name>`` may pass OpenAI's 64 characters; a tool output's images in a
        user message after the tool messages, which also gives Gemini, through Chat, the
        functionResponse and then the images, as for Claude Code)."""
        out = responses_to_chat_request(decode_json_object(body), ctx)
        messages = out["messages"]
        assert isinstance(messages, list)
        chat_tool_media(messages)
        fit_chat_tool_names(out, ctx)
        return _ENCODER.encode(out)

    def response(self, body: bytes, ctx: TranslateContext) -> bytes:
        """chat.completion body -> Responses body; sets ctx.usage."""
        reply = reply_from_openai(body)
        ctx.usage = reply.usage
        return encode_body(responses_body(reply, ctx))

    def stream(self, ctx: TranslateContext) -> StreamTranslator:
        """Chat chunks -> Responses events."""
        return PipedStream(OpenAIChatReader(), ResponsesWriter(ctx))

