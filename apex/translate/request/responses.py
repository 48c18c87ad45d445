"""OpenAI Responses request -> OpenAI Chat request (docs/protocols.md 8.8, P22); a pure dict map.

Used directly for Chat upstreams and composed with ``openai_to_anthropic_request`` for
Anthropic upstreams. Decisions: ``instructions`` and system/developer items -> ``system``
messages; consecutive ``function_call`` items (and a preceding assistant message item)
-> ONE assistant message with ``tool_calls`` whose ids are the ``call_id``s;
``function_call_output`` / ``custom_tool_call_output`` -> ``tool`` message, whose content
keeps an array output's image and file parts (Codex's ``view_image``): the Anthropic hop
puts them in the ``tool_result``, and ``chat_tool_media`` moves them to a user message for
Chat and Gemini upstreams; ``reasoning`` items are dropped; flat
function tools are nested, ``namespace``/``custom``/``web_search`` tools and Codex's
``additional_tools`` input item go through ``responses_tools``; other built-in tools,
``previous_response_id`` (Apex keeps no conversation store) and unknown item types ->
InvalidRequest; ``text.format`` -> ``response_format``; ``reasoning.effort`` ->
``reasoning_effort`` only where the model takes it (capability table); ``max_output_tokens``
in the model's max-tokens field; ``prompt_cache_key`` is kept; streams ask for usage.
The request settings a Response echoes are saved in ``ctx.extras[ECHO_KEY]``.
What this module must not do: any I/O.
"""

from __future__ import annotations

from typing import Final

from apex.errors import InvalidRequest
from apex.translate.directions.anthropic_to_openai import drop_refused_sampling, max_tokens_field
from apex.translate.base import TranslateContext
from apex.translate.write.responses import ECHO_KEY
from apex.translate.neutral.toolids import end_user_id
from apex.translate.request.responses_tools import chat_tools, input_call
from apex.translate.neutral.signatures import SIGNATURE_KEY, carried_signature

__all__ = ["chat_tool_media", "responses_to_chat_request"]

Json = dict[str, object]
_ECHOED: Final = ("instructions", "max_output_tokens", "parallel_tool_calls", "reasoning",
                  "temperature", "text", "tool_choice", "tools", "top_p", "metadata")
_ROLE: Final[dict[str, str]] = {"user": "user", "assistant": "assistant", "system": "system",
                                "developer": "system"}


def responses_to_chat_request(req: Json, ctx: TranslateContext, *, web_search: bool = False,
                               signatures: bool = False) -> Json:
    """A decoded Responses request -> a Chat Completions request (dict).

    ``web_search``: the upstream has a web search tool of its own (see ``responses_tools``).
    ``signatures``: the next hop is Anthropic, which replays the thinking a reasoning item's
    carried signature signs (``SIGNATURE_KEY`` on the assistant message; never for a Chat upstream)."""
    for held in ("previous_response_id", "conversation", "prompt"):  # state OpenAI keeps: the upstream has none
        if req.get(held):
            raise InvalidRequest(f"{held} is not supported for this model's upstream (it refers to state OpenAI "
                                 "keeps); send the whole conversation and instructions in 'input'", param=held)
    ctx.extras[ECHO_KEY] = {k: req[k] for k in _ECHOED if k in req}
    messages: list[Json] = []
    instructions = req.get("instructions")
    # A string or null in OpenAI's API; anything else was dropped unseen (OpenAI answers 400).
    if instructions is not None and not isinstance(instructions, str):
        raise InvalidRequest("instructions must be a string", param="instructions")
    if instructions:
        messages.append({"role": "system", "content": instructions})
    items = req.get("input")
    listed = req.get("tools")
    if listed is not None and not isinstance(listed, list):  # an object here was dropped unseen
        raise InvalidRequest("tools must be an array", param="tools")
    client_tools: list[object] = list(listed) if listed else []
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
    elif isinstance(items, list):
        for i, item in enumerate(items):
            if isinstance(item, dict) and item.get("type") == "additional_tools":
                # Codex's default model delivers its tools as an input item.
                more = item.get("tools")
                if not isinstance(more, list):
                    raise InvalidRequest(f"input[{i}].tools must be an array", param="input")
                client_tools.extend(more)
                continue
            _convert_item(item, f"input[{i}]", messages, signatures)
        _drop_lone_reasoning(messages)
    else:
        raise InvalidRequest("'input' must be a string or an array", param="input")
    out: Json = {"model": ctx.upstream_model, "messages": messages}
    limit = req.get("max_output_tokens")
    if isinstance(limit, int):
        out[max_tokens_field(ctx)] = ctx.caps.output_limit(limit)
    if client_tools:
        tools = chat_tools(client_tools, ctx, web_search=web_search)
        if tools:
            out["tools"] = tools
    choice = req.get("tool_choice")
    if isinstance(choice, str):
        if "tools" in out or choice == "none":
            out["tool_choice"] = choice  # Chat refuses a tool_choice without tools
    elif isinstance(choice, dict):
        if choice.get("type") != "function":
            raise InvalidRequest("only function tool_choice is supported for this upstream", param="tool_choice")
        out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    for key in ("temperature", "top_p", "user", "prompt_cache_key", "safety_identifier"):
        if key in req and req[key] is not None:
            value = req[key]
            out[key] = end_user_id(value) if key in ("user", "safety_identifier") and isinstance(value, str) else value
    if req.get("parallel_tool_calls") is not None and "tools" in out:
        out["parallel_tool_calls"] = req["parallel_tool_calls"]
    text = req.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if isinstance(fmt, dict):
        if fmt.get("type") == "json_schema":
            spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
            out["response_format"] = {"type": "json_schema", "json_schema": spec}
        elif fmt.get("type") == "json_object":
            out["response_format"] = {"type": "json_object"}
    reasoning = req.get("reasoning")
    caps = ctx.caps
    if caps.reasons and "effort" in caps.knobs:
        # Codex often sends reasoning without an effort (summary only): the model's default stands.
        effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
        if isinstance(effort, str):
            out["reasoning_effort"] = caps.effort(effort)
    elif isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str) and caps.knobs:
        out["reasoning_effort"] = reasoning["effort"]  # for the Anthropic and Gemini hops to map
    drop_refused_sampling(out, ctx)
    if req.get("stream"):
        out["stream"] = True
        if ctx.upstream_takes_stream_usage:  # Groq and older Azure api-versions refuse it (400)
            out["stream_options"] = {"include_usage": True}
    return out


def _convert_item(item: object, where: str, messages: list[Json], signatures: bool = False) -> None:
    if not isinstance(item, dict):
        raise InvalidRequest(f"{where} must be an object", param="input")
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if not isinstance(role, str) or role not in _ROLE:
            raise InvalidRequest(f"{where}: unknown role {role!r}", param="input")
        content = _content(item.get("content"), where)
        last = messages[-1] if messages else None
        if _ROLE[role] == "assistant" and last is not None and _reasoning_only(last):
            last["content"] = content  # the answer the reasoning before it led to
        else:
            messages.append({"role": _ROLE[role], "content": content})
    elif kind in ("function_call", "custom_tool_call"):
        call = input_call(item, where)
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant":
            calls = last.setdefault("tool_calls", [])
            assert isinstance(calls, list)
            calls.append(call)
            if last.get("content") == "":
                last["content"] = None
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind in ("function_call_output", "custom_tool_call_output"):
        output = item.get("output")
        # An array output (input_text / input_image / input_file parts) keeps its parts.
        content = output if isinstance(output, str) else _content(output, where)
        messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": content})
    elif kind == "reasoning":
        # Its text goes back as the next assistant message's reasoning_content: DeepSeek-style
        # reasoners answer 400 to a tool-call turn without it (P7). Encrypted-only items
        # (OpenAI's own) carry no text and are dropped.
        text = _reasoning_text(item)
        signature = carried_signature(item.get("encrypted_content")) if signatures else None
        if text or signature:
            message: Json = {"role": "assistant", "content": None, "reasoning_content": text}
            if signature:
                message[SIGNATURE_KEY] = signature
            messages.append(message)
    elif kind == "web_search_call":
        return  # no Chat form; the upstream searches afresh
    else:
        raise InvalidRequest(f"{where}: input item type {kind!r} is not supported for this upstream",
                             param="input")


def _reasoning_text(item: Json) -> str:
    """A reasoning item's text: its ``reasoning_text`` content, else its summary."""
    for key in ("content", "summary"):
        parts = item.get(key)
        if isinstance(parts, list):
            text = "".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))
            if text:
                return text
    return ""


def _drop_lone_reasoning(messages: list[Json]) -> None:
    """Drops reasoning no answer or call followed. A signed one followed by another assistant
    message stays: it is one of Claude's consecutive thinking blocks, each replayed with its own
    signature (the Anthropic translation joins them into the turn that follows)."""
    kept: list[Json] = []
    for message in reversed(messages):
        if not _reasoning_only(message) or (SIGNATURE_KEY in message and kept and kept[-1]["role"] == "assistant"):
            kept.append(message)
    messages[:] = kept[::-1]


def _reasoning_only(message: Json) -> bool:
    """An assistant message holding only reasoning (waiting for its answer or tool calls)."""
    return message.get("role") == "assistant" and "reasoning_content" in message \
        and message.get("content") is None and not message.get("tool_calls")


def _content(content: object, where: str) -> object:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content must be a string or an array", param="input")
    parts: list[Json] = []
    for part in content:
        if not isinstance(part, dict):
            raise InvalidRequest(f"{where}: content parts must be objects", param="input")
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "refusal":
            parts.append({"type": "text", "text": part.get("refusal", "")})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str):
                raise InvalidRequest(f"{where}: input_image needs an image_url (file_id is not supported)",
                                     param="input")
            image: Json = {"url": url}
            if isinstance(part.get("detail"), str):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file":
            data = part.get("file_data")
            if not isinstance(data, str):
                raise InvalidRequest(f"{where}: input_file needs inline file_data", param="input")
            parts.append({"type": "file", "file": {"file_data": data, "filename": part.get("filename", "file")}})
        else:
            raise InvalidRequest(f"{where}: content part {kind!r} is not supported", param="input")
    if all(p["type"] == "text" for p in parts):
        return "".join(str(p["text"]) for p in parts)
    return parts


def chat_tool_media(messages: list[Json]) -> None:
    """Chat takes text only in a ``tool`` message: the image and file parts of a run of tool
    messages go, in order, to one user message right after the run (where they cannot split the
    results of a parallel batch), as ``anthropic_to_openai`` does with Claude Code's image
    tool results. Mutates ``messages``."""
    media: list[Json] = []
    i = 0
    while i < len(messages):
        message = messages[i]
        i += 1
        content = message.get("content")
        if message.get("role") == "tool" and isinstance(content, list):
            message["content"] = "".join(str(p["text"]) for p in content if p["type"] == "text")
            media.extend(p for p in content if p["type"] != "text")
        if media and (i == len(messages) or messages[i].get("role") != "tool"):
            messages.insert(i, {"role": "user", "content": media})
            media = []
            i += 1
