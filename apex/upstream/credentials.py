"""Cloud credentials kept fresh in the background: never fetched on the request path.

A ``Refresher`` owns one credential (an OAuth access token, a set of AWS keys): a named
background task fetches it, then fetches it again before it expires. Requests only read
the current value (``current``), which costs an attribute lookup. A failed fetch is
logged, recorded as the channel's ``reason`` (routing then prefers other channels) and
retried with backoff; a request finds either a still-valid credential or a prompt,
retryable UpstreamError naming the reason, never a wait and never a crash.

The Gateway binds refreshers to compiled channels (``CredentialSlot``) and carries them
over a reload for channels whose config did not change, so a reload does not refetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from apex.errors import Secrets, UpstreamConnectionError
from apex.upstream.http import HttpClientError, UpstreamPool, exchange_failure

__all__ = ["CredentialKeeper", "CredentialSlot", "Fetched", "Refresher"]

T = TypeVar("T", covariant=True)
log = logging.getLogger("apex.credentials")

_MAX_BACKOFF_S: Final = 30.0
_FETCH_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class Fetched(Generic[T]):
    """A freshly fetched credential and how many seconds it stays valid (None: for ever)."""

    value: T
    lifetime: float | None


class Refresher(Generic[T]):
    """Fetches a credential now and again before it expires, in a background task."""

    def __init__(
        self,
        channel: str,
        what: str,
        fetch: Callable[[], Awaitable[Fetched[T]]],
        *,
        clock: Callable[[], float] = time.monotonic,
        first_retry_s: float = 1.0,
    ) -> None:
        self.channel = channel
        self.what = what
        self._fetch = fetch
        self._clock = clock
        self._first_retry = first_retry_s
        self._value: T | None = None
        self._valid_until = 0.0
        self.reason: str | None = "not fetched yet"
        self.refreshes = 0  # successful fetches, for tests and logs
        # The channel's scrubber (set when bound): a token endpoint's error may quote what it
        # was sent (Entra ID's error_description repeats the client_secret), and the reason
        # goes to the log and to the unauthenticated /ready.
        self.secrets: Secrets | None = None
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Event | None = None  # created inside the loop by start()

    @property
    def healthy(self) -> bool:
        """The last fetch worked and its credential is still valid."""
        return self.reason is None and self._clock() < self._valid_until

    @property
    def unusable(self) -> str | None:
        """Why requests cannot be sent with this credential now, or None while one is valid.
        A failed refresh with time left on the current credential is no reason: one blip at
        the token endpoint took every replica out of its load balancer (/ready said 503)."""
        if self._value is not None and self._clock() < self._valid_until:
            return None
        return self.reason or "it expired and was not renewed"

    def current(self) -> T:
        """The valid credential; UpstreamConnectionError (retryable) saying why when none is."""
        value = self._value
        if value is not None and self._clock() < self._valid_until:
            return value
        reason = self.reason or "it expired and was not renewed"
        raise UpstreamConnectionError(
            f"upstream channel {self.channel} has no valid {self.what}: {reason}", channel=self.channel
        )

    def start(self) -> None:
        """Start the background task (idempotent; call inside the running loop)."""
        if self._task is None:
            self._first = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"apex-credentials-{self.channel}"
            )

    async def wait_first(self, limit_s: float) -> None:
        """Wait up to ``limit_s`` seconds for the first fetch to end (either way)."""
        if self._first is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first.wait(), limit_s)

    def cancel(self) -> None:
        """Stop refreshing (the task ends on its own)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def refresh_once(self) -> float | None:
        """Fetch now; the seconds until the next fetch is due (None: never)."""
        try:
            async with asyncio.timeout(_FETCH_TIMEOUT_S):
                got = await self._fetch()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a background-task boundary: record, log, retry later
            reason = _describe(exc)
            self.reason = self.secrets.text(reason) if self.secrets is not None else reason
            log.warning("channel %s: cannot refresh its %s: %s", self.channel, self.what, self.reason)
            raise _Failed() from exc
        now = self._clock()
        self._value = got.value
        self.refreshes += 1
        if self.reason is not None and self.refreshes > 1:
            log.warning("channel %s: %s refreshed again", self.channel, self.what)
        self.reason = None
        if got.lifetime is None:
            self._valid_until = float("inf")
            return None
        life = max(got.lifetime, 0.0)
        # Stop using a token a little before the issuer's expiry (clock skew, time in flight)
        # and fetch the next one well before that: a quarter of its life, at most 5 minutes.
        self._valid_until = now + life - min(10.0, life * 0.1)
        return max(life - min(300.0, life / 4), 0.05)

    async def _run(self) -> None:
        backoff = self._first_retry
        while True:
            try:
                wait = await self.refresh_once()
                backoff = self._first_retry
            except _Failed:
                wait = backoff
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
            finally:
                if self._first is not None:
                    self._first.set()
            if wait is None:
                return
            await asyncio.sleep(wait)


class _Failed(Exception):
    """A fetch failed (already recorded and logged)."""


def _describe(exc: BaseException) -> str:
    """A one-line reason for logs and /health: the error's class and message, no secrets
    (fetchers put none in their messages)."""
    if isinstance(exc, TimeoutError):
        return "the credential service did not answer in time"
    cause = exc if isinstance(exc, HttpClientError) else exc.__cause__  # google-auth wraps it in its TransportError
    if isinstance(cause, HttpClientError):  # the token request itself failed: say where (and which proxy)
        return exchange_failure(cause)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(eq=False)
class CredentialSlot:
    """Where a compiled channel finds its refresher; the Gateway fills ``refresher``.

    ``key`` identifies the credential's config: a reload that keeps it keeps the refresher.
    ``factory`` builds a new one, given the upstream pool (token requests go through it).
    """

    key: Hashable
    factory: Callable[[UpstreamPool], Refresher[object]]
    refresher: Refresher[object] | None = field(default=None)
    secrets: Secrets | None = None  # the channel's scrubber: fetched credentials join it
    _scrubbing: object = field(default=None)  # the credential last added to ``secrets``

    def current(self, channel: str) -> object:
        r = self.refresher
        if r is None:
            raise UpstreamConnectionError(
                f"upstream channel {channel} has no credentials yet", channel=channel
            )
        value = r.current()
        if value is not self._scrubbing and self.secrets is not None:
            # An upstream may quote what it was sent (SigV4's "canonical string" names the
            # session token): a credential from the AWS chain or a token endpoint is scrubbed
            # like a key from the config, from its first use on.
            self.secrets.add(secret_strings(value))
            self._scrubbing = value
        return value

    @property
    def reason(self) -> str | None:
        """Why the channel's credentials are failing, or None when they are fine."""
        r = self.refresher
        if r is None:
            return "credentials not started"
        return r.unusable


class CredentialKeeper:
    """The live refreshers of a Gateway, keyed by credential config: ``bind`` gives every slot
    of a new Snapshot its refresher (reusing the running one when the config is unchanged)
    and cancels the ones no channel uses any more. Runs inside the event loop."""

    def __init__(self) -> None:
        self._live: dict[Hashable, Refresher[object]] = {}

    def bind(self, slots: list[CredentialSlot], pool: UpstreamPool) -> list[Refresher[object]]:
        """Bind every slot at once (no request sees a half-bound Snapshot); the new refreshers."""
        live: dict[Hashable, Refresher[object]] = {}
        fresh: list[Refresher[object]] = []
        for slot in slots:
            r = live.get(slot.key) or self._live.get(slot.key)
            if r is None:
                r = slot.factory(pool)
                r.secrets = slot.secrets
                r.start()
                fresh.append(r)
            slot.refresher = r
            live[slot.key] = r
        for key, r in self._live.items():
            if key not in live:
                r.cancel()
        self._live = live
        return fresh

    async def close(self) -> None:
        live, self._live = self._live, {}
        for r in live.values():
            await r.stop()


def secret_strings(value: object) -> list[str]:
    """The secret parts of a fetched credential: AWS keys (secret key, session token), or the
    values of the auth header lines a token fetcher encoded."""
    if isinstance(value, bytes):
        return [line.partition(b":")[2].strip().removeprefix(b"Bearer ").decode("latin-1")
                for line in value.split(b"\r\n") if b":" in line]
    return [v for v in (getattr(value, "secret_key", None), getattr(value, "token", None)) if isinstance(v, str)]
