"""Per-channel health shared by every request: a circuit breaker plus Retry-After holds.

A channel that fails ``failure_threshold`` attempts in a row cools down for ``cooldown``;
after that it is half-open and exactly one probe attempt may claim it (``try_acquire``):
the probe's success closes the breaker, its failure opens it for another window. A
``Retry-After`` from the channel holds it off until the given time, independently of the
breaker. The tracker never reads a clock: every call that depends on time takes ``now``
(monotonic seconds, from the injected ``apex.types.Clock``). It knows nothing of HTTP,
metrics or logging; state changes are reported through the ``on_change`` hook.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, final

from apex.config.model import ChannelHealth

__all__ = ["ChannelState", "HealthTracker", "StateChangeHook"]


class ChannelState(enum.StrEnum):
    """What a channel looks like from outside: the value is the log/label spelling."""

    UP = "up"
    COOLING = "cooling"
    HALF_OPEN = "half_open"


StateChangeHook = Callable[[str, ChannelState, ChannelState], None]
"""Called as ``hook(channel, old, new)`` whenever a channel's observed state changes."""


@dataclass
class _Record:
    """Mutable health of one channel. Times are monotonic seconds."""

    failures: int = 0  # consecutive failed attempts
    open_until: float | None = None  # breaker open (cooling) until then; None = closed
    probe_since: float | None = None  # when the half-open probe was handed out, if one is out
    hold_until: float = 0.0  # Retry-After: stay off the channel until then
    observed: ChannelState = ChannelState.UP  # last state reported through the hook


_NO_HOOK: Final[StateChangeHook] = lambda _name, _old, _new: None  # noqa: E731


@final
class HealthTracker:
    """Circuit breaker and Retry-After holds for every channel, keyed by channel name.

    Unknown channels are healthy; a record is created on first mention. One tracker lives
    across requests; on a config reload build a new one and ``adopt`` the old one's records
    for the channels whose definition did not change.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        on_change: StateChangeHook | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown_s < 0:
            raise ValueError("cooldown_s must not be negative")
        self._threshold = failure_threshold
        self._cooldown = cooldown_s
        self._on_change = on_change or _NO_HOOK
        self._records: dict[str, _Record] = {}

    @classmethod
    def from_config(cls, config: ChannelHealth, on_change: StateChangeHook | None = None) -> HealthTracker:
        """A tracker with the thresholds of ``global.health``."""
        return cls(
            failure_threshold=config.failure_threshold,
            cooldown_s=config.cooldown_ms / 1000.0,
            on_change=on_change,
        )

    def adopt(self, previous: HealthTracker, names: Iterable[str]) -> None:
        """Share ``previous``'s state for ``names`` (channels unchanged by a reload).

        The records are shared, not copied: requests that began before the reload still
        report to ``previous``, and what they report (a failure, a Retry-After) must reach the
        new tracker too (a copy lost it, and the failing channel stayed up). The hook is not
        called: the adopted state is what was last reported.
        """
        for name in names:
            record = previous._records.get(name)
            if record is None:
                record = previous._records[name] = _Record()
            self._records[name] = record

    # -- queries ---------------------------------------------------------------------

    def state_of(self, name: str, now: float) -> ChannelState:
        """The channel's state at ``now``; a Retry-After hold counts as cooling."""
        record = self._records.get(name)
        if record is None:
            return ChannelState.UP
        return self._observe(name, record, now)

    def is_available(self, name: str, now: float) -> bool:
        """Whether an attempt may go to the channel now (without claiming anything).

        True when up, or half-open with no probe out. Use it to order channels; claim the
        channel with ``try_acquire`` right before attempting it.
        """
        record = self._records.get(name)
        if record is None:
            return True
        state = self._observe(name, record, now)
        if state is ChannelState.UP:
            return True
        return state is ChannelState.HALF_OPEN and not self._probe_out(record, now)

    def held_until(self, name: str, now: float) -> float | None:
        """When the channel's Retry-After hold ends, or None if no hold is active at ``now``."""
        record = self._records.get(name)
        if record is None or record.hold_until <= now:
            return None
        return record.hold_until

    def breaker_open(self, name: str, now: float) -> bool:
        """Whether the breaker keeps the channel off now (open, or half-open with its probe out)."""
        record = self._records.get(name)
        if record is None or record.open_until is None:
            return False
        return now < record.open_until or self._probe_out(record, now)

    # -- commands --------------------------------------------------------------------

    def try_acquire(self, name: str, now: float) -> bool:
        """Claim the channel for one attempt; False when it must not be tried now.

        In half-open this hands out the single probe; the probe stays out until
        ``record_success``, ``record_failure`` or ``release``, or until a full cooldown
        passes (so a probe lost to a bug cannot close the channel for good).
        """
        record = self._records.get(name)
        if record is None:
            return True
        state = self._observe(name, record, now)
        if state is ChannelState.UP:
            return True
        if state is ChannelState.HALF_OPEN and not self._probe_out(record, now):
            record.probe_since = now
            return True
        return False

    def record_success(self, name: str, now: float) -> None:
        """The channel answered: reset the failure count and close the breaker."""
        record = self._record(name)
        record.failures = 0
        record.open_until = None
        record.probe_since = None
        self._observe(name, record, now)

    def record_failure(self, name: str, now: float) -> None:
        """A failed attempt: count it; open the breaker at the threshold or when a probe failed."""
        record = self._record(name)
        record.failures += 1
        if record.open_until is None:
            if record.failures >= self._threshold:
                record.open_until = now + self._cooldown
        elif now >= record.open_until:
            # Half-open: the probe (or any attempt let through) failed, so cool down again.
            record.open_until = now + self._cooldown
            record.probe_since = None
        # A failure while still cooling (a forced last-resort attempt, or one that started
        # before the breaker opened) does not stretch the window.
        self._observe(name, record, now)

    def release(self, name: str, now: float) -> None:
        """An attempt ended with no verdict (client went away): give back a claimed probe."""
        record = self._records.get(name)
        if record is not None:
            record.probe_since = None
            self._observe(name, record, now)

    def note_retry_after(self, name: str, until: float, now: float) -> None:
        """Hold the channel off until ``until`` (monotonic seconds); a later hold wins."""
        record = self._record(name)
        record.hold_until = max(record.hold_until, until)
        self._observe(name, record, now)

    def poll(self, now: float) -> dict[str, ChannelState]:
        """Every known channel's state at ``now``, firing the hook for changes due to time.

        States otherwise change lazily, when a channel is next looked at; call this before
        exporting a gauge so that cooldowns that ran out show as such.
        """
        return {name: self._observe(name, record, now) for name, record in self._records.items()}

    # -- internals -------------------------------------------------------------------

    def _record(self, name: str) -> _Record:
        record = self._records.get(name)
        if record is None:
            record = self._records[name] = _Record()
        return record

    def _probe_out(self, record: _Record, now: float) -> bool:
        return record.probe_since is not None and now - record.probe_since < max(self._cooldown, 1e-9)

    def _observe(self, name: str, record: _Record, now: float) -> ChannelState:
        if record.hold_until > now or (record.open_until is not None and now < record.open_until):
            state = ChannelState.COOLING
        elif record.open_until is not None:
            state = ChannelState.HALF_OPEN
        else:
            state = ChannelState.UP
        if state is not record.observed:
            old, record.observed = record.observed, state
            self._on_change(name, old, state)
        return state
