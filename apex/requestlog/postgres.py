"""The request log in PostgreSQL through asyncpg, for several Apex instances writing to one place.

Batches go in with COPY (``copy_records_to_table``), the fastest way asyncpg offers. The
pool is small (writes are batched by one task) and every call is bounded in time, so a
slow or unreachable server only makes the writer drop and count records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, final

import asyncpg

from apex.requestlog.record import COLUMNS, Row
from apex.requestlog.schema import POSTGRES_SCHEMA, TABLE

__all__ = ["PostgresStore"]

TIMEOUT_S: Final = 5.0


@final
class PostgresStore:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pool: asyncpg.Pool | None = None

    async def _connect(self) -> asyncpg.Pool:
        if self._pool is None:
            pool = await asyncpg.create_pool(self._dsn, min_size=0, max_size=2, timeout=TIMEOUT_S,
                                             command_timeout=TIMEOUT_S)
            async with pool.acquire() as conn:
                for statement in POSTGRES_SCHEMA:
                    await conn.execute(statement)
            self._pool = pool
        return self._pool

    async def open(self) -> None:
        # Not fatal when the server is down at start: the first write retries the connection.
        try:
            await self._connect()
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return
        except (ValueError, asyncpg.InterfaceError) as exc:  # a dsn asyncpg cannot use: report, serve without
            raise OSError(f"the request log's dsn cannot be used: {exc}") from exc

    async def write(self, rows: Sequence[Row]) -> None:
        pool = await self._connect()
        async with pool.acquire() as conn:
            await conn.copy_records_to_table(TABLE, records=rows, columns=COLUMNS, timeout=TIMEOUT_S)

    async def purge(self, before_ts: float) -> int:
        pool = await self._connect()
        status = await pool.execute(f"DELETE FROM {TABLE} WHERE ts < $1", before_ts)
        return int(status.rsplit(" ", 1)[-1])

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
