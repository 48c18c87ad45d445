"""AWS Bedrock event-stream payloads: what the JSON inside each binary frame carries.

What this module must not do: translate or import from apex.
"""

from __future__ import annotations

import msgspec

__all__ = ["StreamChunk", "StreamException", "TypedEvent"]


class StreamChunk(msgspec.Struct):
    """An InvokeModelWithResponseStream ``chunk``: the model's own event, base64 in ``bytes``."""

    bytes: str


class TypedEvent(msgspec.Struct):
    """Any event payload read only for its ``type``."""

    type: str


class StreamException(msgspec.Struct):
    """An exception frame's payload (AWS spells the key either way)."""

    message: str | None = None
    Message: str | None = None
