"""Property: Gemini stream translation does not depend on how the bytes were chunked (CRLF framing)."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from apex.sse import SseParser
from apex.translate.directions.anthropic_to_gemini import AnthropicToGemini
from apex.translate.base import TranslateContext
from apex.translate.directions.openai_to_gemini import OpenAIChatToGemini
from apex.translate.neutral.signatures import SignatureStore
from tests.fixtures import REAL

FIXTURES = REAL
STREAMS = [(FIXTURES / name).read_bytes() for name in (
    "gemini_stream.sse", "gemini_stream_function_call.sse", "gemini_stream_function_call_split_finish.sse")]
DIRECTIONS = ["openai", "anthropic"]


def _translate(raw: bytes, cuts: list[int], direction: str) -> bytes:
    counter = itertools.count()

    def new_id(prefix: str) -> str:  # deterministic ids so two runs compare byte for byte
        return f"{prefix}{next(counter)}"

    store = SignatureStore()
    translator = OpenAIChatToGemini(store, new_id) if direction == "openai" else AnthropicToGemini(store, new_id)
    ctx = TranslateContext("alias", "gemini", True, "req", include_usage=True, extras={"created": 1})
    stream = translator.stream(ctx)
    parser = SseParser()
    out: list[bytes] = []
    bounds = [0, *sorted(cuts), len(raw)]
    for start, end in itertools.pairwise(bounds):
        for event in parser.feed(raw[start:end]):
            out += stream.feed(event)
    for event in parser.flush():
        out += stream.feed(event)
    out += stream.finish()
    return b"".join(out)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_rechunked_stream_translates_identically(data: st.DataObject) -> None:
    """Splitting the upstream bytes anywhere (including inside CRLF pairs) yields the same client bytes."""
    raw = data.draw(st.sampled_from(STREAMS))
    direction = data.draw(st.sampled_from(DIRECTIONS))
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(raw)), max_size=12))
    assert _translate(raw, cuts, direction) == _translate(raw, [], direction)


def test_crlf_split_between_cr_and_lf_still_translates() -> None:
    """A cut between every CR and its LF changes nothing, and the output is complete."""
    for raw in STREAMS:
        cuts = [i + 1 for i in range(len(raw) - 1) if raw[i:i + 2] == b"\r\n"]
        whole = _translate(raw, [], "openai")
        assert _translate(raw, cuts, "openai") == whole
        assert whole.endswith(b"data: [DONE]\n\n")
