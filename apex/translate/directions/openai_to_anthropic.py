"""OpenAI Chat client -> Anthropic Messages upstream: request (8.1), response and stream back.

Request decisions (documented behaviour, docs/protocols.md 8.1, P6, P13, P14, P15, P17):
- every ``system``/``developer`` message joins the top-level ``system`` (in order, blank
  line between); text parts carrying ``cache_control`` keep it (system becomes blocks).
- consecutive ``tool`` messages become ONE user message of ``tool_result`` blocks (a tool
  message's image and file parts become image and document blocks in its result), and a
  following user message's blocks join it after them; any tool call left without a result
  gets a synthesized ``is_error`` result so Anthropic never sees an orphaned tool_use.
- empty/whitespace text is dropped (Anthropic rejects empty text blocks).
- tool ids go through ``toolids.anthropic_tool_id`` on both tool_use and tool_result.
- ``max_tokens`` = ``max_completion_tokens`` or ``max_tokens`` or ``DEFAULT_MAX_TOKENS``
  (plus the thinking budget when thinking is on and the client set none).
- ``temperature`` is clamped to 0..1; when both ``temperature`` and ``top_p`` are set,
  ``top_p`` is dropped (newer Claude models reject the pair).
- otherwise ``response_format`` ``json_schema`` / ``json_object`` become a system instruction
  (``JSON_SCHEMA_INSTRUCTION`` / ``JSON_OBJECT_INSTRUCTION``): works on every model and
  keeps the answer an ordinary text block in streams and bodies alike.
- ``reasoning_effort`` -> ``thinking`` only where the model reasons (capability table):
  ``{type: adaptive}`` + ``output_config.effort`` on adaptive models, else a budget from
  ``THINKING_BUDGETS`` with ``max_tokens`` sized to budget + ``ANSWER_ROOM`` when the
  client set none; not sent when a tool is forced, when the client's max_tokens leaves no
  room for the minimum budget, or when the last assistant turn called tools (its thinking
  block and signature are not available from an OpenAI client, and Anthropic would answer
  400, P6). Thinking drops temperature/top_p.
- ``response_format`` json_schema -> ``output_config.format`` on models that take it
  (capability table), the schema fitted to what Anthropic takes (``anthropic_output_schema``:
  objects closed, unsupported keywords moved into descriptions); else, or when the schema
  has no fitting (a free-form object), the system instruction below.
- ``n > 1``, audio input, ``file_id`` references and non-function tools -> InvalidRequest.
- seed, penalties, logprobs, logit_bias, store, metadata, service_tier... are dropped.
What this module must not do: any I/O.
"""

from __future__ import annotations

from typing import Final, final

import msgspec

from apex.errors import InvalidRequest
from apex.translate.request.legacy_functions import has_legacy_functions, modern_chat
from apex.translate.base import StreamTranslator, TranslateContext, decode_json_object
from apex.translate.neutral.outputschema import anthropic_output_schema
from apex.translate.neutral.parts import PipedStream
from apex.translate.neutral.reply import encode_body, openai_body, reply_from_anthropic
from apex.translate.read.anthropic import AnthropicReader
from apex.translate.write.openai import OpenAIChatWriter
from apex.translate.neutral.toolids import anthropic_tool_id, arguments_object, fit_messages_tool_names
from apex.translate.neutral.signatures import SIGNATURE_KEY
from apex.types import Dialect

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "JSON_OBJECT_INSTRUCTION",
    "JSON_SCHEMA_INSTRUCTION",
    "THINKING_BUDGETS",
    "budget_within",
    "json_schema_instruction",
    "OpenAIToAnthropic",
    "openai_to_anthropic_request",
]

DEFAULT_MAX_TOKENS: Final = 4096   # Anthropic requires max_tokens; OpenAI clients often omit it
MIN_THINKING_BUDGET: Final = 1024  # Anthropic's minimum budget_tokens
ANSWER_ROOM: Final = DEFAULT_MAX_TOKENS  # tokens left for the answer on top of a thinking budget
THINKING_BUDGETS: Final[dict[str, int]] = {"minimal": 1024, "low": 1024, "medium": 4096,
                                           "high": 16384, "xhigh": 32768}
JSON_OBJECT_INSTRUCTION: Final = "Respond only with a single valid JSON object and nothing else."
JSON_SCHEMA_INSTRUCTION: Final = ("Respond only with a single valid JSON value that conforms to this "
                                  "JSON Schema, and nothing else:\n")
MISSING_RESULT_TEXT: Final = "No result was provided for this tool call."

_ENCODER: Final = msgspec.json.Encoder()
_TOOL_CHOICE: Final[dict[str, str]] = {"auto": "auto", "required": "any", "none": "none"}

Json = dict[str, object]


def openai_to_anthropic_request(req: Json, ctx: TranslateContext) -> Json:
    """A decoded Chat Completions request -> a Messages request (dict)."""
    messages = req.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    n = req.get("n")
    if isinstance(n, int) and n > 1:
        raise InvalidRequest("n > 1 is not supported by this model's upstream (Anthropic)", param="n")
    system, turns = _convert_messages(messages)
    out: Json = {"model": ctx.upstream_model}
    asked = req.get("max_completion_tokens") or req.get("max_tokens")
    if asked is not None and (not isinstance(asked, int) or asked < 1):
        raise InvalidRequest("max_tokens must be a positive integer", param="max_tokens")
    if isinstance(asked, int):
        asked = ctx.caps.output_limit(asked)  # Claude Code-sized limits past what the model allows: a 400
    max_tokens = asked if isinstance(asked, int) else DEFAULT_MAX_TOKENS
    out["max_tokens"] = max_tokens
    fmt = req.get("response_format")
    schema = _native_schema(fmt) if ctx.caps.json_schema else None
    if schema is not None:
        out["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    else:
        instruction = _format_instruction(fmt)
        if instruction:
            system.append({"type": "text", "text": instruction})
    if system:
        if any("cache_control" in b for b in system):
            out["system"] = system
        else:
            out["system"] = "\n\n".join(str(b["text"]) for b in system)
    out["messages"] = turns
    tools = req.get("tools")
    if tools:
        out["tools"] = [_convert_tool(t) for t in _as_list(tools, "tools")]
    choice = _tool_choice(req.get("tool_choice"), req.get("parallel_tool_calls"), bool(tools))
    if choice is not None:
        out["tool_choice"] = choice
    stop = req.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop_sequences"] = [s for s in stop if isinstance(s, str)]
    thinking = _thinking(req, choice, turns, max_tokens if asked is not None else None, ctx)
    if thinking is not None:
        out["thinking"], out["max_tokens"], effort = thinking
        if effort is not None:
            config = out.setdefault("output_config", {})
            assert isinstance(config, dict)
            config["effort"] = effort
    else:
        for turn in turns:  # replayed thinking only where thinking is on (it is a request's own)
            content = turn["content"]
            while turn["role"] == "assistant" and isinstance(content, list) and content \
                    and content[0].get("type") == "thinking":
                del content[0]
        # A turn that held only thinking is left out (Anthropic combines the turns around it).
        turns[:] = [t for t in turns if t["content"]]
        temperature = req.get("temperature")
        if isinstance(temperature, (int, float)):
            out["temperature"] = float(min(max(temperature, 0.0), 1.0))  # clamped first: a 400-digit int overflows float()
        top_p = req.get("top_p")
        if isinstance(top_p, (int, float)) and "temperature" not in out:
            out["top_p"] = top_p
    user = req.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    if req.get("stream"):
        out["stream"] = True
    fit_messages_tool_names(out, ctx)
    return out


def _as_list(value: object, name: str) -> list[object]:
    if not isinstance(value, list):
        raise InvalidRequest(f"'{name}' must be an array", param=name)
    return value


def _text_of(content: object, where: str) -> list[Json]:
    """String or text-part content -> text blocks (cache_control kept, empties dropped)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    blocks: list[Json] = []
    for part in _as_list(content, where):
        if not isinstance(part, dict):
            raise InvalidRequest(f"{where}: content parts must be objects")
        kind = part.get("type")
        text = part.get("text") if kind == "text" else part.get("refusal") if kind == "refusal" else None
        if not isinstance(text, str):
            raise InvalidRequest(f"{where}: only text parts are allowed here, got {kind!r}")
        if text.strip():
            block: Json = {"type": "text", "text": text}
            if "cache_control" in part:
                block["cache_control"] = part["cache_control"]
            blocks.append(block)
    return blocks


def _user_blocks(content: object, where: str) -> list[Json]:
    if content is None or isinstance(content, str):
        return _text_of(content, where)
    blocks: list[Json] = []
    for part in _as_list(content, where):
        if not isinstance(part, dict):
            raise InvalidRequest(f"{where}: content parts must be objects")
        kind = part.get("type")
        if kind == "text":
            blocks.extend(_text_of([part], where))
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise InvalidRequest(f"{where}: image_url.url must be a string")
            blocks.append({"type": "image", "source": _source(url, where)})
        elif kind == "file":
            file = part.get("file")
            data = file.get("file_data") if isinstance(file, dict) else None
            if not isinstance(data, str):
                raise InvalidRequest(f"{where}: only inline file_data files can be sent to this upstream")
            blocks.append({"type": "document", "source": _source(data, where)})
        else:
            raise InvalidRequest(f"{where}: content part type {kind!r} is not supported by this upstream")
    return blocks


def _source(url: str, where: str) -> Json:
    if url.startswith("data:"):
        header, sep, data = url.partition(",")
        if not sep or not header.endswith(";base64"):
            raise InvalidRequest(f"{where}: data URLs must be base64-encoded")
        return {"type": "base64", "media_type": header[5:-7], "data": data}
    if url.startswith(("https://", "http://")):
        return {"type": "url", "url": url}
    raise InvalidRequest(f"{where}: unsupported URL scheme")


def _convert_messages(messages: list[object]) -> tuple[list[Json], list[Json]]:
    system: list[Json] = []
    turns: list[Json] = []
    pending_results: list[Json] | None = None  # the user turn collecting tool_results
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise InvalidRequest(f"{where} must be an object")
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend(_text_of(msg.get("content"), where))
            continue
        if role == "tool":
            call_id = msg.get("tool_call_id")
            if not isinstance(call_id, str):
                raise InvalidRequest(f"{where}.tool_call_id must be a string")
            result: Json = {"type": "tool_result", "tool_use_id": anthropic_tool_id(call_id)}
            # Images and files too: a Responses client's array tool output (Codex's view_image).
            content = _user_blocks(msg.get("content"), where)
            if content:
                result["content"] = content
            if pending_results is None:
                pending_results = []
                turns.append({"role": "user", "content": pending_results})
            pending_results.append(result)
            continue
        if role == "user":
            blocks = _user_blocks(msg.get("content"), where)
            if pending_results is not None:
                pending_results.extend(blocks)
            elif blocks:
                turns.append({"role": "user", "content": blocks})
            pending_results = None
            continue
        if role == "assistant":
            pending_results = None
            blocks = _text_of(msg.get("content"), where)
            signature, thought = msg.get(SIGNATURE_KEY), msg.get("reasoning_content")
            if isinstance(signature, str) and signature and isinstance(thought, str):
                # Signed thinking a Responses client carried back: replayed first, as Anthropic wants it.
                blocks.insert(0, {"type": "thinking", "thinking": thought, "signature": signature})
            for k, call in enumerate(_as_list(msg.get("tool_calls") or [], f"{where}.tool_calls")):
                blocks.append(_tool_use(call, f"{where}.tool_calls[{k}]"))
            before = turns[-1]["content"] if turns and turns[-1]["role"] == "assistant" else None
            if blocks and isinstance(before, list) and all(isinstance(b, dict) and b.get("type") == "thinking" for b in before):
                before.extend(blocks)  # consecutive signed thinking blocks: one turn, as Claude wrote it
            elif blocks:
                turns.append({"role": "assistant", "content": blocks})
            continue
        raise InvalidRequest(f"{where}: role {role!r} is not supported (use system, user, assistant or tool)")
    _add_missing_results(turns)
    return system, turns


def _tool_use(call: object, where: str) -> Json:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        raise InvalidRequest(f"{where} must be a function tool call")
    fn = call["function"]
    assert isinstance(fn, dict)
    call_id, name, args = call.get("id"), fn.get("name"), fn.get("arguments")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise InvalidRequest(f"{where} needs an id and a function name")
    return {"type": "tool_use", "id": anthropic_tool_id(call_id), "name": name,
            "input": arguments_object(args if isinstance(args, str) else "")}


def _add_missing_results(turns: list[Json]) -> None:
    """Every tool_use must be answered in the very next user turn (P13)."""
    i = 0
    while i < len(turns):
        turn = turns[i]
        content = turn["content"]
        assert isinstance(content, list)
        ids = [b["id"] for b in content if turn["role"] == "assistant" and b.get("type") == "tool_use"]
        if ids:
            nxt = turns[i + 1] if i + 1 < len(turns) else None
            if nxt is None or nxt["role"] != "user":
                if nxt is None:
                    i += 1
                    continue  # the last turn may be the assistant's own tool calls (prefill)
                nxt = {"role": "user", "content": []}
                turns.insert(i + 1, nxt)
            blocks = nxt["content"]
            assert isinstance(blocks, list)
            answered = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
            missing = [{"type": "tool_result", "tool_use_id": tid, "is_error": True,
                        "content": MISSING_RESULT_TEXT} for tid in ids if tid not in answered]
            blocks[:0] = missing
        i += 1


def _convert_tool(tool: object) -> Json:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(
            tool.get("function"), dict):
        raise InvalidRequest("only function tools can be sent to this upstream", param="tools")
    fn = tool["function"]
    assert isinstance(fn, dict)
    out: Json = {"name": fn.get("name"),
                 "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
    if fn.get("description"):
        out["description"] = fn["description"]
    return out


def _tool_choice(choice: object, parallel: object, has_tools: bool) -> Json | None:
    out: Json | None = None
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICE:
            raise InvalidRequest(f"unknown tool_choice {choice!r}", param="tool_choice")
        out = {"type": _TOOL_CHOICE[choice]}
    elif isinstance(choice, dict):
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str):
            raise InvalidRequest("tool_choice must name a function", param="tool_choice")
        out = {"type": "tool", "name": name}
    if parallel is False and has_tools:
        out = out or {"type": "auto"}
        if out["type"] != "none":
            out["disable_parallel_tool_use"] = True
    return out


def _format_instruction(fmt: object) -> str | None:
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return JSON_OBJECT_INSTRUCTION
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        return json_schema_instruction(spec.get("schema") if isinstance(spec, dict) else None)
    return None


def json_schema_instruction(schema: object) -> str:
    """The system instruction asking for JSON matching ``schema``: structured output for a
    model that cannot enforce a schema itself (Bedrock Converse uses it for Anthropic clients)."""
    return JSON_SCHEMA_INSTRUCTION + _ENCODER.encode(schema or {}).decode()


def _native_schema(fmt: object) -> Json | None:
    """The JSON schema of a ``json_schema`` response_format, fitted for ``output_config.format``
    (strict or not, the client's schema may hold what Anthropic refuses); None when it has no
    fitting (the system instruction carries it then)."""
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    spec = fmt.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    return anthropic_output_schema(schema) if isinstance(schema, dict) else None


def _thinking(req: Json, choice: Json | None, turns: list[Json], asked: int | None,
              ctx: TranslateContext) -> tuple[Json, int, str | None] | None:
    """(thinking, max_tokens, output_config.effort or None), or None for no thinking.

    Only where the model reasons (capability table). Adaptive models get ``{type:
    adaptive}`` with the effort; others a budget. With no client max_tokens, max_tokens is
    sized to budget + ``ANSWER_ROOM`` so the answer is not starved; a client's own limit is
    kept and the budget fits inside it, leaving the answer at least ``ANSWER_ROOM`` (or
    half the limit)."""
    effort = req.get("reasoning_effort")
    caps = ctx.caps
    if not isinstance(effort, str) or effort not in THINKING_BUDGETS or not caps.reasons:
        return None
    if choice is not None and choice["type"] in ("any", "tool"):
        return None  # Anthropic rejects thinking with a forced tool
    last_assistant = next((t for t in reversed(turns) if t["role"] == "assistant"), None)
    if last_assistant is not None:
        content = last_assistant["content"]
        assert isinstance(content, list)
        signed = bool(content) and content[0].get("type") == "thinking" and bool(content[0].get("signature"))
        if any(b.get("type") == "tool_use" for b in content) and not signed:
            return None  # P6: no signed thinking block to replay
    budget = THINKING_BUDGETS[effort]
    if "adaptive" in caps.knobs:
        max_tokens = asked if asked is not None else caps.output_limit(budget + ANSWER_ROOM)
        return {"type": "adaptive"}, max_tokens, caps.effort(effort)
    if "budget" not in caps.knobs:
        return None
    if asked is None:
        # Sized for the budget, within the model's limit (xhigh's 32,768 + room is over Opus 4.1's 32,000).
        asked = caps.output_limit(budget + ANSWER_ROOM)
        if asked == budget + ANSWER_ROOM:
            return {"type": "enabled", "budget_tokens": budget}, asked, None
    fitted = budget_within(effort, asked)
    if fitted is None:
        return None
    return {"type": "enabled", "budget_tokens": fitted}, asked, None


def budget_within(effort: str, max_tokens: int) -> int | None:
    """The thinking budget for ``effort`` (``THINKING_BUDGETS``; "high" for an unknown one) that
    fits in ``max_tokens`` and leaves the answer ``ANSWER_ROOM`` (or half the limit); None
    when that is below Anthropic's minimum budget."""
    budget = min(THINKING_BUDGETS.get(effort, THINKING_BUDGETS["high"]), max_tokens - min(ANSWER_ROOM, max_tokens // 2))
    return budget if budget >= MIN_THINKING_BUDGET else None


@final
class OpenAIToAnthropic:
    """The OPENAI_CHAT client -> ANTHROPIC_MESSAGES upstream Translator."""

    client: Dialect = Dialect.OPENAI_CHAT
    upstream: Dialect = Dialect.ANTHROPIC_MESSAGES

    def request(self, body: bytes, ctx: TranslateContext) -> bytes:
        """Chat request bytes -> Messages request bytes; notes include_usage in ctx."""
        req = decode_json_object(body)
        if has_legacy_functions(body):
            req = modern_chat(req, ctx)
        options = req.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            ctx.include_usage = True
        return _ENCODER.encode(openai_to_anthropic_request(req, ctx))

    def response(self, body: bytes, ctx: TranslateContext) -> bytes:
        """Messages body -> chat.completion body; sets ctx.usage."""
        reply = reply_from_anthropic(body)
        ctx.usage = reply.usage
        return encode_body(openai_body(reply, ctx))

    def stream(self, ctx: TranslateContext) -> StreamTranslator:
        """Anthropic events -> Chat chunks."""
        return PipedStream(AnthropicReader(), OpenAIChatWriter(ctx))

