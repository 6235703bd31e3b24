"""One page of rows plus the total, from a query whose last two parameters are OFFSET and LIMIT and whose
rows carry ``count(*) OVER () AS total``."""

from __future__ import annotations

from typing import Any

import asyncpg


async def fetch_page(conn: asyncpg.Connection, sql: str, args: tuple[Any, ...], offset: int, limit: int) -> tuple[list[asyncpg.Record], int]:
    records = await conn.fetch(sql, *args, offset, limit)
    if records:
        return records, records[0]["total"]
    # A page past the end has no row to carry the window count: ask once more for the first row.
    again = await conn.fetch(sql, *args, 0, 1)
    return [], again[0]["total"] if again else 0
