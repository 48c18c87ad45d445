"""Neutral parts -> OpenAI Responses API events for a Responses client (8.7.3, P22).

Every event is ``event: <type>`` + data with the same ``type`` and ``sequence_number``
counting from 0; there is no ``[DONE]``. Items get ids derived from the response id
(``msg_``, ``fc_``, ``rs_`` + stem + output index) and ``output_index`` in order of
appearance. Text goes to a ``message`` item (one ``output_text`` part), reasoning to a
``reasoning`` item as summary text (one item per signed thinking block, the signature as
``encrypted_content``; an empty summary for a block with no text), each tool call to a
``function_call`` item whose ``call_id`` is the upstream call id (named back to the client's namespace and name, or a
``custom_tool_call`` for a freeform tool: ``responses_tools``). A text or reasoning item closes when another item
starts; function-call items close when the upstream ends the call or at the finish, so
interleaved argument fragments still land on the right item. The stream ends with
``response.completed`` (or ``response.incomplete`` for length / content filter) carrying
the whole response and usage; a failure ends it with ``response.failed`` carrying
``error: {code, message}`` (code from the API's closed set: ``server_error``,
``rate_limit_exceeded``, ``invalid_prompt``; and ``context_length_exceeded``, as OpenAI fails
an overflow). What this module must not do: read upstream formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, final

import msgspec

from apex.sse import encode_event
from apex.translate.base import TranslateContext
from apex.translate.neutral.clientids import created_at, id_stem
from apex.translate.neutral.errortypes import responses_error_code
from apex.translate.neutral.parts import (
    Ended,
    Failed,
    Finished,
    Part,
    ReasoningDelta,
    ReasoningSignature,
    RefusalDelta,
    Started,
    TextDelta,
    ToolArgsDelta,
    ToolCallEnded,
    ToolCallStarted,
    UsageUpdated,
)
from apex.translate.neutral.reasons import Finish, responses_status
from apex.translate.neutral.signatures import carrying
from apex.translate.neutral.toolids import arguments_text
from apex.translate.neutral.usage import responses_usage_body
from apex.translate.request.responses_tools import client_call

__all__ = ["ResponsesWriter", "response_object"]

_ENCODER: Final = msgspec.json.Encoder()
ECHO_KEY: Final = "responses_echo"  # ctx.extras key: request settings a response echoes


def response_object(ctx: TranslateContext, response_id: str, status: str, created: int,
                    output: list[dict[str, object]], usage: dict[str, object] | None,
                    error: dict[str, object] | None = None,
                    incomplete_reason: str | None = None) -> dict[str, object]:
    """A Responses ``response`` object with the request's echoed settings."""
    body: dict[str, object] = {
        "id": response_id, "object": "response", "created_at": created, "status": status,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": None, "max_output_tokens": None, "model": ctx.client_model,
        "output": output, "parallel_tool_calls": True, "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None}, "store": False,
        "temperature": None, "text": {"format": {"type": "text"}}, "tool_choice": "auto",
        "tools": [], "top_p": None, "truncation": "disabled", "usage": usage,
        "metadata": {},
    }
    echo = ctx.extras.get(ECHO_KEY)
    if isinstance(echo, dict):
        body.update({k: v for k, v in echo.items() if k in body})
    return body


@dataclass(slots=True)
class _Item:
    kind: str            # "message" | "refusal" (a message with a refusal part) | "reasoning" | "function_call"
    item_id: str
    output_index: int
    text: list[str] = field(default_factory=list)
    call_id: str = ""
    name: str = ""
    done: bool = False
    custom: bool = False  # a custom_tool_call (freeform input) rather than a function_call
    signature: str = ""   # a reasoning item's Anthropic signature (carried as encrypted_content)
    status: str = "completed"  # what its done events said: "incomplete" when the stream failed


@final
class ResponsesWriter:
    """One Responses client stream's writer state."""

    __slots__ = ("_created", "_ctx", "_done", "_finish", "_items", "_open", "_resp_id",
                 "_seq", "_started", "_stem", "_tools", "_usage")

    def __init__(self, ctx: TranslateContext) -> None:
        self._ctx = ctx
        self._created = created_at(ctx)
        self._seq = 0
        self._started = False
        self._done = False
        self._stem = ""
        self._resp_id = ""
        self._items: list[_Item] = []
        self._open: _Item | None = None          # open message or reasoning item
        self._tools: dict[int, _Item] = {}       # part key -> function_call item
        self._finish: Finish | None = None
        self._usage = ctx.usage

    @property
    def done(self) -> bool:
        """True after the terminal event."""
        return self._done

    def write(self, part: Part) -> list[bytes]:
        """Client events for one part."""
        if self._done:
            return []
        out: list[bytes] = []
        if not self._started:
            self._start(part.upstream_id if isinstance(part, Started) else "", out)
        if isinstance(part, RefusalDelta):  # before TextDelta: it is one
            if part.text and self._finish is None:
                item = self._ensure_open("refusal", out)
                item.text.append(part.text)
                out.append(self._event("response.refusal.delta", {
                    "item_id": item.item_id, "output_index": item.output_index, "content_index": 0,
                    "delta": part.text}))
        elif isinstance(part, TextDelta):
            if part.text and self._finish is None:
                item = self._ensure_open("message", out)
                item.text.append(part.text)
                out.append(self._event("response.output_text.delta", {
                    "item_id": item.item_id, "output_index": item.output_index,
                    "content_index": 0, "delta": part.text, "logprobs": []}))
        elif isinstance(part, ReasoningDelta):
            if part.text and self._finish is None:
                item = self._ensure_open("reasoning", out)
                if not item.text:  # the summary part opens with its first text
                    out.append(self._event("response.reasoning_summary_part.added", {
                        "item_id": item.item_id, "output_index": item.output_index, "summary_index": 0,
                        "part": {"type": "summary_text", "text": ""}}))
                item.text.append(part.text)
                out.append(self._event("response.reasoning_summary_text.delta", {
                    "item_id": item.item_id, "output_index": item.output_index,
                    "summary_index": 0, "delta": part.text}))
        elif isinstance(part, ReasoningSignature):
            # A signature ends its thinking block, so it closes the item: the next block gets
            # an item and a signature of its own (one item for two blocks paired the joined text
            # with the last signature). A block with no text ("omitted" thinking, Claude Opus
            # 4.7's default) still gets an item, with an empty summary: without its signature
            # the next step could not replay the thinking, and thinking went off (P6).
            if part.signature and self._finish is None:
                thought = self._ensure_open("reasoning", out)
                thought.signature = part.signature
                self._close_open(out)
        elif isinstance(part, ToolCallStarted):
            if self._finish is None and part.key not in self._tools:
                self._close_open(out)
                item = self._new_item("function_call", "fc")
                item.call_id, item.name = part.call_id, part.name
                item.custom = client_call(self._ctx, part.name, "")["type"] == "custom_tool_call"
                if part.arguments:  # sent whole (Gemini)
                    item.text.append(part.arguments)
                self._tools[part.key] = item
                out.append(self._event("response.output_item.added", {
                    "output_index": item.output_index, "item": self._item_body(item, "in_progress")}))
        elif isinstance(part, ToolArgsDelta):
            item_or_none = self._tools.get(part.key)
            if item_or_none is not None and not item_or_none.done and part.fragment:
                item_or_none.text.append(part.fragment)
                if not item_or_none.custom:  # a custom tool's input is known whole at its end
                    out.append(self._event("response.function_call_arguments.delta", {
                        "item_id": item_or_none.item_id, "output_index": item_or_none.output_index,
                        "delta": part.fragment}))
        elif isinstance(part, ToolCallEnded):
            tool = self._tools.get(part.key)
            if tool is not None:
                self._close_item(tool, out)
        elif isinstance(part, UsageUpdated):
            self._usage = part.usage
            self._ctx.usage = part.usage
        elif isinstance(part, Finished):
            if self._finish is None:
                self._finish = part.reason
        elif isinstance(part, Ended):
            finish = self._finish or Finish.STOP
            if finish is Finish.LENGTH:
                # A call the limit cut short gets no done events and is left out, as after a
                # failure: a client runs a call once it is done (with broken arguments here).
                for tool in self._tools.values():
                    if not tool.done:
                        tool.done = True
                        tool.status = ""
            self._close_all(out)
            if finish is Finish.CONTENT_FILTER and any(i.kind == "refusal" for i in self._items):
                finish = Finish.STOP  # a refusal is a completed answer with a refusal part, as OpenAI's
            status, reason = responses_status(finish)
            usage = responses_usage_body(self._usage) if self._usage is not None else None
            name = "response.completed" if status == "completed" else "response.incomplete"
            out.append(self._event(name, {"response": self._response(status, usage, None, reason)}))
            self._done = True
        elif isinstance(part, Failed):
            # A message or reasoning the failure cut short is "incomplete". A tool call whose
            # arguments never finished gets no done events and is left out of the response: a
            # client runs a call once it is done (Codex did, with half its arguments).
            self._close_open(out, "incomplete")
            for tool in self._tools.values():
                if not tool.done:
                    tool.done = True
                    tool.status = ""
            error: dict[str, object] = {"code": responses_error_code(part.kind, part.code), "message": part.message}
            usage = responses_usage_body(self._usage) if self._usage is not None else None
            out.append(self._event("response.failed", {"response": self._response("failed", usage, error)}))
            self._done = True
        return out

    def _start(self, upstream_id: str, out: list[bytes]) -> None:
        self._started = True
        self._stem = id_stem(upstream_id, self._ctx)
        self._resp_id = "resp_" + self._stem
        skeleton = self._response("in_progress", None, None)
        out.append(self._event("response.created", {"response": skeleton}))
        out.append(self._event("response.in_progress", {"response": skeleton}))

    def _response(self, status: str, usage: dict[str, object] | None,
                  error: dict[str, object] | None, reason: str | None = None) -> dict[str, object]:
        output = [self._item_body(i, i.status) for i in self._items if i.status] if status != "in_progress" else []
        return response_object(self._ctx, self._resp_id, status, self._created, output, usage, error, reason)

    def _event(self, name: str, body: dict[str, object]) -> bytes:
        data = {"type": name, "sequence_number": self._seq, **body}
        self._seq += 1
        return encode_event(_ENCODER.encode(data), name)

    def _new_item(self, kind: str, prefix: str) -> _Item:
        index = len(self._items)
        item = _Item(kind, f"{prefix}_{self._stem}_{index}", index)
        self._items.append(item)
        return item

    def _ensure_open(self, kind: str, out: list[bytes]) -> _Item:
        if self._open is not None and self._open.kind == kind:
            return self._open
        self._close_open(out)
        item = self._new_item(kind, "rs" if kind == "reasoning" else "msg")
        self._open = item
        out.append(self._event("response.output_item.added", {
            "output_index": item.output_index, "item": self._item_body(item, "in_progress")}))
        if kind == "message":
            out.append(self._event("response.content_part.added", {
                "item_id": item.item_id, "output_index": item.output_index, "content_index": 0,
                "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}}))
        elif kind == "refusal":
            out.append(self._event("response.content_part.added", {
                "item_id": item.item_id, "output_index": item.output_index, "content_index": 0,
                "part": {"type": "refusal", "refusal": ""}}))
        return item

    def _close_open(self, out: list[bytes], status: str = "completed") -> None:
        if self._open is not None:
            self._close_item(self._open, out, status)
            self._open = None

    def _close_all(self, out: list[bytes]) -> None:
        self._close_open(out)
        for item in self._tools.values():
            self._close_item(item, out)

    def _close_item(self, item: _Item, out: list[bytes], status: str = "completed") -> None:
        if item.done:
            return
        item.done = True
        item.status = status
        text = "".join(item.text)
        where = {"item_id": item.item_id, "output_index": item.output_index}
        if item.kind == "message":
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
            out.append(self._event("response.output_text.done",
                                   {**where, "content_index": 0, "text": text, "logprobs": []}))
            out.append(self._event("response.content_part.done", {**where, "content_index": 0, "part": part}))
        elif item.kind == "refusal":
            out.append(self._event("response.refusal.done", {**where, "content_index": 0, "refusal": text}))
            out.append(self._event("response.content_part.done", {
                **where, "content_index": 0, "part": {"type": "refusal", "refusal": text}}))
        elif item.kind == "reasoning":
            if text:  # a signature-only item has no summary part
                out.append(self._event("response.reasoning_summary_text.done", {**where, "summary_index": 0, "text": text}))
                out.append(self._event("response.reasoning_summary_part.done", {
                    **where, "summary_index": 0, "part": {"type": "summary_text", "text": text}}))
        elif item.custom:
            body = self._item_body(item, "completed")
            out.append(self._event("response.custom_tool_call_input.done", {**where, "input": body["input"]}))
        else:
            out.append(self._event("response.function_call_arguments.done",
                                   {**where, "arguments": arguments_text(text)}))
        out.append(self._event("response.output_item.done", {
            "output_index": item.output_index, "item": self._item_body(item, status)}))

    def _item_body(self, item: _Item, status: str) -> dict[str, object]:
        text = "".join(item.text)
        if item.kind == "message":
            content = [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}] if status != "in_progress" else []
            return {"id": item.item_id, "type": "message", "status": status, "role": "assistant", "content": content}
        if item.kind == "refusal":
            refusal = [{"type": "refusal", "refusal": text}] if status != "in_progress" else []
            return {"id": item.item_id, "type": "message", "status": status, "role": "assistant", "content": refusal}
        if item.kind == "reasoning":
            summary = [{"type": "summary_text", "text": text}] if status != "in_progress" and text else []
            body: dict[str, object] = {"id": item.item_id, "type": "reasoning", "summary": summary}
            if item.signature and status == "completed":
                body["encrypted_content"] = carrying(item.signature)
            return body
        args = arguments_text(text) if status == "completed" else ""
        call = client_call(self._ctx, item.name, args)
        if item.custom and status != "completed":
            call["input"] = ""
        return {"id": item.item_id, "status": status, "call_id": item.call_id, **call}
