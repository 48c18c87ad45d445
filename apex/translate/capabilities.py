"""The model capability table: what an upstream model accepts, per provider family and model glob.

Translators ask ``ctx.caps`` instead of guessing from the request: whether the model
reasons at all (so ``thinking`` / ``reasoning_effort`` is mapped only where it means
something: OpenAI answers 400 to ``reasoning_effort`` on gpt-4.1), which field carries the
output limit (OpenAI reasoning models refuse ``max_tokens`` and want
``max_completion_tokens``), which reasoning knobs the model takes (``effort``: OpenAI
``reasoning_effort``; ``budget``: Anthropic ``thinking.budget_tokens`` or Gemini
``thinkingBudget``; ``adaptive``: Anthropic ``thinking: {type: adaptive}`` with
``output_config.effort``) and whether it takes a JSON schema natively (Anthropic
``output_config.format``). The built-in rows below are overridden per channel by the
config's ``channels[].capabilities`` (first matching row wins, channel rows first).
``CapabilityTable.lookup`` caches per model name; built once per channel at config load.
What this module must not do: read requests, do I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from apex.glob import compile_glob

__all__ = ["ANY_THINKING_MODEL", "BUILTIN", "MAX_STOP_SEQUENCES", "SAMPLING_FIELDS", "CapabilityRow", "CapabilityTable", "ModelCaps", "NO_CAPS"]

Knob = Literal["effort", "budget", "adaptive"]
MaxTokensField = Literal["max_tokens", "max_completion_tokens"]


@dataclass(frozen=True, slots=True)
class ModelCaps:
    """What one upstream model accepts."""

    reasons: bool = False
    max_tokens_field: MaxTokensField = "max_tokens"
    knobs: frozenset[Knob] = frozenset()
    efforts: tuple[str, ...] = ("low", "medium", "high")  # effort values it accepts (DEFAULT_EFFORTS)
    json_schema: bool = False  # Anthropic output_config.format (structured outputs)
    known: bool = True  # False: no row matched; Apex changes nothing it would change for a known model
    one_sampling: bool = False  # takes temperature or top_p, not both (Claude Opus 4.1, 4.5 and later)
    max_output: int = 0  # the most output tokens it allows (a larger limit is a 400); 0: unknown
    max_thinking: int = 0  # the largest thinking budget it takes (Gemini: a larger one is a 400); 0: unknown

    def thinking_budget(self, asked: int) -> int:
        """A thinking budget cut to what the model takes: Claude Code's 31,999 and ``xhigh``'s
        32,768 are 400s on gemini-2.5-flash (0-24,576)."""
        return asked if not self.max_thinking or asked <= self.max_thinking else self.max_thinking

    def output_limit(self, asked: int) -> int:
        """A client's output limit, cut to what the model allows: Claude Code asks 64,000 or
        128,000, and OpenAI answers 400 to more than gpt-4.1's 32,768 or gpt-4o's 16,384."""
        return asked if not self.max_output or asked <= self.max_output else self.max_output

    @property
    def refuses_sampling(self) -> bool:
        """OpenAI's reasoning models (the ones taking ``max_completion_tokens``) answer 400 to
        ``temperature`` / ``top_p`` other than the default, whether reasoning was asked for or not."""
        return self.max_tokens_field == "max_completion_tokens"

    def effort(self, wanted: str) -> str:
        """``wanted`` if the model accepts it, else the nearest accepted value."""
        if wanted in self.efforts:
            return wanted
        order = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
        rank = order.index(wanted) if wanted in order else 3
        accepted = [e for e in self.efforts if e in order]
        if not accepted:
            return wanted
        return min(accepted, key=lambda e: abs(order.index(e) - rank))


NO_CAPS: Final = ModelCaps(known=False)
ANY_THINKING_MODEL: Final = ModelCaps(reasons=True)  # a translator's default when no table is asked: thinking kept, no limit
# Dropped for a model that ``refuses_sampling``: OpenAI's reasoning models answer 400 to each
# ("Unsupported parameter: 'stop' is not supported with this model").
SAMPLING_FIELDS: Final = ("temperature", "top_p", "stop")
MAX_STOP_SEQUENCES: Final = 4  # OpenAI Chat takes at most four
_EFFORT: Final[frozenset[Knob]] = frozenset({"effort"})
_BUDGET: Final[frozenset[Knob]] = frozenset({"budget"})
_ADAPTIVE: Final[frozenset[Knob]] = frozenset({"budget", "adaptive"})


@dataclass(frozen=True, slots=True)
class CapabilityRow:
    """One row: a provider family ("openai", "anthropic", "gemini" or "*"), a model glob, caps."""

    family: str
    model: str
    caps: ModelCaps


def _openai_reasoner(efforts: tuple[str, ...], max_output: int) -> ModelCaps:
    return ModelCaps(True, "max_completion_tokens", _EFFORT, efforts, max_output=max_output)


# Output limits from the providers' model pages (max output tokens).
_GPT5: Final = _openai_reasoner(("minimal", "low", "medium", "high"), 128_000)
_GPT51: Final = _openai_reasoner(("none", "low", "medium", "high", "xhigh"), 128_000)
_O_SERIES: Final = _openai_reasoner(("low", "medium", "high"), 100_000)
_CHAT_MODEL: Final = ModelCaps()
_CLAUDE_BUDGET: Final = ModelCaps(True, "max_tokens", _BUDGET)
_CLAUDE_45: Final = ModelCaps(True, "max_tokens", _BUDGET, json_schema=True, one_sampling=True, max_output=64_000)
_CLAUDE_OPUS_41: Final = ModelCaps(True, "max_tokens", _BUDGET, json_schema=True, one_sampling=True, max_output=32_000)
_CLAUDE_ADAPTIVE: Final = ModelCaps(True, "max_tokens", _ADAPTIVE, ("low", "medium", "high", "max"), json_schema=True,
                                    one_sampling=True)
# thinkingBudget ranges from Gemini's thinking guide: 2.5 Pro 128-32,768, 2.5 Flash 0-24,576,
# 2.5 Flash-Lite 512-24,576.
_GEMINI_THINKING: Final = ModelCaps(True, "max_tokens", _BUDGET, max_output=65_536, max_thinking=32_768)
_GEMINI_FLASH: Final = ModelCaps(True, "max_tokens", _BUDGET, max_output=65_536, max_thinking=24_576)

# Order matters: the first matching row wins, so narrow patterns come before broad ones.
BUILTIN: Final[tuple[CapabilityRow, ...]] = (
    CapabilityRow("openai", "gpt-5-chat*", ModelCaps(max_output=16_384)),
    CapabilityRow("openai", "gpt-5.[1-9]*", _GPT51),
    CapabilityRow("openai", "gpt-5*", _GPT5),
    CapabilityRow("openai", "gpt-6*", _GPT51),
    CapabilityRow("openai", "codex-*", _GPT5),
    CapabilityRow("openai", "o1-mini*", _openai_reasoner(("low", "medium", "high"), 65_536)),
    CapabilityRow("openai", "o[1-9]*", _O_SERIES),
    CapabilityRow("openai", "gpt-4.1*", ModelCaps(max_output=32_768)),
    CapabilityRow("openai", "gpt-4o*", ModelCaps(max_output=16_384)),
    CapabilityRow("openai", "chatgpt-4o*", ModelCaps(max_output=16_384)),
    CapabilityRow("openai", "gpt-4-turbo*", ModelCaps(max_output=4_096)),
    CapabilityRow("openai", "gpt-4*", _CHAT_MODEL),
    CapabilityRow("openai", "gpt-3.5*", _CHAT_MODEL),
    CapabilityRow("openai", "chatgpt-*", _CHAT_MODEL),
    # OpenAI-compatible reasoners that take a reasoning_effort knob.
    CapabilityRow("openai", "gpt-oss-*", ModelCaps(True, "max_tokens", _EFFORT)),
    CapabilityRow("openai", "grok-3-mini*", ModelCaps(True, "max_tokens", _EFFORT, ("low", "high"))),
    # Reasoners without a knob: they think on their own and answer with reasoning_content.
    CapabilityRow("openai", "deepseek-reasoner*", ModelCaps(True, max_output=65_536)),
    CapabilityRow("openai", "deepseek-chat*", ModelCaps(max_output=8_192)),
    CapabilityRow("openai", "*thinking*", ModelCaps(True)),
    *(CapabilityRow("anthropic", f"claude-{tier}-{version}*", _CLAUDE_ADAPTIVE)
      for tier in ("opus", "sonnet", "haiku") for version in ("4-[6-9]", "[5-9]")),
    *(CapabilityRow("anthropic", f"claude-{tier}-4-5*", _CLAUDE_45) for tier in ("opus", "sonnet", "haiku")),
    CapabilityRow("anthropic", "claude-opus-4-1*", _CLAUDE_OPUS_41),
    CapabilityRow("anthropic", "claude-opus-4*", ModelCaps(True, "max_tokens", _BUDGET, max_output=32_000)),
    CapabilityRow("anthropic", "claude-sonnet-4*", ModelCaps(True, "max_tokens", _BUDGET, max_output=64_000)),
    CapabilityRow("anthropic", "claude-3-7-*", ModelCaps(True, "max_tokens", _BUDGET, max_output=64_000)),
    CapabilityRow("anthropic", "claude-3*", ModelCaps()),
    CapabilityRow("anthropic", "claude-*", _CLAUDE_BUDGET),
    # Other Anthropic-shaped models (DeepSeek, Kimi, MiniMax endpoints) take budget thinking.
    CapabilityRow("anthropic", "*", _CLAUDE_BUDGET),
    CapabilityRow("gemini", "gemini-2.5-flash*", _GEMINI_FLASH),
    CapabilityRow("gemini", "gemini-2.5*", _GEMINI_THINKING),
    CapabilityRow("gemini", "gemini-[3-9]*flash*", _GEMINI_FLASH),
    CapabilityRow("gemini", "gemini-[3-9]*", _GEMINI_THINKING),
    CapabilityRow("gemini", "*thinking*", _GEMINI_THINKING),
    CapabilityRow("gemini", "gemini-2.0*", ModelCaps(max_output=8_192)),  # no thinking: a thinkingConfig is a 400
    CapabilityRow("gemini", "gemini-1*", ModelCaps(max_output=8_192)),
)


class CapabilityTable:
    """Rows for one channel and upstream family: ``lookup(model)`` -> ModelCaps (cached)."""

    __slots__ = ("_cache", "_rows")

    _CACHE_MAX: Final = 1024

    def __init__(self, family: str, overrides: Iterable[CapabilityRow] = ()) -> None:
        rows = [r for r in overrides] + [r for r in BUILTIN if r.family in (family, "*")]
        self._rows: list[tuple[re.Pattern[str], ModelCaps]] = [(compile_glob(r.model), r.caps) for r in rows]
        self._cache: dict[str, ModelCaps] = {}

    def lookup(self, model: str) -> ModelCaps:
        """The caps of the first row whose glob matches ``model``; NO_CAPS when none does."""
        hit = self._cache.get(model)
        if hit is not None:
            return hit
        caps = next((c for rx, c in self._rows if rx.match(model) is not None), NO_CAPS)
        if caps is NO_CAPS and "/" in model:  # a vendor prefix: Groq's and OpenRouter's "openai/gpt-oss-120b"
            bare = model.rsplit("/", 1)[1]
            caps = next((c for rx, c in self._rows if rx.match(bare) is not None), NO_CAPS)
        if len(self._cache) >= self._CACHE_MAX:
            self._cache.clear()
        self._cache[model] = caps
        return caps


def override_row(family: str, model: str, *, reasons: bool, max_tokens_field: str | None,
                 knobs: Iterable[str] | None, efforts: Iterable[str] | None,
                 json_schema: bool, one_sampling: bool = False, max_output: int = 0) -> CapabilityRow:
    """A config row. It replaces the built-in caps for the models it matches; a field left
    out takes its default: ``max_tokens``, and for a reasoning model the family's usual knob
    (``effort`` on OpenAI-shaped upstreams, ``budget`` on Anthropic and Gemini)."""
    if knobs is None:
        knobs = ("effort",) if reasons and family == "openai" else ("budget",) if reasons else ()
    field: MaxTokensField = "max_completion_tokens" if max_tokens_field == "max_completion_tokens" else "max_tokens"
    chosen = frozenset(k for k in _KNOBS if k in set(knobs))
    caps = ModelCaps(reasons, field, chosen, tuple(efforts) if efforts is not None else _DEFAULT_EFFORTS,
                     json_schema, one_sampling=one_sampling, max_output=max_output)
    return CapabilityRow("*", model, caps)


_KNOBS: Final[tuple[Knob, ...]] = ("effort", "budget", "adaptive")
_DEFAULT_EFFORTS: Final = ("low", "medium", "high")
