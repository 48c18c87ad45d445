"""Deadline: the request path's cheap-to-move replacement for asyncio.timeout."""
from __future__ import annotations

import asyncio

import pytest

from apex.server.deadline import Deadline


async def test_expiry_raises_timeout_error() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError), Deadline(loop, started + 0.05):
        await asyncio.sleep(5)
    assert 0.04 <= loop.time() - started < 1.0


async def test_no_expiry_when_the_block_finishes_first() -> None:
    loop = asyncio.get_running_loop()
    with Deadline(loop, loop.time() + 0.2) as deadline:
        await asyncio.sleep(0.01)
    assert not deadline.expired
    await asyncio.sleep(0.3)  # the timer is gone: nothing cancels us later
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_moving_later_postpones_expiry() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError), Deadline(loop, started + 0.05) as deadline:
        deadline.move(started + 0.25)
        await asyncio.sleep(5)
    assert loop.time() - started >= 0.24


async def test_moving_earlier_brings_expiry_forward() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError), Deadline(loop, started + 5) as deadline:
        deadline.move(started + 0.05)
        await asyncio.sleep(5)
    assert loop.time() - started < 1.0


async def test_none_means_no_deadline_until_moved() -> None:
    loop = asyncio.get_running_loop()
    with Deadline(loop, loop.time() + 0.05) as deadline:
        deadline.move(None)
        await asyncio.sleep(0.15)  # past the first time: nothing happens
        assert not deadline.expired
        with pytest.raises(TimeoutError), Deadline(loop, None) as inner:
            inner.move(loop.time() + 0.05)
            await asyncio.sleep(5)


async def test_moved_every_step_like_a_stream_relay() -> None:
    """Re-armed per chunk, it expires only after a gap longer than the idle time."""
    loop = asyncio.get_running_loop()
    gaps = [0.02] * 10 + [0.5]
    done = 0
    with pytest.raises(TimeoutError), Deadline(loop, None) as deadline:
        for gap in gaps:
            deadline.move(loop.time() + 0.1)
            await asyncio.sleep(gap)
            deadline.move(None)
            done += 1
    assert done == 10


async def test_outside_cancellation_wins() -> None:
    """A client hang-up that lands with the expiry stays a cancellation."""
    loop = asyncio.get_running_loop()

    async def body() -> None:
        with Deadline(loop, loop.time() + 0.05):
            await asyncio.sleep(5)

    task = asyncio.create_task(body())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_nested_deadlines_only_the_expired_one_raises() -> None:
    loop = asyncio.get_running_loop()
    outer_hit = False
    try:
        with Deadline(loop, loop.time() + 2):
            with pytest.raises(TimeoutError), Deadline(loop, loop.time() + 0.05):
                await asyncio.sleep(5)
            await asyncio.sleep(0.01)  # the outer one is still fine
    except TimeoutError:
        outer_hit = True
    assert not outer_hit


async def test_deadlines_due_together_share_one_slot_and_fire_on_time() -> None:
    """One loop timer per slot, not per deadline; each still fires at (not before) its time."""
    from apex.server import deadline as module

    loop = asyncio.get_running_loop()
    started = loop.time()
    fired: list[float] = []

    async def wait(when: float) -> None:
        with pytest.raises(TimeoutError), Deadline(loop, when):
            await asyncio.sleep(5)
        fired.append(loop.time())

    when = started + 0.3
    tasks = [asyncio.create_task(wait(when)) for _ in range(50)]
    await asyncio.sleep(0)
    wheel = module._wheel_of(loop)
    assert len(wheel._slots) == 1 and len(next(iter(wheel._slots.values()))) == 50
    await asyncio.gather(*tasks)
    assert all(when - module._SLACK <= t < when + 0.15 for t in fired)  # grain 10 ms, plus a busy VM's jitter


async def test_a_finished_block_leaves_its_slot() -> None:
    from apex.server import deadline as module

    loop = asyncio.get_running_loop()
    with Deadline(loop, loop.time() + 60):
        pass
    assert all(not members for members in module._wheel_of(loop)._slots.values())
