"""``Reply`` -> OpenAI Responses ``response`` object (8.8, P22).

Output items in order: ``reasoning`` items (summary text; one per signed thinking block,
with an empty summary for a block with no text) when there was reasoning, one ``message``
item with one ``output_text`` part when there was text, a ``refusal`` part for a refusal,
then one ``function_call`` item per tool call (``id: fc_...``, ``call_id`` = the upstream
call id). Status follows 8.5 (length / content filter -> ``incomplete``).
What this module must not do: parse upstream bodies.
"""

from __future__ import annotations

import msgspec

from apex.translate.base import TranslateContext
from apex.translate.neutral.clientids import created_at, id_stem
from apex.translate.neutral.parts import Reply, ReplyReasoning, ReplyText, ReplyToolCall
from apex.translate.neutral.reasons import Finish, responses_status
from apex.translate.neutral.signatures import carrying
from apex.translate.write.responses import response_object
from apex.translate.neutral.toolids import arguments_text
from apex.translate.neutral.usage import responses_usage_body
from apex.translate.request.responses_tools import client_call

__all__ = ["responses_body"]


def responses_body(reply: Reply, ctx: TranslateContext) -> dict[str, object]:
    """Reply -> Responses ``response`` object."""
    stem = id_stem(reply.upstream_id, ctx)
    output: list[dict[str, object]] = []
    # One item per signed thinking block, its signature as encrypted_content, so each block can
    # be replayed with the signature made for it; a block with no text ("omitted" thinking)
    # still gets one (P6). Unsigned reasoning (other upstreams) is joined into one item.
    reasoning: list[str] = []
    for thought in (p for p in reply.parts if isinstance(p, ReplyReasoning)):
        reasoning.append(thought.text)
        if thought.signature:
            output.append(_reasoning_item(f"rs_{stem}_{len(output)}", "".join(reasoning), thought.signature))
            reasoning = []
    if "".join(reasoning):
        output.append(_reasoning_item(f"rs_{stem}_{len(output)}", "".join(reasoning), None))
    text = "".join(p.text for p in reply.parts if isinstance(p, ReplyText))
    content: list[dict[str, object]] = []
    if text:
        content.append({"type": "output_text", "annotations": [], "logprobs": [], "text": text})
    if reply.refusal:
        content.append({"type": "refusal", "refusal": reply.refusal})
    if content:
        output.append({"id": f"msg_{stem}_{len(output)}", "type": "message", "status": "completed",
                       "role": "assistant", "content": content})
    calls = [p for p in reply.parts if isinstance(p, ReplyToolCall)]
    if calls and reply.finish is Finish.LENGTH and not _whole_json(calls[-1].arguments):
        calls.pop()  # the limit cut it short: left out, as in streams (a client would run it)
    for call in calls:
        output.append({"id": f"fc_{stem}_{len(output)}", "status": "completed", "call_id": call.call_id,
                       **client_call(ctx, call.name, arguments_text(call.arguments))})
    # A refusal is a completed answer with a refusal part, as OpenAI's (not a filtered one).
    status, reason = responses_status(Finish.STOP if reply.refusal and not text else reply.finish)
    usage = responses_usage_body(reply.usage) if reply.usage is not None else None
    return response_object(ctx, "resp_" + stem, status, created_at(ctx), output, usage, None, reason)


def _reasoning_item(item_id: str, text: str, signature: str | None) -> dict[str, object]:
    item: dict[str, object] = {"id": item_id, "type": "reasoning",
                               "summary": [{"type": "summary_text", "text": text}] if text else []}
    if signature:
        item["encrypted_content"] = carrying(signature)
    return item


def _whole_json(text: str) -> bool:
    try:
        msgspec.json.decode(text or "{}")
    except msgspec.DecodeError:
        return False
    return True
