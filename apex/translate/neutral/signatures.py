"""Gemini thought signatures kept between turns, keyed by the tool-call id Apex generated.

Gemini returns function calls without ids but with an opaque ``thoughtSignature`` that
Gemini 3 requires back on the same part in the next request (docs/protocols.md 8.7.4, P5).
OpenAI and Anthropic clients cannot carry it, so the response and stream translators
``remember`` every call they hand out (name plus signature, or no signature for the later
calls of a parallel batch) and request translation ``recall``s it when the client sends
the call back. The store is a bounded LRU in process memory: a forgotten or foreign id
gets the documented placeholder instead (``FOREIGN_SIGNATURE``). One process-wide store,
``DEFAULT_STORE``, serves the registered translators; tests build their own. Not
thread-safe: it lives on one event loop. What this module must not do: any I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final, NamedTuple, final

__all__ = ["CARRIED_PREFIX", "DEFAULT_STORE", "FOREIGN_SIGNATURE", "SIGNATURE_KEY", "CallRecord", "SignatureStore",
           "carried_signature", "carrying"]

# Anthropic's thinking signature, carried to a Responses client (Codex) as its reasoning
# item's ``encrypted_content``, which the client sends back unchanged: without it the next
# step of an agent loop could not replay the signed thinking block, and thinking was turned
# off for every step after the first (P6). The prefix tells it from OpenAI's own.
CARRIED_PREFIX: Final = "apex-thinking-signature:"
# The key that carries it on a Chat assistant message inside Apex (Responses -> Chat ->
# Messages); never sent to a Chat upstream.
SIGNATURE_KEY: Final = "_apex_thinking_signature"


def carrying(signature: str) -> str:
    """An Anthropic signature as a reasoning item's ``encrypted_content``."""
    return CARRIED_PREFIX + signature


def carried_signature(encrypted: object) -> str | None:
    """The Anthropic signature an ``encrypted_content`` carries, or None (OpenAI's own, or none)."""
    if isinstance(encrypted, str) and encrypted.startswith(CARRIED_PREFIX) and len(encrypted) > len(CARRIED_PREFIX):
        return encrypted[len(CARRIED_PREFIX):]
    return None

# Gemini's documented value for function calls it did not produce itself (history from
# another model or a forgotten id); it disables signature validation for that part.
FOREIGN_SIGNATURE: Final = "skip_thought_signature_validator"


class CallRecord(NamedTuple):
    """What Apex knows about a function call it generated an id for."""

    name: str
    signature: str | None   # None: Gemini gave none (e.g. the 2nd call of a parallel batch)


@final
class SignatureStore:
    """Bounded LRU map: generated tool-call id -> CallRecord."""

    __slots__ = ("_items", "_maxsize")

    def __init__(self, maxsize: int = 50_000) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be positive")
        self._maxsize = maxsize
        self._items: OrderedDict[str, CallRecord] = OrderedDict()

    def remember(self, call_id: str, name: str, signature: str | None) -> None:
        """Record a call Apex handed to a client; evicts the least recently used entry when full."""
        items = self._items
        items[call_id] = CallRecord(name, signature)
        items.move_to_end(call_id)
        if len(items) > self._maxsize:
            items.popitem(last=False)

    def recall(self, call_id: str) -> CallRecord | None:
        """The record for ``call_id``, or None when Apex never made it or forgot it."""
        record = self._items.get(call_id)
        if record is not None:
            self._items.move_to_end(call_id)
        return record

    def signature_for(self, call_id: str) -> str | None:
        """The thoughtSignature to send back on this call's functionCall part.

        The stored signature; None for a known call Gemini gave none (sending one would
        be wrong for the later calls of a parallel batch); the placeholder for unknown ids.
        """
        record = self.recall(call_id)
        if record is None:
            return FOREIGN_SIGNATURE
        return record.signature

    def __len__(self) -> int:
        return len(self._items)


DEFAULT_STORE: Final = SignatureStore()
