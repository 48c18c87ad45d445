"""Why a generation ended, in one neutral vocabulary, and the per-dialect tables (8.5).

``Finish`` is what readers produce and writers consume. Upstream values Apex has never
seen map to ``Finish.STOP`` (docs/protocols.md 8.5: unknown future values end the turn
normally). A turn that produced a tool call and says "stop" (Gemini, some compatible
providers) is reported as a tool-call turn, and one that says "tool_calls" with no call as a
natural stop: see ``with_tools``.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = [
    "Finish",
    "anthropic_stop_reason",
    "finish_from_anthropic",
    "finish_from_openai",
    "gemini_finish_reason",
    "openai_finish_reason",
    "responses_status",
    "with_tools",
]


class Finish(enum.Enum):
    """Neutral end-of-turn reasons."""

    STOP = "stop"                    # natural end
    STOP_SEQUENCE = "stop_sequence"  # a stop sequence matched
    LENGTH = "length"                # output token limit or context window
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"  # refusal / safety
    PAUSE = "pause"                  # Anthropic pause_turn (server-tool loop)


_FROM_ANTHROPIC: Final[dict[str, Finish]] = {
    "end_turn": Finish.STOP,
    "stop_sequence": Finish.STOP_SEQUENCE,
    "max_tokens": Finish.LENGTH,
    "model_context_window_exceeded": Finish.LENGTH,
    "tool_use": Finish.TOOL_CALLS,
    "pause_turn": Finish.PAUSE,
    "refusal": Finish.CONTENT_FILTER,
}
_FROM_OPENAI: Final[dict[str, Finish]] = {
    "stop": Finish.STOP,
    "length": Finish.LENGTH,
    "tool_calls": Finish.TOOL_CALLS,
    "function_call": Finish.TOOL_CALLS,
    "content_filter": Finish.CONTENT_FILTER,
}
_TO_OPENAI: Final[dict[Finish, str]] = {
    Finish.STOP: "stop",
    Finish.STOP_SEQUENCE: "stop",
    Finish.LENGTH: "length",
    Finish.TOOL_CALLS: "tool_calls",
    Finish.CONTENT_FILTER: "content_filter",
    Finish.PAUSE: "stop",
}
_TO_ANTHROPIC: Final[dict[Finish, str]] = {
    Finish.STOP: "end_turn",
    Finish.STOP_SEQUENCE: "stop_sequence",
    Finish.LENGTH: "max_tokens",
    Finish.TOOL_CALLS: "tool_use",
    Finish.CONTENT_FILTER: "refusal",
    Finish.PAUSE: "pause_turn",
}


_TO_GEMINI: Final[dict[Finish, str]] = {
    Finish.STOP: "STOP",
    Finish.STOP_SEQUENCE: "STOP",
    Finish.LENGTH: "MAX_TOKENS",
    Finish.TOOL_CALLS: "STOP",  # Gemini has no tool-call finish: a function-call turn ends with STOP
    Finish.CONTENT_FILTER: "SAFETY",
    Finish.PAUSE: "STOP",
}


def finish_from_anthropic(stop_reason: str | None) -> Finish:
    """Anthropic ``stop_reason`` -> Finish (None/unknown -> STOP)."""
    return _FROM_ANTHROPIC.get(stop_reason or "", Finish.STOP)


def finish_from_openai(finish_reason: str | None) -> Finish:
    """OpenAI ``finish_reason`` -> Finish (None/unknown -> STOP)."""
    return _FROM_OPENAI.get(finish_reason or "", Finish.STOP)


def with_tools(finish: Finish, saw_tool_call: bool) -> Finish:
    """The finish that matches the calls the answer holds: a natural stop after tool calls is
    a tool-call turn (P1), and a tool-call finish with no call (a Chat upstream may say
    ``tool_calls`` and send none) a natural stop; a client loop that keys on the tool-call
    finish would send a turn of results for no call."""
    if saw_tool_call and finish is Finish.STOP:
        return Finish.TOOL_CALLS
    if not saw_tool_call and finish is Finish.TOOL_CALLS:
        return Finish.STOP
    return finish


def openai_finish_reason(finish: Finish, *, legacy_functions: bool = False) -> str:
    """Finish -> OpenAI Chat ``finish_reason`` ("function_call" for a call answered in the
    legacy ``function_call`` form, as OpenAI does)."""
    if legacy_functions and finish is Finish.TOOL_CALLS:
        return "function_call"
    return _TO_OPENAI[finish]


def gemini_finish_reason(finish: Finish) -> str:
    """Finish -> Gemini ``finishReason``."""
    return _TO_GEMINI[finish]


def anthropic_stop_reason(finish: Finish) -> str:
    """Finish -> Anthropic ``stop_reason``."""
    return _TO_ANTHROPIC[finish]


def responses_status(finish: Finish) -> tuple[str, str | None]:
    """Finish -> Responses ``(status, incomplete_details.reason or None)``."""
    if finish is Finish.LENGTH:
        return "incomplete", "max_output_tokens"
    if finish is Finish.CONTENT_FILTER:
        return "incomplete", "content_filter"
    return "completed", None
