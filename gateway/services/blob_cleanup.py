"""Deleting S3 objects whose rows are gone, safely across crashes.

Rows are deleted in a transaction that also records their objects in ``blob_deletions``; after the
commit the objects are deleted at once, and any that were not (S3 down, process killed) are deleted
later by ``sweep`` which workers run periodically. A row therefore never points at a missing object.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import asyncpg

from storage.blobs import BlobError
from storage.queries import blob_deletions as q

log = logging.getLogger(__name__)

# An object being uploaded is recorded here first with this delay, so a crash between the upload and the
# row's commit cannot leave it behind; the commit cancels the record.
UPLOAD_GRACE_SECONDS = 3600


async def schedule(conn: asyncpg.Connection, keys: Sequence[str], delay_seconds: float = 0) -> None:
    if keys:
        await q.enqueue(conn, keys, delay_seconds)


async def keep(conn: asyncpg.Connection, key: str) -> None:
    """The row that owns ``key`` is being committed in this transaction: do not delete it."""
    await q.cancel(conn, key)


async def delete_now(res, keys: Sequence[str]) -> None:  # res: Resources (not imported: avoids a cycle)
    if not keys:
        return
    try:
        await res.blobs.delete(keys)
    except BlobError as exc:
        log.warning("S3 delete deferred to the sweeper: %s", exc)
        return
    async with res.pool.acquire() as conn:
        await q.done(conn, list(keys))


async def sweep(res, limit: int = 500) -> int:
    """Delete objects whose deletion is due. Returns how many were deleted."""
    async with res.pool.acquire() as conn, conn.transaction():
        keys = await q.due(conn, limit)
        if not keys:
            return 0
        await res.blobs.delete(keys)
        await q.done(conn, keys)
    return len(keys)
