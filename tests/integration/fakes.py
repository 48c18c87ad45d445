"""A fake upstream that behaves like OpenAI, Anthropic and Gemini, and misbehaves on demand.

It answers from the real captures in ``tests/fixtures/real`` (with the requested model put
back in), records every request it receives (path, headers, exact body bytes), and plays a
script of behaviours first: an error status with a body and headers, a stall before the
headers, a connection reset, a stream cut after N events, a slow stream, a malformed body.
Runs on 127.0.0.1 with an ephemeral port inside the test's event loop.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict
from tests.fixtures import REAL

FIXTURES = REAL


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: CIMultiDict[str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Behaviour:
    """One scripted answer. Fields combine: ``stall`` first, then the rest."""

    status: int = 200
    body: bytes | None = None           # a non-stream body, or a whole SSE body
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    stall: float = 0.0                  # seconds before sending headers
    reset: bool = False                 # drop the connection without answering
    events: list[bytes] | None = None   # SSE events to send one by one
    gap: float = 0.0                    # seconds between events
    cut_after: int | None = None        # drop the connection after this many events
    stall_after: int | None = None      # stop sending (but keep the connection) after N events
    rst_after: int | None = None        # reset the connection (TCP RST) after this many events


def error(status: int, message: str = "boom", *, retry_after: str | None = None, family: str = "openai") -> Behaviour:
    if family == "anthropic":
        etype = {429: "rate_limit_error", 529: "overloaded_error", 400: "invalid_request_error"}.get(status, "api_error")
        body = json.dumps({"type": "error", "error": {"type": etype, "message": message}}).encode()
    else:
        body = json.dumps({"error": {"message": message, "type": "server_error" if status >= 500 else "invalid_request_error", "code": None}}).encode()
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Behaviour(status=status, body=body, headers=headers)


# Each upstream's 400 for a prompt over the model's context window, as the real APIs word it.
CONTEXT_OVERFLOW: dict[str, dict[str, Any]] = {
    "openai": {"error": {
        "message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 200000 "
                   "tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}},
    "vllm": {"error": {  # vLLM's OpenAI server: no code but the HTTP status
        "message": "This model's maximum context length is 32768 tokens. However, you requested 40000 tokens "
                   "(39000 in the messages, 1000 in the completion). Please reduce the length of the messages or completion.",
        "type": "BadRequestError", "param": None, "code": 400}},
    "anthropic": {"type": "error", "error": {"type": "invalid_request_error",
                                             "message": "prompt is too long: 210000 tokens > 200000 maximum"},
                  "request_id": "req_011CTooLong"},
    "gemini": {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                         "message": "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."}},
}


def context_overflow(family: str) -> Behaviour:
    """The upstream ``family``'s refusal of a prompt over the context window (``CONTEXT_OVERFLOW``)."""
    return Behaviour(status=400, body=json.dumps(CONTEXT_OVERFLOW[family]).encode())


def _openai_too_long(req: Any) -> tuple[str, int, int] | None:
    """(field, limit, length) of the first Chat field past OpenAI's length limits, else None."""
    if not isinstance(req, dict):
        return None
    for key in ("user", "safety_identifier"):
        value = req.get(key)
        if isinstance(value, str) and len(value) > 64:
            return key, 64, len(value)
    for i, msg in enumerate(req.get("messages") or []):
        if not isinstance(msg, dict):
            continue
        for j, call in enumerate(msg.get("tool_calls") or []):
            call_id = call.get("id") if isinstance(call, dict) else None
            if isinstance(call_id, str) and len(call_id) > 40:
                return f"messages[{i}].tool_calls[{j}].id", 40, len(call_id)
        call_id = msg.get("tool_call_id")
        if isinstance(call_id, str) and len(call_id) > 40:
            return f"messages[{i}].tool_call_id", 40, len(call_id)
    return None


def openai_json_word_refusal(req: Any) -> dict[str, Any] | None:
    """OpenAI's 400 body for json_object JSON mode when no message says "json", else None
    (OpenAI and DeepSeek refuse it so)."""
    fmt = req.get("response_format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_object":
        return None
    contents = [m.get("content") for m in req.get("messages") or [] if isinstance(m, dict)]
    if "json" in json.dumps(contents).lower():
        return None
    return {"error": {"message": "'messages' must contain the word 'json' in some form, to use 'response_format' of "
                                 "type 'json_object'.", "type": "invalid_request_error", "param": "messages", "code": None}}


# Tool names as the real APIs check them, refused in their words (the rules and their sources:
# apex/translate/neutral/toolids.py).
_OPENAI_NAME = re.compile(r"[a-zA-Z0-9_-]+")
_ANTHROPIC_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_GEMINI_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}")
FAKE_TOOL = "secret_retrieval_tool"  # the tool the captured tool-call answers call


def openai_name_refusal(req: Any) -> dict[str, Any] | None:
    """OpenAI's 400 body for the first function name it refuses (in tools or in the history's
    tool calls), else None."""
    places = [(f"tools[{i}].function.name", (t.get("function") or {}).get("name"))
              for i, t in enumerate(req.get("tools") or []) if isinstance(t, dict)]
    places += [(f"messages[{i}].tool_calls[{j}].function.name", (c.get("function") or {}).get("name"))
               for i, m in enumerate(req.get("messages") or []) if isinstance(m, dict)
               for j, c in enumerate(m.get("tool_calls") or []) if isinstance(c, dict)]
    for param, name in places:
        if not isinstance(name, str):
            continue
        if len(name) > 64:
            message, code = (f"Invalid '{param}': string too long. Expected a string with maximum length 64, "
                             f"but got a string with length {len(name)} instead."), "string_above_max_length"
        elif not _OPENAI_NAME.fullmatch(name):
            message, code = (f"Invalid '{param}': string does not match pattern. Expected a string that matches "
                             "the pattern '^[a-zA-Z0-9_-]+$'."), "invalid_value"
        else:
            continue
        return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
    return None


def anthropic_name_refusal(req: Any) -> dict[str, Any] | None:
    """Anthropic's 400 body for the first client tool name it refuses, else None."""
    for i, tool in enumerate(req.get("tools") or []):
        if isinstance(tool, dict) and tool.get("type") in (None, "custom") and not _ANTHROPIC_NAME.fullmatch(str(tool.get("name", ""))):
            return {"type": "error", "error": {"type": "invalid_request_error",
                                               "message": f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"}}
    return None


# Anthropic's structured outputs compile output_config.format's schema and refuse what they cannot
# (docs: structured outputs, "JSON Schema limitations"): an object not closed with
# additionalProperties false (the real message below), and these keywords.
_ANTHROPIC_SCHEMA_REFUSED = frozenset({
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength", "maxLength", "maxItems",
    "uniqueItems", "contains", "minProperties", "maxProperties", "patternProperties", "propertyNames", "oneOf", "not",
    "if", "then", "else", "prefixItems"})
_ANTHROPIC_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"})


def anthropic_schema_refusal(req: Any) -> dict[str, Any] | None:
    """Anthropic's 400 body for an ``output_config.format`` schema it refuses, else None."""
    fmt = (req.get("output_config") or {}).get("format") if isinstance(req, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None

    def why(node: Any) -> str | None:
        if not isinstance(node, dict):
            return None
        kind = node.get("type")
        kinds = kind if isinstance(kind, list) else [kind]
        if "object" in kinds and node.get("additionalProperties") is not False:
            return "For 'object' type, 'additionalProperties' must be explicitly set to false"
        refused = sorted(k for k in node if k in _ANTHROPIC_SCHEMA_REFUSED)
        if node.get("minItems") not in (None, 0, 1):
            refused.append("minItems")
        if "format" in node and node["format"] not in _ANTHROPIC_FORMATS:
            refused.append("format")
        if refused:
            return f"For '{kind}' type, properties {', '.join(refused)} are not supported"
        subs = [*(node.get("properties") or {}).values(), *(node.get("$defs") or {}).values(),
                *(node.get("definitions") or {}).values(), *(node.get("anyOf") or []), *(node.get("allOf") or [])]
        if "items" in node:
            subs.append(node["items"])
        return next((w for w in map(why, subs) if w is not None), None)

    reason = why(fmt.get("schema"))
    return None if reason is None else {"type": "error", "error": {
        "type": "invalid_request_error", "message": f"output_config.format.schema: {reason}"}}


def gemini_name_refusal(req: Any) -> dict[str, Any] | None:
    """Gemini's 400 body for the function declaration names it refuses, else None."""
    bad = [f"* GenerateContentRequest.tools[{i}].function_declarations[{j}].name: Invalid function name. Must start "
           "with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:), "
           "or dashes (-), with a maximum length of 64.\n"
           for i, tool in enumerate(req.get("tools") or []) if isinstance(tool, dict)
           for j, decl in enumerate(tool.get("functionDeclarations") or tool.get("function_declarations") or [])
           if not _GEMINI_NAME.fullmatch(str(decl.get("name", "")))]
    return {"error": {"code": 400, "message": "".join(bad), "status": "INVALID_ARGUMENT"}} if bad else None


_TOKEN = re.compile(r"\s*\S+|\s+")  # the fakes' tokens: a word with the blank space before it


def _token_logprobs(text: str, top: int) -> list[tuple[str, float, list[tuple[str, float]]]]:
    """(token, logprob, alternatives) for each token of ``text``: the likeliest ``top`` first,
    the chosen token among them, as the real APIs answer."""
    out = []
    for token in _TOKEN.findall(text):
        logprob = -len(token) / 100
        out.append((token, logprob, [(token, logprob)] + [(f"{token}~{j}", logprob - j) for j in range(1, top)]))
    return out


def openai_logprobs(text: str, top: int) -> dict[str, Any]:
    """A Chat choice's ``logprobs`` for ``text`` with ``top`` alternatives per token."""
    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}
    return {"content": [{**entry(t, lp), "top_logprobs": [entry(a, alp) for a, alp in alts[:top]]}
                        for t, lp, alts in _token_logprobs(text, top)], "refusal": None}


def gemini_logprobs_result(text: str, top: int) -> dict[str, Any]:
    """A candidate's ``logprobsResult`` for ``text`` with ``top`` candidates per step."""
    tokens = _token_logprobs(text, top)
    return {"topCandidates": [{"candidates": [{"token": a, "logProbability": alp} for a, alp in alts[:top]]}
                              for _, _, alts in tokens],
            "chosenCandidates": [{"token": t, "logProbability": lp} for t, lp, _ in tokens]}


def _with_openai_logprobs(obj: Any, req: Any) -> Any:
    """A Chat completion or chunk with the logprobs OpenAI adds when the request asks for them."""
    if req.get("logprobs") is True:
        for choice in obj.get("choices") or []:
            content = (choice.get("message") or choice.get("delta") or {}).get("content")
            if content or "message" in choice:
                choice["logprobs"] = openai_logprobs(content or "", int(req.get("top_logprobs") or 0))
    return obj


def _gemini_logprobs_asked(req: Any) -> int | None:
    cfg = req.get("generationConfig") or req.get("generation_config") or {}
    if not (cfg.get("responseLogprobs") or cfg.get("response_logprobs")):
        return None
    return int(cfg.get("logprobs") or 0)


def _with_gemini_logprobs(obj: Any, req: Any, whole: bool) -> Any:
    """A Gemini answer or chunk with the logprobsResult Gemini adds under responseLogprobs (and,
    for a whole answer, avgLogprobs): one entry per token of the candidate's answer text."""
    top = _gemini_logprobs_asked(req)
    if top is None:
        return obj
    for cand in obj.get("candidates") or []:
        text = "".join(p.get("text", "") for p in (cand.get("content") or {}).get("parts") or [] if not p.get("thought"))
        if text:
            result = gemini_logprobs_result(text, top)
            cand["logprobsResult"] = result
            if whole:
                chosen = result["chosenCandidates"]
                cand["avgLogprobs"] = sum(c["logProbability"] for c in chosen) / len(chosen)
    return obj


def _events_with(events: list[bytes], change: Any) -> list[bytes]:
    """SSE events with ``change`` applied to each JSON data payload."""
    out = []
    for event in events:
        head, sep, data = event.partition(b"data: ")
        body, _, tail = data.partition(b"\n")
        if sep and body.startswith(b"{"):
            end = b"\r\n" if body.endswith(b"\r") else b"\n"  # Gemini frames with CRLF
            event = head + sep + json.dumps(change(json.loads(body))).encode() + end + tail
        out.append(event)
    return out


def _declared_tool(req: Any) -> str:
    """The first tool the request declares (Chat, Messages or Gemini shape), else FAKE_TOOL:
    the captured answers call it, as a model calls a tool it was given."""
    tool = (req.get("tools") or [{}])[0]
    decls = tool.get("functionDeclarations") or tool.get("function_declarations")
    name = decls[0].get("name") if decls else (tool.get("function") or tool).get("name")
    return name if isinstance(name, str) else FAKE_TOOL


def _calling_declared(raw: bytes, req: Any) -> bytes:
    return raw.replace(json.dumps(FAKE_TOOL).encode(), json.dumps(_declared_tool(req)).encode())


def _reset(request: web.Request) -> None:
    """Close with a TCP RST (SO_LINGER 0) instead of a FIN."""
    import socket
    import struct

    assert request.transport is not None
    sock = request.transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    request.transport.abort()


def named_events(events: list[dict[str, Any]]) -> list[bytes]:
    """Anthropic-style SSE events (``event: <type>`` then its JSON data), one per item."""
    return [b"event: " + str(e["type"]).encode() + b"\ndata: " + json.dumps(e).encode() + b"\n\n" for e in events]


def split_events(sse: bytes) -> list[bytes]:
    """Split an SSE body into its events (each with its blank-line terminator)."""
    sep = b"\r\n\r\n" if b"\r\n\r\n" in sse else b"\n\n"
    parts = [p for p in sse.split(sep) if p.strip()]
    return [p + sep for p in parts]


class FakeUpstream:
    """Start with ``await fake.start()``; point channels at ``fake.url``/``fake.openai_url``."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.raw_paths: list[str] = []  # request targets as sent (not percent-decoded)
        self.script: deque[Behaviour] = deque()
        self.persistent: Behaviour | None = None  # used for every request when set
        self.stream_gap = 0.0
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.connections_closed = 0
        self.active_streams = 0
        self.scheme = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        return f"{self.url}/v1"

    def push(self, *behaviours: Behaviour) -> None:
        self.script.extend(behaviours)

    def hits(self, path_part: str = "") -> int:
        return sum(1 for r in self.requests if path_part in r.path)

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        """Serve on 127.0.0.1:<free>; over TLS with ``ssl_context`` (``url`` says https then)."""
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        if ssl_context is not None:
            self.scheme = "https"
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the bound port of an ephemeral listen

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.raw_paths.append(request.raw_path)
        self.requests.append(
            Recorded(request.method, request.path, request.query_string, CIMultiDict(request.headers), body)
        )
        behaviour = self.script.popleft() if self.script else self.persistent
        if behaviour is None:
            behaviour = self._default(request, body)
        return await self._play(request, behaviour)

    async def _play(self, request: web.Request, b: Behaviour) -> web.StreamResponse:
        if b.stall:
            await asyncio.sleep(b.stall)
        if b.reset:
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError()
        if b.events is None:
            return web.Response(status=b.status, body=b.body or b"", headers={"Content-Type": b.content_type, **b.headers})
        resp = web.StreamResponse(status=b.status, headers={"Content-Type": b.content_type, **b.headers})
        await resp.prepare(request)
        self.active_streams += 1
        try:
            for i, ev in enumerate(b.events):
                if b.cut_after is not None and i >= b.cut_after:
                    assert request.transport is not None
                    request.transport.close()
                    return resp
                if b.rst_after is not None and i >= b.rst_after:
                    _reset(request)
                    return resp
                if b.stall_after is not None and i >= b.stall_after:
                    await asyncio.sleep(3600)
                if i and (b.gap or self.stream_gap):
                    await asyncio.sleep(b.gap or self.stream_gap)
                await resp.write(ev)
            await resp.write_eof()
        finally:
            self.active_streams -= 1
            self.connections_closed += 1
        return resp

    def _default(self, request: web.Request, body: bytes) -> Behaviour:
        path = request.path
        try:
            req = json.loads(body) if body else {}
        except ValueError:
            req = {}
        model = req.get("model", "unknown")
        stream = bool(req.get("stream"))
        refusal = ((openai_name_refusal(req) or openai_json_word_refusal(req)) if path.endswith("/chat/completions")
                   else (anthropic_name_refusal(req) or anthropic_schema_refusal(req)) if path.endswith("/v1/messages")
                   else gemini_name_refusal(req) if "enerateContent" in path else None)
        if refusal is not None:  # as the real API answers a tool name (or a JSON mode) it does not take
            return Behaviour(status=400, body=json.dumps(refusal).encode())
        if path.endswith("/chat/completions"):
            too_long = _openai_too_long(req)
            if too_long is not None:  # as OpenAI answers
                return Behaviour(status=400, body=json.dumps({"error": {
                    "message": f"Invalid '{too_long[0]}': string too long. Expected a string with maximum length "
                               f"{too_long[1]}, but got a string with length {too_long[2]} instead.",
                    "type": "invalid_request_error", "param": too_long[0], "code": "string_above_max_length"}}).encode())
            if stream:
                name = "openai_chat_stream_tool_calls.sse" if req.get("tools") else "openai_chat_stream_text.sse"
                raw = fixture_bytes(name).replace(b'"model":"gpt-4o-2024-08-06"', b'"model":' + json.dumps(model).encode())
                raw = raw.replace(b'"model":"gpt-4o-mini-2024-07-18"', b'"model":' + json.dumps(model).encode())
                events = split_events(_calling_declared(raw, req))
                if not (req.get("stream_options") or {}).get("include_usage"):
                    events = [e for e in events if b'"choices":[]' not in e]
                if req.get("logprobs") is True:
                    events = _events_with(events, lambda chunk: _with_openai_logprobs(chunk, req))
                return Behaviour(content_type="text/event-stream", events=events)
            name = "openai_chat_nonstream_tool_calls.json" if req.get("tools") else "openai_chat_nonstream.json"
            obj = json.loads(_calling_declared(fixture_bytes(name), req))
            obj["model"] = model
            return Behaviour(body=json.dumps(_with_openai_logprobs(obj, req)).encode())
        if path.endswith("/embeddings"):
            obj = json.loads(fixture_bytes("openai_embeddings_base64.json"))
            obj["model"] = model
            inputs = req.get("input")
            if isinstance(inputs, list) and len(inputs) > 1:  # one (captured) vector per input
                obj["data"] = [dict(obj["data"][0], index=i) for i in range(len(inputs))]
            if req.get("encoding_format") != "base64":
                import base64
                import struct

                for item in obj["data"]:
                    raw = base64.b64decode(item["embedding"])
                    item["embedding"] = list(struct.unpack(f"<{len(raw) // 4}f", raw))
            return Behaviour(body=json.dumps(obj).encode())
        if path.endswith("/responses"):
            if stream:
                return Behaviour(content_type="text/event-stream", events=split_events(fixture_bytes("openai_responses_stream_text.sse")))
            return Behaviour(body=fixture_bytes("openai_responses_nonstream.json"))
        if path.endswith("/v1/messages/count_tokens"):
            return Behaviour(body=b'{"input_tokens": 42}')
        if path.endswith("/v1/messages"):
            if stream:
                name = "anthropic_messages_stream_tool_use.sse" if req.get("tools") else "anthropic_messages_stream_text.sse"
                return Behaviour(content_type="text/event-stream; charset=utf-8", events=split_events(_calling_declared(fixture_bytes(name), req)))
            name = "anthropic_messages_nonstream_tool_use.json" if req.get("tools") else "anthropic_messages_nonstream.json"
            obj = json.loads(_calling_declared(fixture_bytes(name), req))
            obj["model"] = model
            return Behaviour(body=json.dumps(obj).encode())
        unknown = gemini_unknown_field(path, req)
        if unknown is not None:  # Gemini's JSON parser refuses a field its request message lacks
            message = f'Invalid JSON payload received. Unknown name "{unknown}": Cannot find field.'
            return Behaviour(status=400, body=json.dumps(
                {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}).encode())
        if ":streamGenerateContent" in path:
            name = "gemini_stream_function_call.sse" if req.get("tools") else "gemini_stream.sse"
            events = split_events(_calling_declared(fixture_bytes(name), req))
            if _gemini_logprobs_asked(req) is not None:
                events = _events_with(events, lambda chunk: _with_gemini_logprobs(chunk, req, whole=False))
            return Behaviour(content_type="text/event-stream", events=events)
        if ":generateContent" in path:
            if req.get("tools"):  # the captured function-call turn (one chunk) as a whole answer
                return Behaviour(body=split_events(_calling_declared(fixture_bytes("gemini_stream_function_call.sse"), req))[0].strip()[6:])
            if _gemini_logprobs_asked(req) is not None:
                obj = _with_gemini_logprobs(json.loads(fixture_bytes("gemini_generate_content.json")), req, whole=True)
                return Behaviour(body=json.dumps(obj).encode())
            return Behaviour(body=fixture_bytes("gemini_generate_content.json"))
        if ":batchEmbedContents" in path:
            if len(req.get("requests") or []) > 100:  # as Gemini answers
                return Behaviour(status=400, body=json.dumps({"error": {
                    "code": 400, "message": "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch",
                    "status": "INVALID_ARGUMENT"}}).encode())
            obj = json.loads(fixture_bytes("gemini_batch_embed_contents.json"))
            obj["embeddings"] = obj["embeddings"] * max(len(req.get("requests") or []), 1)
            return Behaviour(body=json.dumps(obj).encode())
        if ":countTokens" in path:
            return Behaviour(body=b'{"totalTokens": 31}')
        return Behaviour(status=404, body=b'{"error":{"message":"no such path","type":"invalid_request_error"}}')


# The top-level fields of each Gemini request message (camelCase, and the proto names the
# API accepts as well): any other one is refused, as Google's JSON parser does.
_GEMINI_FIELDS: dict[str, frozenset[str]] = {
    "GenerateContent": frozenset({"contents", "systemInstruction", "system_instruction", "tools", "toolConfig",
                                  "tool_config", "generationConfig", "generation_config", "safetySettings",
                                  "safety_settings", "cachedContent", "cached_content", "labels"}),
    "countTokens": frozenset({"contents", "generateContentRequest", "generate_content_request"}),
    "batchEmbedContents": frozenset({"requests"}),
}


def gemini_unknown_field(path: str, req: object) -> str | None:
    """The first top-level field a Gemini method's request does not have, else None."""
    method = path.rpartition(":")[2] if ":" in path else ""
    known = _GEMINI_FIELDS.get("GenerateContent" if method.endswith("enerateContent") else method)
    if known is None or not isinstance(req, dict):
        return None
    return next((name for name in req if name not in known), None)
