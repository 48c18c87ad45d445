"""The OpenAI-shaped x-ratelimit-* headers and their duration strings."""

from __future__ import annotations

import pytest

from apex.ratelimit import UNLIMITED, Decision, format_duration, headers


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (-1.0, "0s"),
        (0.12, "120ms"),
        (0.0004, "1ms"),
        (0.9999, "1s"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (8.64, "8.64s"),
        (59.999, "59.999s"),
        (60.0, "1m0s"),
        (360.0, "6m0s"),
        (90.25, "1m30.25s"),
        (3723.0, "1h2m3s"),
    ],
)
def test_format_duration_like_openai(seconds: float, text: str) -> None:
    """Durations read like Go's time.Duration, rounded up to the millisecond."""
    assert format_duration(seconds) == text


def test_headers_for_both_limits() -> None:
    """A team with rpm and tpm gets all six headers, in OpenAI's names."""
    d = Decision(True, None, "", 60, 59, 1.0, 150_000, 149_000, 0.4)
    assert headers(d) == [
        ("x-ratelimit-limit-requests", "60"),
        ("x-ratelimit-remaining-requests", "59"),
        ("x-ratelimit-reset-requests", "1s"),
        ("x-ratelimit-limit-tokens", "150000"),
        ("x-ratelimit-remaining-tokens", "149000"),
        ("x-ratelimit-reset-tokens", "400ms"),
    ]


def test_headers_only_for_configured_kinds() -> None:
    """A team with only tpm gets only the token headers; a team without limits gets none."""
    d = Decision(False, 3, "x", None, 0, 0.0, 100, 0, 180.0)
    assert [name for name, _ in headers(d)] == [
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
    ]
    assert headers(d)[2] == ("x-ratelimit-reset-tokens", "3m0s")
    assert headers(UNLIMITED) == []


def test_headers_when_store_unavailable_report_limits_only() -> None:
    """Without the shared store Apex knows the limits but not what remains, so it says only that."""
    d = Decision(True, None, "", 10, 0, 0.0, 1000, 0, 0.0, store_unavailable=True)
    assert headers(d) == [("x-ratelimit-limit-requests", "10"), ("x-ratelimit-limit-tokens", "1000")]
