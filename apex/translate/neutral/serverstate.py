"""Anthropic Messages fields that refer to state or tools Anthropic's API holds, for upstreams that have none.

``thread`` (the message-threads beta: the anthropic SDK's ``tool_runner`` sends turn 1 with
``{"type": "create"}`` and later turns with only the new messages and ``{"type": "continue",
"previous_message_id": ...}``), ``mcp_servers`` (Anthropic's API connects to the MCP servers and runs
their tools) and ``container`` (a code-execution container Anthropic's API keeps) have no equivalent
on Chat, Gemini or Converse, and Apex stores no conversation: dropped, the upstream would answer a
turn without the conversation, or without the tools the client counted on. A translation refuses
them instead, so the route's next channel (a native Anthropic one) serves the request, and with
none the client gets the 400. The clouds' Claude (Bedrock InvokeModel, Vertex rawPredict) takes the
other two but holds no threads either. The ``thread`` refusal carries what Anthropic answers a
request it cannot thread (``error.details``): the SDK then resends the turn unthreaded with the
whole history by itself.
What this module must not do: know any upstream's request shape.
"""

from __future__ import annotations

from typing import Final

from apex.errors import InvalidRequest

__all__ = ["THREAD_UNSUPPORTED", "refuse_server_state", "refuse_thread"]

THREAD_UNSUPPORTED: Final = "thread_unsupported_request"  # the error_code the anthropic SDK recovers from


def refuse_thread(thread: object) -> None:
    """Refuse a request that continues or creates a server-held thread."""
    if thread:
        raise InvalidRequest(
            "thread is not supported for this model's upstream (it refers to a conversation Anthropic's API keeps; "
            "Apex stores none): send the whole conversation in 'messages' without 'thread'",
            param="thread", details={"error_code": THREAD_UNSUPPORTED, "unsupported": ["thread"]})


def refuse_server_state(thread: object, mcp_servers: object, container: object) -> None:
    """Refuse a request with any of the three fields set (``thread`` first: the one a client
    recovers from by itself, to meet the others on its resent turn)."""
    refuse_thread(thread)
    if mcp_servers:
        raise InvalidRequest("mcp_servers is not supported for this model's upstream (Anthropic's API connects to "
                             "those servers itself): declare their tools in 'tools' and run them in the client",
                             param="mcp_servers")
    if container:
        raise InvalidRequest("container is not supported for this model's upstream (it names a container Anthropic's "
                             "API runs code in)", param="container")
