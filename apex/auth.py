"""API keys -> Principal: which routers a caller may use, and its team policy.

Keys are stored as SHA-256 digests, bucketed by the digest's first 8 bytes: the request
path never scans, never compares a raw secret, and decides with ``hmac.compare_digest`` of
the full digests (the dict look-up only ever sees a prefix of a hash). A
client may present its key as ``Authorization: Bearer K`` or ``x-api-key: K``. Keys are
never logged or returned: only the principal's ``label`` is (``team:search``, ``router:x``,
``global[0]``, ``anonymous``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from apex.config.model import Config, RateLimit
from apex.errors import AuthenticationFailed
from apex.routing.match import PatternSet

__all__ = ["KeyIndex", "Principal", "TeamPolicy", "mask_secret", "presented_key"]


@dataclass(frozen=True, slots=True)
class TeamPolicy:
    """A team's policy, compiled: allowed models as a PatternSet, limits as given."""

    id: str
    allowed_models: PatternSet | None
    rate_limit: RateLimit | None

    def allows_model(self, model: str) -> bool:
        return self.allowed_models is None or self.allowed_models.matches(model)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the routers it may use (in the order to try them) and its team."""

    kind: str                  # "router" | "team" | "global" | "anonymous"
    label: str
    routers: tuple[str, ...]
    team: TeamPolicy | None = None
    fingerprint: str | None = None  # what the request log records of the key: never the key itself


_HOW_TO_SEND = "'Authorization: Bearer <key>' or 'x-api-key: <key>'"
_KNOWN_MAX = 10_000  # valid keys remembered by text (a config rarely has more)
_PREFIX = 8  # bytes of the digest the dict look-up sees; the full digest is compared in constant time


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _fingerprint(digest: bytes) -> str:
    """A short, stable name for a key: 48 bits of its SHA-256 (enough to tell keys apart, useless to
    anyone wanting the key back: keys are long random strings)."""
    return "sha256:" + digest[:6].hex()


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request presents, or None."""
    auth = headers.get("Authorization")
    if auth is not None:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    return None


def mask_secret(secret: str | None) -> str:
    """A secret for display: enough to recognise it, never enough to use it."""
    if not secret:
        return ""
    if secret.startswith("${") and secret.endswith("}"):
        return secret  # an env reference is not a secret
    if len(secret) <= 8:
        return "****"
    return f"{secret[:3]}…{secret[-4:]}"


class KeyIndex:
    """Every valid key of a config, by digest."""

    def __init__(self, config: Config) -> None:
        all_routers = tuple(r.name for r in config.routers)
        self._by_digest: dict[bytes, Principal] = {}
        for i, key in enumerate(config.global_.auth.keys):
            d = _digest(key)
            self._by_digest[d] = Principal("global", f"global[{i}]", all_routers, None, _fingerprint(d))
        for router in config.routers:
            if router.vkey:
                d = _digest(router.vkey)
                self._by_digest[d] = Principal("router", f"router:{router.name}", (router.name,), None, _fingerprint(d))
        self.teams: dict[str, TeamPolicy] = {}
        for team in config.teams:
            pol = team.policy
            policy = TeamPolicy(
                team.id,
                PatternSet(pol.allowed_models) if pol.allowed_models is not None else None,
                pol.rate_limit,
            )
            self.teams[team.id] = policy
            routers = pol.allowed_routers if pol.allowed_routers is not None else all_routers
            d = _digest(team.api_key)
            self._by_digest[d] = Principal("team", f"team:{team.id}", tuple(routers), policy, _fingerprint(d))
        self._by_prefix: dict[bytes, list[tuple[bytes, Principal]]] = {}
        for digest, principal in self._by_digest.items():
            self._by_prefix.setdefault(digest[:_PREFIX], []).append((digest, principal))
        # Keys seen to be valid, by their text: one dict look-up instead of a SHA-256 per
        # request. Only valid keys enter (bounded by the config), so invalid guesses cannot
        # grow it, and str hashing is keyed per process, so a look-up tells nothing about
        # how close a guess was.
        self._known: dict[str, Principal] = {}
        self._anonymous = (
            Principal("anonymous", "anonymous", all_routers) if config.global_.auth.anonymous else None
        )

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The principal for a request's key; raise AuthenticationFailed (401)."""
        return self.authenticate_key(presented_key(headers))

    def authenticate_key(self, key: str | None, how: str = _HOW_TO_SEND) -> Principal:
        """The principal for a presented ``key`` (None: none was sent); raise
        AuthenticationFailed (401), whose message says ``how`` to send one."""
        if key is None:
            if self._anonymous is not None:
                return self._anonymous
            raise AuthenticationFailed(f"missing API key: send it as {how}")
        principal = self._known.get(key)
        if principal is not None:
            return principal
        principal = self._find(_digest(key))
        if principal is None:
            raise AuthenticationFailed("invalid API key")
        if len(self._known) < _KNOWN_MAX:
            self._known[key] = principal
        return principal

    def principal_for_key(self, key: str | None) -> Principal | None:
        """Look a raw key up without raising (for `apex route explain`)."""
        if key is None:
            return self._anonymous
        return self._find(_digest(key))

    def _find(self, digest: bytes) -> Principal | None:
        for stored, principal in self._by_prefix.get(digest[:_PREFIX], ()):
            if hmac.compare_digest(stored, digest):
                return principal
        return None
