"""Which in-stream upstream error events blame the request (no mark against the channel)."""

from __future__ import annotations

import json

import pytest

from apex.translate.neutral.errortypes import event_blames_request


@pytest.mark.parametrize(("event", "blames"), [
    ({"type": "response.failed", "response": {"error": {"code": "context_length_exceeded", "message": "too long"}}}, True),
    ({"type": "error", "code": "invalid_prompt", "message": "bad"}, True),  # Responses' own error event
    ({"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 2 > 1 maximum"}}, True),
    ({"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}, True),  # Gemini
    ({"error": {"message": "This model's maximum context length is 8192 tokens", "type": None, "code": None}}, True),
    ({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, False),
    ({"error": {"code": 500, "message": "internal", "status": "INTERNAL"}}, False),
    ({"error": {"message": "boom", "type": "server_error", "code": None}}, False),
    ({"type": "error", "code": "server_error", "message": "x"}, False),
    ({"choices": []}, False),
])
def test_error_events_that_blame_the_request(event: dict[str, object], blames: bool) -> None:
    assert event_blames_request(json.dumps(event).encode()) is blames


def test_what_is_not_a_json_object_blames_nothing() -> None:
    assert not event_blames_request(b"not json") and not event_blames_request(b"[1]")
