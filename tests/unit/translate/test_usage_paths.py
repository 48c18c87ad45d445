"""One usage reader per upstream family: pass-through and translation agree on every capture.

Cost, metrics and TPM settlement read ``Exchange.usage``; it must not depend on whether the
request was translated. Each capture in tests/fixtures/real is read both ways (the
pass-through observer / body reader, and the translating reader), as captured and with the
usage shapes that once split the two copies: DeepSeek's ``prompt_cache_hit_tokens`` beside
``cached_tokens: 0``, and an Anthropic usage that carries only ``cache_creation_input_tokens``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from apex.sse import SseParser
from apex.translate.neutral.parts import UsageUpdated
from apex.translate.neutral.reply import reply_from_anthropic, reply_from_openai
from apex.translate.passthrough import PassthroughStream, body_usage
from apex.translate.read.anthropic import AnthropicReader
from apex.translate.read.openai import OpenAIChatReader
from apex.types import Dialect, Usage
from tests.fixtures import REAL

Mutate = Callable[[str, dict[str, object]], None]

# Captures with no usage on either path (errors, embeddings) and Gemini ones (no pass-through
# reader yet: one path only). Any other capture must be read below, so a new one is never
# silently skipped.
_ONE_PATH = {
    "anthropic_error_401_authentication.json", "gemini_batch_embed_contents.json", "gemini_error_404_not_found.json",
    "gemini_generate_content.json", "gemini_stream.sse", "gemini_stream_function_call.sse",
    "gemini_stream_function_call_split_finish.sse", "openai_embeddings_base64.json",
    "openai_error_404_model_not_found.json", "SOURCES.md",
}


def _family(name: str) -> str:
    if name.startswith("anthropic_"):
        return "anthropic"
    if name.startswith("openai_responses_"):
        return "responses"
    return "openai_chat"


def _captures() -> list[str]:
    return sorted(p.name for p in REAL.iterdir() if p.name not in _ONE_PATH)


def _mutated_events(raw: bytes, mutate: Mutate) -> bytes:
    """Re-encode each JSON event of an SSE capture after ``mutate(event name, data)``."""
    out = []
    parser = SseParser()
    for ev in [*parser.feed(raw), *parser.flush()]:
        try:
            data = json.loads(ev.data)
        except ValueError:
            out.append((ev.event, ev.data))
            continue
        mutate(ev.event or "", data)
        out.append((ev.event, json.dumps(data).encode()))
    return b"".join((f"event: {name}\n".encode() if name else b"") + b"data: " + data + b"\n\n" for name, data in out)


def _passthrough(family: str, raw: bytes, stream: bool) -> Usage | None:
    if not stream:
        dialect = {"anthropic": Dialect.ANTHROPIC_MESSAGES, "responses": Dialect.OPENAI_RESPONSES}.get(family, Dialect.OPENAI_CHAT)
        return body_usage(dialect, raw)
    obs = PassthroughStream(family, client_model=None, strip_usage_chunk=False)
    obs.feed(raw)
    obs.flush()
    return obs.usage


def _translated(family: str, raw: bytes, stream: bool) -> Usage | None:
    if not stream:
        return (reply_from_anthropic if family == "anthropic" else reply_from_openai)(raw).usage
    reader = AnthropicReader() if family == "anthropic" else OpenAIChatReader()
    parser = SseParser()
    usage = None
    for ev in [*parser.feed(raw), *parser.flush()]:
        for part in reader.feed(ev):
            if isinstance(part, UsageUpdated):
                usage = part.usage
    return usage


def _both(name: str, raw: bytes) -> tuple[Usage | None, Usage | None]:
    family, stream = _family(name), name.endswith(".sse")
    return _passthrough(family, raw, stream), _translated(family, raw, stream)


def _deepseek_cache_hit(_: str, data: dict[str, object]) -> None:
    for holder in (data, data.get("x_groq")):
        usage = holder.get("usage") if isinstance(holder, dict) else None
        if isinstance(usage, dict):
            usage["prompt_tokens_details"] = {"cached_tokens": 0}
            usage["prompt_cache_hit_tokens"] = 5


def _anthropic_cache_write_only(event: str, data: dict[str, object]) -> None:
    if event == "message_delta" or (not event and "usage" in data):
        usage = data.get("usage")
        if isinstance(usage, dict):
            output = usage.get("output_tokens", 0)
            usage.clear()
            usage.update({"cache_creation_input_tokens": 7, "output_tokens": output})


@pytest.mark.parametrize("name", _captures())
def test_every_capture_gives_the_same_usage_on_both_paths(name: str) -> None:
    """As captured, the pass-through and the translating reader agree (Responses: pass-through
    only, checked against the capture's own numbers)."""
    raw = (REAL / name).read_bytes()
    if _family(name) == "responses":
        usage = _passthrough("responses", raw, name.endswith(".sse"))
        text = raw.decode()
        expected = json.loads(text) if name.endswith(".json") else None
        if expected is None:
            parser = SseParser()
            done = [json.loads(e.data) for e in [*parser.feed(raw), *parser.flush()] if e.event == "response.completed"]
            expected = done[-1]["response"]
        want = expected["usage"]
        assert usage is not None
        assert (usage.prompt_tokens, usage.completion_tokens) == (want["input_tokens"], want["output_tokens"])
        assert usage.cached_tokens == want["input_tokens_details"]["cached_tokens"]
        return
    passed, translated = _both(name, raw)
    assert passed == translated


@pytest.mark.parametrize("name", [n for n in _captures() if _family(n) == "openai_chat"])
def test_deepseek_cache_hits_count_on_both_paths(name: str) -> None:
    """``cached_tokens: 0`` beside ``prompt_cache_hit_tokens: 5``: 5 cached tokens, either path."""
    raw = (REAL / name).read_bytes()
    if name.endswith(".sse"):
        raw = _mutated_events(raw, _deepseek_cache_hit)
    else:
        body = json.loads(raw)
        _deepseek_cache_hit("", body)
        raw = json.dumps(body).encode()
    passed, translated = _both(name, raw)
    if passed is None and translated is None:
        pytest.skip(f"{name} carries no usage")
    assert passed is not None and translated is not None
    assert passed.cached_tokens == translated.cached_tokens == 5
    assert passed == translated


@pytest.mark.parametrize("name", [n for n in _captures() if _family(n) == "anthropic"])
def test_anthropic_cache_write_only_usage_counts_on_both_paths(name: str) -> None:
    """A usage with only ``cache_creation_input_tokens`` (and output) adds the write to the
    prompt and keeps the earlier input count, on either path."""
    raw = (REAL / name).read_bytes()
    start = json.loads(raw) if name.endswith(".json") else None
    if name.endswith(".sse"):
        parser = SseParser()
        first = next(json.loads(e.data) for e in parser.feed(raw) if e.event == "message_start")
        input_tokens = first["message"]["usage"]["input_tokens"] + first["message"]["usage"].get("cache_read_input_tokens", 0)
        raw = _mutated_events(raw, _anthropic_cache_write_only)
    else:
        assert start is not None
        input_tokens = 0  # a whole body: what it does not say is 0
        _anthropic_cache_write_only("", start)
        raw = json.dumps(start).encode()
    passed, translated = _both(name, raw)
    assert passed is not None and translated is not None
    assert passed.prompt_tokens == translated.prompt_tokens == input_tokens + 7
    assert passed == translated


def test_every_capture_is_read_or_listed() -> None:
    """A new capture lands in one of the lists above (or is read both ways): none is skipped unseen."""
    names = {p.name for p in Path(REAL).iterdir()}
    assert names >= _ONE_PATH


def test_responses_usage_carries_cache_writes() -> None:
    """A Responses client on an Anthropic channel saw cache_write_tokens 0 whatever was written."""
    from apex.translate.neutral.usage import responses_usage_body
    from apex.types import Usage

    body = responses_usage_body(Usage(prompt_tokens=30, cached_tokens=10, cache_write_tokens=7, completion_tokens=5))
    assert body["input_tokens_details"] == {"cached_tokens": 10, "cache_write_tokens": 7}
