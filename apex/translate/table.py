"""Every translated direction Apex serves, as one literal table (client dialect, upstream dialect).

A direction missing here is one Apex does not translate: a client of that dialect cannot use
a channel of that upstream dialect (same-dialect pairs need no entry: they pass through,
``apex.translate.passthrough``). Adding a direction is adding its module under
``directions/`` and one line here; nothing registers itself at import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from apex.translate.base import Translator
from apex.translate.directions.anthropic_to_gemini import AnthropicToGemini
from apex.translate.directions.anthropic_to_openai import AnthropicToOpenAI
from apex.translate.directions.chain import ChainedTranslator
from apex.translate.directions.gemini_embeddings import GeminiEmbedToOpenAI
from apex.translate.directions.gemini_to_anthropic import GeminiToAnthropic
from apex.translate.directions.gemini_to_openai import GeminiToOpenAI
from apex.translate.directions.openai_embeddings_to_gemini import (
    OpenAIEmbeddingsToGemini,
)
from apex.translate.directions.openai_to_anthropic import OpenAIToAnthropic
from apex.translate.directions.openai_to_gemini import OpenAIChatToGemini
from apex.translate.directions.responses_to_anthropic import ResponsesToAnthropic
from apex.translate.directions.responses_to_openai import ResponsesToOpenAI
from apex.types import Dialect

__all__ = ["DIRECTIONS", "find_translator"]

_RESPONSES_TO_CHAT: Final = ResponsesToOpenAI()
_CHAT_TO_GEMINI: Final = OpenAIChatToGemini()

DIRECTIONS: Final[Mapping[tuple[Dialect, Dialect], Translator]] = {
    (Dialect.OPENAI_CHAT, Dialect.ANTHROPIC_MESSAGES): OpenAIToAnthropic(),
    (Dialect.OPENAI_CHAT, Dialect.GEMINI_GENERATE): _CHAT_TO_GEMINI,
    (Dialect.ANTHROPIC_MESSAGES, Dialect.OPENAI_CHAT): AnthropicToOpenAI(),
    (Dialect.ANTHROPIC_MESSAGES, Dialect.GEMINI_GENERATE): AnthropicToGemini(),
    (Dialect.OPENAI_RESPONSES, Dialect.OPENAI_CHAT): _RESPONSES_TO_CHAT,
    (Dialect.OPENAI_RESPONSES, Dialect.ANTHROPIC_MESSAGES): ResponsesToAnthropic(),
    # No direct Responses -> Gemini direction: composed through Chat (8.8 then 8.3).
    (Dialect.OPENAI_RESPONSES, Dialect.GEMINI_GENERATE): ChainedTranslator(_RESPONSES_TO_CHAT, _CHAT_TO_GEMINI),
    (Dialect.OPENAI_EMBEDDINGS, Dialect.GEMINI_EMBED): OpenAIEmbeddingsToGemini(),
    (Dialect.GEMINI_GENERATE, Dialect.OPENAI_CHAT): GeminiToOpenAI(),
    (Dialect.GEMINI_GENERATE, Dialect.ANTHROPIC_MESSAGES): GeminiToAnthropic(),
    (Dialect.GEMINI_EMBED, Dialect.OPENAI_EMBEDDINGS): GeminiEmbedToOpenAI(),
}


def find_translator(client: Dialect, upstream: Dialect) -> Translator | None:
    """The translator for this direction, or None when Apex does not translate it."""
    return DIRECTIONS.get((client, upstream))
