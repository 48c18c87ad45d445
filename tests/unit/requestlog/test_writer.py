"""RequestLog: bounded queue, batched writes, drops counted and logged per state change, retention."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from apex.config.model import RequestLogConfig
from apex.requestlog import COLUMNS, RequestLog, Row, sqlite_path
from apex.requestlog.sqlite import INSERT_SIZES, SqliteStore


def _row(i: int, ts: float | None = None) -> Row:
    return (ts if ts is not None else time.time(), f"req_{i}", "openai_chat", "t", None, "r", "rule", "m", "m", "c",
            "c", 1, 200, None, False, 1.0, None, 0.1, 0.9, 1, 1, 0, 0, 0, False, 0.001, None, None)


class GatedStore:
    """A store whose writes wait for ``gate`` (a slow database) or fail while ``failing``."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.failing = False
        self.rows: list[Row] = []
        self.batches: list[int] = []
        self.purged_before: list[float] = []

    async def open(self) -> None:
        return None

    async def write(self, rows: Sequence[Row]) -> None:
        await self.gate.wait()
        if self.failing:
            raise ConnectionError("database is down")
        self.batches.append(len(rows))
        self.rows.extend(rows)

    async def purge(self, before_ts: float) -> int:
        self.purged_before.append(before_ts)
        return 0

    async def close(self) -> None:
        return None


def test_row_matches_columns() -> None:
    """A row has one value per column, in the schema's order."""
    assert len(_row(1)) == len(COLUMNS)


async def test_slow_store_never_blocks_and_drops_are_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """With the store stuck, submit returns at once; past the queue bound records are dropped, counted,
    and logged once; when the store catches up, writing resumes (logged once) in batches."""
    store = GatedStore()
    dropped: list[int] = []
    rl = RequestLog(store, queue_size=5, batch_size=3, retention_days=30, on_drop=dropped.append)
    await rl.start()
    caplog.set_level(logging.INFO, "apex.requestlog")
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    for i in range(20):
        rl.submit(_row(i))
    assert time.perf_counter() - started < 0.05
    await asyncio.sleep(0.01)  # the writer took a batch of 3 and waits on the store
    assert rl.dropped == sum(dropped) >= 12
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "queue is full" in warnings[0].getMessage()
    store.gate.set()
    await rl.flush()
    assert len(store.rows) + rl.dropped == 20 and max(store.batches) <= 3
    assert any("writing records again" in r.getMessage() for r in caplog.records)
    await rl.close()


async def test_failing_store_drops_batches_then_recovers(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that raises loses those batches (counted, one warning), and later records are written."""
    monkeypatch.setattr("apex.requestlog.writer.RETRY_AFTER_FAILURE_S", 0.01)
    store = GatedStore()
    store.gate.set()
    store.failing = True
    rl = RequestLog(store, queue_size=100, batch_size=10, retention_days=30, gather_s=0.0)
    await rl.start()
    caplog.set_level(logging.INFO, "apex.requestlog")
    for i in range(5):
        rl.submit(_row(i))
        await asyncio.sleep(0.02)
    assert rl.dropped == 5 and not store.rows
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "request log: dropping records because the store failed (ConnectionError: database is down)"]
    store.failing = False
    rl.submit(_row(99))
    await rl.flush()
    await asyncio.sleep(0.02)
    assert [r[1] for r in store.rows] == ["req_99"]
    await rl.close()


async def test_records_gather_into_one_write() -> None:
    """Records submitted within the gather interval go to the store in one batch, not one write each."""
    store = GatedStore()
    store.gate.set()
    rl = RequestLog(store, queue_size=100, batch_size=50, retention_days=30, gather_s=0.1)
    await rl.start()
    await asyncio.sleep(0.01)
    for i in range(5):
        rl.submit(_row(i))
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.2)
    assert store.batches == [5]
    await rl.close()


async def test_retention_purges_old_rows_at_start(tmp_path: Path) -> None:
    """Rows older than retention_days are deleted when the log starts; newer ones stay."""
    db = tmp_path / "requests.db"
    first = RequestLog(SqliteStore(db), queue_size=100, batch_size=10, retention_days=30)
    await first.start()
    now = time.time()
    for i, age_days in enumerate((40, 31, 29, 0)):
        first.submit(_row(i, now - age_days * 86400))
    await first.flush()
    await first.close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM apex_requests").fetchone()[0] == 4
    second = RequestLog(SqliteStore(db), queue_size=100, batch_size=10, retention_days=30)
    await second.start()
    await asyncio.sleep(0.1)
    await second.close()
    assert sorted(r[0] for r in conn.execute("SELECT request_id FROM apex_requests")) == ["req_2", "req_3"]
    conn.close()


def test_sqlite_path_prefers_the_state_directory(tmp_path: Path) -> None:
    """path, then systemd's $STATE_DIRECTORY, then $APEX_STATE_DIR, then beside the config; none without a config."""
    cfg = RequestLogConfig()
    config = tmp_path / "config.json"
    assert sqlite_path(RequestLogConfig(path="/x/y.db"), config, {}) == Path("/x/y.db")
    assert sqlite_path(cfg, config, {"STATE_DIRECTORY": "/var/lib/apex"}) == Path("/var/lib/apex/requests.db")
    assert sqlite_path(cfg, config, {"APEX_STATE_DIR": "/srv/apex"}) == Path("/srv/apex/requests.db")
    assert sqlite_path(cfg, config, {}) == tmp_path / "config.json.data" / "requests.db"  # not the watched directory
    assert sqlite_path(cfg, None, {}) is None


@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 39, 41, INSERT_SIZES[0] - 1, INSERT_SIZES[0], INSERT_SIZES[0] + 1, 2 * INSERT_SIZES[0] + 49])
async def test_sqlite_writes_every_row_of_a_batch_exactly(tmp_path: Path, n: int) -> None:
    """Batches below, at and across the rows-per-statement size land whole, in order, value for value."""
    store = SqliteStore(tmp_path / "log.db")
    await store.open()
    rows = [_row(i, ts=1000.0 + i) for i in range(n)]
    try:
        await store.write(rows)
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "log.db")
    try:
        got = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM apex_requests ORDER BY ts").fetchall()
    finally:
        conn.close()
    assert got == [tuple(int(v) if isinstance(v, bool) else v for v in row) for row in rows]
