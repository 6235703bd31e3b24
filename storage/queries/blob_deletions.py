"""The outbox of S3 objects to delete once the rows that referenced them are gone."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

ENQUEUE = """INSERT INTO blob_deletions (storage_key, not_before) VALUES ($1, now() + make_interval(secs => $2))
ON CONFLICT (storage_key) DO NOTHING"""

CANCEL = "DELETE FROM blob_deletions WHERE storage_key = $1"

DUE = """-- objects due for deletion, skipping ones another process is handling
SELECT storage_key FROM blob_deletions WHERE not_before <= now()
ORDER BY not_before LIMIT $1 FOR UPDATE SKIP LOCKED"""

DONE = "DELETE FROM blob_deletions WHERE storage_key = ANY($1::text[])"


async def enqueue(conn: asyncpg.Connection, keys: Iterable[str], delay_seconds: float = 0) -> None:
    rows = [(k, float(delay_seconds)) for k in keys]
    if len(rows) == 1:  # every upload records one key: a plain execute costs less than executemany's pipeline
        await conn.execute(ENQUEUE, *rows[0])
    else:
        await conn.executemany(ENQUEUE, rows)


async def cancel(conn: asyncpg.Connection, key: str) -> None:
    await conn.execute(CANCEL, key)


async def due(conn: asyncpg.Connection, limit: int) -> list[str]:
    return [r["storage_key"] for r in await conn.fetch(DUE, limit)]


async def done(conn: asyncpg.Connection, keys: list[str]) -> None:
    await conn.execute(DONE, keys)
