"""ConfigWatcher: in-place edits, rename-over, symlink swaps, debounce and unchanged-content skips."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from apex.config.watch import ConfigWatcher

WAIT_S = 3.0


class Recorder:
    """Collects delivered contents and lets a test await the next one."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self.threads: list[bool] = []
        self._event = asyncio.Event()

    def __call__(self, content: bytes) -> None:
        self.seen.append(content)
        self._event.set()

    async def next(self, wait_s: float = WAIT_S) -> bytes:
        await asyncio.wait_for(self._event.wait(), wait_s)
        self._event.clear()
        return self.seen[-1]

    async def quiet(self, seconds: float = 0.4) -> None:
        await asyncio.sleep(seconds)


@pytest.fixture
async def watch(tmp_path: Path) -> AsyncIterator[Callable[..., tuple[ConfigWatcher, Recorder]]]:
    started: list[ConfigWatcher] = []

    def make(path: Path, **kw: float) -> tuple[ConfigWatcher, Recorder]:
        rec = Recorder()
        w = ConfigWatcher(path, rec, asyncio.get_running_loop(), debounce_s=kw.get("debounce_s", 0.05))
        w.start()
        started.append(w)
        return w, rec

    yield make
    for w in started:
        w.stop()


async def test_in_place_write_is_delivered(tmp_path: Path, watch: Callable[..., tuple[ConfigWatcher, Recorder]]) -> None:
    """Overwriting the file in place delivers the new content."""
    cfg = tmp_path / "config.json"
    cfg.write_bytes(b"one")
    _, rec = watch(cfg)
    await asyncio.sleep(0.1)
    cfg.write_bytes(b"two")
    assert await rec.next() == b"two"


async def test_initial_content_is_not_delivered(tmp_path: Path, watch: Callable[..., tuple[ConfigWatcher, Recorder]]) -> None:
    """Rewriting the content the gateway started with delivers nothing."""
    cfg = tmp_path / "config.json"
    cfg.write_bytes(b"same")
    _, rec = watch(cfg)
    await asyncio.sleep(0.1)
    cfg.write_bytes(b"same")
    os.utime(cfg)
    await rec.quiet()
    assert rec.seen == []


async def test_rename_over_is_delivered(tmp_path: Path, watch: Callable[..., tuple[ConfigWatcher, Recorder]]) -> None:
    """An editor's save-by-rename (write temp, rename over) delivers the new content."""
    cfg = tmp_path / "config.json"
    cfg.write_bytes(b"one")
    _, rec = watch(cfg)
    await asyncio.sleep(0.1)
    tmp = tmp_path / ".config.json.swp"
    tmp.write_bytes(b"renamed")
    os.replace(tmp, cfg)
    assert await rec.next() == b"renamed"


async def test_delete_and_recreate_is_delivered(tmp_path: Path, watch: Callable[..., tuple[ConfigWatcher, Recorder]]) -> None:
    """Deleting the file then creating it again delivers the new content once it exists."""
    cfg = tmp_path / "config.json"
    cfg.write_bytes(b"one")
    _, rec = watch(cfg)
    await asyncio.sleep(0.1)
    cfg.unlink()
    await asyncio.sleep(0.2)
    cfg.write_bytes(b"back")
    assert await rec.next() == b"back"


async def test_kubernetes_symlink_swap_is_delivered(tmp_path: Path, watch: Callable[..., tuple[ConfigWatcher, Recorder]]) -> None:
    """A ConfigMap-style swap of the ``..data`` symlink to a new directory delivers the new content."""
    v1 = tmp_path / "..2024_01"
    v1.mkdir()
    (v1 / "config.json").write_bytes(b"v1")
    (tmp_path / "..data").symlink_to("..2024_01")
    cfg = tmp_path / "config.json"
    cfg.symlink_to("..data/config.json")
    _, rec = watch(cfg)
    await asyncio.sleep(0.1)

    v2 = tmp_path / "..2024_02"
    v2.mkdir()
    (v2 / "config.json").write_bytes(b"v2")
    (tmp_path / "..data_tmp").symlink_to("..2024_02")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    assert await rec.next() == b"v2"


async def test_symlink_to_other_directory_sees_target_edits(
    tmp_path: Path, watch: Callable[..., tuple[ConfigWatcher, Recorder]]
) -> None:
    """Editing the target of a symlink that lives in another directory is delivered."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "srv").mkdir()
    real = tmp_path / "srv" / "apex.json"
    real.write_bytes(b"a")
    cfg = tmp_path / "etc" / "config.json"
    cfg.symlink_to(real)
    _, rec = watch(cfg)
    await asyncio.sleep(0.1)
    real.write_bytes(b"b")
    assert await rec.next() == b"b"


async def test_burst_is_debounced_to_last_content(tmp_path: Path, watch: Callable[..., tuple[ConfigWatcher, Recorder]]) -> None:
    """A burst of writes inside the debounce window delivers only the final content."""
    cfg = tmp_path / "config.json"
    cfg.write_bytes(b"start")
    _, rec = watch(cfg, debounce_s=0.3)
    await asyncio.sleep(0.1)
    for i in range(10):
        cfg.write_bytes(b"burst-%d" % i)
        await asyncio.sleep(0.01)
    assert await rec.next() == b"burst-9"
    await rec.quiet(0.5)
    assert rec.seen == [b"burst-9"]


async def test_other_files_in_directory_are_ignored(tmp_path: Path, watch: Callable[..., tuple[ConfigWatcher, Recorder]]) -> None:
    """Writes to neighbours (log, state, .bak) do not re-read or deliver anything."""
    cfg = tmp_path / "config.json"
    cfg.write_bytes(b"one")
    w, rec = watch(cfg)
    await asyncio.sleep(0.1)
    # Change the config behind the watcher's back, then only touch neighbours: no delivery
    # proves neighbours do not trigger a read.
    w._relevant = frozenset()
    cfg.write_bytes(b"sneaky")
    await asyncio.sleep(0.2)
    w._refresh_watches()
    (tmp_path / "config.json.log").write_bytes(b"log line")
    (tmp_path / "config.json.bak").write_bytes(b"bak")
    await rec.quiet()
    assert rec.seen == []


async def test_callback_error_does_not_stop_watching(tmp_path: Path) -> None:
    """An exception from on_change is logged and later changes are still delivered."""
    cfg = tmp_path / "config.json"
    cfg.write_bytes(b"one")
    seen: list[bytes] = []
    got = asyncio.Event()

    def on_change(content: bytes) -> None:
        seen.append(content)
        got.set()
        if content == b"boom":
            raise RuntimeError("reload failed")

    w = ConfigWatcher(cfg, on_change, asyncio.get_running_loop(), debounce_s=0.05)
    w.start()
    try:
        await asyncio.sleep(0.1)
        cfg.write_bytes(b"boom")
        await asyncio.wait_for(got.wait(), WAIT_S)
        got.clear()
        cfg.write_bytes(b"fine")
        await asyncio.wait_for(got.wait(), WAIT_S)
    finally:
        w.stop()
    assert seen == [b"boom", b"fine"]


async def test_delivery_runs_on_the_loop_thread(tmp_path: Path) -> None:
    """on_change is called on the event loop's thread, not watchdog's."""
    import threading

    cfg = tmp_path / "config.json"
    cfg.write_bytes(b"one")
    threads: list[threading.Thread] = []
    got = asyncio.Event()

    def on_change(content: bytes) -> None:
        threads.append(threading.current_thread())
        got.set()

    w = ConfigWatcher(cfg, on_change, asyncio.get_running_loop(), debounce_s=0.05)
    w.start()
    try:
        await asyncio.sleep(0.1)
        cfg.write_bytes(b"two")
        await asyncio.wait_for(got.wait(), WAIT_S)
    finally:
        w.stop()
    assert threads == [threading.main_thread()]


async def test_check_now_and_initial_content(tmp_path: Path) -> None:
    """check_now re-reads at once; content differing from ``initial_content`` is delivered."""
    cfg = tmp_path / "config.json"
    cfg.write_bytes(b"on disk")
    rec = Recorder()
    w = ConfigWatcher(cfg, rec, asyncio.get_running_loop(), debounce_s=10, initial_content=b"loaded earlier")
    w.start()
    try:
        w.check_now()
        assert await rec.next() == b"on disk"
        w.check_now()
        await rec.quiet(0.3)
        assert rec.seen == [b"on disk"]
    finally:
        w.stop()


async def test_stop_is_idempotent_and_silences(tmp_path: Path) -> None:
    """After stop() (twice), writes are no longer delivered."""
    cfg = tmp_path / "config.json"
    cfg.write_bytes(b"one")
    rec = Recorder()
    w = ConfigWatcher(cfg, rec, asyncio.get_running_loop(), debounce_s=0.05)
    w.start()
    w.stop()
    w.stop()
    cfg.write_bytes(b"two")
    await rec.quiet(0.3)
    assert rec.seen == []
