"""Channel health: consecutive-failure circuit breaker, half-open probe, Retry-After holds."""

from __future__ import annotations

from apex.config.model import ChannelHealth
from apex.routing.health import ChannelState, HealthTracker

UP, COOLING, HALF_OPEN = ChannelState.UP, ChannelState.COOLING, ChannelState.HALF_OPEN


class Changes:
    """Collects the tracker's state-change callbacks."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, ChannelState, ChannelState]] = []

    def __call__(self, name: str, old: ChannelState, new: ChannelState) -> None:
        self.seen.append((name, old, new))


def tracker(changes: Changes | None = None) -> HealthTracker:
    """Three failures in a row open the breaker for ten seconds."""
    return HealthTracker(failure_threshold=3, cooldown_s=10.0, on_change=changes)


def fail(health: HealthTracker, name: str, times: int, now: float) -> None:
    for _ in range(times):
        health.record_failure(name, now)


class TestBreaker:
    def test_opens_after_threshold_failures_in_a_row(self) -> None:
        """Two failures keep the channel up; the third cools it down."""
        health = tracker()
        fail(health, "a", 2, now=0.0)
        assert health.state_of("a", 0.0) is UP and health.is_available("a", 0.0)
        health.record_failure("a", 0.0)
        assert health.state_of("a", 0.0) is COOLING
        assert not health.is_available("a", 0.0)
        assert not health.try_acquire("a", 9.9)

    def test_success_resets_the_count(self) -> None:
        """A success between failures means they are no longer in a row."""
        health = tracker()
        fail(health, "a", 2, now=0.0)
        health.record_success("a", 0.0)
        fail(health, "a", 2, now=0.0)
        assert health.state_of("a", 0.0) is UP

    def test_half_open_lets_exactly_one_probe_through(self) -> None:
        """After the cooldown one try_acquire succeeds and the next ones are refused."""
        health = tracker()
        fail(health, "a", 3, now=0.0)
        assert health.state_of("a", 10.0) is HALF_OPEN
        assert health.is_available("a", 10.0)
        assert health.try_acquire("a", 10.0)
        assert not health.try_acquire("a", 10.5)
        assert not health.is_available("a", 10.5)
        assert health.breaker_open("a", 10.5)

    def test_probe_success_restores_the_channel(self) -> None:
        """A successful probe closes the breaker: the channel is up and freely available."""
        health = tracker()
        fail(health, "a", 3, now=0.0)
        assert health.try_acquire("a", 10.0)
        health.record_success("a", 11.0)
        assert health.state_of("a", 11.0) is UP
        assert health.try_acquire("a", 11.0) and health.try_acquire("a", 11.0)

    def test_probe_failure_reopens_for_another_window(self) -> None:
        """A failed probe cools the channel for a full new cooldown from the failure."""
        health = tracker()
        fail(health, "a", 3, now=0.0)
        assert health.try_acquire("a", 10.0)
        health.record_failure("a", 12.0)
        assert health.state_of("a", 12.0) is COOLING
        assert not health.is_available("a", 21.9)
        assert health.state_of("a", 22.0) is HALF_OPEN
        assert health.try_acquire("a", 22.0)

    def test_failures_while_cooling_do_not_stretch_the_window(self) -> None:
        """A forced attempt that fails during the cooldown leaves its end where it was."""
        health = tracker()
        fail(health, "a", 3, now=0.0)
        health.record_failure("a", 5.0)
        assert health.state_of("a", 10.0) is HALF_OPEN

    def test_released_probe_can_be_handed_out_again(self) -> None:
        """A probe that ended with no verdict is given back for the next request."""
        health = tracker()
        fail(health, "a", 3, now=0.0)
        assert health.try_acquire("a", 10.0)
        health.release("a", 10.1)
        assert health.try_acquire("a", 10.2)

    def test_a_lost_probe_expires_after_a_cooldown(self) -> None:
        """A probe never reported back stops blocking the channel after one cooldown."""
        health = tracker()
        fail(health, "a", 3, now=0.0)
        assert health.try_acquire("a", 10.0)
        assert not health.try_acquire("a", 19.9)
        assert health.try_acquire("a", 20.0)

    def test_from_config_reads_milliseconds(self) -> None:
        """global.health's cooldown_ms becomes seconds and the threshold carries over."""
        health = HealthTracker.from_config(ChannelHealth(failure_threshold=2, cooldown_ms=1500))
        fail(health, "a", 2, now=0.0)
        assert health.state_of("a", 1.4) is COOLING
        assert health.state_of("a", 1.5) is HALF_OPEN

    def test_channels_are_independent(self) -> None:
        """Failures on one channel never cool another."""
        health = tracker()
        fail(health, "a", 3, now=0.0)
        assert health.is_available("b", 0.0) and health.state_of("b", 0.0) is UP


class TestRetryAfter:
    def test_hold_keeps_the_channel_off_until_then(self) -> None:
        """A Retry-After hold refuses the channel before its end and frees it after."""
        health = tracker()
        health.note_retry_after("a", 30.0, now=0.0)
        assert health.state_of("a", 29.9) is COOLING
        assert not health.try_acquire("a", 29.9)
        assert health.held_until("a", 29.9) == 30.0
        assert health.held_until("a", 30.0) is None
        assert health.try_acquire("a", 30.0) and health.state_of("a", 30.0) is UP

    def test_the_later_hold_wins(self) -> None:
        """A shorter Retry-After does not cut an earlier, longer hold short."""
        health = tracker()
        health.note_retry_after("a", 30.0, now=0.0)
        health.note_retry_after("a", 5.0, now=1.0)
        assert health.held_until("a", 10.0) == 30.0

    def test_hold_is_not_a_breaker_failure(self) -> None:
        """A hold on its own does not open the breaker."""
        health = tracker()
        health.note_retry_after("a", 30.0, now=0.0)
        assert not health.breaker_open("a", 0.0)


class TestChangesAndReload:
    def test_hook_reports_each_transition_once(self) -> None:
        """The hook sees up→cooling, cooling→half_open and half_open→up, in order, once each."""
        changes = Changes()
        health = tracker(changes)
        fail(health, "a", 3, now=0.0)
        health.is_available("a", 5.0)
        health.is_available("a", 10.0)
        health.try_acquire("a", 10.0)
        health.record_success("a", 11.0)
        assert changes.seen == [("a", UP, COOLING), ("a", COOLING, HALF_OPEN), ("a", HALF_OPEN, UP)]

    def test_poll_reports_time_based_changes(self) -> None:
        """poll() fires the hook for holds that ran out and returns every known state."""
        changes = Changes()
        health = tracker(changes)
        health.note_retry_after("a", 5.0, now=0.0)
        fail(health, "b", 3, now=0.0)
        assert health.poll(6.0) == {"a": UP, "b": COOLING}
        assert changes.seen[-1] == ("a", COOLING, UP)

    def test_adopt_keeps_state_of_unchanged_channels_only(self) -> None:
        """A reloaded tracker takes over the named channels' state and starts others fresh."""
        old = tracker()
        fail(old, "a", 3, now=0.0)
        fail(old, "b", 3, now=0.0)
        new = tracker()
        new.adopt(old, ["a"])
        assert new.state_of("a", 1.0) is COOLING
        assert new.state_of("b", 1.0) is UP
        old.record_success("a", 2.0)  # a request begun before the reload reports to the old tracker
        assert new.state_of("a", 2.0) is UP

    def test_reports_to_the_old_tracker_reach_the_new_one(self) -> None:
        """A request in flight across a reload fails on the old Snapshot's tracker: the new one
        sees it (it had a copy, and kept sending every request to the failing channel)."""
        old = tracker()
        new = tracker()
        new.adopt(old, ["a", "c"])
        fail(old, "c", 3, now=0.0)  # no record before the reload
        old.note_retry_after("a", 5.0, now=0.0)
        assert new.state_of("c", 1.0) is COOLING
        assert new.state_of("a", 1.0) is COOLING
