"""Building blocks of a Gemini request shared by the OpenAI and Anthropic client directions.

``TurnBuilder`` collects parts per role and merges adjacent same-role turns, dropping
empty ones, which is most of what Gemini's turn-order validation needs (docs/protocols.md 8.3,
P25). The part constructors encode the rules of 8.3: function calls carry the thought
signature Apex stored for that id (or the foreign placeholder), function results are keyed
by NAME with an object response, data URLs become ``inlineData``, other URLs
``fileData`` (translators do no I/O, so nothing is downloaded), tools are declared with
``parametersJsonSchema`` (full JSON Schema, P18). ``request_body`` assembles and encodes
the whole request from those pieces, with every function name fitted to Gemini's rule
(``toolids.GEMINI_NAMES``). What this module must not do: know either client dialect's wire
shapes.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from typing import Final

import msgspec
from msgspec import UNSET, UnsetType

from apex.errors import InvalidRequest
from apex.translate.base import TranslateContext
from apex.translate.capabilities import ModelCaps
from apex.translate.neutral.signatures import SignatureStore
from apex.translate.neutral.toolids import GEMINI_NAMES, fit_tool_name
from apex.wire.gemini import (
    Blob,
    Content,
    FileData,
    FunctionCall,
    FunctionCallingConfig,
    FunctionDeclaration,
    FunctionResponse,
    GenerateContentRequest,
    GenerationConfig,
    Part,
    ThinkingConfig,
    Tool,
    ToolConfig,
    encode,
)

__all__ = [
    "EFFORT_BUDGETS",
    "TurnBuilder",
    "arguments_object",
    "called_name",
    "in_call_order",
    "declaration",
    "declare_tools",
    "function_call_part",
    "function_response_part",
    "generation_config",
    "media_part",
    "present",
    "request_body",
    "text_part",
    "thinking_for_budget",
    "tool_config",
]

# reasoning_effort -> thinkingBudget (Gemini 2.5 ranges; Gemini 3 maps budgets to levels).
EFFORT_BUDGETS: Final[dict[str, int]] = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768}
_EMPTY_OBJECT: Final = msgspec.Raw(b"{}")
_ENCODER: Final = msgspec.json.Encoder()


class TurnBuilder:
    """Accumulates ``contents``; adjacent parts of the same role land in one turn."""

    __slots__ = ("_turns",)

    def __init__(self) -> None:
        self._turns: list[Content] = []

    def add(self, role: str, parts: list[Part]) -> None:
        """Append parts to the conversation under ``role`` ("user" or "model")."""
        if not parts:
            return
        turns = self._turns
        if turns and turns[-1].role == role:
            turns[-1].parts.extend(parts)
        else:
            turns.append(Content(parts=list(parts), role=role))

    def build(self) -> list[Content]:
        """The contents array; raises InvalidRequest when nothing is left to send."""
        if not self._turns:
            raise InvalidRequest("the conversation has no content Gemini can accept", param="messages")
        return _every_call_answered(self._turns)


NO_RESULT: Final = "No result was provided for this tool call."


def _every_call_answered(turns: list[Content]) -> list[Content]:
    """Each model turn's function calls answered by the next turn, as Gemini requires ("the
    number of function response parts is equal to the number of function call parts"): a
    call the client left without a result (a cancelled tool, a trimmed history) gets an error
    result, as Anthropic channels do (``openai_to_anthropic``); the results go in call order."""
    out: list[Content] = []
    for i, turn in enumerate(turns):
        out.append(turn)
        if turn.role != "model":
            continue
        calls = [p.function_call.name for p in turn.parts if not isinstance(p.function_call, UnsetType)]
        if not calls:
            continue
        after = turns[i + 1] if i + 1 < len(turns) else None
        if after is None or after.role != "user":
            out.append(Content(parts=[function_response_part(name, NO_RESULT, is_error=True) for name in calls], role="user"))
            continue
        results = [p for p in after.parts if not isinstance(p.function_response, UnsetType)]
        if len(results) >= len(calls):
            continue
        others = [p for p in after.parts if isinstance(p.function_response, UnsetType)]
        ordered: list[Part] = []
        for name in calls:
            match = next((p for p in results if isinstance(p.function_response, FunctionResponse)
                          and p.function_response.name == name), None)
            if match is None:
                ordered.append(function_response_part(name, NO_RESULT, is_error=True))
            else:
                results.remove(match)
                ordered.append(match)
        after.parts = ordered + results + others
    return out


def present(raw: msgspec.Raw | UnsetType) -> msgspec.Raw | None:
    """Opaque JSON from a client field, or None when the field was absent or null.

    (msgspec cannot decode ``Raw | None``, so view structs use ``Raw | UnsetType``.)"""
    if isinstance(raw, UnsetType) or bytes(raw).strip() == b"null":
        return None
    return raw


def text_part(text: str) -> Part | None:
    """A text part, or None for empty text (Gemini rejects empty parts)."""
    return Part(text=text) if text else None


def arguments_object(arguments: str) -> msgspec.Raw:
    """Tool-call arguments (a JSON string from the client) as a JSON object for ``args``.

    ``""`` becomes ``{}`` (P4); JSON that is not an object is wrapped as ``{"_raw": ...}``
    because Gemini only takes objects and the model should still see what was sent.
    """
    if not arguments.strip():
        return _EMPTY_OBJECT
    try:
        value = msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        return msgspec.Raw(_ENCODER.encode({"_raw": arguments}))
    if isinstance(value, dict):
        return msgspec.Raw(arguments.encode())
    return msgspec.Raw(_ENCODER.encode({"_raw": value}))


def function_call_part(call_id: str, name: str, args: msgspec.Raw, signatures: SignatureStore) -> Part:
    """A model-turn functionCall part with the thought signature known for ``call_id``."""
    signature = signatures.signature_for(call_id)
    return Part(
        function_call=FunctionCall(name=name, args=args),
        thought_signature=UNSET if signature is None else signature,
    )


def function_response_part(name: str, output: str, *, is_error: bool = False) -> Part:
    """A functionResponse part; the text result is wrapped in an object (8.3)."""
    key = "error" if is_error else "output"
    return Part(function_response=FunctionResponse(name=name, response=msgspec.Raw(_ENCODER.encode({key: output}))))


def media_part(url: str, mime_type: str | None = None) -> Part:
    """An image/file part from a data URL (inlined) or any other URL (by reference)."""
    if url.startswith("data:"):
        header, sep, data = url.partition(",")
        if not sep or ";base64" not in header:
            raise InvalidRequest("only base64 data URLs are supported", param="messages")
        return Part(inline_data=Blob(mime_type=header[5:].split(";", 1)[0] or "application/octet-stream", data=data))
    guessed = mime_type or mimetypes.guess_type(url.split("?", 1)[0])[0]
    return Part(file_data=FileData(file_uri=url, mime_type=guessed if guessed else UNSET))


def declare_tools(declarations: list[FunctionDeclaration]) -> list[Tool] | None:
    """The ``tools`` array for some function declarations, or None when there are none."""
    return [Tool(function_declarations=declarations)] if declarations else None


def in_call_order(results: list[tuple[str, Part]], names: dict[str, str], asked: Sequence[str] = ()) -> list[Part]:
    """functionResponse parts, given with their call ids, in the order of the calls (``names``
    holds the history's call ids in order). Gemini pairs a batch's results with its calls by
    position when names repeat (three parallel ``Bash`` calls), and agents send results in
    the order their tools finished: Gemini saw each output under another call (8.3). A call
    of ``asked`` (the model turn's call ids) left without a result gets an error result in
    its place: filled in later by name, it took the place of another call of that name."""
    if results and asked:
        answered = {call_id for call_id, _ in results}
        results = results + [(call_id, function_response_part(names[call_id], NO_RESULT, is_error=True))
                             for call_id in asked if call_id not in answered and call_id in names]
    if len(results) > 1:
        rank = {call_id: i for i, call_id in enumerate(names)}
        results = sorted(results, key=lambda r: rank.get(r[0], len(rank)))  # stable: unknown ids keep their place
    return [part for _, part in results]


def thinking_for_budget(budget: int, caps: ModelCaps) -> ThinkingConfig:
    """A thinkingConfig that asks for ``budget`` thinking tokens (within what the model
    takes) and the thoughts back."""
    return ThinkingConfig(thinking_budget=caps.thinking_budget(budget), include_thoughts=True)


def called_name(call_id: str, names: dict[str, str], signatures: SignatureStore) -> str | None:
    """The function name a tool result answers: from the history, else from the store."""
    name = names.get(call_id)
    if name is None:
        record = signatures.recall(call_id)
        name = record.name if record is not None else None
    return name


def declaration(name: str, description: str | None, schema: msgspec.Raw | UnsetType) -> FunctionDeclaration:
    """A function declaration; the parameters schema goes in as ``parametersJsonSchema``."""
    decl = FunctionDeclaration(name=name)
    if description:
        decl.description = description
    parameters = present(schema)
    if parameters is not None:
        decl.parameters_json_schema = parameters
    return decl


def tool_config(mode: str, allowed: str | None = None) -> ToolConfig:
    """A toolConfig in ``mode`` (AUTO/ANY/NONE), restricted to one function when named."""
    cfg = FunctionCallingConfig(mode=mode)
    if allowed:
        cfg.allowed_function_names = [allowed]
    return ToolConfig(function_calling_config=cfg)


def generation_config(
    max_tokens: int | None, stop: list[str] | None, temperature: float | None, top_p: float | None
) -> GenerationConfig:
    """The generationConfig fields both client dialects have; callers add the rest."""
    cfg = GenerationConfig()
    if max_tokens is not None:
        cfg.max_output_tokens = max_tokens
    if stop:
        cfg.stop_sequences = stop[:5]  # Gemini's limit
    if temperature is not None:
        cfg.temperature = temperature
    if top_p is not None:
        cfg.top_p = top_p
    return cfg


def request_body(
    contents: list[Content],
    system: list[Part],
    declarations: list[FunctionDeclaration],
    tools_config: ToolConfig | None,
    generation: GenerationConfig,
    ctx: TranslateContext | None = None,
) -> bytes:
    """The encoded GenerateContentRequest (no model, no stream flag: both go in the URL);
    ``ctx`` learns the declared function names that had to be fitted."""
    _fit_names(contents, declarations, tools_config, ctx)
    out = GenerateContentRequest(contents=contents, generation_config=generation)
    if system:
        out.system_instruction = Content(parts=system)
    tools = declare_tools(declarations)
    if tools:
        out.tools = tools
    if tools_config is not None:
        out.tool_config = tools_config
    return encode(out)


def _fit_names(contents: list[Content], declarations: list[FunctionDeclaration], config: ToolConfig | None,
               ctx: TranslateContext | None) -> None:
    """Every function name made valid for Gemini, in place: declarations, allowed names, and
    the history's calls and results (Gemini pairs results with calls by name); ``ctx`` learns
    the renamed declarations."""
    renamed: dict[str, str] = {}
    for decl in declarations:
        if not GEMINI_NAMES.valid.fullmatch(decl.name):
            fitted = fit_tool_name(decl.name, GEMINI_NAMES)
            renamed[fitted], decl.name = decl.name, fitted
    if ctx is not None:
        ctx.learn_tool_names(renamed)
    declared = {decl.name for decl in declarations}  # the history's names are mostly these: a set lookup each
    calling = config.function_calling_config if config is not None else UNSET
    if not isinstance(calling, UnsetType) and not isinstance(calling.allowed_function_names, UnsetType):
        calling.allowed_function_names = [fit_tool_name(n, GEMINI_NAMES) for n in calling.allowed_function_names]
    for content in contents:
        for part in content.parts:
            named = part.function_call if isinstance(part.function_response, UnsetType) else part.function_response
            if not isinstance(named, UnsetType) and named.name not in declared:
                named.name = fit_tool_name(named.name, GEMINI_NAMES)
