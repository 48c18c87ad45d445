"""Key look-up: by digest prefix, decided by a constant-time compare of the full digest."""

from __future__ import annotations

import json

import pytest

import apex.auth
from apex.auth import KeyIndex, mask_secret, presented_key
from apex.config.load import load_config_bytes
from apex.errors import AuthenticationFailed

CONFIG = load_config_bytes(json.dumps({
    "global": {"auth": {"keys": ["global-key"]}},
    "channels": [{"name": "d", "provider_type": "mock"}],
    "routers": [{"name": "r", "vkey": "vk", "channels": [{"name": "d"}]}],
    "teams": [{"id": "t", "api_key": "team-key"}],
}).encode(), {})


def test_each_kind_of_key_finds_its_principal() -> None:
    """Global, router and team keys each resolve to their own principal, by either header."""
    keys = KeyIndex(CONFIG)
    assert keys.authenticate({"Authorization": "Bearer global-key"}).kind == "global"
    assert keys.authenticate({"x-api-key": "vk"}).label == "router:r"
    assert keys.authenticate({"Authorization": "bearer team-key"}).team is not None


def test_same_prefix_different_digest_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A presented key whose digest shares the stored prefix but differs after it is refused."""
    keys = KeyIndex(CONFIG)
    stored = next(iter(keys._by_prefix.values()))[0][0]  # noqa: SLF001
    forged = stored[:8] + bytes(b ^ 0xFF for b in stored[8:])
    monkeypatch.setattr("apex.auth._digest", lambda key: forged)
    with pytest.raises(AuthenticationFailed):
        keys.authenticate({"Authorization": "Bearer whatever"})


def test_missing_and_wrong_keys() -> None:
    """No key and a wrong key are both 401 without anonymous auth."""
    keys = KeyIndex(CONFIG)
    with pytest.raises(AuthenticationFailed, match="missing"):
        keys.authenticate({})
    with pytest.raises(AuthenticationFailed, match="invalid"):
        keys.authenticate({"Authorization": "Bearer nope"})
    assert presented_key({"Authorization": "Basic abc"}) is None


def test_mask_secret() -> None:
    """Secrets are masked; env references are shown as written."""
    assert mask_secret("sk-1234567890abcdef") == "sk-…cdef"
    assert mask_secret("${OPENAI_API_KEY}") == "${OPENAI_API_KEY}"
    assert mask_secret("short") == "****"


def test_valid_keys_are_remembered_invalid_ones_never(monkeypatch: pytest.MonkeyPatch) -> None:
    """A valid key hashes once, then resolves by its text; an invalid one is hashed every time
    and never stored (guesses cannot grow the table); a new KeyIndex (a reload) starts empty."""
    hashed: list[str] = []
    real = apex.auth._digest

    def counting(key: str) -> bytes:
        hashed.append(key)
        return real(key)

    monkeypatch.setattr("apex.auth._digest", counting)
    keys = KeyIndex(CONFIG)
    hashed.clear()
    first = keys.authenticate({"Authorization": "Bearer team-key"})
    assert keys.authenticate({"x-api-key": "team-key"}) is first
    assert hashed == ["team-key"]
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            keys.authenticate({"Authorization": "Bearer not-a-key"})
    assert hashed == ["team-key"] + ["not-a-key"] * 3
    assert "not-a-key" not in keys._known  # noqa: SLF001
    revoked = KeyIndex(load_config_bytes(json.dumps({
        "channels": [{"name": "d", "provider_type": "mock"}],
        "routers": [{"name": "r", "channels": [{"name": "d"}]}],
        "teams": [{"id": "t", "api_key": "other-key"}],
    }).encode(), {}))
    with pytest.raises(AuthenticationFailed):
        revoked.authenticate({"Authorization": "Bearer team-key"})
