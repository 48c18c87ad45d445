"""A task deadline that is free to move: the request path's replacement for asyncio.timeout.

``asyncio.timeout`` costs a timer handle per (re)schedule, ~4 µs each on uvloop; the relay
moved its idle deadline twice per stream chunk and a non-stream attempt moved its deadline
from first-byte to whole-request. Here ``move()`` is usually a plain attribute write: the
timer fires at the earliest time it was armed for, and when the deadline has since moved
later it re-arms itself for the new time instead of cancelling. A stream therefore costs
one timer per idle period, not two per chunk.

Semantics follow ``asyncio.timeout``: on expiry the task is cancelled, and the
CancelledError leaving the ``with`` block becomes TimeoutError unless someone else
cancelled the task too (then the cancellation wins).
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Final

__all__ = ["Deadline"]

_SLACK: Final = 0.001  # uvloop's clock moves in whole milliseconds; don't re-arm for less


class Deadline:
    """``with Deadline(loop, when):`` — cancel the current task at loop time ``when``
    (None: no deadline for now); ``move(when)`` changes it at any time inside the block."""

    __slots__ = ("_cancelling", "_handle", "_loop", "_task", "expired", "when")

    def __init__(self, loop: asyncio.AbstractEventLoop, when: float | None) -> None:
        self._loop = loop
        self.when = when
        self._handle: asyncio.TimerHandle | None = None
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
            self._handle = self._loop.call_at(self.when, self._fire)
        return self

    def move(self, when: float | None) -> None:
        """Set the deadline to loop time ``when`` (None: none); later is free, earlier re-arms."""
        self.when = when
        if when is None or self._task is None or self.expired:
            return
        handle = self._handle
        if handle is None or when < handle.when():
            if handle is not None:
                handle.cancel()
            self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        when = self.when
        if when is None or self._task is None:
            return
        if self._loop.time() + _SLACK < when:  # moved later since it was armed
            self._handle = self._loop.call_at(when, self._fire)
            return
        self.expired = True
        self._task.cancel()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        task = self._task
        self._task = None
        # The task was cancelled by us: take that request back, and report a timeout
        # unless another cancellation (a client hang-up) is also pending.
        if self.expired and task is not None and task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc
