"""A strict, scriptable fake upstream for coding-agent turns, in every upstream protocol.

It validates each request the way the real API does (roles, tool pairing, thinking
signatures, which max-tokens field and reasoning knob a model takes, unknown fields...)
and answers 400 in that API's own error shape when the real one would. A valid request is
answered with one agent step: when the conversation ends with a tool result, a text
answer quoting it; otherwise a call of the client's shell tool (``Bash``, ``exec_command``,
``shell``...) running ``echo apex-ok``. Streams and bodies, in OpenAI Chat (optionally
with ``reasoning_content`` like DeepSeek), OpenAI Responses, Anthropic Messages and Gemini.
Runs on 127.0.0.1 with an ephemeral port inside the test's event loop; every request and
every refusal is recorded for the test to assert on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from tests.integration.fakes import anthropic_name_refusal, anthropic_schema_refusal, gemini_name_refusal, openai_name_refusal

COMMAND = "echo apex-ok"
VIEW_IMAGE = "view_image"  # Codex's tool that sends an image file back as the tool output
SEARCH_TOOL = "ToolSearch"  # Claude Code's client-side tool search (answers with tool_reference blocks)
ANSWER_PREFIX = "The command printed: "
SIGNATURE = "EjRzaWduZWQtYnktdGhlLWZha2U="  # what the fake signs its thinking with

# Shell tools the fake knows how to call, by (flat) name: the arguments it sends.
SHELL_TOOLS: dict[str, dict[str, Any]] = {
    "Bash": {"command": COMMAND, "description": "Print apex-ok"},
    "exec_command": {"cmd": COMMAND},
    "shell": {"command": ["bash", "-lc", COMMAND]},
    "shell_command": {"command": COMMAND},
    "bash": {"command": COMMAND, "description": "Print apex-ok"},  # opencode
    "local_shell": {"command": ["bash", "-lc", COMMAND]},
}
# Codex's code-mode tool: freeform JavaScript that calls its nested tools (flattened name).
CODE_TOOLS: dict[str, str] = {
    "functions__exec": f'const r = await tools.exec_command({{cmd: "{COMMAND}"}});\ntext(r);',
    "exec": f'const r = await tools.exec_command({{cmd: "{COMMAND}"}});\ntext(r);',
}

_OPENAI_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # also json_schema names
# What Anthropic answers 400 to (max output tokens per model).
_ANTHROPIC_OUTPUT_LIMITS = (("claude-sonnet-4-5", 64_000), ("claude-haiku-4-5", 64_000), ("claude-opus-4-5", 64_000),
                            ("claude-opus-4-1", 32_000))
# What OpenAI answers 400 to (max output tokens per model), longest prefix first.
_OPENAI_OUTPUT_LIMITS = (("gpt-4.1", 32_768), ("gpt-4o", 16_384), ("gpt-5-chat", 16_384), ("gpt-5", 128_000))
_CHAT_FIELDS = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "stream", "stream_options", "tools",
    "tool_choice", "parallel_tool_calls", "temperature", "top_p", "stop", "reasoning_effort",
    "response_format", "user", "prompt_cache_key", "safety_identifier", "n", "seed", "metadata", "store",
    "verbosity", "logprobs", "top_logprobs", "logit_bias", "presence_penalty", "frequency_penalty",
    "service_tier", "modalities", "audio", "prediction", "web_search_options",
})
_ANTHROPIC_FIELDS = frozenset({
    "model", "messages", "max_tokens", "system", "tools", "tool_choice", "metadata", "stream",
    "stop_sequences", "temperature", "top_p", "top_k", "thinking", "context_management",
    "output_config", "service_tier", "container", "mcp_servers",
})
_GEMINI_FIELDS = frozenset({"contents", "systemInstruction", "tools", "toolConfig", "generationConfig",
                            "safetySettings", "cachedContent"})
_GEMINI_GENERATION = frozenset({
    "maxOutputTokens", "stopSequences", "temperature", "topP", "topK", "candidateCount", "seed",
    "presencePenalty", "frequencyPenalty", "responseMimeType", "responseJsonSchema", "responseSchema",
    "thinkingConfig", "responseLogprobs", "logprobs", "responseModalities", "speechConfig", "mediaResolution",
    "imageConfig", "enableEnhancedCivicAnswers", "routingConfig",  # the rest of GenerationConfig (pydantic-ai sends responseModalities)
})
_ANTHROPIC_RESULT_BLOCKS = frozenset({"text", "image", "document", "search_result", "tool_reference"})
_GEMINI_PART_FIELDS = frozenset({"text", "inlineData", "fileData", "functionCall", "functionResponse", "thought",
                                 "thoughtSignature", "executableCode", "codeExecutionResult", "videoMetadata"})
_RESPONSES_ITEMS = frozenset({"message", "function_call", "function_call_output", "reasoning",
                              "additional_tools", "custom_tool_call", "custom_tool_call_output",
                              "web_search_call"})


class Refused(Exception):
    """What the real API would answer 400 to."""


def openai_reasoner(model: str) -> bool:
    """OpenAI's reasoning models (gpt-5*, o-series) refuse max_tokens and sampling settings."""
    return (model.startswith("gpt-5") and not model.startswith("gpt-5-chat")) or re.match(r"^o\d", model) is not None


def anthropic_adaptive(model: str) -> bool:
    return re.match(r"^claude-(opus|sonnet|haiku)-(4-[6-9]|[5-9])", model) is not None


def anthropic_one_sampling(model: str) -> bool:
    """Claude Opus 4.1, the 4.5 models and later take ``temperature`` or ``top_p``, not both."""
    return anthropic_adaptive(model) or re.match(r"^claude-(opus-4-1|(opus|sonnet|haiku)-4-5)", model) is not None


@dataclass
class Seen:
    path: str
    query: str
    headers: CIMultiDict[str]
    body: dict[str, Any]
    refused: str | None = None


class AgentUpstream:
    """``mode``: "openai" (OpenAI itself), "compat" (an OpenAI-compatible server answering with
    reasoning_content), "anthropic", "gemini". All serve their paths on one port."""

    def __init__(self, mode: str, *, load_first: str | None = None, view_image: str | None = None) -> None:
        self.mode = mode
        # Tool search: before the shell step, have the client's ToolSearch load this deferred
        # tool, and refuse a second search (the loaded tool never reached the upstream).
        self.load_first = load_first
        # Codex's view_image: its first step opens this file (the next request carries the image).
        self.view_image = view_image
        self.searches = 0
        self.seen: list[Seen] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def refusals(self) -> list[str]:
        return [s.refused for s in self.seen if s.refused]

    async def start(self) -> None:
        app = web.Application(client_max_size=1 << 28)
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the bound port of an ephemeral listen

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: dict[str, Any] = json.loads(raw)
        seen = Seen(request.path, request.query_string, CIMultiDict(request.headers), body)
        self.seen.append(seen)
        path = request.path
        try:
            if path.endswith("/chat/completions"):
                return await self._chat(request, body)
            if path.endswith("/responses"):
                return await self._responses(request, body)
            if path.endswith("/v1/messages"):
                return await self._messages(request, body)
            if ":generateContent" in path or ":streamGenerateContent" in path:
                return await self._gemini(request, body, path)
        except Refused as exc:
            seen.refused = str(exc)
            return self._error(path, str(exc))
        return web.json_response({"error": {"message": f"no route {path}"}}, status=404)

    def _next(self, names: list[str], last_result: str | None, req: dict[str, Any], *, json_answer: bool = False) -> Step:
        """The agent step, with the tool-search detour first when ``load_first`` asks for it, and
        a view_image call instead of the shell when ``view_image`` asks for it."""
        if self.view_image is not None and last_result is None:
            path = json.dumps({"path": self.view_image})
            if VIEW_IMAGE in names:
                return Step(tool=VIEW_IMAGE, arguments=path, uid=len(self.seen))
            code = next((name for name in names if name in CODE_TOOLS), None)
            if code is not None:  # Codex's code mode: the script hands the image back with image()
                script = f"image(await tools.{VIEW_IMAGE}({path}));"
                return Step(tool=code, arguments=json.dumps({"input": script}), uid=len(self.seen))
        load = self.load_first
        if load is not None and load not in names:
            if self.searches or SEARCH_TOOL not in names:
                raise Refused(f"fake: the deferred tool {load!r} was not declared after {self.searches} searches")
            self.searches += 1
            return Step(tool=SEARCH_TOOL, arguments=json.dumps({"query": f"select:{load}", "max_results": 1}),
                        uid=len(self.seen))
        if load is not None and last_result is not None and COMMAND.split()[-1] not in last_result:
            last_result = None  # the search's answer, not the shell's: go on to the shell step
        step = _step(names, last_result, req, json_answer=json_answer)
        step.uid = len(self.seen)
        return step

    def _error(self, path: str, message: str) -> web.Response:
        if path.endswith("/v1/messages"):
            body: dict[str, Any] = {"type": "error", "error": {"type": "invalid_request_error", "message": message},
                                    "request_id": "req_fake"}
        elif ":generateContent" in path or ":streamGenerateContent" in path:
            body = {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}
        else:
            body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
        return web.json_response(body, status=400)

    # --- OpenAI Chat ---------------------------------------------------------------

    async def _chat(self, request: web.Request, req: dict[str, Any]) -> web.StreamResponse:
        model = str(req.get("model", ""))
        strict = self.mode == "openai"
        if strict:
            for key in req:
                if key not in _CHAT_FIELDS:
                    raise Refused(f"Unrecognized request argument supplied: {key}")
            if openai_reasoner(model):
                if "max_tokens" in req:
                    raise Refused("Unsupported parameter: 'max_tokens' is not supported with this model. "
                                  "Use 'max_completion_tokens' instead.")
                for key in ("temperature", "top_p"):
                    if req.get(key) not in (None, 1):
                        raise Refused(f"Unsupported value: '{key}' does not support {req[key]} with this model. "
                                      "Only the default (1) value is supported.")
            elif "reasoning_effort" in req:
                raise Refused("Unrecognized request argument supplied: reasoning_effort")
            limit = next((n for prefix, n in _OPENAI_OUTPUT_LIMITS if model.startswith(prefix)), None)
            asked = req.get("max_completion_tokens", req.get("max_tokens"))
            if limit is not None and isinstance(asked, int) and asked > limit:
                raise Refused(f"max_tokens is too large: {asked}. This model supports at most {limit} "
                              f"completion tokens, whereas you provided {asked}.")
        if req.get("reasoning_effort") not in (None, "none", "minimal", "low", "medium", "high", "xhigh"):
            raise Refused(f"Invalid value for 'reasoning_effort': {req.get('reasoning_effort')!r}")
        tools = req.get("tools") or []
        names: list[str] = []
        refusal = openai_name_refusal(req)
        if refusal is not None:
            raise Refused(refusal["error"]["message"])
        for tool in tools:
            fn = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(fn, dict):
                raise Refused("Invalid value for 'tools': only function tools are supported")
            if not isinstance(fn.get("parameters", {}), dict):
                raise Refused("Invalid 'tools[].function.parameters'")
            names.append(fn["name"])
        if "tool_choice" in req and not tools and req["tool_choice"] != "none":
            raise Refused("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.")
        fmt = req.get("response_format")
        if fmt is not None and fmt.get("type") == "json_schema":
            spec = fmt.get("json_schema") or {}
            if not _OPENAI_TOOL_NAME.match(str(spec.get("name", ""))) or not isinstance(spec.get("schema"), dict):
                raise Refused("Invalid 'response_format.json_schema': a name and a schema are required")
        messages = req.get("messages")
        if not isinstance(messages, list) or not messages:
            raise Refused("'messages' must be a non-empty array")
        pending: set[str] = set()
        last_result: str | None = None
        for i, m in enumerate(messages):
            role = m.get("role")
            if role not in ("system", "developer", "user", "assistant", "tool"):
                raise Refused(f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'tool', and 'developer'.")
            if role == "tool":
                if isinstance(m.get("content"), list) and any(p.get("type") != "text" for p in m["content"]):
                    raise Refused(f"Invalid 'messages[{i}]'. Image URLs are only allowed for messages with role 'user', "
                                  "but this message with role 'tool' contains an image URL.")
                if m.get("tool_call_id") not in pending:
                    raise Refused(f"messages[{i}]: tool message does not answer a preceding tool call")
                pending.discard(m["tool_call_id"])
                last_result = m.get("content") if isinstance(m.get("content"), str) else json.dumps(m.get("content"))
                continue
            if pending:
                raise Refused("An assistant message with 'tool_calls' must be followed by tool messages "
                              f"responding to each 'tool_call_id'. Missing: {sorted(pending)}")
            if role == "assistant":  # a user message after the results (Claude Code's text next to them) keeps them
                last_result = None
                for call in m.get("tool_calls") or []:
                    pending.add(call["id"])
            elif m.get("content") is None:
                raise Refused(f"messages[{i}].content must not be null")
        if req.get("stream_options") and not req.get("stream"):
            raise Refused("The 'stream_options' parameter is only allowed when 'stream' is enabled.")
        step = self._next(names, last_result, req, json_answer=fmt is not None)
        reasoning = "I should run the command." if self.mode == "compat" else None
        if req.get("stream"):
            usage = bool((req.get("stream_options") or {}).get("include_usage"))
            return await _sse(request, _chat_events(model, step, reasoning, usage), data_only=True)
        return web.json_response(_chat_body(model, step, reasoning))

    # --- OpenAI Responses ------------------------------------------------------------

    async def _responses(self, request: web.Request, req: dict[str, Any]) -> web.StreamResponse:
        if self.mode != "openai":
            raise Refused("this server has no Responses API")
        model = str(req.get("model", ""))
        if not openai_reasoner(model) and isinstance(req.get("reasoning"), dict) and req["reasoning"].get("effort"):
            raise Refused("Unsupported parameter: 'reasoning.effort' is not supported with this model.")
        if openai_reasoner(model):
            for key in ("temperature", "top_p"):
                if req.get(key) not in (None, 1):
                    raise Refused(f"Unsupported parameter: '{key}' is not supported with this model.")
        tools: list[Any] = list(req.get("tools") or [])
        items = req.get("input")
        last_result: str | None = None
        if isinstance(items, list):
            for item in items:
                kind = item.get("type", "message")
                if kind not in _RESPONSES_ITEMS:
                    raise Refused(f"Invalid input item type {kind!r}")
                if kind == "additional_tools":
                    tools.extend(item.get("tools") or [])
                last_result = str(item.get("output")) if kind in ("function_call_output", "custom_tool_call_output") else None
        names: list[str] = []
        custom: dict[str, str | None] = {}  # custom tool name -> its namespace
        for tool in tools:
            namespace = tool.get("name") if tool.get("type") == "namespace" else None
            for t in tool.get("tools") if namespace else [tool]:
                if t.get("type") in ("function", "custom"):
                    names.append(t["name"])
                    if t.get("type") == "custom":
                        custom[t["name"]] = namespace
        step = self._next(names, last_result, req)
        response = _responses_object(model, step, custom)
        if req.get("stream"):
            return await _sse(request, _responses_events(response), data_only=False)
        return web.json_response(response)

    # --- Anthropic Messages ------------------------------------------------------------

    async def _messages(self, request: web.Request, req: dict[str, Any]) -> web.StreamResponse:
        model = str(req.get("model", ""))
        betas = ",".join(request.headers.getall("anthropic-beta", []))
        for key in req:
            if key not in _ANTHROPIC_FIELDS:
                raise Refused(f"{key}: Extra inputs are not permitted")
        max_tokens = req.get("max_tokens")
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise Refused("max_tokens: Field required")
        limit = next((n for prefix, n in _ANTHROPIC_OUTPUT_LIMITS if model.startswith(prefix)), None)
        if limit is not None and max_tokens > limit:
            raise Refused(f"max_tokens: {max_tokens} > {limit}, which is the maximum allowed number of output "
                          f"tokens for {model}")
        thinking = req.get("thinking") or {"type": "disabled"}
        on = thinking.get("type") in ("enabled", "adaptive")
        if thinking.get("type") == "enabled":
            budget = thinking.get("budget_tokens")
            if not isinstance(budget, int) or budget < 1024:
                raise Refused("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
            if budget >= max_tokens:
                raise Refused("`max_tokens` must be greater than `thinking.budget_tokens`.")
        if thinking.get("type") == "adaptive" and not anthropic_adaptive(model):
            raise Refused(f"adaptive thinking is not supported on {model}")
        if anthropic_one_sampling(model) and req.get("temperature") is not None and req.get("top_p") is not None:
            raise Refused("`temperature` and `top_p` cannot both be specified for this model. Please use only one.")
        if on and (req.get("temperature") not in (None, 1) or req.get("top_k") is not None):
            raise Refused("`temperature` may only be set to 1 when thinking is enabled.")
        edits = (req.get("context_management") or {}).get("edits") or []
        if not on and any(str(e.get("type", "")).startswith("clear_thinking") for e in edits):
            raise Refused("context_management: clear_thinking strategy requires thinking to be enabled")
        names: list[str] = []
        loaded = {ref.get("tool_name") for m in req.get("messages") or [] if isinstance(m.get("content"), list)
                  for b in m["content"] if b.get("type") == "tool_result" and isinstance(b.get("content"), list)
                  for ref in b["content"] if ref.get("type") == "tool_reference"}
        refusal = anthropic_name_refusal(req) or anthropic_schema_refusal(req)
        if refusal is not None:
            raise Refused(refusal["error"]["message"])
        for tool in req.get("tools") or []:
            if tool.get("type") in (None, "custom"):
                if "input_schema" not in tool:
                    raise Refused(f"tools.{tool.get('name')}.custom.input_schema: Field required")
                if not tool.get("defer_loading") or tool["name"] in loaded:  # deferred: unseen until loaded
                    names.append(tool["name"])
            elif not str(tool.get("type")).startswith("web_search_"):
                raise Refused(f"tools: unknown tool type {tool.get('type')!r}")
        messages = req.get("messages")
        if not isinstance(messages, list) or not messages:
            raise Refused("messages: at least one message is required")
        pending: set[str] = set()
        last_result: str | None = None
        last_assistant: list[dict[str, Any]] | None = None
        for i, m in enumerate(messages):
            role = m.get("role")
            content = m.get("content")
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
            if role == "system":
                if "mid-conversation-system" not in betas and "per-turn-control" not in betas:
                    raise Refused(f"messages.{i}.role: Input should be 'user' or 'assistant'")
                continue
            if role not in ("user", "assistant"):
                raise Refused(f"messages.{i}.role: Input should be 'user' or 'assistant'")
            results = [b for b in blocks if b.get("type") == "tool_result"]
            if pending and ({b.get("tool_use_id") for b in results} != pending or role != "user"):
                raise Refused(f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {sorted(pending)}")
            pending = set()
            if results and i and messages[i - 1].get("role") != "assistant":
                raise Refused(f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks")
            for b in blocks:
                if b.get("type") == "text" and not str(b.get("text", "")).strip():
                    raise Refused(f"messages.{i}: text content blocks must be non-empty")
                if b.get("type") == "thinking" and not b.get("signature"):
                    raise Refused(f"messages.{i}.content: Invalid `signature` in `thinking` block")
                inner = b.get("content") if b.get("type") == "tool_result" else None
                for x in inner if isinstance(inner, list) else []:
                    tag = x.get("type") if isinstance(x, dict) else None
                    if tag not in _ANTHROPIC_RESULT_BLOCKS:
                        raise Refused(f"messages.{i}.content.tool_result.content: Input tag {tag!r} found using "
                                      f"'type' does not match any of the expected tags: {sorted(_ANTHROPIC_RESULT_BLOCKS)}")
            last_result = None
            if role == "assistant":
                last_assistant = blocks
                pending = {b["id"] for b in blocks if b.get("type") == "tool_use"}
            elif results:
                r = results[-1].get("content")
                last_result = r if isinstance(r, str) else " ".join(x.get("text", "") for x in r or [])
        if (on and last_assistant is not None and any(b.get("type") == "tool_use" for b in last_assistant)
                and last_assistant[0].get("type") not in ("thinking", "redacted_thinking")):
            raise Refused("messages: Expected `thinking` or `redacted_thinking`, but found `"
                          f"{last_assistant[0].get('type')}`. When `thinking` is enabled, a final `assistant` "
                          "message must start with a thinking block.")
        fmt = (req.get("output_config") or {}).get("format")
        step = self._next(names, last_result, req, json_answer=fmt is not None)
        thought = "I should run the command." if on else None
        if req.get("stream"):
            return await _sse(request, _anthropic_events(model, step, thought), data_only=False)
        return web.json_response(_anthropic_body(model, step, thought))

    # --- Gemini -------------------------------------------------------------------------

    async def _gemini(self, request: web.Request, req: dict[str, Any], path: str) -> web.StreamResponse:
        model = path.split("/models/", 1)[1].split(":", 1)[0]
        req = _camel_gemini(req)
        for key in req:
            if key not in _GEMINI_FIELDS:
                raise Refused(f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.')
        gen = req.get("generationConfig") or {}
        for key in gen:
            if key not in _GEMINI_GENERATION:
                raise Refused(f'Invalid JSON payload received. Unknown name "{key}" at \'generation_config\'.')
        if "thinkingConfig" in gen and not (model.startswith("gemini-2.5") or model.startswith("gemini-3")):
            raise Refused("Thinking is not supported for this model.")
        budget = (gen.get("thinkingConfig") or {}).get("thinkingBudget")
        most = 24_576 if "flash" in model else 32_768  # Gemini's thinking guide: 2.5 Flash 0-24,576, Pro 128-32,768
        if isinstance(budget, int) and budget > most:
            raise Refused(f"The thinking budget {budget} is invalid. Please choose a value between 0 and {most}.")
        cap = 65_536 if model.startswith(("gemini-2.5", "gemini-3")) else 8_192
        if isinstance(gen.get("maxOutputTokens"), int) and gen["maxOutputTokens"] > cap:
            raise Refused(f"The specified max_output_tokens value is not supported by the model. The supported range "
                          f"is from 1 (inclusive) to {cap + 1} (exclusive).")
        names: list[str] = []
        refusal = gemini_name_refusal(req)
        if refusal is not None:
            raise Refused(refusal["error"]["message"])
        names.extend(decl["name"] for tool in req.get("tools") or [] for decl in tool.get("functionDeclarations") or [])
        contents = req.get("contents")
        if not isinstance(contents, list) or not contents:
            raise Refused("contents is not specified")
        called: set[str] = set()
        last_result: str | None = None
        for i, c in enumerate(contents):
            if c.get("role") not in ("user", "model"):
                raise Refused(f"Please use a valid role: user, model. (contents[{i}])")
            parts = c.get("parts")
            if not parts:
                raise Refused(f"contents[{i}].parts must not be empty")
            last_result = None
            for p in parts:
                unknown = set(p) - _GEMINI_PART_FIELDS
                if unknown or ("inlineData" in p and not {"mimeType", "data"} <= set(p["inlineData"])):
                    raise Refused(f"Invalid JSON payload received. Unknown name {sorted(unknown)} or incomplete "
                                  f"inlineData at 'contents[{i}].parts'")
                if "functionCall" in p:
                    called.add(p["functionCall"]["name"])
                if "functionResponse" in p:
                    if p["functionResponse"]["name"] not in called:
                        raise Refused("function response does not match a function call")
                    response = p["functionResponse"].get("response")
                    values = [v for v in response.values() if isinstance(v, str)] if isinstance(response, dict) else []
                    last_result = values[0] if values else json.dumps(response)
        step = self._next(names, last_result, req, json_answer="responseMimeType" in gen)
        if ":streamGenerateContent" in path:
            return await _sse(request, _gemini_events(step), data_only=True)
        return web.json_response(_gemini_body(step))


# --- one agent step ---------------------------------------------------------------------


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def _camel_gemini(req: dict[str, Any]) -> dict[str, Any]:
    """The request with Gemini's proto field names (``system_instruction``, ``function_declarations``,
    ``max_output_tokens``...) in their JSON spelling: Google accepts both; LiteLLM sends the former.
    Only the message structure is renamed, never arguments, schemas or function responses."""
    out = {_camel(k): v for k, v in req.items()}
    if isinstance(out.get("generationConfig"), dict):
        out["generationConfig"] = {_camel(k): v for k, v in out["generationConfig"].items()}
    if isinstance(out.get("tools"), list):
        out["tools"] = [{_camel(k): v for k, v in t.items()} if isinstance(t, dict) else t for t in out["tools"]]
    if isinstance(out.get("contents"), list):
        out["contents"] = [
            {**c, "parts": [{_camel(k): v for k, v in p.items()} if isinstance(p, dict) else p for p in c["parts"]]}
            if isinstance(c, dict) and isinstance(c.get("parts"), list) else c
            for c in out["contents"]
        ]
    return out


@dataclass
class Step:
    text: str | None = None
    tool: str | None = None
    arguments: str = ""
    uid: int = 1  # ids of the answer and its call, new per answer (clients merge messages by id)


def _step(names: list[str], last_result: str | None, req: dict[str, Any], *, json_answer: bool = False) -> Step:
    """The answer: quote a tool result, else call a known shell tool, else just talk."""
    if last_result is not None:
        return Step(text=ANSWER_PREFIX + last_result.strip()[:2000])
    for name in names:
        if name in SHELL_TOOLS:
            return Step(tool=name, arguments=json.dumps(SHELL_TOOLS[name]))
    for name in names:
        if name in CODE_TOOLS:
            return Step(tool=name, arguments=json.dumps({"input": CODE_TOOLS[name]}))
    if json_answer:
        return Step(text='{"title": "Run echo apex-ok"}')
    return Step(text="Hello from the fake upstream.")


async def _sse(request: web.Request, events: list[tuple[str | None, dict[str, Any] | str]], *, data_only: bool) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for name, data in events:
        payload = data if isinstance(data, str) else json.dumps(data)
        head = "" if data_only or name is None else f"event: {name}\n"
        await resp.write(f"{head}data: {payload}\n\n".encode())
    await resp.write_eof()
    return resp


def _chat_body(model: str, step: Step, reasoning: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": step.text}
    if reasoning:
        message["reasoning_content"] = reasoning
    if step.tool:
        message["tool_calls"] = [{"id": f"call_fake{step.uid}", "type": "function",
                                  "function": {"name": step.tool, "arguments": step.arguments}}]
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if step.tool else "stop"}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}}


def _chat_events(model: str, step: Step, reasoning: str | None, usage: bool) -> list[tuple[str | None, dict[str, Any] | str]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[None, dict[str, Any]]:
        return None, {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
                      "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    out: list[tuple[str | None, dict[str, Any] | str]] = [chunk({"role": "assistant", "content": ""})]
    if reasoning:
        out.append(chunk({"reasoning_content": reasoning}))
    if step.text:
        half = len(step.text) // 2
        out += [chunk({"content": step.text[:half]}), chunk({"content": step.text[half:]})]
    if step.tool:
        half = len(step.arguments) // 2
        out.append(chunk({"tool_calls": [{"index": 0, "id": f"call_fake{step.uid}", "type": "function",
                                          "function": {"name": step.tool, "arguments": step.arguments[:half]}}]}))
        out.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": step.arguments[half:]}}]}))
    out.append(chunk({}, "tool_calls" if step.tool else "stop"))
    if usage:
        out.append((None, {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
                           "choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}}))
    out.append((None, "[DONE]"))
    return out


def _responses_object(model: str, step: Step, custom: dict[str, str | None]) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    if step.text:
        output.append({"id": f"msg_fake{step.uid}", "type": "message", "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": step.text, "annotations": [], "logprobs": []}]})
    if step.tool and step.tool in custom:
        item: dict[str, Any] = {"id": "ctc_fake", "type": "custom_tool_call", "status": "completed",
                                "call_id": f"call_fake{step.uid}", "name": step.tool, "input": json.loads(step.arguments)["input"]}
        if custom[step.tool]:
            item["namespace"] = custom[step.tool]
        output.append(item)
    elif step.tool:
        output.append({"id": "fc_fake", "type": "function_call", "status": "completed", "call_id": f"call_fake{step.uid}",
                       "name": step.tool, "arguments": step.arguments})
    return {"id": "resp_fake", "object": "response", "created_at": 1, "status": "completed", "model": model,
            "output": output, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "usage": {"input_tokens": 50, "output_tokens": 10, "total_tokens": 60,
                      "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}}


def _responses_events(resp: dict[str, Any]) -> list[tuple[str | None, dict[str, Any] | str]]:
    seq = iter(range(1000))
    skeleton = {**resp, "status": "in_progress", "output": [], "usage": None}
    out: list[tuple[str | None, dict[str, Any] | str]] = []

    def ev(name: str, **fields: Any) -> None:
        out.append((name, {"type": name, "sequence_number": next(seq), **fields}))

    ev("response.created", response=skeleton)
    ev("response.in_progress", response=skeleton)
    for i, item in enumerate(resp["output"]):
        # As OpenAI does: the added item is empty (no content, arguments or input yet); the deltas fill it.
        empties: dict[str, dict[str, Any]] = {"message": {"content": []}, "custom_tool_call": {"input": ""}}
        empty = empties.get(item["type"], {"arguments": ""})
        ev("response.output_item.added", output_index=i, item={**item, "status": "in_progress", **empty})
        if item["type"] == "message":
            text = item["content"][0]["text"]
            ev("response.output_text.delta", item_id=item["id"], output_index=i, content_index=0, delta=text, logprobs=[])
            ev("response.output_text.done", item_id=item["id"], output_index=i, content_index=0, text=text, logprobs=[])
        elif item["type"] == "custom_tool_call":
            ev("response.custom_tool_call_input.delta", item_id=item["id"], output_index=i, delta=item["input"])
            ev("response.custom_tool_call_input.done", item_id=item["id"], output_index=i, input=item["input"])
        else:
            ev("response.function_call_arguments.delta", item_id=item["id"], output_index=i, delta=item["arguments"])
            ev("response.function_call_arguments.done", item_id=item["id"], output_index=i, arguments=item["arguments"])
        ev("response.output_item.done", output_index=i, item=item)
    ev("response.completed", response=resp)
    return out


def _anthropic_blocks(step: Step, thought: str | None) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if thought:
        blocks.append({"type": "thinking", "thinking": thought, "signature": SIGNATURE})
    if step.text:
        blocks.append({"type": "text", "text": step.text})
    if step.tool:
        blocks.append({"type": "tool_use", "id": f"toolu_fake{step.uid}", "name": step.tool, "input": json.loads(step.arguments)})
    return blocks


def _anthropic_body(model: str, step: Step, thought: str | None) -> dict[str, Any]:
    return {"id": f"msg_fake{step.uid}", "type": "message", "role": "assistant", "model": model,
            "content": _anthropic_blocks(step, thought), "stop_reason": "tool_use" if step.tool else "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 50, "output_tokens": 10}}


def _anthropic_events(model: str, step: Step, thought: str | None) -> list[tuple[str | None, dict[str, Any] | str]]:
    out: list[tuple[str | None, dict[str, Any] | str]] = [("message_start", {"type": "message_start", "message": {
        "id": f"msg_fake{step.uid}", "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 50, "output_tokens": 1}}})]
    for i, block in enumerate(_anthropic_blocks(step, thought)):
        kind = block["type"]
        if kind == "thinking":
            start: dict[str, Any] = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": block["thinking"]},
                      {"type": "signature_delta", "signature": block["signature"]}]
        elif kind == "text":
            start = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": block["text"]}]
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            args = json.dumps(block["input"])
            deltas = [{"type": "input_json_delta", "partial_json": args[:5]},
                      {"type": "input_json_delta", "partial_json": args[5:]}]
        out.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": start}))
        out += [("content_block_delta", {"type": "content_block_delta", "index": i, "delta": d}) for d in deltas]
        out.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    out.append(("message_delta", {"type": "message_delta", "delta": {
        "stop_reason": "tool_use" if step.tool else "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 10}}))
    out.append(("message_stop", {"type": "message_stop"}))
    return out


def _gemini_parts(step: Step) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if step.text:
        parts.append({"text": step.text})
    if step.tool:
        parts.append({"functionCall": {"name": step.tool, "args": json.loads(step.arguments)},
                      "thoughtSignature": "c2lnbmVkLWJ5LWdlbWluaQ=="})
    return parts


def _gemini_body(step: Step) -> dict[str, Any]:
    return {"candidates": [{"content": {"role": "model", "parts": _gemini_parts(step)}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 10, "totalTokenCount": 60},
            "modelVersion": "gemini-2.5-flash", "responseId": "gem-fake"}


def _gemini_events(step: Step) -> list[tuple[str | None, dict[str, Any] | str]]:
    return [(None, _gemini_body(step))]
