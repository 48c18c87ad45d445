"""Bedrock Converse / ConverseStream for models that are not Anthropic's, behind the Messages shape.

A bedrock channel's plans speak Anthropic Messages for every model (so every client protocol
reaches it through the translators Apex already has); for a model that is not Claude the
route turns that Messages body into a Converse body, and the answer back into a Messages
answer: a ``converse`` JSON reply into a Messages JSON, a ``converse-stream`` event-stream
into Messages SSE events. Tool names are fitted to Converse's (``toolids.CONVERSE_NAMES``)
and the answer's calls carry the Messages body's names again. Formats: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
and ``API_runtime_ConverseStream.html``. Pure conversion plus the reply wrapper; no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import unquote

import msgspec
from botocore.eventstream import EventStreamMessage

from apex.errors import InvalidRequest
from apex.translate.directions.openai_to_anthropic import json_schema_instruction
from apex.translate.neutral.deferred import TOOL_REFERENCE, is_declared, loaded_tools, reference_text
from apex.translate.neutral.serverstate import refuse_server_state
from apex.translate.neutral.toolids import CONVERSE_NAMES, fit_tool_name
from apex.upstream.base import UpstreamReply
from apex.upstream.eventstream import EventStreamReply, frame_to_sse
from apex.upstream.http import InvalidResponse

__all__ = ["ToolNames", "anthropic_to_converse", "converse_reply", "converse_to_anthropic"]

ToolNames = dict[str, str] | None  # Converse tool name -> the Messages body's, where they differ

_ENC: Final = msgspec.json.Encoder()
_STOP: Final[dict[str, str]] = {
    "end_turn": "end_turn", "tool_use": "tool_use", "max_tokens": "max_tokens", "stop_sequence": "stop_sequence",
    "guardrail_intervened": "refusal", "content_filtered": "refusal",
    # Anthropic's own value for it: every client reads a cut answer (Chat length, Responses incomplete).
    "model_context_window_exceeded": "model_context_window_exceeded",
    # Bedrock could not read the model's output (or its tool call): what it did say ends the
    # turn, as Gemini's MALFORMED_* finishes do (docs/protocols.md 8.5); nothing said is a
    # malformed answer (_BROKEN).
    "malformed_model_output": "end_turn", "malformed_tool_use": "end_turn",
}
_BROKEN: Final = frozenset({"malformed_model_output", "malformed_tool_use"})
_IMAGE_FORMATS: Final = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
_DOCUMENT_FORMATS: Final = {
    "application/pdf": "pdf", "text/plain": "txt", "text/csv": "csv", "text/html": "html", "text/markdown": "md",
    "application/msword": "doc", "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
}


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"{where} must be a string or a list of content blocks")
    out: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            if block.get("text"):
                out.append({"text": block["text"]})
        elif kind == TOOL_REFERENCE:
            out.append({"text": reference_text(block.get("tool_name"), CONVERSE_NAMES)})
        elif kind == "image":
            out.append(_image(block, where))
        elif kind == "document":
            out.append(_document(block, where))
        elif kind == "tool_use":
            out.append({"toolUse": {"toolUseId": block.get("id"), "name": _fit(block.get("name")),
                                    "input": block.get("input") or {}}})
        elif kind == "tool_result":
            inner = block.get("content")
            parts = [{"text": inner}] if isinstance(inner, str) else _result_parts(inner, where)
            result: dict[str, Any] = {"toolUseId": block.get("tool_use_id"), "content": parts or [{"text": ""}]}
            if block.get("is_error"):
                result["status"] = "error"
            out.append({"toolResult": result})
        elif kind in ("thinking", "redacted_thinking"):
            continue  # another model's reasoning: Converse models cannot take it back
        else:
            raise InvalidRequest(f"{where}: content block type {kind!r} cannot be sent to Bedrock Converse")
    return out


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    src = block.get("source")
    media_type = src.get("media_type") if isinstance(src, dict) else None
    fmt = _IMAGE_FORMATS.get(media_type) if isinstance(media_type, str) else None
    if not isinstance(src, dict) or src.get("type") != "base64" or fmt is None:
        raise InvalidRequest(f"{where}: Bedrock Converse takes base64 png, jpeg, gif or webp images")
    return {"image": {"format": fmt, "source": {"bytes": src.get("data", "")}}}


def _document(block: dict[str, Any], where: str) -> dict[str, Any]:
    """An Anthropic document block (base64 or plain text) as a Converse document. Converse
    wants a name of letters, digits, single spaces, hyphens and brackets, one per document:
    one made from a hash of the content."""
    src = block.get("source")
    kind = src.get("type") if isinstance(src, dict) else None
    media_type = src.get("media_type") if isinstance(src, dict) else None
    fmt = _DOCUMENT_FORMATS.get(media_type) if isinstance(media_type, str) else None
    data = src.get("data") if isinstance(src, dict) else None
    if kind == "text" and isinstance(data, str):
        fmt, data = "txt", base64.b64encode(data.encode()).decode()
    elif kind != "base64" or fmt is None or not isinstance(data, str):
        raise InvalidRequest(f"{where}: Bedrock Converse takes base64 documents ({', '.join(sorted(set(_DOCUMENT_FORMATS.values())))}) "
                             "or plain-text ones")
    name = "document-" + hashlib.sha256(data.encode()).hexdigest()[:12]
    return {"document": {"format": fmt, "name": name, "source": {"bytes": data}}}


def _result_parts(inner: object, where: str) -> list[dict[str, Any]]:
    """A tool result's text, tool_reference, image and document blocks as Converse
    tool-result content (images and documents were dropped: a screenshot or a PDF a tool read
    never reached the model)."""
    parts: list[dict[str, Any]] = []
    for p in inner if isinstance(inner, list) else ():
        kind = p.get("type") if isinstance(p, dict) else None
        if kind == "text":
            parts.append({"text": p.get("text", "")})
        elif kind == TOOL_REFERENCE:
            parts.append({"text": reference_text(p.get("tool_name"), CONVERSE_NAMES)})
        elif kind == "image":
            parts.append(_image(p, where))
        elif kind == "document":
            parts.append(_document(p, where))
    return parts


def _fit(name: object) -> object:
    """A tool name as Converse takes it (1-64 of ``[a-zA-Z0-9_-]``; a Claude Code MCP name or a
    Codex namespace tool runs longer): fitted the same way every turn, so the history's calls
    match the declared tools."""
    return fit_tool_name(name, CONVERSE_NAMES) if isinstance(name, str) else name


def anthropic_to_converse(body: bytes) -> tuple[bytes, ToolNames]:
    """A Messages request body as a Converse request body (the model is in the URL), and the
    declared tool names it had to change (Converse name -> the body's), None when none.

    Converse has user and assistant turns only: a mid-conversation ``role: "system"`` message
    (Claude Code) joins the system prompt. Deferred tools (tool search) are declared once a
    ``tool_reference`` has loaded them (``apex.translate.neutral.deferred``). Structured
    output (``output_config.format``) becomes the system instruction OpenAI and Gemini
    clients get for a model without a native schema, asking for JSON matching it.
    ``thread``, ``mcp_servers`` and ``container`` are refused (``apex.translate.neutral.serverstate``)."""
    try:
        req = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(req, dict):
        raise InvalidRequest("request body must be a JSON object")
    refuse_server_state(req.get("thread"), req.get("mcp_servers"), req.get("container"))
    messages = req.get("messages")
    if not isinstance(messages, list):
        raise InvalidRequest("messages must be a list")
    system = req.get("system")
    system_blocks = _blocks(system, "system") if system else []
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise InvalidRequest(f"messages[{i}] must be an object")
        blocks = _blocks(m.get("content"), f"messages[{i}].content")
        if m.get("role") == "system":
            system_blocks.extend(blocks)
        else:
            turns.append({"role": m.get("role"), "content": blocks})
    schema = _output_schema(req.get("output_config"))
    if schema is not None:
        # Converse's own outputConfig.textFormat is for a few models only (which ones, Apex
        # does not know): the instruction works on every model, as for OpenAI clients here.
        system_blocks.append({"text": json_schema_instruction(schema)})
    out: dict[str, Any] = {"messages": turns}
    if system_blocks:
        out["system"] = system_blocks
    config: dict[str, Any] = {}
    for src, dst in (("max_tokens", "maxTokens"), ("temperature", "temperature"), ("top_p", "topP"),
                     ("stop_sequences", "stopSequences")):
        if req.get(src) is not None:
            config[dst] = req[src]
    if config:
        out["inferenceConfig"] = config
    tools = req.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) and isinstance(t.get("name"), str)
                                                                   for t in tools)):
        raise InvalidRequest("tools must be a list of tools, each with a name", param="tools")
    for t in tools or ():
        if t.get("type", "custom") != "custom":  # web_search_*, bash_*, text_editor_*: Anthropic runs or defines them
            raise InvalidRequest(f"server tool {t.get('type')!r} cannot be used with this upstream", param="tools")
    choice = req.get("tool_choice")
    choice = choice if isinstance(choice, dict) else {}
    if choice.get("type") == "tool" and not isinstance(choice.get("name"), str):
        raise InvalidRequest("tool_choice of type tool needs the tool's name", param="tool_choice")
    names: ToolNames = None
    for t in tools or ():
        fitted = fit_tool_name(t["name"], CONVERSE_NAMES)
        if fitted != t["name"]:  # rare: the common request builds no map
            names = names or {}
            names[fitted] = t["name"]
    if isinstance(tools, list) and choice.get("type") != "none":
        loaded = loaded_tools(messages)
        specs = [{"toolSpec": {"name": _fit(t.get("name")), "description": t.get("description") or t.get("name"),
                               "inputSchema": {"json": t.get("input_schema") or {"type": "object"}}}}
                 for t in tools if isinstance(t, dict) and is_declared(t.get("defer_loading"), t.get("name"), loaded)]
        if specs:
            tool_config: dict[str, Any] = {"tools": specs}
            if choice.get("type") == "any":
                tool_config["toolChoice"] = {"any": {}}
            elif choice.get("type") == "tool":
                tool_config["toolChoice"] = {"tool": {"name": _fit(choice.get("name"))}}
            out["toolConfig"] = tool_config
    if "toolConfig" not in out:
        # Bedrock refuses toolUse / toolResult blocks without a toolConfig, and here the client
        # offered no tools (or tool_choice none, which Converse cannot say): the history's
        # calls and results go as text, so the model sees them and cannot call anything.
        for turn in turns:
            turn["content"] = [_as_text(b) for b in turn["content"]]
    out["messages"] = _alternating(turns)
    return _ENC.encode(out), names


def _output_schema(config: object) -> object | None:
    """The JSON schema of a Messages ``output_config.format`` (structured outputs), None without one."""
    fmt = config.get("format") if isinstance(config, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    return fmt.get("schema") or {}


def _as_text(block: dict[str, Any]) -> dict[str, Any]:
    use = block.get("toolUse")
    if use is not None:
        return {"text": f"[called tool {use.get('name')} with {_ENC.encode(use.get('input') or {}).decode()}]"}
    result = block.get("toolResult")
    if result is not None:
        text = "".join(str(part.get("text", "")) for part in result.get("content") or [])
        failed = " (error)" if result.get("status") == "error" else ""
        return {"text": f"[tool result{failed}: {text}]"}
    return block


CONVERSATION_START: Final = "."


def _alternating(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive turns of one role as one turn: Converse refuses two user (or assistant)
    turns in a row, which Chat histories have (two user messages, a tool result then text)."""
    merged: list[dict[str, Any]] = []
    for turn in turns:
        if not turn["content"]:
            continue  # an empty turn (only another model's thinking): Converse refuses it
        if merged and merged[-1]["role"] == turn["role"]:
            merged[-1]["content"] = merged[-1]["content"] + turn["content"]
        else:
            merged.append(turn)
    if merged and merged[0]["role"] == "assistant":
        # Converse refuses a conversation that starts with the assistant ("A conversation must
        # start with a user message"): a chat app's greeting first, a Gemini history's model
        # turn. A one-character user turn before it, as other gateways send.
        merged.insert(0, {"role": "user", "content": [{"text": CONVERSATION_START}]})
    return merged


def _usage(u: Mapping[str, Any] | None) -> dict[str, int]:
    u = u or {}
    return {"input_tokens": int(u.get("inputTokens", 0)), "output_tokens": int(u.get("outputTokens", 0)),
            "cache_read_input_tokens": int(u.get("cacheReadInputTokens", 0)),
            "cache_creation_input_tokens": int(u.get("cacheWriteInputTokens", 0))}


def _name(name: object, names: ToolNames) -> object:
    """The Messages body's name for the tool Converse called ``name``."""
    return names.get(name, name) if names is not None and isinstance(name, str) else name


def converse_to_anthropic(raw: bytes, model: str, names: ToolNames = None) -> bytes:
    """A Converse answer as a Messages answer; InvalidResponse (a malformed answer: the plan
    goes on) for a body that is not a Converse answer (it was a 500 and a traceback)."""
    try:
        return _converse_to_anthropic(msgspec.json.decode(raw), model, names)
    except (msgspec.DecodeError, AttributeError, TypeError, ValueError) as exc:
        raise InvalidResponse(f"the Converse answer is not valid: {type(exc).__name__}") from exc


def _converse_to_anthropic(answer: Any, model: str, names: ToolNames) -> bytes:
    if not isinstance(answer, dict) or not isinstance(answer.get("output"), dict):
        raise ValueError("no output")
    content: list[dict[str, Any]] = []
    for block in ((answer.get("output") or {}).get("message") or {}).get("content") or []:
        if "text" in block:
            content.append({"type": "text", "text": block["text"]})
        elif "reasoningContent" in block:
            thought = _thinking_block(block["reasoningContent"])
            if thought is not None:
                content.append(thought)
        elif "toolUse" in block:
            tu = block["toolUse"]
            content.append({"type": "tool_use", "id": tu.get("toolUseId"), "name": _name(tu.get("name"), names),
                            "input": tu.get("input") or {}})
    reason = answer.get("stopReason", "")
    if not content and reason in _BROKEN:
        raise InvalidResponse(f"Bedrock produced no usable output (stopReason {reason})")
    return _ENC.encode({
        "id": f"msg_bdrk_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": _STOP.get(reason, "end_turn"), "stop_sequence": None,
        "usage": _usage(answer.get("usage")),
    })


def _thinking_block(reasoning: Any) -> dict[str, Any] | None:
    """A Converse ``reasoningContent`` block as a Messages thinking block (spec 3: reasoning
    reaches every client): ``reasoningText`` (text, and a signature for Claude) or
    ``redactedContent`` (base64 bytes, Anthropic's ``redacted_thinking``)."""
    if not isinstance(reasoning, dict):
        return None
    redacted = reasoning.get("redactedContent")
    if isinstance(redacted, str):
        return {"type": "redacted_thinking", "data": redacted}
    text = reasoning.get("reasoningText")
    if not isinstance(text, dict):
        return None
    return {"type": "thinking", "thinking": str(text.get("text") or ""), "signature": str(text.get("signature") or "")}


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _ENC.encode({"type": name, **data}) + b"\n\n"


class _ConverseFrames:
    """ConverseStream events -> Messages stream events (text blocks get the start Converse omits)."""

    def __init__(self, model: str, names: ToolNames) -> None:
        self._model = model
        self._names = names
        self._open: set[int] = set()
        self._said = False  # a content block was started
        self._stop: str | None = None
        self._done = False

    def frame(self, msg: EventStreamMessage) -> bytes:
        try:
            return self._frame(msg)
        except (msgspec.DecodeError, AttributeError, TypeError, ValueError) as exc:
            raise InvalidResponse(f"a ConverseStream event is not valid: {type(exc).__name__}") from exc

    def _frame(self, msg: EventStreamMessage) -> bytes:
        headers = msg.headers
        if headers.get(":message-type") != "event":
            return frame_to_sse(msg)
        event = headers.get(":event-type")
        data = msgspec.json.decode(msg.payload) if msg.payload else {}
        if not isinstance(data, dict):
            raise ValueError("not an object")
        if event == "messageStart":
            return _sse("message_start", {"message": {
                "id": f"msg_bdrk_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant", "model": self._model,
                "content": [], "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}})
        index = int(data.get("contentBlockIndex", 0))
        if event == "contentBlockStart":
            tu = (data.get("start") or {}).get("toolUse") or {}
            return self._start(index, {
                "type": "tool_use", "id": tu.get("toolUseId"), "name": _name(tu.get("name"), self._names), "input": {}})
        if event == "contentBlockDelta":
            delta = data.get("delta") or {}
            out = b""
            if "text" in delta:
                if index not in self._open:
                    out += self._start(index, {"type": "text", "text": ""})
                return out + _sse("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": delta["text"]}})
            if "toolUse" in delta:
                return _sse("content_block_delta", {"index": index, "delta": {
                    "type": "input_json_delta", "partial_json": delta["toolUse"].get("input", "")}})
            reasoning = delta.get("reasoningContent")
            if isinstance(reasoning, dict):
                return self._reasoning(index, reasoning)
            return b""
        if event == "contentBlockStop":
            if index not in self._open:
                return b""
            self._open.discard(index)
            return _sse("content_block_stop", {"index": index})
        if event == "messageStop":
            reason = data.get("stopReason", "")
            if reason in _BROKEN and not self._said:
                self._done = True  # an error, not an answer: no message_delta follows
                return _sse("error", {"error": {"type": "api_error",
                                                "message": f"Bedrock produced no usable output (stopReason {reason})"}})
            self._stop = _STOP.get(reason, "end_turn")
            return b""
        if event == "metadata":
            return self._finish(data.get("usage"))
        return b""

    def _reasoning(self, index: int, reasoning: dict[str, Any]) -> bytes:
        """A ``reasoningContent`` delta (text, signature or redacted bytes) as thinking events."""
        redacted = reasoning.get("redactedContent")
        if isinstance(redacted, str):  # arrives whole, in one delta: a block of its own
            return self._start(index, {"type": "redacted_thinking", "data": redacted})
        out = b""
        if index not in self._open:
            out = self._start(index, {"type": "thinking", "thinking": "", "signature": ""})
        if "text" in reasoning:
            out += _sse("content_block_delta", {"index": index, "delta": {
                "type": "thinking_delta", "thinking": str(reasoning.get("text") or "")}})
        if "signature" in reasoning:
            out += _sse("content_block_delta", {"index": index, "delta": {
                "type": "signature_delta", "signature": str(reasoning.get("signature") or "")}})
        return out

    def _start(self, index: int, block: dict[str, Any]) -> bytes:
        self._open.add(index)
        self._said = True
        return _sse("content_block_start", {"index": index, "content_block": block})

    def _finish(self, usage: Mapping[str, Any] | None) -> bytes:
        if self._done or self._stop is None:
            return b""
        self._done = True
        # Cumulative, as Anthropic's own message_delta: the cache counts too, or a streamed
        # answer is priced without its cache reads and writes (message_start knew none).
        return (_sse("message_delta", {"delta": {"stop_reason": self._stop, "stop_sequence": None},
                                       "usage": _usage(usage)})
                + _sse("message_stop", {}))

    def end(self) -> bytes:
        return self._finish(None)


class _ConverseJson:
    """A non-stream Converse reply read as a Messages reply."""

    def __init__(self, reply: UpstreamReply, model: str, names: ToolNames) -> None:
        self._reply = reply
        self._model = model
        self._names = names
        self.status = reply.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._reply.headers

    @property
    def content_type(self) -> str:
        return self._reply.content_type

    @property
    def content(self) -> Any:
        return self._reply.content

    async def read(self) -> bytes:
        raw = await self._reply.read()
        if self.status >= 300:
            return raw
        return converse_to_anthropic(raw, self._model, self._names)

    def release(self) -> object:
        return self._reply.release()

    def close(self) -> None:
        self._reply.close()


def _model_of(url: str) -> str:
    path = url.split("/model/", 1)[1]
    return unquote(path.rsplit("/", 1)[0])


def converse_reply(reply: UpstreamReply, stream: bool, url: str, names: ToolNames) -> UpstreamReply:
    """Wrap a Converse(Stream) reply so it reads as a Messages reply (``names``: what
    ``anthropic_to_converse`` changed, undone in the answer's calls)."""
    model = _model_of(url)
    if not stream:
        return _ConverseJson(reply, model, names)
    if reply.status >= 300 or "amazon.eventstream" not in reply.content_type:
        return reply
    return EventStreamReply(reply, _ConverseFrames(model, names))
