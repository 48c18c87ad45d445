"""<think>...</think> at the start of a content is reasoning; anywhere else it is text."""

from __future__ import annotations

import pytest

from apex.translate.read.think_tags import ThinkTagSplitter, split_think


@pytest.mark.parametrize(("content", "expected"), [
    ("<think>\nplan\n</think>\n\nanswer", ("plan", "answer")),
    ("  <think>plan</think>answer", ("plan", "answer")),
    ("<think>cut by max_tokens", ("cut by max_tokens", "")),
    ("answer with <think> inside", ("", "answer with <think> inside")),
    ("plain", ("", "plain")),
])
def test_whole_contents(content: str, expected: tuple[str, str]) -> None:
    assert split_think(content) == expected


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8])
def test_streamed_contents_split_anywhere(size: int) -> None:
    """The tags may arrive cut at any character: the same split as the whole content."""
    content = "<think>\nplan it\n</think>\n\nthe answer </think> stays"
    splitter = ThinkTagSplitter()
    pieces = [p for i in range(0, len(content), size) for p in splitter.feed(content[i:i + size])]
    pieces += splitter.flush()
    reasoning = "".join(t for k, t in pieces if k == "reasoning")
    text = "".join(t for k, t in pieces if k == "text")
    assert (reasoning.strip(), text) == ("plan it", "the answer </think> stays")


def test_a_content_that_only_looks_like_the_tag_at_first_is_text() -> None:
    splitter = ThinkTagSplitter()
    assert splitter.feed("<th") == []
    assert splitter.feed("ere") == [("text", "<there")]
    assert splitter.flush() == []
