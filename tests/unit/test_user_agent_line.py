"""The User-Agent line a native upstream request carries: the client's when usable, else Apex's."""
from __future__ import annotations

from apex.server.attempt import _user_agent_line
from apex.upstream.channel import USER_AGENT


def test_a_clients_agent_goes_through() -> None:
    assert _user_agent_line("claude-cli/2.1.197 (external, cli)") == b"User-Agent: claude-cli/2.1.197 (external, cli)\r\n"


def test_none_or_an_unusable_agent_becomes_apexs_own() -> None:
    own = f"User-Agent: {USER_AGENT}\r\n".encode()
    assert _user_agent_line(None) == own
    assert _user_agent_line("evil\tagent") == own  # not printable: could not go on a header line as sent
    assert _user_agent_line("agent/ü") == own  # not ASCII


def test_the_cache_stays_bounded() -> None:
    from apex.server import attempt

    for i in range(attempt._AGENT_LINES_MAX * 3):
        assert _user_agent_line(f"agent/{i}") == f"User-Agent: agent/{i}\r\n".encode()
    assert len(attempt._AGENT_LINES) <= attempt._AGENT_LINES_MAX
