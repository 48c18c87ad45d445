"""Anthropic Messages view Structs: stream events and the non-stream message body.

Views declare only the fields Apex reads; unknown fields are ignored, so new upstream
fields never break decoding. ``tool_use.input`` stays ``msgspec.Raw`` (its JSON is passed
on, never inspected). What this module must not do: translate or import from apex.
"""

from __future__ import annotations

from typing import Final

import msgspec

__all__ = [
    "Block",
    "BlockDelta",
    "BlockSource",
    "ErrorView",
    "HistoryBlock",
    "HistoryTurn",
    "HistoryView",
    "InputBlock",
    "InputMessage",
    "MessageView",
    "MessagesRequest",
    "OutputConfig",
    "OutputFormat",
    "StreamEvent",
    "ThinkingParam",
    "ToolChoice",
    "ToolDef",
    "UsageBody",
    "UsageEvent",
    "UsageView",
    "decode_message",
    "decode_stream_event",
]


class CacheCreation(msgspec.Struct):
    """``usage.cache_creation``: cache writes by TTL (the one-hour ones cost more)."""

    ephemeral_1h_input_tokens: int | None = None


class UsageView(msgspec.Struct):
    """Anthropic usage; fields may be absent or null (cumulative in message_delta)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation: CacheCreation | None = None


class UsageBody(msgspec.Struct):
    """A Messages body (or ``message_start.message``) read only for its usage and type
    (``error`` in a 200 is not a message)."""

    usage: UsageView | None = None
    type: str = ""
    role: str = ""
    error: msgspec.Raw = msgspec.Raw(b"")  # Raw cannot sit in a union; empty means absent


class UsageEvent(msgspec.Struct):
    """A stream event as pass-through reads it: usage from message_start or message_delta."""

    type: str | None = None
    message: UsageBody | None = None
    usage: UsageView | None = None


class Block(msgspec.Struct):
    """One content block (response body or content_block_start)."""

    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: msgspec.Raw = msgspec.Raw(b"")  # Raw cannot be in a union: empty means absent
    thinking: str | None = None
    signature: str | None = None


class BlockDelta(msgspec.Struct):
    """``content_block_delta.delta`` or ``message_delta.delta``."""

    type: str | None = None
    text: str | None = None
    partial_json: str | None = None
    thinking: str | None = None
    signature: str | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None


class ErrorView(msgspec.Struct):
    """``{"type": "...", "message": "..."}`` inside an error event or body."""

    type: str = "api_error"
    message: str = ""


class MessageView(msgspec.Struct):
    """A Messages response body (also ``message_start.message``)."""

    id: str = ""
    type: str = ""  # "message"; "error" when an upstream sends its error with a 200
    role: str = ""
    model: str = ""
    content: list[Block] = []
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: UsageView | None = None


class StreamEvent(msgspec.Struct):
    """Any Messages stream event, discriminated by ``type`` (kept open for new types)."""

    type: str
    index: int = 0
    message: MessageView | None = None
    content_block: Block | None = None
    delta: BlockDelta | None = None
    usage: UsageView | None = None
    error: ErrorView | None = None


# --- Messages request views: what a translating direction reads of a client's request ---


class BlockSource(msgspec.Struct):
    type: str
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class InputBlock(msgspec.Struct):
    type: str
    text: str | None = None
    source: BlockSource | None = None
    id: str | None = None
    name: str | None = None
    input: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    tool_use_id: str | None = None
    content: str | list[InputBlock] | None = None
    is_error: bool = False
    tool_name: str | None = None  # a tool_reference block (tool search): the deferred tool it loads


class InputMessage(msgspec.Struct):
    role: str
    content: str | list[InputBlock]


class ToolDef(msgspec.Struct):
    name: str
    description: str | None = None
    input_schema: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    type: str | None = None
    defer_loading: bool = False  # tool search: not shown to the model until a tool_reference loads it


class ToolChoice(msgspec.Struct):
    type: str
    name: str | None = None


class ThinkingParam(msgspec.Struct):
    """A request's ``thinking``: read by translation and by pass-through's history view."""

    type: str
    budget_tokens: int | None = None


class OutputFormat(msgspec.Struct):
    type: str
    schema: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


class OutputConfig(msgspec.Struct):
    format: OutputFormat | None = None


class MessagesRequest(msgspec.Struct):
    messages: list[InputMessage]
    system: str | list[InputBlock] | None = None
    tools: list[ToolDef] | None = None
    tool_choice: ToolChoice | None = None
    max_tokens: int | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    thinking: ThinkingParam | None = None
    output_config: OutputConfig | None = None
    # State Anthropic's API keeps, read only to be refused (apex.translate.neutral.serverstate).
    thread: object = None
    mcp_servers: object = None
    container: object = None


# --- a request's history, as pass-through reads it to drop unsigned thinking ---


class HistoryBlock(msgspec.Struct):
    type: str = ""
    signature: str | None = None


class HistoryTurn(msgspec.Struct):
    role: str = ""
    content: str | list[HistoryBlock] = ""


class HistoryView(msgspec.Struct):
    """A Messages request read only for its turns' block types and signatures, and thinking."""

    messages: list[HistoryTurn] = []
    thinking: ThinkingParam | None = None


_EVENT: Final = msgspec.json.Decoder(StreamEvent)
_MESSAGE: Final = msgspec.json.Decoder(MessageView)


def decode_stream_event(data: bytes) -> StreamEvent:
    """Decode one event's data; raises msgspec.DecodeError / ValidationError."""
    return _EVENT.decode(data)


def decode_message(body: bytes) -> MessageView:
    """Decode a non-stream Messages body; raises msgspec.DecodeError / ValidationError."""
    return _MESSAGE.decode(body)
