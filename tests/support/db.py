"""Synchronous access to the test database for fixtures and assertions (asyncpg on a background loop)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg

from storage.db import connect_pool

T = TypeVar("T")


class Database:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-db", daemon=True)
        self._thread.start()
        self._pool_cm = connect_pool(dsn, min_size=1, max_size=4)
        self.pool: asyncpg.Pool = self.run(self._pool_cm.__aenter__())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def go() -> list[asyncpg.Record]:
            async with self.pool.acquire() as conn:
                return await conn.fetch(sql, *args)

        return self.run(go())

    def fetchval(self, sql: str, *args: Any) -> Any:
        async def go() -> Any:
            async with self.pool.acquire() as conn:
                return await conn.fetchval(sql, *args)

        return self.run(go())

    def execute(self, sql: str, *args: Any) -> str:
        async def go() -> str:
            async with self.pool.acquire() as conn:
                return await conn.execute(sql, *args)

        return self.run(go())

    def close(self) -> None:
        try:
            self.run(self._pool_cm.__aexit__(None, None, None), timeout=15)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            if not self._thread.is_alive():
                self._loop.close()
