"""The finish that matches the calls an answer holds (``with_tools``)."""

from __future__ import annotations

import pytest

from apex.translate.neutral.reasons import Finish, with_tools


@pytest.mark.parametrize(("finish", "calls", "expected"), [
    (Finish.STOP, True, Finish.TOOL_CALLS),        # P1: Gemini and some compatible servers say stop
    (Finish.TOOL_CALLS, False, Finish.STOP),       # a "tool_calls" finish with no call was "tool_use" for no block
    (Finish.TOOL_CALLS, True, Finish.TOOL_CALLS),
    (Finish.STOP, False, Finish.STOP),
    (Finish.LENGTH, True, Finish.LENGTH),          # a cut answer stays cut, calls or not
    (Finish.LENGTH, False, Finish.LENGTH),
    (Finish.CONTENT_FILTER, True, Finish.CONTENT_FILTER),
])
def test_with_tools_matches_the_calls(finish: Finish, calls: bool, expected: Finish) -> None:
    assert with_tools(finish, calls) is expected
