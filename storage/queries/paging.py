"""Pages of rows with their totals, from queries whose last two parameters are OFFSET and LIMIT and whose
rows carry a window ``count(*) ... AS total``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from uuid import UUID

import asyncpg

T = TypeVar("T")


async def fetch_page(conn: asyncpg.Connection, sql: str, args: tuple[Any, ...], offset: int, limit: int) -> tuple[list[asyncpg.Record], int]:
    records = await conn.fetch(sql, *args, offset, limit)
    if records:
        return records, records[0]["total"]
    # A page past the end has no row to carry the window count: ask once more for the first row.
    again = await conn.fetch(sql, *args, 0, 1)
    return [], again[0]["total"] if again else 0


async def fetch_pages_by_parent(
    conn: asyncpg.Connection,
    sql: str,
    org_id: UUID,
    parent_ids: Sequence[UUID],
    filters: tuple[Any, ...],
    offset: int,
    limit: int,
    *,
    parent: str,
    row: Callable[[asyncpg.Record], T],
) -> tuple[dict[UUID, list[T]], dict[UUID, int]]:
    """The same page for many parents in one query (a DataLoader's batch).

    ``sql`` takes ``$1`` the organization, ``$2`` the parent IDs, then ``filters``, OFFSET and LIMIT; its
    rows carry ``parent`` and ``count(*) OVER (PARTITION BY parent) AS total``.
    """
    ids = list(parent_ids)
    pages: dict[UUID, list[T]] = {i: [] for i in ids}
    totals: dict[UUID, int] = {i: 0 for i in ids}
    for r in await conn.fetch(sql, org_id, ids, *filters, offset, limit):
        pages[r[parent]].append(row(r))
        totals[r[parent]] = r["total"]
    missing = [i for i in ids if not pages[i]]
    if offset > 0 and missing:
        # A page past a parent's end carries no total: count those parents once more from the start.
        for r in await conn.fetch(sql, org_id, missing, *filters, 0, 1):
            totals[r[parent]] = r["total"]
    return pages, totals
