"""Refresher: a failed refresh with time left on the current credential does not make the channel unusable."""

from __future__ import annotations

import logging

import pytest

from apex.errors import Secrets
from apex.upstream.credentials import CredentialKeeper, CredentialSlot, Fetched, Refresher
from apex.upstream.http import UpstreamPool


def _reason(slot: CredentialSlot) -> str | None:
    return slot.reason  # read afresh each time (mypy would narrow the property)


async def test_a_failed_refresh_leaves_a_valid_token_usable() -> None:
    """One blip at the token endpoint while the token has minutes left: the slot reports no
    reason (/ready, apex_channel_up and routing read it; it said the channel had no valid
    credentials while requests still succeeded); once the token expires it does."""
    now = [0.0]
    answers: list[Exception | Fetched[str]] = [Fetched("tok-1", 3600.0), RuntimeError("AADSTS50001 blip")]

    async def fetch() -> Fetched[str]:
        got = answers.pop(0)
        if isinstance(got, Exception):
            raise got
        return got

    refresher: Refresher[str] = Refresher("az", "Entra ID token", fetch, clock=lambda: now[0])
    slot = CredentialSlot(key="az", factory=lambda pool: refresher, refresher=refresher)
    assert _reason(slot) == "not fetched yet"
    await refresher.refresh_once()
    now[0] = 2700.0  # the refresh is due
    try:
        await refresher.refresh_once()
    except Exception as exc:  # noqa: BLE001  # the refresher's own (private) failure type
        assert type(exc).__name__ == "_Failed"
    else:
        raise AssertionError("the failed fetch was not reported")
    assert refresher.reason is not None and "blip" in refresher.reason  # logged and kept for /health
    assert _reason(slot) is None and refresher.current() == "tok-1"
    now[0] = 3600.0  # expired, never renewed
    reason = _reason(slot)
    assert reason is not None and "blip" in reason


async def test_a_fetch_error_quoting_the_secret_is_scrubbed_before_it_is_kept_or_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    """Entra ID's error_description repeats the form Apex posted, client_secret included: the
    reason went unscrubbed to the log and to the unauthenticated /ready."""
    secret = "aadsecret-SECRET-9999ffff"

    async def fetch() -> Fetched[str]:
        raise RuntimeError(f"the token endpoint answered HTTP 401 invalid_client: got form: client_secret={secret}&scope=x")

    slot = CredentialSlot(key="az", factory=lambda pool: Refresher("az", "Entra ID token", fetch),
                          secrets=Secrets([secret]))
    keeper = CredentialKeeper()
    (refresher,) = keeper.bind([slot], UpstreamPool())
    try:
        with caplog.at_level(logging.WARNING, logger="apex.credentials"):
            await refresher.wait_first(5.0)
        reason = _reason(slot)
        assert reason is not None and "invalid_client" in reason and secret not in reason
        assert "[redacted]" in reason
        assert caplog.records and all(secret not in r.getMessage() for r in caplog.records)
    finally:
        await keeper.close()
