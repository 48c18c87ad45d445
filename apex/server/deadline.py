"""A task deadline that is free to move: the request path's replacement for asyncio.timeout.

``asyncio.timeout`` costs a timer handle per (re)schedule, ~2.5 µs each on uvloop (a libuv
timer started, stopped and closed); the relay moved its idle deadline twice per stream chunk
and a non-stream attempt moved its deadline from first-byte to whole-request. Here
``move()`` is usually a plain attribute write: a deadline is checked when the slot it was
filed in comes due, and when it has since moved later it files itself again instead of
being cancelled. Deadlines due about the same time share one loop timer (a ``_Wheel`` slot),
so the request path arms a timer per slot, not per request; a deadline fires up to 1 % of
its distance after its time (see MIN_GRAIN), which no timeout here needs finer.

Semantics follow ``asyncio.timeout``: on expiry the task is cancelled, and the
CancelledError leaving the ``with`` block becomes TimeoutError unless someone else
cancelled the task too (then the cancellation wins).
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Final

__all__ = ["Deadline"]

_SLACK: Final = 0.001  # uvloop's clock moves in whole milliseconds; don't re-file for less
# A deadline fires up to 1 % of its distance late (10 ms at least, 1 s at most): with slots
# that coarse, deadlines that arrive together share a slot, and the slots pending at once
# stay few (~120 for the default 120 s first-byte timeout under any load), so a slot keeps
# its timer when it empties instead of paying a timer per request again.
MIN_GRAIN: Final = 0.01
MAX_GRAIN: Final = 1.0


class _Wheel:
    """One loop's deadlines by due time (rounded up to a slot), one loop timer per slot."""

    __slots__ = ("_loop", "_slots")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._slots: dict[float, set[Deadline]] = {}

    def file(self, deadline: Deadline, when: float) -> float:
        """File ``deadline`` in the slot due at or just after ``when``; that slot's due time."""
        grain = min(MAX_GRAIN, max(MIN_GRAIN, (when - self._loop.time()) / 100))
        due = (int(when / grain) + 1) * grain
        members = self._slots.get(due)
        if members is None:
            self._slots[due] = {deadline}
            self._loop.call_at(due, self._due, due)
        else:
            members.add(deadline)
        return due

    def withdraw(self, deadline: Deadline, due: float) -> None:
        members = self._slots.get(due)
        if members is not None:
            members.discard(deadline)

    def _due(self, due: float) -> None:
        members = self._slots.pop(due, None)
        if members:
            for deadline in list(members):
                deadline._due()


_last: tuple[asyncio.AbstractEventLoop | None, _Wheel | None] = (None, None)


def _wheel_of(loop: asyncio.AbstractEventLoop) -> _Wheel:
    """The loop's wheel. The gateway runs one loop, so a one-entry cache is all it takes; a
    deadline keeps its own wheel, so one dropped from the cache (another loop, in tests)
    still works."""
    global _last
    cached_loop, wheel = _last
    if cached_loop is not loop or wheel is None:
        wheel = _Wheel(loop)
        _last = (loop, wheel)
    return wheel


class Deadline:
    """``with Deadline(loop, when):`` — cancel the current task at loop time ``when``
    (None: no deadline for now); ``move(when)`` changes it at any time inside the block."""

    __slots__ = ("_cancelling", "_filed", "_loop", "_slot", "_task", "_wheel", "expired", "when")

    def __init__(self, loop: asyncio.AbstractEventLoop, when: float | None) -> None:
        self._loop = loop
        self.when = when
        self._wheel = _wheel_of(loop)
        self._slot: float | None = None  # due time of the wheel slot this deadline is filed in
        self._filed = 0.0  # the time it was filed for
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self.expired = False

    def __enter__(self) -> Deadline:
        task = asyncio.current_task(self._loop)
        if task is None:
            raise RuntimeError("Deadline must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        if self.when is not None:
            self._file(self.when)
        return self

    def _file(self, when: float) -> None:
        self._filed = when
        self._slot = self._wheel.file(self, when)

    def move(self, when: float | None) -> None:
        """Set the deadline to loop time ``when`` (None: none); later is free, earlier re-files."""
        self.when = when
        if when is None or self._task is None or self.expired:
            return
        slot = self._slot
        if slot is None or when < self._filed:  # earlier than it was filed for: file it again
            if slot is not None:
                self._wheel.withdraw(self, slot)
            self._file(when)

    def _due(self) -> None:
        """Its slot came due: expire, or file again when the deadline has moved later."""
        self._slot = None
        when = self.when
        if when is None or self._task is None:
            return
        if self._loop.time() + _SLACK < when:  # moved later since it was filed
            self._file(when)
            return
        self.expired = True
        self._task.cancel()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._slot is not None:
            self._wheel.withdraw(self, self._slot)
            self._slot = None
        task = self._task
        self._task = None
        # The task was cancelled by us: take that request back, and report a timeout
        # unless another cancellation (a client hang-up) is also pending.
        if self.expired and task is not None and task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc
