"""Property tests for the SSE parser and the pass-through stream observer."""

from __future__ import annotations


from hypothesis import given, settings
from hypothesis import strategies as st

from apex.translate.passthrough import PassthroughStream
from apex.sse import SseEvent, SseParser, encode_event
from tests.chunking import split_at
from tests.fixtures import REAL

FIXTURES = REAL


def parse_all(chunks: list[bytes]) -> list[SseEvent]:
    parser = SseParser()
    events: list[SseEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    events.extend(parser.flush())
    return events


@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0), max_size=20))
def test_parser_never_raises_and_is_chunking_independent(data: bytes, cuts: list[int]) -> None:
    """On arbitrary bytes the parser never raises, and how bytes are chunked never changes the events."""
    assert parse_all(split_at(data, cuts)) == parse_all([data])


@given(st.lists(st.tuples(st.one_of(st.none(), st.sampled_from(["message_start", "error", "x"])),
                          st.binary(min_size=1, max_size=50).filter(lambda b: b"\n" not in b and b"\r" not in b)), max_size=10),
       st.sampled_from([b"\n", b"\r\n", b"\r"]), st.lists(st.integers(min_value=0), max_size=10))
def test_encode_parse_round_trip(events: list[tuple[str | None, bytes]], newline: bytes, cuts: list[int]) -> None:
    """Encoded events parse back to themselves under any line ending and any chunking."""
    wire = b"".join(encode_event(d, e).replace(b"\n", newline) for e, d in events)
    assert parse_all(split_at(wire, cuts)) == [SseEvent(e, d) for e, d in events]


def test_u2028_is_not_a_line_break() -> None:
    """U+2028 inside JSON stays data (a generic splitlines() would break the event)."""
    events = parse_all([b'data: {"t":"a\xe2\x80\xa8b"}\n\n'])
    assert events == [SseEvent(None, b'{"t":"a\xe2\x80\xa8b"}')]


@settings(max_examples=60)
@given(st.lists(st.integers(min_value=0), max_size=40),
       st.sampled_from(["openai_chat_stream_text.sse", "openai_chat_stream_tool_calls.sse", "deepseek_chat_stream_reasoning.sse"]),
       st.booleans())
def test_passthrough_observer_chunking_independent(cuts: list[int], name: str, rewrite: bool) -> None:
    """A pass-through stream's forwarded events, usage and terminator do not depend on chunking."""
    raw = (FIXTURES / name).read_bytes()

    def run(chunks: list[bytes]) -> tuple[list[SseEvent], object, bool]:
        obs = PassthroughStream("openai_chat", client_model="alias" if rewrite else None, strip_usage_chunk=rewrite)
        out = b"".join(obs.feed(c) for c in chunks) + obs.flush()
        return parse_all([out]), obs.usage, obs.terminated

    whole = run([raw])
    assert run(split_at(raw, cuts)) == whole
    assert whole[2] is True and whole[1] is not None
