"""OpenAI stream logprobs reach the text they belong to, also when the think-tag splitter
holds the start of a content back (a leading newline, a "<" that might open a tag)."""

from __future__ import annotations

import json

import pytest

from apex.sse import SseParser
from apex.translate.neutral.parts import TextDelta
from apex.translate.read.openai import OpenAIChatReader


def _chunk(content: str) -> dict[str, object]:
    logprobs = {"content": [{"token": content, "logprob": -0.5, "bytes": list(content.encode()),
                             "top_logprobs": [{"token": content, "logprob": -0.5, "bytes": None}]}], "refusal": None}
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"content": content}, "logprobs": logprobs, "finish_reason": None}]}


@pytest.mark.parametrize("contents", [["Hel", "lo"], ["\n", "Hello"], ["<", "b>bold</b>"], ["<th", "ere"]])
def test_every_token_rides_on_the_text_it_came_with(contents: list[str]) -> None:
    chunks = [_chunk(c) for c in contents]
    chunks.append({"id": "c", "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]})
    raw = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    reader = OpenAIChatReader()
    texts = [p for ev in SseParser().feed(raw) for p in reader.feed(ev) if isinstance(p, TextDelta)]
    assert "".join(t.text for t in texts) == "".join(contents)
    assert all(t.logprobs for t in texts)
    tokens = [tok for t in texts for tok in t.logprobs]
    assert [tok.token for tok in tokens] == contents
    assert all(tok.logprob == -0.5 and [a.token for a in tok.top] == [tok.token] for tok in tokens)


def test_no_logprobs_asked_none_given() -> None:
    raw = b"data: " + json.dumps({"id": "c", "choices": [{"index": 0, "delta": {"content": "Hi"}, "logprobs": None,
                                                          "finish_reason": "stop"}]}).encode() + b"\n\n"
    parts = OpenAIChatReader().feed(next(iter(SseParser().feed(raw))))
    assert [p for p in parts if isinstance(p, TextDelta)] == [TextDelta("Hi")]
