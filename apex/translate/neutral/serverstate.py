"""Anthropic's message threads, for upstreams that hold none.

``thread`` (the message-threads beta: the anthropic SDK's ``tool_runner`` sends turn 1 with
``{"type": "create"}`` and later turns with only the new messages and ``{"type": "continue",
"previous_message_id": ...}``) has no equivalent on Chat, Gemini or Converse, and Apex stores no
conversation: dropped, the upstream would answer a turn without the conversation. The clouds'
Claude (Bedrock InvokeModel, Vertex rawPredict) holds no threads either. A translation refuses it
instead, so the route's next channel (a native Anthropic one) serves the request, and with none
the client gets the 400. The refusal carries what Anthropic answers a request it cannot thread
(``error.details``): the SDK then resends the turn unthreaded with the whole history by itself.
What this module must not do: know any upstream's request shape.
"""

from __future__ import annotations

from typing import Final

from apex.errors import InvalidRequest

__all__ = ["THREAD_UNSUPPORTED", "refuse_thread"]

THREAD_UNSUPPORTED: Final = "thread_unsupported_request"  # the error_code the anthropic SDK recovers from


def refuse_thread(thread: object) -> None:
    """Refuse a request that continues or creates a server-held thread."""
    if thread:
        raise InvalidRequest(
            "thread is not supported for this model's upstream (it refers to a conversation Anthropic's API keeps; "
            "Apex stores none): send the whole conversation in 'messages' without 'thread'",
            param="thread", details={"error_code": THREAD_UNSUPPORTED, "unsupported": ["thread"]})
