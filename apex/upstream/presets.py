"""What Apex knows about each provider type: default URLs, auth header, dialects served.

A preset is data, read once when the Snapshot is built. ``base_url`` follows what the
provider's own SDK takes (OpenAI-shaped URLs include the version path, Anthropic-shaped
ones do not). Dual-protocol providers (DeepSeek, Moonshot, MiniMax) also have an
Anthropic-compatible endpoint, used only while ``base_url`` is the preset default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from apex.translate.passthrough import ReasoningHistory
from apex.types import Dialect, ProviderFamily

__all__ = ["ANTHROPIC_VERSION", "PRESETS", "ProviderPreset"]

ANTHROPIC_VERSION: Final = "2023-06-01"

_OPENAI_CHAT_EMB: Final = frozenset({Dialect.OPENAI_CHAT, Dialect.OPENAI_EMBEDDINGS})


@dataclass(frozen=True, slots=True)
class ProviderPreset:
    """One provider type. ``family`` says which wire shape its base_url speaks."""

    family: ProviderFamily
    base_url: str | None             # None: base_url is required in the config
    dialects: frozenset[Dialect]     # what base_url serves natively
    anthropic_base_url: str | None = None
    stream_usage_option: bool = True  # accepts stream_options.include_usage
    extra_headers: dict[str, str] = field(default_factory=dict)
    native_embedding_encoding: bool = False  # honours encoding_format=base64 itself
    openai_vocabulary: bool = False  # its Chat takes OpenAI's developer role and max_completion_tokens
    # Past reasoning on translated Chat requests (passthrough.fit_reasoning_history): most
    # servers refuse reasoning_content on messages; DeepSeek and Kimi need it on tool-call turns.
    reasoning_history: ReasoningHistory = "drop"
    # Passed-through Chat streams are repaired for OpenAI's SDKs (passthrough._ChunkRepair):
    # parallel tool calls all at index 0, told apart by their ids (Ollama, P3), and Azure's
    # content-filter choices without a ``delta``.
    repairs_chat_chunks: bool = False
    # Refuses request fields it does not know, OpenAI's own included (prompt_cache_key,
    # safety_identifier): translated Chat requests go without them.
    strict_fields: bool = False


PRESETS: Final[dict[str, ProviderPreset]] = {
    "openai": ProviderPreset(
        "openai", "https://api.openai.com/v1",
        frozenset({Dialect.OPENAI_CHAT, Dialect.OPENAI_RESPONSES, Dialect.OPENAI_EMBEDDINGS}),
        native_embedding_encoding=True, openai_vocabulary=True,
    ),
    "anthropic": ProviderPreset(
        "anthropic", "https://api.anthropic.com",
        frozenset({Dialect.ANTHROPIC_MESSAGES, Dialect.ANTHROPIC_COUNT_TOKENS}),
    ),
    "gemini": ProviderPreset(
        "gemini", "https://generativelanguage.googleapis.com",
        frozenset({Dialect.GEMINI_GENERATE, Dialect.GEMINI_EMBED, Dialect.GEMINI_COUNT_TOKENS}),
    ),
    "deepseek": ProviderPreset(
        "openai", "https://api.deepseek.com", frozenset({Dialect.OPENAI_CHAT}),
        anthropic_base_url="https://api.deepseek.com/anthropic", reasoning_history="required",
    ),
    "moonshot": ProviderPreset(
        "openai", "https://api.moonshot.ai/v1", frozenset({Dialect.OPENAI_CHAT, Dialect.OPENAI_RESPONSES}),
        anthropic_base_url="https://api.moonshot.ai/anthropic", reasoning_history="required",
    ),
    "minimax": ProviderPreset(
        "openai", "https://api.minimax.io/v1", frozenset({Dialect.OPENAI_CHAT}),
        anthropic_base_url="https://api.minimax.io/anthropic",
    ),
    "ollama": ProviderPreset("openai", "http://localhost:11434/v1", _OPENAI_CHAT_EMB, repairs_chat_chunks=True),
    "jina": ProviderPreset("openai", "https://api.jina.ai/v1", frozenset({Dialect.OPENAI_EMBEDDINGS})),
    # OpenRouter passes reasoning on to the providers that take it.
    "openrouter": ProviderPreset("openai", "https://openrouter.ai/api/v1", frozenset({Dialect.OPENAI_CHAT}),
                                 reasoning_history="keep"),
    # Groq reports streamed usage in x_groq.usage and has rejected stream_options before.
    "groq": ProviderPreset(
        "openai", "https://api.groq.com/openai/v1", frozenset({Dialect.OPENAI_CHAT}),
        stream_usage_option=False, strict_fields=True,
    ),
    "openai_compatible": ProviderPreset("openai", None, _OPENAI_CHAT_EMB, repairs_chat_chunks=True),
    # Clouds: URLs and auth come from apex.upstream.{azure,bedrock,vertex}; base_url is
    # the resource endpoint (Azure) or defaults from region/location (Bedrock, Vertex).
    "azure_openai": ProviderPreset(
        "openai", None, frozenset({Dialect.OPENAI_CHAT, Dialect.OPENAI_RESPONSES, Dialect.OPENAI_EMBEDDINGS}),
        native_embedding_encoding=True, openai_vocabulary=True, repairs_chat_chunks=True,
    ),
    "bedrock": ProviderPreset("anthropic", None, frozenset({Dialect.ANTHROPIC_MESSAGES})),
    "vertex": ProviderPreset("gemini", None, frozenset({Dialect.GEMINI_GENERATE, Dialect.ANTHROPIC_MESSAGES})),
    "mock": ProviderPreset("mock", None, frozenset(Dialect), native_embedding_encoding=True, openai_vocabulary=True,
                           reasoning_history="keep"),
}
