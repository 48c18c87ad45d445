"""JSON surgery on forwarded bodies: only what must change changes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apex.errors import InvalidRequest, UpstreamMalformed
from apex.translate.capabilities import NO_CAPS, CapabilityTable
from apex.types import Dialect
from apex.translate.passthrough import (
    PassthroughStream,
    _plain_openai_chunk,
    body_usage,
    fit_chat_request,
    fit_gemini_request,
    fit_messages_request,
    rewrite_request,
    rewrite_response_model,
    strip_unsigned_thinking,
)
from tests.fixtures import REAL
from tests.chunking import split_at


def test_rewrite_model_keeps_everything_else_verbatim() -> None:
    """Only `model` changes; nested content keeps its exact bytes (spacing, escapes, key order)."""
    body = b'{"messages": [{"content":"a\\u2028b",  "role":"user"}], "model":"x", "z": 1.50}'
    out = rewrite_request(body, model="y", add_stream_usage=False)
    assert b'[{"content":"a\\u2028b",  "role":"user"}]' in out and b'"z":1.50' in out
    assert json.loads(out)["model"] == "y"


def test_add_stream_usage_merges_existing_options() -> None:
    """include_usage is added to existing stream_options without dropping other options."""
    out = rewrite_request(b'{"model":"m","stream":true,"stream_options":{"include_obfuscation":false}}', model=None, add_stream_usage=True)
    assert json.loads(out)["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    out = rewrite_request(b'{"model":"m","stream":true}', model=None, add_stream_usage=True)
    assert json.loads(out)["stream_options"] == {"include_usage": True}


def test_rewrite_bad_json_is_invalid_request() -> None:
    """A body that is not JSON cannot be rewritten: 400."""
    with pytest.raises(InvalidRequest):
        rewrite_request(b"{nope", model="y", add_stream_usage=False)


def test_response_model_put_back() -> None:
    """The client's model name replaces the upstream's in a non-stream body."""
    assert json.loads(rewrite_response_model(b'{"id":"1","model":"gpt-4o-2024-08-06"}', "gpt-4o"))["model"] == "gpt-4o"


def test_body_usage_reads_openai_and_anthropic_and_rejects_html() -> None:
    """Usage is read from both shapes (Anthropic prompt includes cache), and non-JSON is malformed."""
    u = body_usage(Dialect.OPENAI_CHAT, b'{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":4}}}')
    assert u is not None and (u.prompt_tokens, u.completion_tokens, u.cached_tokens) == (10, 5, 4)
    a = body_usage(Dialect.ANTHROPIC_MESSAGES, b'{"type":"message","usage":{"input_tokens":3,"output_tokens":7,"cache_read_input_tokens":5,"cache_creation_input_tokens":2}}')
    assert a is not None and (a.prompt_tokens, a.completion_tokens, a.cached_tokens) == (10, 7, 5)
    with pytest.raises(UpstreamMalformed):
        body_usage(Dialect.OPENAI_CHAT, b"<html>bad gateway</html>")


def test_stream_strips_only_the_usage_chunk_asked_by_apex() -> None:
    """With strip on, the choices:[] usage chunk is read and dropped; DeepSeek-style usage on a finish chunk stays."""
    obs = PassthroughStream("openai_chat", client_model=None, strip_usage_chunk=True)
    out = obs.feed(b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
                   b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\ndata: [DONE]\n\n')
    assert b"usage" not in out and b"[DONE]" in out and obs.terminated
    assert obs.usage is not None and obs.usage.completion_tokens == 2


def test_stream_sees_errors_and_groq_usage() -> None:
    """An in-band error chunk marks the stream errored; Groq's x_groq.usage is read."""
    obs = PassthroughStream("openai_chat", client_model=None, strip_usage_chunk=False)
    obs.feed(b'data: {"choices":[],"x_groq":{"usage":{"prompt_tokens":4,"completion_tokens":1}}}\n\n'
             b'data: {"error":{"message":"boom"}}\n\n')
    assert obs.errored and obs.usage is not None and obs.usage.prompt_tokens == 4


def test_strip_unsigned_thinking_leaves_other_bodies_alone() -> None:
    """Bodies without an empty signature are returned as the very same object."""
    body = b'{"model":"c","messages":[{"role":"user","content":"hi"}]}'
    assert strip_unsigned_thinking(body) is body


def test_finish_reason_without_done_is_a_clean_end() -> None:
    """A server that ends after its finish chunk without [DONE] still ended the answer."""
    obs = PassthroughStream("openai_chat", client_model=None, strip_usage_chunk=False)
    obs.feed(b'data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n')
    assert not obs.finished
    obs.feed(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
    assert (obs.finished, obs.terminated) == (True, False)  # one read: mypy narrowed `finished` above


def test_anthropic_usage_from_message_delta() -> None:
    """message_delta's cumulative output_tokens overwrite message_start's placeholder, and mark the end."""
    obs = PassthroughStream("anthropic", client_model=None, strip_usage_chunk=False)
    obs.feed(b'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":17,"output_tokens":1}}}\n\n'
             b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}\n\n')
    assert obs.usage is not None and (obs.usage.prompt_tokens, obs.usage.completion_tokens) == (17, 15)
    assert obs.finished and not obs.terminated


_STREAM = (
    b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
    b'data: {"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}\n\n'
    b"data: [DONE]\n\n"
)


def test_stripping_stream_forwards_whole_event_chunks_as_they_are() -> None:
    """Chunks that hold whole events and need no change go out as the very same bytes."""
    obs = PassthroughStream("openai_chat", client_model=None, strip_usage_chunk=True)
    first = _STREAM.split(b"\n\n")[0] + b"\n\n"
    assert obs.feed(first) is first


@given(st.lists(st.integers(min_value=0, max_value=len(_STREAM)), max_size=12))
def test_stripping_stream_output_does_not_depend_on_chunking(cuts: list[int]) -> None:
    """However the upstream splits its bytes, the usage chunk is dropped and the rest kept."""
    pieces = split_at(_STREAM, cuts)
    obs = PassthroughStream("openai_chat", client_model=None, strip_usage_chunk=True)
    out = b"".join(obs.feed(p) for p in pieces) + obs.flush()
    assert out.count(b"data: ") == 3 and b'"usage"' not in out
    assert b'"content":"Hi"' in out and out.endswith(b"data: [DONE]\n\n")
    assert obs.usage is not None and obs.usage.prompt_tokens == 3


# --- the plain-chunk shortcut of OpenAI chat streams ------------------------------------


def _events_of(raw: bytes) -> list[bytes]:
    """The capture's events, each with its blank line (LF-normalised)."""
    text = raw.replace(b"\r\n", b"\n")
    return [e + b"\n\n" for e in text.split(b"\n\n") if e.strip()]


@pytest.mark.parametrize("capture", ["openai_chat_stream_text.sse", "openai_chat_stream_tool_calls.sse",
                                     "deepseek_chat_stream_reasoning.sse", "groq_chat_stream_midstream_error.sse",
                                     "openrouter_chat_stream_error_chunk.sse"])
@pytest.mark.parametrize("strip_usage", [False, True])
@pytest.mark.parametrize("per_chunk", [1, 2, 3])
def test_plain_chunk_shortcut_changes_nothing(capture: str, strip_usage: bool, per_chunk: int) -> None:
    """Feeding every OpenAI-shaped capture, one to three events per chunk, with the shortcut on
    and off gives the same bytes out and the same end state (usage, end flags)."""
    events = _events_of((REAL / capture).read_bytes())
    chunks = [b"".join(events[i:i + per_chunk]) for i in range(0, len(events), per_chunk)]
    fast = PassthroughStream("openai_chat", client_model=None, strip_usage_chunk=strip_usage)
    slow = PassthroughStream("openai_chat", client_model=None, strip_usage_chunk=strip_usage)
    slow._plain_ok = False
    shortcut_taken = 0
    for chunk in chunks:
        out_fast = fast.feed(chunk)
        shortcut_taken += out_fast is chunk and fast._parser.between_events
        assert out_fast == slow.feed(chunk)
        assert fast.first_event_seen == slow.first_event_seen
    assert fast.flush() == slow.flush()
    for flag in ("usage", "terminated", "errored", "finished"):
        assert getattr(fast, flag) == getattr(slow, flag), flag
    assert shortcut_taken > 0 or len(chunks) <= 2


def test_plain_chunk_shortcut_is_not_taken_for_what_must_be_observed() -> None:
    """Usage, a finish reason, [DONE], an error, a CR or a partial event go through the parser."""
    for chunk in (b'data: {"choices":[],"usage":{"prompt_tokens":1}}\n\n',
                  b'data: {"choices":[{"finish_reason":"stop"}]}\n\n',
                  b"data: [DONE]\n\n", b'data: {"error":{"message":"x"}}\n\n',
                  b'data: {"choices":[]}\r\n\r\n', b'data: {"choices":[]}\n', b": ping\n\n"):
        assert not _plain_openai_chunk(chunk), chunk
    assert _plain_openai_chunk(b'data: {"choices":[{"delta":{"content":"hi"},"finish_reason":null}]}\n\n')


_OPENAI_CAPS = CapabilityTable("openai")


def test_fit_chat_request_to_a_reasoning_model() -> None:
    """max_tokens becomes max_completion_tokens (the client's own one wins), sampling settings go, the rest keeps its bytes."""
    caps = _OPENAI_CAPS.lookup("gpt-5-mini")
    body = b'{"model":"gpt-5-mini","messages":[{"role":"user","content":"a  \\u00e9"}],"max_tokens":300,"temperature":0.2,"top_p":1}'
    out = fit_chat_request(body, caps)
    assert json.loads(out) == {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "a  \u00e9"}],
                               "max_completion_tokens": 300}
    assert b'"content":"a  \\u00e9"' in out
    both = fit_chat_request(b'{"max_tokens":1,"max_completion_tokens":2}', caps)
    assert json.loads(both) == {"max_completion_tokens": 2}
    plain = b'{"model":"gpt-5-mini","messages":[],"max_completion_tokens":5}'
    assert fit_chat_request(plain, caps) is plain  # nothing to change: the same bytes object, no re-encode
    quoted = b'{"messages":[{"role":"user","content":"say \\"max_tokens\\""}]}'
    assert fit_chat_request(quoted, caps) is quoted  # the name inside a message is not a field


def test_fit_chat_request_to_a_chat_model_and_an_unknown_one() -> None:
    """A known non-reasoning model loses reasoning_effort and keeps its sampling; an unknown model keeps everything."""
    body = b'{"model":"gpt-4.1","reasoning_effort":"high","temperature":0.3,"max_tokens":10}'
    assert json.loads(fit_chat_request(body, _OPENAI_CAPS.lookup("gpt-4.1"))) == {
        "model": "gpt-4.1", "temperature": 0.3, "max_tokens": 10}
    assert fit_chat_request(body, _OPENAI_CAPS.lookup("my-local-model")) is body


_CLAUDE_CAPS = CapabilityTable("anthropic")


def test_fit_messages_request_turns_adaptive_thinking_into_a_budget() -> None:
    """Adaptive thinking + effort to claude-sonnet-4-5 (no adaptive): a budget from the effort inside max_tokens;
    the effort goes, the output format stays; a model with adaptive thinking gets the bytes as sent."""
    body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 64000, "messages": [{"role": "user", "content": "x"}],
                       "thinking": {"type": "adaptive", "display": "omitted"},
                       "output_config": {"effort": "medium", "format": {"type": "json_schema", "schema": {}}}}).encode()
    out = json.loads(fit_messages_request(body, _CLAUDE_CAPS.lookup("claude-sonnet-4-5")))
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": {}}} and out["max_tokens"] == 64000
    small = json.dumps({"max_tokens": 3000, "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}}).encode()
    assert json.loads(fit_messages_request(small, _CLAUDE_CAPS.lookup("claude-opus-4-1"))) == {
        "max_tokens": 3000, "thinking": {"type": "enabled", "budget_tokens": 1500}}  # half the limit stays for the answer
    assert fit_messages_request(body, _CLAUDE_CAPS.lookup("claude-opus-4-8")) is body
    assert fit_messages_request(body, NO_CAPS) is body  # a model the table does not know: left as sent
    plain = b'{"model":"claude-sonnet-4-5","max_tokens":10,"thinking":{"type":"enabled","budget_tokens":2048}}'
    assert fit_messages_request(plain, _CLAUDE_CAPS.lookup("claude-sonnet-4-5")) is plain


def test_fit_messages_request_turns_thinking_off_where_the_model_does_not_think() -> None:
    """To claude-3-5-haiku, or with no room for the minimum budget: no thinking, and no clear_thinking edits."""
    body = json.dumps({"max_tokens": 64000, "thinking": {"type": "adaptive"}, "output_config": {"effort": "low"},
                       "context_management": {"edits": [{"type": "clear_thinking_20251015"},
                                                        {"type": "clear_tool_uses_20250919"}]}}).encode()
    out = json.loads(fit_messages_request(body, _CLAUDE_CAPS.lookup("claude-3-5-haiku-latest")))
    assert out == {"max_tokens": 64000, "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}}
    tight = b'{"max_tokens":1500,"thinking":{"type":"adaptive"}}'
    assert json.loads(fit_messages_request(tight, _CLAUDE_CAPS.lookup("claude-sonnet-4-5"))) == {"max_tokens": 1500}


def test_fit_messages_request_keeps_one_sampling_setting_where_the_model_takes_one() -> None:
    """Opus 4.1, the 4.5 models and later refuse temperature with top_p: top_p goes (as in the
    translators); one of them alone, or a model that takes both, gets the bytes as sent."""
    both = b'{"model":"claude-3-5-sonnet-latest","max_tokens":10,"temperature":0.2,"top_p":0.9,"messages":[]}'
    for model in ("claude-sonnet-4-5", "claude-opus-4-1-20250805", "claude-haiku-4-5", "claude-sonnet-4-6", "claude-opus-5"):
        out = json.loads(fit_messages_request(both, _CLAUDE_CAPS.lookup(model)))
        assert "top_p" not in out and out["temperature"] == 0.2, model
    assert fit_messages_request(both, _CLAUDE_CAPS.lookup("claude-3-7-sonnet-latest")) is both
    assert fit_messages_request(both, _CLAUDE_CAPS.lookup("claude-opus-4-20250514")) is both
    one = b'{"max_tokens":10,"top_p":0.9,"temperature":null}'
    assert fit_messages_request(one, _CLAUDE_CAPS.lookup("claude-sonnet-4-5")) is one
    with_adaptive = json.dumps({"max_tokens": 64000, "temperature": 1, "top_p": 0.5, "thinking": {"type": "adaptive"},
                                "output_config": {"effort": "low"}}).encode()
    assert json.loads(fit_messages_request(with_adaptive, _CLAUDE_CAPS.lookup("claude-sonnet-4-5"))) == {
        "max_tokens": 64000, "temperature": 1, "thinking": {"type": "enabled", "budget_tokens": 1024}}


def test_fit_gemini_request_drops_thinking_for_a_model_without_it() -> None:
    """gemini-2.0 takes no thinkingConfig (either spelling); 2.5 and unknown models get the bytes as sent."""
    table = CapabilityTable("gemini")
    body = b'{"contents":[{"role":"user","parts":[{"text":"x"}]}],"generationConfig":{"temperature":0.5,"thinkingConfig":{"thinkingBudget":1024}}}'
    out = json.loads(fit_gemini_request(body, table.lookup("gemini-2.0-flash")))
    assert out["generationConfig"] == {"temperature": 0.5} and out["contents"][0]["parts"] == [{"text": "x"}]
    snake = b'{"contents":[],"generation_config":{"thinking_config":{"thinking_budget":0}}}'
    assert json.loads(fit_gemini_request(snake, table.lookup("gemini-1.5-pro"))) == {"contents": [], "generation_config": {}}
    assert fit_gemini_request(body, table.lookup("gemini-2.5-flash")) is body
    assert fit_gemini_request(body, table.lookup("my-tuned-model")) is body


def test_fit_gemini_request_cuts_a_limit_written_as_a_float() -> None:
    """Gemini reads maxOutputTokens 1e6 as the int 1000000 (proto3 JSON), and refuses it past
    the model's limit: it is cut like an int one (a float was left as sent)."""
    caps = CapabilityTable("gemini").lookup("gemini-2.5-flash")
    body = b'{"contents":[],"generationConfig":{"maxOutputTokens":1e6}}'
    assert json.loads(fit_gemini_request(body, caps))["generationConfig"]["maxOutputTokens"] == caps.max_output


def test_a_renamed_stream_keeps_events_of_several_data_lines_whole() -> None:
    """Vertex sends Claude's events as pretty-printed JSON over several data: lines; rewritten
    for a model_map they went out with bare continuation lines (not SSE fields), and the
    Anthropic SDK failed with a JSONDecodeError."""
    import json as _json

    from apex.sse import SseParser

    obs = PassthroughStream("anthropic", client_model="claude-x", strip_usage_chunk=False)
    start = _json.dumps({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant",
                                                             "model": "claude-sonnet-4@20250514", "content": [],
                                                             "usage": {"input_tokens": 3, "output_tokens": 1}}}, indent=2)
    delta = _json.dumps({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}, indent=2)
    raw = b"".join(b"event: " + name + b"\n" + b"".join(b"data: " + line.encode() + b"\n" for line in text.splitlines()) + b"\n"
                   for name, text in ((b"message_start", start), (b"content_block_delta", delta)))
    out = obs.feed(raw)
    events = SseParser().feed(out)
    assert [e.event for e in events] == ["message_start", "content_block_delta"]
    assert _json.loads(events[0].data)["message"]["model"] == "claude-x"
    assert _json.loads(events[1].data)["delta"]["text"] == "hi"


def test_parallel_tool_calls_all_at_index_0_are_numbered_by_id() -> None:
    """Ollama sends every parallel call as index 0 with its own id (P3): passed through as is,
    the OpenAI SDK glued them into one call with arguments {"city":"Paris"}{"city":"Rome"}."""
    from apex.translate.passthrough import PassthroughStream

    def chunk(calls: list[dict[str, object]]) -> bytes:
        body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "llama3.1",
                "choices": [{"index": 0, "delta": {"tool_calls": calls}, "finish_reason": None}]}
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    def call(call_id: str | None, args: str) -> dict[str, object]:
        out: dict[str, object] = {"index": 0, "function": {"arguments": args}}
        if call_id:
            out.update(id=call_id, type="function")
            out["function"] = {"name": "get_weather", "arguments": args}
        return out

    raw = chunk([call("call_a", '{"city":')]) + chunk([call(None, '"Paris"}')]) + chunk([call("call_b", '{"city":"Rome"}')])
    stream = PassthroughStream("openai_chat", client_model=None, strip_usage_chunk=False, repair_chat_chunks=True)
    out = stream.feed(raw)
    indices = [(c["index"], c.get("id")) for line in out.split(b"\n\n") if line.startswith(b"data: ")
               for c in json.loads(line[6:])["choices"][0]["delta"]["tool_calls"]]
    assert indices == [(0, "call_a"), (0, None), (1, "call_b")]
    numbered = chunk([call("call_a", "{}"), {"index": 1, "id": "call_b", "type": "function",
                                            "function": {"name": "f", "arguments": "{}"}}])
    same = PassthroughStream("openai_chat", client_model=None, strip_usage_chunk=False, repair_chat_chunks=True)
    assert same.feed(numbered) == numbered  # a server that numbers its calls: untouched
