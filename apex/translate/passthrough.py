"""JSON surgery for bodies Apex forwards in the client's own dialect; pure, no I/O.

When client and upstream speak the same protocol Apex forwards bytes untouched. Only two
things may change a request: the model name (``model_map``) and, for OpenAI-shaped
streams, ``stream_options.include_usage`` (so Apex can account tokens). Both are done on a
top-level ``dict[str, Raw]`` decode, so nested content is copied as raw bytes, never
re-parsed. ``PassthroughStream`` watches a forwarded stream for usage, errors and its
terminator, and rewrites events only when it must (mapped model, usage chunk the client
did not ask for).
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from apex.errors import InvalidRequest, UpstreamMalformed
from apex.translate.capabilities import SAMPLING_FIELDS, ModelCaps
from apex.translate.directions.openai_to_anthropic import MIN_THINKING_BUDGET, budget_within
from apex.translate.passthrough_gemini import observe_gemini_chunk
from apex.translate.neutral.signatures import CARRIED_PREFIX
from apex.sse import SseEvent, SseParser, encode_event, event_data_ok
from apex.translate.neutral.usage import (
    AnthropicUsageTally,
    usage_from_anthropic,
    usage_from_openai,
    usage_from_responses,
)
from apex.types import Dialect, Usage
from apex.wire import anthropic as wire_anthropic
from apex.wire import openai as wire_openai

__all__ = [
    "PassthroughStream",
    "body_usage",
    "fit_chat_request",
    "fit_gemini_request",
    "fit_messages_request",
    "fit_reasoning_history",
    "without_openai_only_fields",
    "ReasoningHistory",
    "rewrite_request",
    "rewrite_response_model",
    "strip_reasoning",
    "strip_unsigned_thinking",
    "without_sampling",
]

_TOP = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ENC = msgspec.json.Encoder()
_INCLUDE_USAGE: Final = msgspec.Raw(b'{"include_usage":true}')


def rewrite_request(body: bytes, *, model: str | None, add_stream_usage: bool) -> bytes:
    """Return ``body`` with ``model`` replaced and/or include_usage set; raise InvalidRequest."""
    try:
        top = _TOP.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    if model is not None:
        top["model"] = msgspec.Raw(_ENC.encode(model))
    if add_stream_usage:
        opts = top.get("stream_options")
        if opts is None or bytes(opts) == b"null":
            top["stream_options"] = _INCLUDE_USAGE
        else:
            decoded = msgspec.json.decode(opts)
            if isinstance(decoded, dict):
                decoded["include_usage"] = True
                top["stream_options"] = msgspec.Raw(_ENC.encode(decoded))
    return _ENC.encode(top)


_MESSAGES: Final = msgspec.json.Decoder(list[dict[str, msgspec.Raw]])
_DEVELOPER: Final = msgspec.Raw(b'"developer"')
_SYSTEM: Final = msgspec.Raw(b'"system"')


def compat_chat_request(body: bytes) -> bytes:
    """A Chat request in the vocabulary every OpenAI-compatible server knows (docs/protocols.md
    P15, P16): ``developer`` messages as ``system`` (DeepSeek answers 400 "unknown variant
    developer"), ``max_completion_tokens`` as ``max_tokens`` (which they read; the other is
    ignored). Two substring tests when neither is there."""
    if body.find(b'"developer"') < 0 and body.find(b'"max_completion_tokens"') < 0:
        return body
    try:
        top = _TOP.decode(body)
        changed = False
        raw = top.get("messages")
        if raw is not None and bytes(raw).find(b'"developer"') >= 0:
            messages = _MESSAGES.decode(raw)
            for m in messages:
                if m.get("role") == _DEVELOPER:
                    m["role"] = _SYSTEM
                    changed = True
            top["messages"] = msgspec.Raw(_ENC.encode(messages))
        limit = top.pop("max_completion_tokens", None)
        if limit is not None:
            changed = True
            if "max_tokens" not in top or bytes(top["max_tokens"]) == b"null":
                top["max_tokens"] = limit
    except (msgspec.DecodeError, msgspec.ValidationError):
        return body  # not for Apex to judge here: the upstream answers it in its own words
    return _ENC.encode(top) if changed else body


ReasoningHistory = Literal["drop", "keep", "required"]
_ASSISTANT: Final = msgspec.Raw(b'"assistant"')
_EMPTY: Final = msgspec.Raw(b'""')


def fit_reasoning_history(body: bytes, history: ReasoningHistory) -> bytes:
    """A translated Chat request's past reasoning (``reasoning_content`` on assistant messages)
    as the upstream takes it (docs/protocols.md P7): ``drop`` for servers that refuse the field
    (OpenAI, Groq, Cerebras: "property 'reasoning_content' is unsupported"), ``required`` for
    DeepSeek and Kimi, which refuse a tool-call turn without it, even empty. Substring tests
    first: most requests carry no history to change."""
    if history == "keep":
        return body
    if history == "drop" and body.find(b'"reasoning_content"') < 0:
        return body
    if history == "required" and body.find(b'"tool_calls"') < 0:
        return body
    try:
        top = _TOP.decode(body)
        raw = top.get("messages")
        if raw is None:
            return body
        messages = _MESSAGES.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return body
    changed = False
    kept = []
    for m in messages:
        if m.get("role") != _ASSISTANT:
            kept.append(m)
            continue
        if history == "drop":
            if m.pop("reasoning_content", None) is not None:
                changed = True
                content = m.get("content")
                if (content is None or bytes(content) == b"null") and "tool_calls" not in m:
                    continue  # it held only reasoning
        elif "tool_calls" in m and "reasoning_content" not in m:
            m["reasoning_content"] = _EMPTY
            changed = True
        kept.append(m)
    if not changed:
        return body
    top["messages"] = msgspec.Raw(_ENC.encode(kept))
    return _ENC.encode(top)


_OPENAI_ONLY: Final = ("prompt_cache_key", "safety_identifier")


def without_openai_only_fields(body: bytes) -> bytes:
    """A translated Chat request without OpenAI's own ``prompt_cache_key`` and
    ``safety_identifier``, for servers that refuse fields they do not know (Codex sends them;
    Groq answers 400 "property 'prompt_cache_key' is unsupported"). Two substring tests when
    neither is there."""
    if body.find(b'"prompt_cache_key"') < 0 and body.find(b'"safety_identifier"') < 0:
        return body
    try:
        top = _TOP.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return body
    dropped = False
    for name in _OPENAI_ONLY:
        dropped = top.pop(name, None) is not None or dropped
    return _ENC.encode(top) if dropped else body


_CARRIED: Final = CARRIED_PREFIX.encode()
_ITEMS: Final = msgspec.json.Decoder(list[msgspec.Raw])
_ITEM_KIND: Final = msgspec.json.Decoder(wire_openai.ReasoningItemView)


def without_carried_signatures(body: bytes) -> bytes:
    """A Responses request without the reasoning items that carry an Anthropic signature
    (``apex.translate.neutral.signatures``): OpenAI cannot read them (a 400), and a Codex
    session moves between channels. One substring test when there is none."""
    if body.find(_CARRIED) < 0:
        return body
    try:
        top = _TOP.decode(body)
        raw = top.get("input")
        if raw is None or bytes(raw)[:1] != b"[":
            return body
        kept = [item for item in _ITEMS.decode(raw) if not _carries_signature(item)]
    except (msgspec.DecodeError, msgspec.ValidationError):
        return body  # not for Apex to judge: the upstream answers it
    top["input"] = msgspec.Raw(_ENC.encode(kept))
    return _ENC.encode(top)


def _carries_signature(item: msgspec.Raw) -> bool:
    if bytes(item)[:1] != b"{":
        return False
    view = _ITEM_KIND.decode(item)
    return view.type == "reasoning" and isinstance(view.encrypted_content, str) and view.encrypted_content.startswith(CARRIED_PREFIX)


_HISTORY: Final = msgspec.json.Decoder(wire_anthropic.HistoryView)
_THOUGHTS: Final = frozenset({"thinking", "redacted_thinking"})


def strip_unsigned_thinking(body: bytes) -> bytes:
    """Make an Anthropic request's history one Anthropic accepts (docs/protocols.md 8.7.2).

    Apex writes ``thinking`` blocks with an empty signature when it turns another provider's
    reasoning into an Anthropic stream (there is no genuine signature to give); Anthropic
    rejects them, so they are dropped. And when thinking is on, Anthropic wants the last
    assistant turn of a tool loop to open with a signed thinking block ("Expected thinking or
    redacted_thinking, but found tool_use"): a history another provider wrote cannot carry
    one, so thinking is turned off for that request (with the ``clear_thinking`` context
    edits that need it). A substring test unless the body has thinking and tool use.
    """
    # find, not in: see _plain_openai_chunk
    unsigned = body.find(b'"signature":""') >= 0 or body.find(b'"signature": ""') >= 0
    if not unsigned and not (body.find(b'"tool_use"') >= 0 and body.find(b'"thinking"') >= 0):
        return body
    try:
        view = _HISTORY.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return body  # not ours to judge: Anthropic answers a malformed body itself
    thinking_on = view.thinking is not None and view.thinking.type in ("enabled", "adaptive")
    last = next((t for t in reversed(view.messages) if t.role == "assistant"), None)
    disable = False
    if thinking_on and last is not None and isinstance(last.content, list):
        kept = [b for b in last.content if not (b.type == "thinking" and not b.signature)]
        uses_tools = any(b.type == "tool_use" for b in kept)
        disable = uses_tools and (not kept or kept[0].type not in _THOUGHTS)
    if not unsigned and not disable:
        return body
    top = _TOP.decode(body)
    if unsigned:
        messages = msgspec.json.decode(top["messages"])
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list):
                message["content"] = [
                    b for b in content
                    if not (isinstance(b, dict) and b.get("type") == "thinking" and not b.get("signature"))
                ]
        top["messages"] = msgspec.Raw(_ENC.encode(messages))
    if disable:
        del top["thinking"]
        _drop_thinking_edits(top)
    return _ENC.encode(top)


def fit_messages_request(body: bytes, caps: ModelCaps, max_tokens: int | None = None) -> bytes:
    """A Messages request whose model Apex renamed to another ``claude-*`` model, made one
    that model takes. On a model before 4.6, adaptive thinking (Claude Code's default on new
    models; older ones answer 400 to it) becomes a budget from ``output_config.effort``
    (``budget_within``: inside the client's max_tokens) where the model thinks, else no
    thinking; the effort goes with it (it steered the adaptive thinking), and so do the
    ``clear_thinking`` context edits when thinking is off. On a model that takes one sampling
    setting (Opus 4.1, the 4.5 models and later), ``top_p`` goes when ``temperature`` is
    also set, as the translators do. ``max_tokens`` (the client's, as routing decoded it)
    above the model's limit is cut to it, and a thinking budget with it (Claude Code asks
    128,000 of Opus; Sonnet 4.5 answers 400 to more than 64,000). Unchanged bytes when
    nothing applies."""
    if not caps.known:
        return body
    adaptive = "adaptive" not in caps.knobs and body.find(b'"adaptive"') >= 0
    both = caps.one_sampling and body.find(b'"top_p"') >= 0 and body.find(b'"temperature"') >= 0
    over = caps.max_output > 0 and max_tokens is not None and max_tokens > caps.max_output
    if not (adaptive or both or over):
        return body
    top = _TOP.decode(body)
    changed = False
    if over:
        top["max_tokens"] = msgspec.Raw(str(caps.max_output).encode())
        _fit_budget(top, caps.max_output)
        changed = True
    if both and _given(top, "top_p") and _given(top, "temperature"):
        del top["top_p"]
        changed = True
    if adaptive:
        changed = _fit_adaptive(top, caps) or changed
    return _ENC.encode(top) if changed else body


def _fit_budget(top: dict[str, msgspec.Raw], max_tokens: int) -> None:
    """A thinking budget that no longer fits under a cut ``max_tokens``, made to fit."""
    raw = top.get("thinking")
    thinking = msgspec.json.decode(raw) if raw is not None else None
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, int) and budget >= max_tokens:
            thinking["budget_tokens"] = budget_within("high", max_tokens) or MIN_THINKING_BUDGET
            top["thinking"] = msgspec.Raw(_ENC.encode(thinking))


def _given(top: dict[str, msgspec.Raw], key: str) -> bool:
    raw = top.get(key)
    return raw is not None and bytes(raw) != b"null"


def _fit_adaptive(top: dict[str, msgspec.Raw], caps: ModelCaps) -> bool:
    """Adaptive thinking made a budget (or none) for a model before 4.6; True when changed."""
    raw = top.get("thinking")
    thinking = msgspec.json.decode(raw) if raw is not None else None
    if not (isinstance(thinking, dict) and thinking.get("type") == "adaptive"):
        return False
    effort = None
    raw = top.get("output_config")
    config = msgspec.json.decode(raw) if raw is not None else None
    if isinstance(config, dict) and "effort" in config:
        effort = config.pop("effort")
        if config:
            top["output_config"] = msgspec.Raw(_ENC.encode(config))
        else:
            del top["output_config"]
    raw = top.get("max_tokens")
    max_tokens = msgspec.json.decode(raw) if raw is not None else None
    budget = None
    if caps.reasons and "budget" in caps.knobs and isinstance(max_tokens, int):
        budget = budget_within(effort if isinstance(effort, str) else "high", max_tokens)
    if budget is not None:
        top["thinking"] = msgspec.Raw(_ENC.encode({"type": "enabled", "budget_tokens": budget}))
    else:
        del top["thinking"]
        _drop_thinking_edits(top)
    return True


_GENERATION_KEYS: Final = ("generationConfig", "generation_config")  # Gemini takes both spellings
_THINKING_KEYS: Final = ("thinkingConfig", "thinking_config")


def fit_gemini_request(body: bytes, caps: ModelCaps) -> bytes:
    """A generateContent request made one the upstream model takes: without its
    ``thinkingConfig`` on a model the table knows does not think (gemini-2.0, 1.5: Gemini
    answers 400 "Thinking is not supported for this model", and Gemini clients send it for 2.5
    and later), and with ``maxOutputTokens`` cut to the model's limit (a larger one is a 400;
    Claude Code asks 128,000; the translators into Gemini cut it as they write it). For a
    renamed native request. Unchanged bytes when nothing applies."""
    if not caps.known:
        return body
    strip = not caps.reasons and (body.find(b'"thinkingConfig"') >= 0 or body.find(b'"thinking_config"') >= 0)
    clamp = caps.max_output > 0 and (body.find(b'"maxOutputTokens"') >= 0 or body.find(b'"max_output_tokens"') >= 0)
    if not (strip or clamp):
        return body
    top = _TOP.decode(body)
    changed = False
    for key in _GENERATION_KEYS:
        raw = top.get(key)
        config = msgspec.json.decode(raw) if raw is not None else None
        if not isinstance(config, dict):
            continue
        edited = False
        if strip and any(k in config for k in _THINKING_KEYS):
            for k in _THINKING_KEYS:
                config.pop(k, None)
            edited = True
        for k in ("maxOutputTokens", "max_output_tokens"):
            value = config.get(k)
            if clamp and isinstance(value, (int, float)) and value > caps.max_output:  # 1e6 too
                config[k] = caps.max_output
                edited = True
        if edited:
            top[key] = msgspec.Raw(_ENC.encode(config))
            changed = True
    return _ENC.encode(top) if changed else body


def _drop_thinking_edits(top: dict[str, msgspec.Raw]) -> None:
    """``context_management`` edits that clear thinking are refused without thinking."""
    raw = top.get("context_management")
    if raw is None:
        return
    cm = msgspec.json.decode(raw)
    if not isinstance(cm, dict) or not isinstance(cm.get("edits"), list):
        return
    edits = [e for e in cm["edits"] if not (isinstance(e, dict) and str(e.get("type", "")).startswith("clear_thinking"))]
    if edits:
        cm["edits"] = edits
        top["context_management"] = msgspec.Raw(_ENC.encode(cm))
    else:
        del top["context_management"]


def fit_chat_request(body: bytes, caps: ModelCaps) -> bytes:
    """A Chat request whose model Apex renamed, made one the new model takes (OpenAI answers
    400 otherwise): a reasoning model gets ``max_completion_tokens`` for ``max_tokens`` and
    no ``temperature`` / ``top_p`` / ``stop`` (as the translators do); a model the capability table
    knows does not reason gets no ``reasoning_effort``. Unchanged bytes when nothing applies."""
    if caps.refuses_sampling:
        if (body.find(b'"max_tokens"') < 0 and body.find(b'"temperature"') < 0 and body.find(b'"top_p"') < 0
                and body.find(b'"stop"') < 0):
            return body
        top = _TOP.decode(body)
        limit = top.pop("max_tokens", None)
        if limit is not None and "max_completion_tokens" not in top:
            top["max_completion_tokens"] = limit
        changed = _drop_sampling(top)
        return _ENC.encode(top) if changed or limit is not None else body
    if caps.known and not caps.reasons and body.find(b'"reasoning_effort"') >= 0:
        top = _TOP.decode(body)
        if top.pop("reasoning_effort", None) is not None:
            return _ENC.encode(top)
    return body


def without_sampling(body: bytes) -> bytes:
    """A Responses request without ``temperature`` / ``top_p``, for a reasoning model a
    renamed one turned out to be (OpenAI answers 400 to them there)."""
    if body.find(b'"temperature"') < 0 and body.find(b'"top_p"') < 0:
        return body
    top = _TOP.decode(body)
    return _ENC.encode(top) if _drop_sampling(top) else body


def _drop_sampling(top: dict[str, msgspec.Raw]) -> bool:
    """Remove ``SAMPLING_FIELDS`` from a decoded top level; True when one was there."""
    dropped = False
    for key in SAMPLING_FIELDS:
        dropped = top.pop(key, None) is not None or dropped
    return dropped


def strip_reasoning(body: bytes) -> bytes:
    """A Responses request without ``reasoning`` and the ``reasoning.encrypted_content``
    include, for a model the capability table knows does not reason (OpenAI answers 400 to
    ``reasoning.effort`` on gpt-4.1; Codex sends it whatever the model)."""
    if body.find(b'"reasoning') < 0:  # find, not in: see _plain_openai_chunk
        return body
    top = _TOP.decode(body)
    changed = top.pop("reasoning", None) is not None
    raw = top.get("include")
    if raw is not None and b"reasoning." in bytes(raw):
        include = msgspec.json.decode(raw)
        if isinstance(include, list):
            kept = [i for i in include if not (isinstance(i, str) and i.startswith("reasoning."))]
            top["include"] = msgspec.Raw(_ENC.encode(kept))
            changed = True
    return _ENC.encode(top) if changed else body


def rewrite_response_model(body: bytes, model: str) -> bytes:
    """Put the client's model name back into a top-level ``model`` field (OpenAI/Anthropic)."""
    top = _TOP.decode(body)
    if "model" in top:
        top["model"] = msgspec.Raw(_ENC.encode(model))
    return _ENC.encode(top)


# --- usage ----------------------------------------------------------------------
# The views are wire/'s usage-only shapes; the readers are neutral.usage's, the same ones
# the translated path uses, so a request's usage never depends on the path it took.

_OPENAI_CHUNK: Final = msgspec.json.Decoder(wire_openai.UsageChunk)
_OPENAI_BODY: Final = msgspec.json.Decoder(wire_openai.UsageBody)
_RESPONSES_EVENT: Final = msgspec.json.Decoder(wire_openai.ResponsesEvent)
_RESPONSES_BODY: Final = msgspec.json.Decoder(wire_openai.ResponsesUsageBody)
_ANTHROPIC_EVENT: Final = msgspec.json.Decoder(wire_anthropic.UsageEvent)
_ANTHROPIC_BODY: Final = msgspec.json.Decoder(wire_anthropic.UsageBody)


def body_usage(dialect: Dialect, body: bytes) -> Usage | None:
    """Decode a 2xx non-stream body of ``dialect`` just enough to validate it and read its usage.

    Raises UpstreamMalformed when the body is not JSON: a malformed answer fails the attempt.
    """
    try:
        if dialect.family == "anthropic":
            ab = _ANTHROPIC_BODY.decode(body)
            if dialect is Dialect.ANTHROPIC_MESSAGES and (
                    (ab.error and bytes(ab.error) != b"null")
                    or not (ab.type == "message" or (not ab.type and ab.role == "assistant"))):
                raise UpstreamMalformed("upstream answered HTTP 200 with an error or no message")
            return usage_from_anthropic(ab.usage) if ab.usage is not None else None
        if dialect is Dialect.OPENAI_RESPONSES:
            rb = _RESPONSES_BODY.decode(body)
            return usage_from_responses(rb.usage) if rb.usage is not None else None
        ob = _OPENAI_BODY.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UpstreamMalformed(f"upstream answered with a malformed body: {exc}") from exc
    if (ob.error and bytes(ob.error) != b"null") or (
            dialect is Dialect.OPENAI_CHAT and bytes(ob.choices) in (b"", b"null")):
        raise UpstreamMalformed("upstream answered HTTP 200 with an error object or no choices")
    return usage_from_openai(ob.usage) if ob.usage is not None else None


def _plain_openai_chunk(chunk: bytes) -> bool:
    """True for a chunk of whole OpenAI chat events with nothing to observe or change: only
    ``data:`` lines ending in a blank line, no usage, error, finish reason, ``[DONE]``, event
    name or CR. Most chunks of a long answer are these; each test is one C substring search.

    ``find`` rather than ``in``: on CPython 3.11 ``bytes in bytes`` first tries the needle as
    an integer and formats and discards a TypeError (~100 ns and ~1,900 instructions each);
    here and in ``_observe`` that was 12 % of a stream's instructions under callgrind."""
    find = chunk.find
    return (
        chunk.startswith(b"data:")
        and chunk.endswith(b"\n\n")
        and find(b'"finish_reason":"') < 0
        and find(b'"finish_reason": "') < 0
        and find(b'"usage"') < 0
        and find(b'"error"') < 0
        and find(b"[DONE]") < 0
        and find(b"event:") < 0
        and find(b"\r") < 0
    )


def _last_boundary(data: bytes) -> int:
    """Where the last complete event of ``data`` ends (after its blank line); 0 if none."""
    end = 0
    for blank in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        at = data.rfind(blank)
        if at >= 0:
            end = max(end, at + len(blank))
    return end


class _ChunkRepair:
    """What a Chat stream from a server that is not OpenAI's needs before an OpenAI SDK reads it.

    Tool-call indices as the client must see them: a call with a new id gets the next index, a
    chunk without an id continues the call its upstream index last named (Ollama numbers every
    parallel call 0; the identity for servers that number their calls). And a ``delta`` on
    every choice: Azure's asynchronous content filter sends a choice of annotations only
    (``content_filter_offsets`` / ``_results``, no ``delta``) after the finish, and the openai
    SDK's stream helper fails on it with AttributeError (docs/protocols.md 8.7.5)."""

    __slots__ = ("_ids", "_current")

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._current: dict[int, int] = {}

    def repair(self, data: bytes) -> bytes:
        # find: see _plain_openai_chunk. Content chunks carry "delta" and no "tool_calls":
        # two substring searches and no decode.
        if data.find(b'"tool_calls"') < 0 and data.find(b'"delta"') >= 0:
            return data
        try:
            top = _TOP.decode(data)
            choices = msgspec.json.decode(top["choices"]) if "choices" in top else None
        except (msgspec.DecodeError, msgspec.ValidationError):
            return data
        changed = False
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict):
                continue
            if "delta" not in choice:
                choice["delta"] = {}
                changed = True
            delta = choice["delta"]
            calls = delta.get("tool_calls") if isinstance(delta, dict) else None
            for call in calls if isinstance(calls, list) else ():
                if not isinstance(call, dict) or not isinstance(call.get("index"), int):
                    continue
                upstream: int = call["index"]
                call_id = call.get("id")
                if isinstance(call_id, str) and call_id:
                    index = self._ids.setdefault(call_id, len(self._ids))
                    self._current[upstream] = index
                else:
                    index = self._current.get(upstream, upstream)
                if index != upstream:
                    call["index"] = index
                    changed = True
        if not changed:
            return data
        top["choices"] = msgspec.Raw(_ENC.encode(choices))
        return _ENC.encode(top)


class PassthroughStream:
    """Observe (and if needed minimally rewrite) a same-dialect SSE stream.

    ``feed`` returns the bytes to forward for a chunk. ``first_event_seen`` tells the
    pipeline when the stream may be committed to the client; ``terminated`` whether the
    protocol's normal end was seen; ``finished`` whether the answer ended (a finish reason),
    which also counts as a clean end when a server omits the terminator; ``errored``
    whether an upstream error event went by.
    """

    __slots__ = (
        "_family", "_parser", "_model", "_strip_usage", "_rewrite", "usage", "_tally",
        "first_event_seen", "terminated", "errored", "finished", "cut", "events", "_held", "_plain_ok",
        "_chunk_repair",
    )

    def __init__(self, family: str, *, client_model: str | None, strip_usage_chunk: bool,
                 repair_chat_chunks: bool = False) -> None:
        self._family = family  # "openai_chat" | "anthropic" | "responses" | "gemini"
        self._parser = SseParser()
        self._model = msgspec.Raw(_ENC.encode(client_model)) if client_model is not None else None
        self._strip_usage = strip_usage_chunk
        # Ollama numbers every parallel call 0 (P3): upstream index -> the client's, renumbered
        # by call id (a new id is a new call); None when the server numbers them itself.
        self._chunk_repair: _ChunkRepair | None = _ChunkRepair() if repair_chat_chunks else None
        self._rewrite = client_model is not None or strip_usage_chunk or repair_chat_chunks
        self.usage: Usage | None = None
        self._tally: AnthropicUsageTally | None = None
        self.first_event_seen = False
        self.terminated = False  # the protocol's own end marker was seen
        self.errored = False
        self.finished = False  # the answer itself ended (finish_reason / message_delta)
        self.cut = False  # the upstream ended inside an event (its last one is incomplete)
        self.events = 0  # events seen: the estimate of a stream whose upstream reports no usage
        self._held = b""  # the start of an event whose end has not arrived (pass-through mode)
        # An OpenAI chat stream whose events need no model rewrite: a chunk of whole, ordinary
        # content events may skip parsing entirely (see _plain_openai_chunk).
        self._plain_ok = family == "openai_chat" and client_model is None and not repair_chat_chunks

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to forward for ``chunk``: whole events only. A partial event is held
        back until its blank line arrives, so a stream cut mid-event never forwards half of
        one (the client would glue Apex's error event onto it)."""
        parser = self._parser
        started_aligned = parser.between_events
        if self._plain_ok and started_aligned and self.first_event_seen and _plain_openai_chunk(chunk):
            self.events += chunk.count(b"\n\n")
            return chunk  # what parsing and observing it would have concluded, ~5x cheaper
        events = parser.feed(chunk)
        self.events += len(events)
        if not self._rewrite:
            for ev in events:
                self._observe(ev)
            if parser.between_events:
                if started_aligned:
                    return chunk  # the common case: whole events in, the same bytes out
                out = self._held + chunk
                self._held = b""
                return out
            whole = self._held + chunk if self._held else chunk
            cut = _last_boundary(whole)
            self._held = whole[cut:]
            return whole[:cut]
        aligned = started_aligned and parser.between_events
        kept: list[tuple[bytes, SseEvent]] = []
        changed = False
        for ev in events:
            data = self._observe(ev)
            if data is None:
                changed = True
            else:
                changed = changed or data is not ev.data
                kept.append((data, ev))
        if not changed and aligned:
            return chunk  # nothing to drop or rewrite and whole events only: forward as is
        return b"".join(encode_event(data, ev.event) for data, ev in kept)

    def flush(self) -> bytes:
        """The upstream ended cleanly: a last event it sent without its blank line counts
        when it ends the answer (some servers omit it after ``[DONE]``); anything else
        still pending is an incomplete event and is dropped, as the SSE spec says."""
        ended_before = self.terminated or self.finished or self.errored
        events = self._parser.flush()
        held, self._held = self._held, b""
        if not (self.terminated or self.errored) and not all(event_data_ok(ev.data) for ev in events):
            self.cut = True  # e.g. message_stop or response.completed cut short: never forwarded
            return b""
        out = [encode_event(d, ev.event) for ev in events if (d := self._observe(ev)) is not None]
        if ended_before or not (self.terminated or self.finished or self.errored):
            return b""
        if self._rewrite:
            return b"".join(out)
        if held:
            return held + (b"\r\n\r\n" if held.endswith(b"\r\n") else b"\n\n")
        return b""

    def drop(self) -> None:
        """The upstream broke: what is held back is an incomplete event and is never sent."""
        self._held = b""

    def _observe(self, ev: SseEvent) -> bytes | None:
        """Record what ``ev`` tells; return its (possibly rewritten) data, None to drop it."""
        data = ev.data
        if not self.first_event_seen:
            if not event_data_ok(data):  # not committed yet: a failed attempt, the plan goes on
                raise UpstreamMalformed("upstream's first stream event is not JSON")
            # A keep-alive ping is no answer: it neither commits the stream nor stops
            # first_byte_ms (an upstream that only pings would hold the client for ever).
            self.first_event_seen = ev.event != "ping"
        fam = self._family
        if fam == "gemini":
            observe_gemini_chunk(data, self)
            return data
        if fam == "openai_chat":
            if data == b"[DONE]":
                self.terminated = True
                return data
            if ev.event == "error":
                self.errored = True
                return data
            if not self.finished and (data.find(b'"finish_reason":"') >= 0 or data.find(b'"finish_reason": "') >= 0):
                # Some OpenAI-compatible servers end without [DONE]; a finished choice is an end.
                self.finished = True
            if self._chunk_repair is not None:
                data = self._chunk_repair.repair(data)
            if data.find(b'"usage"') < 0 and data.find(b'"error"') < 0 and self._model is None:  # find: see _plain_openai_chunk
                return data
            try:
                chunk = _OPENAI_CHUNK.decode(data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return data
            if chunk.error and bytes(chunk.error) != b"null":
                self.errored = True
            u = chunk.usage or (chunk.x_groq.usage if chunk.x_groq is not None else None)
            if u is None and chunk.choices:  # Moonshot: on the finishing choice
                u = next((c.usage for c in chunk.choices if c.usage is not None), None)
            if u is not None:
                self.usage = usage_from_openai(u)
                if self._strip_usage and not chunk.choices:
                    return None
            if self._model is not None and chunk.model is not None:
                top = _TOP.decode(data)
                top["model"] = self._model
                return _ENC.encode(top)
            return data
        if fam == "anthropic":
            name = ev.event
            if name == "message_stop":
                self.terminated = True
            elif name == "error":
                self.errored = True
            elif name in ("message_start", "message_delta"):
                if name == "message_delta":
                    self.finished = True
                try:
                    aev = _ANTHROPIC_EVENT.decode(data)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    return data
                src = aev.message.usage if aev.message is not None else aev.usage
                if src is not None:
                    if self._tally is None:
                        self._tally = AnthropicUsageTally()
                    self.usage = self._tally.add(src)
                if name == "message_start" and self._model is not None:
                    top = _TOP.decode(data)
                    msg = msgspec.json.decode(top["message"])
                    if isinstance(msg, dict):
                        msg["model"] = msgspec.json.decode(self._model)
                        top["message"] = msgspec.Raw(_ENC.encode(msg))
                        return _ENC.encode(top)
            return data
        # OpenAI Responses API
        name = ev.event
        if name is None and data.find(b'"type"') >= 0:
            # Data-only events (some compatible servers write no event: lines; the SDKs read
            # the type from the JSON): the end, the usage and an error were missed, and a
            # whole stream got "ended the stream early" appended.
            try:
                name = _RESPONSES_EVENT.decode(data).type
            except (msgspec.DecodeError, msgspec.ValidationError):
                name = None
        if name in ("response.completed", "response.incomplete", "response.failed"):
            self.terminated = True
            if name == "response.failed":
                self.errored = True
            try:
                rev = _RESPONSES_EVENT.decode(data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return data
            if rev.response is not None and rev.response.usage is not None:
                self.usage = usage_from_responses(rev.response.usage)
        elif name == "error":
            self.errored = True
        if self._model is not None and data.find(b'"model"') >= 0:
            return self._responses_model(data)
        return data

    def _responses_model(self, data: bytes) -> bytes:
        """Put the client's model name into every event that carries the response object
        (created, in_progress, queued, completed, incomplete, failed) or a top-level model."""
        try:
            top = _TOP.decode(data)
        except msgspec.DecodeError:
            return data
        model = self._model
        assert model is not None
        changed = False
        if "model" in top:
            top["model"] = model
            changed = True
        raw = top.get("response")
        if raw is not None and b'"model"' in (inner_bytes := bytes(raw)):
            inner = _TOP.decode(inner_bytes)
            if "model" in inner:
                inner["model"] = model
                top["response"] = msgspec.Raw(_ENC.encode(inner))
                changed = True
        return _ENC.encode(top) if changed else data
