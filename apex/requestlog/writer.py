"""The request log's writer: a bounded queue the request path fills, drained in batches by one task.

``submit`` is all a request pays: one deque append (or, when the queue is full, a counted
drop). A background task writes what has queued in batches; a slow or failing store never
delays a request. Records that cannot be written (queue full, store down) are dropped,
counted through ``on_drop``, and logged once each time the log's state changes (writing ->
dropping -> writing again). Retention is enforced by the same task: records older than
``retention_days`` are deleted at start and then hourly.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Final, Protocol, final

from apex.requestlog.record import Row

__all__ = ["RequestLog", "RequestStore"]

log = logging.getLogger("apex.requestlog")

PURGE_EVERY_S: Final = 3600.0
# Records gather this long before a write (unless a whole batch is waiting): one transaction
# and one hop to the store's thread per interval instead of per request. Measured with
# bench/ (requestlog scenario): writing as soon as anything was queued cost ~45 % more CPU
# per request at 1000 req/s, nearly all of it thread hand-offs of one- or two-row batches.
# At low rates each write costs three wake-ups (the timer, the thread, its answer), ~0.2 ms
# of CPU each on a VM: at 0.2 s that was ~0.15 ms per request at 20 req/s; 1 s makes it 0.03.
GATHER_S: Final = 1.0
RETRY_AFTER_FAILURE_S: Final = 1.0
CLOSE_FLUSH_S: Final = 5.0


class RequestStore(Protocol):
    """Where rows go. Methods raise on failure; the writer counts and logs."""

    async def open(self) -> None: ...

    async def write(self, rows: Sequence[Row]) -> None: ...

    async def purge(self, before_ts: float) -> int:
        """Delete rows older than ``before_ts`` (Unix seconds); how many went."""
        ...

    async def close(self) -> None: ...


@final
class RequestLog:
    """Queue plus writer task for one store; ``start`` inside the loop, ``close`` at shutdown."""

    def __init__(
        self,
        store: RequestStore,
        *,
        queue_size: int,
        batch_size: int,
        retention_days: int,
        on_drop: Callable[[int], None] | None = None,
        describe: str = "request log",
        gather_s: float = GATHER_S,
    ) -> None:
        self.store = store
        self._queue: collections.deque[Row] = collections.deque()
        self._max = queue_size
        self._batch = batch_size
        self._retention_s = retention_days * 86400.0
        self._on_drop = on_drop
        self._describe = describe
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._dropping: str | None = None  # why records are being dropped now; None while writing
        self._gather = gather_s
        self._idle = False  # the writer waits for a first record
        self._hurry = False  # flush(): write what is queued without gathering more
        self.submitted = 0
        self.written = 0
        self.dropped = 0

    def submit(self, row: Row) -> None:
        """Queue one finished request; never blocks, never raises."""
        self.submitted += 1
        if len(self._queue) >= self._max:
            self._drop(1, "its queue is full (the store is slower than the traffic)")
            return
        self._queue.append(row)
        if self._idle and not self._wake.is_set():  # a writer gathering a batch is not woken per record
            self._wake.set()

    async def start(self) -> None:
        await self.store.open()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="apex-request-log")

    async def close(self) -> None:
        """Write what is queued (bounded in time), then close the store."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, CLOSE_FLUSH_S)
            except TimeoutError:
                self._drop(len(self._queue), "it was shut down before the store took them")
        await self.store.close()

    async def flush(self) -> None:
        """Wait until everything submitted so far was written or dropped (tests, reports)."""
        self._hurry = True
        try:
            while self.written + self.dropped < self.submitted:
                self._wake.set()
                await asyncio.sleep(0.005)
        finally:
            self._hurry = False

    def _drop(self, n: int, why: str) -> None:
        if n <= 0:
            return
        self.dropped += n
        if self._on_drop is not None:
            self._on_drop(n)
        if self._dropping != why:
            self._dropping = why
            log.warning("%s: dropping records because %s", self._describe, why)

    def _recovered(self) -> None:
        if self._dropping is not None:
            self._dropping = None
            log.info("%s: writing records again", self._describe)

    async def _run(self) -> None:
        next_purge = 0.0
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                self._idle = True
                with contextlib.suppress(TimeoutError):  # woken by a first record, or time to purge
                    await asyncio.wait_for(self._wake.wait(), max(0.05, next_purge - time.monotonic()))
                self._idle = False
            if time.monotonic() >= next_purge:
                next_purge = time.monotonic() + PURGE_EVERY_S
                await self._purge()
            if self._queue and len(self._queue) < self._batch and not (self._closing or self._hurry):
                self._wake.clear()
                with contextlib.suppress(TimeoutError):  # gather more; flush() and close() cut it short
                    await asyncio.wait_for(self._wake.wait(), self._gather)
            while self._queue:
                n = min(len(self._queue), self._batch)
                batch = [self._queue.popleft() for _ in range(n)]
                try:
                    await self.store.write(batch)
                except Exception as exc:  # noqa: BLE001  # background-task boundary: count, log, go on
                    self._drop(len(batch), f"the store failed ({type(exc).__name__}: {exc})")
                    if not self._closing:
                        await asyncio.sleep(RETRY_AFTER_FAILURE_S)
                    continue
                self.written += n
                if not self._queue or len(self._queue) < self._max:
                    self._recovered()

    async def _purge(self) -> None:
        try:
            gone = await self.store.purge(time.time() - self._retention_s)
        except Exception as exc:  # noqa: BLE001  # background-task boundary
            log.warning("%s: retention purge failed (%s: %s)", self._describe, type(exc).__name__, exc)
            return
        if gone:
            log.info("%s: deleted %d records older than the retention period", self._describe, gone)
