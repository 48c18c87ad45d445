"""Reasoning written inline as ``<think>…</think>`` at the start of the content (MiniMax's
/v1, and reasoners served by Ollama or vLLM without a reasoning parser), split out of it.

docs/protocols.md section 7: such a model's thinking becomes the client's thinking block or
reasoning field instead of text. Only a content that starts with the tag (after blank space)
is split: text that merely mentions ``<think>`` later is left alone. What this module must
not do: I/O.
"""

from __future__ import annotations

from typing import Final, Literal, final

__all__ = ["Piece", "ThinkTagSplitter", "split_think"]

OPEN: Final = "<think>"
CLOSE: Final = "</think>"

Piece = tuple[Literal["reasoning", "text"], str]


def split_think(content: str) -> tuple[str, str]:
    """(reasoning, text) of a whole content; ("", content) when it does not open with the tag.
    An unclosed tag (the answer was cut) makes all of it reasoning."""
    stripped = content.lstrip()
    if not stripped.startswith(OPEN):
        return "", content
    inner = stripped[len(OPEN):]
    end = inner.find(CLOSE)
    if end < 0:
        return inner.strip(), ""
    return inner[:end].strip(), inner[end + len(CLOSE):].lstrip()


@final
class ThinkTagSplitter:
    """The same for a streamed content, piece by piece: tags may arrive split across chunks."""

    __slots__ = ("_held", "_state")

    def __init__(self) -> None:
        self._state: Literal["start", "thinking", "gap", "text"] = "start"
        self._held = ""  # text not yet known to be reasoning or answer

    def feed(self, delta: str) -> list[Piece]:
        if self._state == "text":
            return [("text", delta)]
        if self._state == "gap":  # the blank lines between the closing tag and the answer
            delta = delta.lstrip()
            if not delta:
                return []
            self._state = "text"
            return [("text", delta)]
        held = self._held + delta
        if self._state == "start":
            stripped = held.lstrip()
            if len(stripped) < len(OPEN) and OPEN.startswith(stripped):
                self._held = held  # still a possible start of the tag
                return []
            if not stripped.startswith(OPEN):
                self._state = "text"
                self._held = ""
                return [("text", held)]
            self._state = "thinking"
            held = stripped[len(OPEN):].lstrip("\n")
        end = held.find(CLOSE)
        if end >= 0:
            self._state = "gap"
            self._held = ""
            out: list[Piece] = []
            if held[:end]:
                out.append(("reasoning", held[:end]))
            return out + self.feed(held[end + len(CLOSE):])
        keep = _partial_close(held)  # the end may be the start of "</think>"
        self._held = held[len(held) - keep:] if keep else ""
        emit = held[:len(held) - keep]
        return [("reasoning", emit)] if emit else []

    def flush(self) -> list[Piece]:
        """The stream ended: what is held is what it looked like."""
        held, self._held = self._held, ""
        if not held:
            return []
        return [("reasoning" if self._state == "thinking" else "text", held)]


def _partial_close(text: str) -> int:
    """How many characters at the end of ``text`` could begin ``</think>``."""
    for n in range(min(len(CLOSE) - 1, len(text)), 0, -1):
        if CLOSE.startswith(text[-n:]):
            return n
    return 0
