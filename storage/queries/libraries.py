"""Libraries: named SQL, always filtered by organization."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from storage.queries.paging import fetch_page
from storage.rows import Library

INSERT = """INSERT INTO libraries (id, org_id, name, description, library_type_id, cover_image_url, created_by, modified_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING *"""

BY_ID = "SELECT * FROM libraries WHERE org_id = $1 AND id = $2"
BY_ID_FOR_UPDATE = "SELECT * FROM libraries WHERE org_id = $1 AND id = $2 FOR UPDATE"
BY_IDS = "SELECT * FROM libraries WHERE org_id = $1 AND id = ANY($2::uuid[])"

# Column names are chosen from a fixed map, never from user text.
ORDER_COLUMNS = {
    "id": "id",
    "name": "name",
    "createdDateTime": "created_at",
    "modifiedDateTime": "modified_at",
    "version": "version",
    "lastTrainedDateTime": "last_trained_at",
}

LIST = """-- one page of an organization's libraries; name is a case-insensitive substring match (strpos: % and _ are plain text)
SELECT *, count(*) OVER () AS total FROM libraries l
WHERE org_id = $1
  AND ($2::uuid IS NULL OR id = $2)
  AND ($3::text IS NULL OR strpos(lower(name), lower($3)) > 0)
  AND ($4::text IS NULL OR library_type_id = $4)
  AND ($5::text[] IS NULL OR EXISTS (
        SELECT 1 FROM library_types t WHERE t.id = l.library_type_id AND t.identifier_type_ids && $5))
ORDER BY {order} {direction} NULLS LAST, id {direction}
OFFSET $6 LIMIT $7"""

UPDATE = """UPDATE libraries SET
    name = coalesce($3, name),
    description = CASE WHEN $4 THEN $5 ELSE description END,
    cover_image_url = CASE WHEN $6 THEN $7 ELSE cover_image_url END,
    library_type_id = coalesce($8, library_type_id),
    modified_by = $9,
    modified_at = now()
WHERE org_id = $1 AND id = $2 RETURNING *"""

PUBLISH = """-- a new version: entities become published
UPDATE libraries SET version = version + 1, modified_at = now(), modified_by = coalesce($3, modified_by)
WHERE org_id = $1 AND id = $2 RETURNING *"""

PUBLISH_ENTITIES = "UPDATE entities SET is_published = true, modified_at = now() WHERE library_id = $1 AND NOT is_published"

MARK_TRAINED = """UPDATE libraries SET last_trained_version = greatest(coalesce(last_trained_version, 0), $3),
    last_trained_at = now() WHERE org_id = $1 AND id = $2"""

DELETE = "DELETE FROM libraries WHERE org_id = $1 AND id = $2 RETURNING id"
IDENTIFIER_TYPES_HELD = """-- the identifier types a library has identifiers of: the engines publishing trains
SELECT DISTINCT identifier_type_id FROM entity_identifiers WHERE org_id = $1 AND library_id = $2"""

SUMMARIES = """-- entity counts per library for Library.summary
SELECT l.id, l.last_trained_version, l.last_trained_at,
       count(e.id) AS entity_count,
       count(e.id) FILTER (WHERE NOT e.is_published) AS unpublished_entity_count
FROM libraries l LEFT JOIN entities e ON e.library_id = l.id
WHERE l.org_id = $1 AND l.id = ANY($2::uuid[])
GROUP BY l.id"""

STORAGE_KEYS = """-- every S3 object a library owns: identifiers and model artifacts
SELECT storage_key FROM entity_identifiers WHERE library_id = $1 AND storage_key IS NOT NULL
UNION ALL
SELECT storage_key FROM library_engine_models WHERE library_id = $1 AND storage_key IS NOT NULL"""


async def insert(conn: asyncpg.Connection, **v: Any) -> Library:
    return Library.of(
        await conn.fetchrow(
            INSERT, v["id"], v["org_id"], v["name"], v["description"], v["library_type_id"], v["cover_image_url"],
            v.get("actor"),
        )
    )


async def by_id(conn: asyncpg.Connection, org_id: UUID, library_id: UUID, *, for_update: bool = False) -> Library | None:
    return Library.maybe(await conn.fetchrow(BY_ID_FOR_UPDATE if for_update else BY_ID, org_id, library_id))


async def by_ids(conn: asyncpg.Connection, org_id: UUID, ids: list[UUID]) -> list[Library]:
    return [Library.of(r) for r in await conn.fetch(BY_IDS, org_id, ids)]


async def page(
    conn: asyncpg.Connection,
    org_id: UUID,
    *,
    library_id: UUID | None,
    name: str | None,
    type_id: str | None,
    identifier_type_ids: list[str] | None,
    order_by: str,
    descending: bool,
    offset: int,
    limit: int,
) -> tuple[list[Library], int]:
    sql = LIST.format(order=ORDER_COLUMNS[order_by], direction="DESC" if descending else "ASC")
    args = (org_id, library_id, name, type_id, identifier_type_ids)
    records, total = await fetch_page(conn, sql, args, offset, limit)
    return [Library.of(r) for r in records], total


async def update(conn: asyncpg.Connection, org_id: UUID, library_id: UUID, changes: dict[str, Any]) -> Library | None:
    record = await conn.fetchrow(
        UPDATE,
        org_id,
        library_id,
        changes.get("name"),
        "description" in changes,
        changes.get("description"),
        "cover_image_url" in changes,
        changes.get("cover_image_url"),
        changes.get("library_type_id"),
        changes.get("actor"),
    )
    return Library.maybe(record)


async def publish(conn: asyncpg.Connection, org_id: UUID, library_id: UUID, actor: str | None = None) -> Library | None:
    record = await conn.fetchrow(PUBLISH, org_id, library_id, actor)
    if record is not None:
        await conn.execute(PUBLISH_ENTITIES, library_id)
    return Library.maybe(record)


async def mark_trained(conn: asyncpg.Connection, org_id: UUID, library_id: UUID, version: int) -> None:
    await conn.execute(MARK_TRAINED, org_id, library_id, version)


async def identifier_types_held(conn: asyncpg.Connection, org_id: UUID, library_id: UUID) -> set[str]:
    return {r["identifier_type_id"] for r in await conn.fetch(IDENTIFIER_TYPES_HELD, org_id, library_id)}


async def delete(conn: asyncpg.Connection, org_id: UUID, library_id: UUID) -> bool:
    return await conn.fetchval(DELETE, org_id, library_id) is not None


async def storage_keys(conn: asyncpg.Connection, library_id: UUID) -> list[str]:
    return [r["storage_key"] for r in await conn.fetch(STORAGE_KEYS, library_id)]


async def summaries(conn: asyncpg.Connection, org_id: UUID, ids: list[UUID]) -> dict[UUID, asyncpg.Record]:
    return {r["id"]: r for r in await conn.fetch(SUMMARIES, org_id, ids)}
