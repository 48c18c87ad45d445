"""OpenAI's legacy function calling (``functions``, ``function_call``, ``role: "function"``)
in today's form (``tools``, ``tool_choice``, ``tool_calls``, ``role: "tool"``), for the
translations that read only the latter.

OpenAI still serves the legacy fields and its SDK still sends them; on a translated channel
they were dropped: the model got no tools and answered in text. Calls in the history get
ids (the legacy form has none), and each function result answers the latest call of its name
not yet answered. A request that declared ``functions`` (not ``tools``) is noted on the
context: OpenAI answers it with ``message.function_call``, and so must the Chat writers.
What this module must not do: I/O.
"""

from __future__ import annotations

from apex.translate.base import TranslateContext

__all__ = ["has_legacy_functions", "modern_chat"]

Json = dict[str, object]


def has_legacy_functions(body: bytes) -> bool:
    """A cheap test: could the body use the legacy form at all."""
    return body.find(b'"functions"') >= 0 or body.find(b'"function_call"') >= 0 or (
        body.find(b'"role":"function"') >= 0 or body.find(b'"role": "function"') >= 0)


def modern_chat(req: Json, ctx: TranslateContext | None = None) -> Json:
    """``req`` with the legacy fields in today's form (changed in place and returned); ``ctx``
    learns whether the answer must be in the legacy form too."""
    functions = req.pop("functions", None)
    if isinstance(functions, list) and functions and "tools" not in req:
        req["tools"] = [{"type": "function", "function": f} for f in functions if isinstance(f, dict)]
        if ctx is not None:
            ctx.legacy_functions = True
    choice = req.pop("function_call", None)
    if choice is not None and "tool_choice" not in req:
        if isinstance(choice, dict) and isinstance(choice.get("name"), str):
            req["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
        elif choice in ("auto", "none"):
            req["tool_choice"] = choice
    messages = req.get("messages")
    if not isinstance(messages, list):
        return req
    pending: dict[str, list[str]] = {}  # function name -> ids of its calls not yet answered
    made = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        call = message.get("function_call")
        if message.get("role") == "assistant" and isinstance(call, dict):
            del message["function_call"]
            made += 1
            call_id = f"call_legacy_{made}"
            name = call.get("name") if isinstance(call.get("name"), str) else ""
            pending.setdefault(str(name), []).append(call_id)
            calls = message.setdefault("tool_calls", [])
            if isinstance(calls, list):
                calls.append({"id": call_id, "type": "function",
                              "function": {"name": name, "arguments": call.get("arguments") or "{}"}})
        elif message.get("role") == "function":
            name = message.get("name") if isinstance(message.get("name"), str) else ""
            waiting = pending.get(str(name))
            message["role"] = "tool"
            message["tool_call_id"] = waiting.pop(0) if waiting else f"call_legacy_{name}"
    return req
