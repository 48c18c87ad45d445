"""OpenAI Responses client -> Anthropic Messages upstream: 8.8 composed with 8.1.

The request goes Responses -> Chat -> Messages (``responses_to_chat_request`` then
``openai_to_anthropic_request``, so every 8.1 decision applies); the answer comes back as
a Responses object or Responses events (``AnthropicReader`` -> ``ResponsesWriter``).
What this module must not do: any I/O.
"""

from __future__ import annotations

from typing import Final, final

import msgspec

from apex.translate.base import StreamTranslator, TranslateContext, decode_json_object
from apex.translate.directions.openai_to_anthropic import openai_to_anthropic_request
from apex.translate.neutral.parts import PipedStream
from apex.translate.neutral.reply import encode_body, reply_from_anthropic
from apex.translate.write.responses_reply import responses_body
from apex.translate.request.responses import responses_to_chat_request
from apex.translate.write.responses import ResponsesWriter
from apex.translate.read.anthropic import AnthropicReader
from apex.translate.request.responses_tools import SERVER_TOOLS_KEY
from apex.types import Dialect

__all__ = ["ResponsesToAnthropic"]

_ENCODER: Final = msgspec.json.Encoder()


@final
class ResponsesToAnthropic:
    """The OPENAI_RESPONSES client -> ANTHROPIC_MESSAGES upstream Translator."""

    client: Dialect = Dialect.OPENAI_RESPONSES
    upstream: Dialect = Dialect.ANTHROPIC_MESSAGES

    def request(self, body: bytes, ctx: TranslateContext) -> bytes:
        """Responses request bytes -> Messages request bytes."""
        chat = responses_to_chat_request(decode_json_object(body), ctx, web_search=ctx.upstream_server_tools,
                                         signatures=True)
        out = openai_to_anthropic_request(chat, ctx)
        server_tools = ctx.extras.get(SERVER_TOOLS_KEY)
        if isinstance(server_tools, list):  # the client's web_search -> Anthropic's own
            tools = out.setdefault("tools", [])
            assert isinstance(tools, list)
            tools.extend(server_tools)
        return _ENCODER.encode(out)

    def response(self, body: bytes, ctx: TranslateContext) -> bytes:
        """Messages body -> Responses body; sets ctx.usage."""
        reply = reply_from_anthropic(body)
        ctx.usage = reply.usage
        return encode_body(responses_body(reply, ctx))

    def stream(self, ctx: TranslateContext) -> StreamTranslator:
        """Anthropic events -> Responses events."""
        return PipedStream(AnthropicReader(), ResponsesWriter(ctx))

