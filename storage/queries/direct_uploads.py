"""Direct uploads: the keys issued with presigned PUT URLs, named SQL, always filtered by organization."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import asyncpg

from storage.queries import identifiers as identifier_q

ISSUE = """-- the keys of one getSignedWritableUrl(s) call, in one round trip
INSERT INTO direct_uploads (storage_key, org_id, expires_at, register_until, max_bytes, file_name)
SELECT k, $2, $3, $4, $5, $6 FROM unnest($1::text[]) AS k"""

_UPLOAD = """LEFT JOIN LATERAL (
    -- the issued key $5 of the organization, while it may still become an identifier, and whether it is one
    SELECT d.max_bytes, d.file_name,
           EXISTS (SELECT 1 FROM entity_identifiers i
                   WHERE i.storage_key = d.storage_key AND i.storage_key LIKE 'uploads/%') AS registered
    FROM direct_uploads d WHERE d.org_id = $1 AND d.storage_key = $5 AND d.register_until > now()
) d ON true"""

# Where the identifier goes (identifiers.TARGET / TARGET_LIBRARY) and the issued key, in one round trip.
TARGET = f"SELECT t.*, d.max_bytes AS upload_max_bytes, d.file_name AS upload_file_name, d.registered AS upload_registered FROM ({identifier_q.TARGET}) t {_UPLOAD}"
TARGET_LIBRARY = f"SELECT t.*, d.max_bytes AS upload_max_bytes, d.file_name AS upload_file_name, d.registered AS upload_registered FROM ({identifier_q.TARGET_LIBRARY}) t {_UPLOAD}"

EXPIRED = """-- records whose registration window closed $1 seconds ago or more, taken by one process (others skip them);
-- each says whether an identifier holds its object (then only the record goes)
WITH gone AS (
    DELETE FROM direct_uploads WHERE storage_key IN (
        SELECT storage_key FROM direct_uploads WHERE register_until <= now() - make_interval(secs => $1)
        ORDER BY register_until LIMIT $2 FOR UPDATE SKIP LOCKED
    ) RETURNING storage_key
)
SELECT g.storage_key, EXISTS (SELECT 1 FROM entity_identifiers i
                              WHERE i.storage_key = g.storage_key AND i.storage_key LIKE 'uploads/%') AS registered
FROM gone g"""
# (The LIKE repeats the predicate of the unique index on direct-upload keys, so that the index answers: without it
# PostgreSQL cannot use a partial index and reads every identifier.)

FORGET = "DELETE FROM direct_uploads WHERE org_id = $1 AND storage_key = $2"


async def issue(
    conn: asyncpg.Connection, org_id: UUID, keys: Sequence[str], expires_at: datetime, register_until: datetime,
    max_bytes: int, file_name: str | None,
) -> None:
    await conn.execute(ISSUE, list(keys), org_id, expires_at, register_until, max_bytes, file_name)


async def target(
    conn: asyncpg.Connection, org_id: UUID, owner_id: UUID, type_id: str, default_embedder: str | None, key: str,
    *, library: bool,
) -> asyncpg.Record | None:
    """The checks of a new identifier (its entity ``owner_id``, or its library when ``library``) with the key's
    record: upload_max_bytes is NULL when the key was not issued to the organization or its window closed."""
    return await conn.fetchrow(TARGET_LIBRARY if library else TARGET, org_id, owner_id, type_id, default_embedder, key)


async def take_expired(conn: asyncpg.Connection, margin_seconds: float, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(EXPIRED, float(margin_seconds), limit)


async def forget(conn: asyncpg.Connection, org_id: UUID, key: str) -> None:
    await conn.execute(FORGET, org_id, key)
