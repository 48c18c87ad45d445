"""Non-stream bodies <-> ``Reply`` for OpenAI Chat and Anthropic Messages (8.4).

Readers raise ``UpstreamMalformed`` when a 2xx body is not what the protocol promises.
Writers put ``ctx.client_model`` in ``model``; reasoning reaches OpenAI clients as
``message.reasoning_content`` and Anthropic clients as ``thinking`` blocks
(signature kept when the source had one, ``""`` otherwise, as in streams); Anthropic
blocks keep the answer's order, adjacent text or reasoning merged into one block; tool
ids are made safe with ``toolids.anthropic_tool_id``; tool names are the client's again
(``ctx.client_tool_name``); arguments ``""`` become ``{}``. A client that declared legacy
``functions`` gets the first call as ``message.function_call`` (``ctx.legacy_functions``).
What this module must not do: decide which direction is being served.
"""

from __future__ import annotations

from typing import Final

import msgspec

from apex.errors import UpstreamMalformed
from apex.translate.base import TranslateContext
from apex.translate.neutral.clientids import created_at, id_stem
from apex.translate.neutral.logprobs import logprobs_from_openai, openai_logprobs
from apex.translate.neutral.parts import Reply, ReplyReasoning, ReplyText, ReplyToolCall
from apex.translate.neutral.reasons import (
    Finish,
    anthropic_stop_reason,
    finish_from_anthropic,
    finish_from_openai,
    openai_finish_reason,
    with_tools,
)
from apex.translate.neutral.toolids import anthropic_tool_id, arguments_object, arguments_text
from apex.translate.read.think_tags import split_think
from apex.translate.neutral.usage import (
    anthropic_usage_body,
    openai_usage_body,
    usage_from_anthropic,
    usage_from_openai,
)
from apex.wire.anthropic import decode_message
from apex.wire.openai import decode_completion

__all__ = ["anthropic_body", "encode_body", "openai_body", "reply_from_anthropic", "reply_from_openai"]

_ENCODER: Final = msgspec.json.Encoder()


def reply_from_anthropic(body: bytes) -> Reply:
    """A Messages response body -> Reply."""
    try:
        msg = decode_message(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UpstreamMalformed(f"upstream Messages body is not valid: {exc}") from exc
    if msg.type != "message" and not (not msg.type and msg.role == "assistant"):
        # {"type": "error", ...} with a 200, or not a Message at all: not an empty answer
        raise UpstreamMalformed(f"upstream Messages body is not a message (type {msg.type or 'missing'!r})")
    reply = Reply(msg.id, finish=finish_from_anthropic(msg.stop_reason), stop_sequence=msg.stop_sequence)
    for block in msg.content:
        if block.type == "text" and block.text:
            reply.parts.append(ReplyText(block.text))
        elif block.type == "thinking":
            reply.parts.append(ReplyReasoning(block.thinking or "", block.signature or None))
        elif block.type == "tool_use":
            raw = bytes(block.input).strip() or b"{}"
            reply.parts.append(ReplyToolCall(block.id or "", block.name or "", raw.decode()))
        # redacted_thinking and server-tool blocks have no OpenAI form: dropped.
    if msg.usage is not None:
        reply.usage = usage_from_anthropic(msg.usage)
    return reply


def reply_from_openai(body: bytes) -> Reply:
    """A Chat Completions response body -> Reply (choice 0)."""
    try:
        completion = decode_completion(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UpstreamMalformed(f"upstream chat completion is not valid: {exc}") from exc
    if not completion.choices or completion.choices[0].message is None:
        raise UpstreamMalformed("upstream chat completion has no choices[0].message")
    choice = completion.choices[0]
    message = choice.message
    assert message is not None  # checked above
    reply = Reply(completion.id)
    reasoning = message.reasoning_content or message.reasoning
    content = message.content
    if content and not reasoning:
        reasoning, content = split_think(content)  # <think>...</think> inline (MiniMax /v1)
    if reasoning:
        reply.parts.append(ReplyReasoning(reasoning))
    if content:
        reply.parts.append(ReplyText(content))
    for k, call in enumerate(message.tool_calls or []):
        fn = call.function
        reply.parts.append(ReplyToolCall(call.id or f"call_{k}", (fn.name if fn else None) or "",
                                         (fn.arguments if fn else None) or ""))
    reply.refusal = message.refusal
    if choice.logprobs is not None:
        reply.logprobs = list(logprobs_from_openai(choice.logprobs))
    has_tools = any(isinstance(p, ReplyToolCall) for p in reply.parts)
    reply.finish = with_tools(finish_from_openai(choice.finish_reason), has_tools)
    if message.refusal and not message.content and choice.finish_reason in (None, "stop"):
        reply.finish = Finish.CONTENT_FILTER
    usage = completion.usage or (completion.x_groq.usage if completion.x_groq else None)
    if usage is not None:
        reply.usage = usage_from_openai(usage)
    return reply


def openai_body(reply: Reply, ctx: TranslateContext) -> dict[str, object]:
    """Reply -> OpenAI ``chat.completion`` object."""
    text = "".join(p.text for p in reply.parts if isinstance(p, ReplyText))
    reasoning = "".join(p.text for p in reply.parts if isinstance(p, ReplyReasoning))
    calls = [p for p in reply.parts if isinstance(p, ReplyToolCall)]
    message: dict[str, object] = {"role": "assistant", "content": text or (None if calls else ""),
                                  "refusal": reply.refusal}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls and ctx.legacy_functions:
        # The legacy form has one call per message and no ids: a client that declared
        # ``functions`` reads only ``function_call``, so later parallel calls cannot reach it.
        first = calls[0]
        message["function_call"] = {"name": ctx.client_tool_name(first.name), "arguments": arguments_text(first.arguments)}
    elif calls:
        message["tool_calls"] = [
            {"id": c.call_id, "type": "function",
             "function": {"name": ctx.client_tool_name(c.name), "arguments": arguments_text(c.arguments)}}
            for c in calls
        ]
    body: dict[str, object] = {
        "id": "chatcmpl-" + id_stem(reply.upstream_id, ctx),
        "object": "chat.completion",
        "created": created_at(ctx),
        "model": ctx.client_model,
        "choices": [{"index": 0, "message": message,
                     "logprobs": openai_logprobs(reply.logprobs) if reply.logprobs is not None else None,
                     "finish_reason": openai_finish_reason(with_tools(reply.finish, bool(calls)),
                                                           legacy_functions=ctx.legacy_functions)}],
    }
    if reply.usage is not None:
        body["usage"] = openai_usage_body(reply.usage)
    return body


def anthropic_body(reply: Reply, ctx: TranslateContext) -> dict[str, object]:
    """Reply -> Anthropic ``message`` object."""
    content: list[dict[str, object]] = []
    calls: list[ReplyToolCall] = []
    for part in reply.parts:  # in the answer's order; adjacent text or reasoning is one block
        last = content[-1] if content else None
        if isinstance(part, ReplyToolCall):
            calls.append(part)
            content.append({"type": "tool_use", "id": anthropic_tool_id(part.call_id), "name": ctx.client_tool_name(part.name),
                            "input": arguments_object(part.arguments)})
        elif not part.text:
            continue
        elif isinstance(part, ReplyReasoning):
            if last is not None and last["type"] == "thinking":
                last["thinking"] = f"{last['thinking']}{part.text}"
                last["signature"] = last["signature"] or part.signature or ""
            else:
                content.append({"type": "thinking", "thinking": part.text, "signature": part.signature or ""})
        elif last is not None and last["type"] == "text":
            last["text"] = f"{last['text']}{part.text}"
        else:
            content.append({"type": "text", "text": part.text})
    if reply.refusal and not any(block["type"] == "text" for block in content):
        after_thinking = next((i for i, block in enumerate(content) if block["type"] != "thinking"), len(content))
        content.insert(after_thinking, {"type": "text", "text": reply.refusal})
    finish = with_tools(reply.finish, bool(calls))
    usage = anthropic_usage_body(reply.usage) if reply.usage is not None else {
        "input_tokens": ctx.estimated_input_tokens, "output_tokens": 0}
    return {
        "id": "msg_" + id_stem(reply.upstream_id, ctx),
        "type": "message",
        "role": "assistant",
        "model": ctx.client_model,
        "content": content,
        "stop_reason": anthropic_stop_reason(finish),
        "stop_sequence": reply.stop_sequence if finish is Finish.STOP_SEQUENCE else None,
        "usage": usage,
    }


def encode_body(body: dict[str, object]) -> bytes:
    """Compact JSON bytes of a response body."""
    return _ENCODER.encode(body)
