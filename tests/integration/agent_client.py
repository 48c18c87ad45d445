"""Replaying captured coding-agent requests through Apex over real HTTP, and reading the answers
with the official SDK types (shared by the conformance and coding-agent tests).

``send`` posts a capture's exact body and headers (with its own path, ``?beta=true`` for
Claude Code) and returns the answer validated as an ``anthropic.types.Message`` or an
``openai.types.responses.Response``: for a stream every event is validated as the SDK's
stream event type first, then the final object is assembled from the events the way the
SDKs do. ``next_turn`` builds the client's following request: the answer appended to the
history plus the result of the tool it called.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Final, get_args

import aiohttp
import anthropic.types as at
import openai.types.responses as rt
from pydantic import BaseModel

from tests.fixtures import CLIENTS

def _by_type(union: Any) -> dict[str, type[BaseModel]]:
    """The SDK's stream event classes keyed by their ``type`` literal (a readable error per event)."""
    members = get_args(get_args(union)[0]) if get_args(union) and get_args(get_args(union)[0]) else get_args(union)
    return {get_args(cls.model_fields["type"].annotation)[0]: cls for cls in members}


_ANTHROPIC_EVENTS: Final = _by_type(at.RawMessageStreamEvent)
_RESPONSES_EVENTS: Final = _by_type(rt.ResponseStreamEvent)


def validate_event(classes: dict[str, type[BaseModel]], event: dict[str, Any]) -> BaseModel:
    """One stream event validated as the SDK's type for it (unknown types fail)."""
    cls = classes.get(event.get("type", ""))
    assert cls is not None, f"unknown event type {event.get('type')!r}"
    return cls.model_validate(event)
TOOL_OUTPUT = "apex-ok\n"


def capture(name: str) -> dict[str, Any]:
    """One capture file: client, method, path, headers, body."""
    data: dict[str, Any] = json.loads((CLIENTS / f"{name}.json").read_text())
    return data


def is_anthropic(cap: dict[str, Any]) -> bool:
    return str(cap["path"]).startswith("/v1/messages")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    raw: bytes
    message: at.Message | None = None
    response: rt.Response | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        if self.message is not None:
            return "".join(b.text for b in self.message.content if b.type == "text")
        assert self.response is not None
        return "".join(c.text for item in self.response.output if item.type == "message"
                       for c in item.content if c.type == "output_text")

    def tool_calls(self) -> list[dict[str, Any]]:
        """The tool calls in the answer, as dicts in the client's own shape."""
        if self.message is not None:
            return [b.model_dump(exclude_none=True) for b in self.message.content if b.type == "tool_use"]
        assert self.response is not None
        return [i.model_dump(exclude_none=True) for i in self.response.output
                if i.type in ("function_call", "custom_tool_call")]


async def send(session: aiohttp.ClientSession, base: str, key: str, cap: dict[str, Any],
               body: dict[str, Any] | None = None, extra_headers: dict[str, str] | None = None) -> Answer:
    """POST a capture (or ``body`` in its place) to Apex at ``base``; the validated answer."""
    body = body if body is not None else cap["body"]
    headers = {k: v for k, v in cap["headers"].items() if k.lower() != "content-length"}
    if is_anthropic(cap):
        headers["x-api-key"] = key
        path = "/v1/messages?beta=true"
    else:
        headers["Authorization"] = f"Bearer {key}"
        path = cap["path"]
    headers.update(extra_headers or {})
    async with session.post(base + path, data=json.dumps(body).encode(), headers=headers) as resp:
        raw = await resp.read()
        answer = Answer(resp.status, dict(resp.headers), raw)
    if answer.status != 200:
        return answer
    if not body.get("stream"):
        if is_anthropic(cap):
            answer.message = at.Message.model_validate_json(raw)
        else:
            answer.response = rt.Response.model_validate_json(raw)
        return answer
    events = [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]
    answer.events = events
    if is_anthropic(cap):
        answer.message = _assemble_message(events)
    else:
        for ev in events:
            validate_event(_RESPONSES_EVENTS, ev)
        final = [ev for ev in events if ev["type"] in ("response.completed", "response.incomplete")]
        assert len(final) == 1, f"no single terminal event in {[e['type'] for e in events]}"
        answer.response = rt.Response.model_validate(final[0]["response"])
    return answer


def _assemble_message(events: list[dict[str, Any]]) -> at.Message:
    """Anthropic events -> the final Message, as the SDK's stream accumulator builds it."""
    message: dict[str, Any] | None = None
    partial: dict[int, str] = {}
    for ev in events:
        kind = ev["type"]
        if kind == "ping":
            continue  # keep-alive: the SDK skips it too
        validate_event(_ANTHROPIC_EVENTS, ev)
        if kind == "message_start":
            message = copy.deepcopy(ev["message"])
        elif message is None:
            raise AssertionError(f"{kind} before message_start")
        elif kind == "content_block_start":
            assert ev["index"] == len(message["content"]), "content blocks out of order"
            message["content"].append(copy.deepcopy(ev["content_block"]))
        elif kind == "content_block_delta":
            block, delta = message["content"][ev["index"]], ev["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            elif delta["type"] == "input_json_delta":
                partial[ev["index"]] = partial.get(ev["index"], "") + delta["partial_json"]
        elif kind == "content_block_stop":
            if ev["index"] in partial:
                message["content"][ev["index"]]["input"] = json.loads(partial.pop(ev["index"]) or "{}")
        elif kind == "message_delta":
            message.update({k: v for k, v in ev["delta"].items() if k in ("stop_reason", "stop_sequence")})
            message["usage"].update(ev.get("usage") or {})
        elif kind == "error":
            raise AssertionError(f"error event: {ev}")
    assert message is not None and events[-1]["type"] == "message_stop", "stream did not end with message_stop"
    return at.Message.model_validate(message)


def next_turn(cap: dict[str, Any], body: dict[str, Any], answer: Answer, output: str = TOOL_OUTPUT) -> dict[str, Any]:
    """The client's next request: ``body`` plus the answer and the result of each tool call."""
    nxt = copy.deepcopy(body)
    if is_anthropic(cap):
        assert answer.message is not None
        content = [b.model_dump(exclude_none=True) for b in answer.message.content]
        nxt["messages"].append({"role": "assistant", "content": content})
        nxt["messages"].append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": b["id"], "content": output} for b in content if b["type"] == "tool_use"]})
        return nxt
    assert answer.response is not None
    for item in answer.response.output:
        data = item.model_dump(exclude_none=True)
        nxt["input"].append(data)
        if data["type"] == "function_call":
            nxt["input"].append({"type": "function_call_output", "call_id": data["call_id"], "output": output})
        elif data["type"] == "custom_tool_call":
            nxt["input"].append({"type": "custom_tool_call_output", "call_id": data["call_id"], "output": output})
    return nxt
