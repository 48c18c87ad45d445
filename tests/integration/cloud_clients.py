"""Drive Apex with the official SDKs in each client protocol; collect text and tool calls."""

from __future__ import annotations

from typing import Any

from tests.conftest import ApexInstance, ant, oai

TOOL = "secret_retrieval_tool"
SCHEMA = {"type": "object", "properties": {"password": {"type": "string"}}, "required": ["password"]}
TOOLS_CHAT = [{"type": "function", "function": {"name": TOOL, "description": "A tool that requires a password.", "parameters": SCHEMA}}]
TOOLS_RESPONSES = [{"type": "function", "name": TOOL, "description": "A tool that requires a password.", "parameters": SCHEMA}]
TOOLS_MESSAGES = [{"name": TOOL, "description": "A tool that requires a password.", "input_schema": SCHEMA}]
QUESTION = "What is 4200 + 42?"
PROTOCOLS = ("chat", "responses", "messages")


def answered(text: str) -> bool:
    """The text of one of the captured answers (sums for 4200 + 42, capitals of the UK and France)."""
    return any(word in text for word in ("4242", "London", "Paris"))


async def ask(inst: ApexInstance, protocol: str, model: str, *, stream: bool, tools: bool, key: str = "k") -> tuple[str, list[str]]:
    """One request through ``protocol``; the answer's text and the names of tools it called."""
    text = ""
    names: list[str] = []
    if protocol == "chat":
        c = oai(inst, key)
        extra: dict[str, Any] = {"tools": TOOLS_CHAT} if tools else {}
        messages: Any = [{"role": "user", "content": QUESTION}]
        if stream:
            s = await c.chat.completions.create(model=model, messages=messages, max_tokens=200, stream=True, **extra)
            async for chunk in s:
                for choice in chunk.choices:
                    text += choice.delta.content or ""
                    names.extend(tc.function.name for tc in choice.delta.tool_calls or []
                                 if tc.function is not None and tc.function.name)
        else:
            done = await c.chat.completions.create(model=model, messages=messages, max_tokens=200, **extra)
            msg = done.choices[0].message
            text = msg.content or ""
            names = [tc.function.name for tc in msg.tool_calls or [] if tc.type == "function"]
    elif protocol == "responses":
        c = oai(inst, key)
        rextra: dict[str, Any] = {"tools": TOOLS_RESPONSES} if tools else {}
        if stream:
            rs = await c.responses.create(model=model, input=QUESTION, max_output_tokens=200, stream=True, **rextra)
            async for ev in rs:
                if ev.type == "response.output_text.delta":
                    text += ev.delta
                elif ev.type == "response.output_item.done" and ev.item.type == "function_call":
                    names.append(ev.item.name)
        else:
            r = await c.responses.create(model=model, input=QUESTION, max_output_tokens=200, **rextra)
            text = r.output_text
            names = [o.name for o in r.output if o.type == "function_call"]
    else:
        a = ant(inst, key)
        mextra: dict[str, Any] = {"tools": TOOLS_MESSAGES} if tools else {}
        if stream:
            async with a.messages.stream(model=model, max_tokens=200, messages=[{"role": "user", "content": QUESTION}], **mextra) as ms:
                final = await ms.get_final_message()
        else:
            final = await a.messages.create(model=model, max_tokens=200, messages=[{"role": "user", "content": QUESTION}], **mextra)
        text = "".join(b.text for b in final.content if b.type == "text")
        names = [b.name for b in final.content if b.type == "tool_use"]
    return text, names
