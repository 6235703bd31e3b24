"""Entities: named SQL, always filtered by organization."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from storage.queries.paging import fetch_page, fetch_pages_by_parent
from storage.rows import Entity

INSERT = """INSERT INTO entities (id, org_id, library_id, name, description, jsondata, profile_image_url, is_published,
                      created_by, modified_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING *"""

BY_ID = "SELECT * FROM entities WHERE org_id = $1 AND id = $2"
BY_IDS = "SELECT * FROM entities WHERE org_id = $1 AND id = ANY($2::uuid[])"

ORDER_COLUMNS = {"id": "id", "name": "name", "createdDateTime": "created_at", "modifiedDateTime": "modified_at"}

LIST = """-- one page of entities of some libraries (or some ids), optionally only those with an identifier type;
-- name is a case-insensitive substring match (strpos: % and _ are plain text)
SELECT e.*, count(*) OVER () AS total FROM entities e
WHERE e.org_id = $1
  AND ($2::uuid[] IS NULL OR e.library_id = ANY($2))
  AND ($3::uuid[] IS NULL OR e.id = ANY($3))
  AND ($4::boolean IS NULL OR e.is_published = $4)
  AND ($5::text IS NULL OR strpos(lower(e.name), lower($5)) > 0)
  AND ($6::text IS NULL OR EXISTS (
        SELECT 1 FROM entity_identifiers i WHERE i.entity_id = e.id AND i.identifier_type_id = $6))
ORDER BY {order} {direction}, id {direction}
OFFSET $7 LIMIT $8"""

PAGES_FOR_LIBRARIES = """-- the same page of entities for many libraries at once (the DataLoader's one query)
SELECT * FROM (
    SELECT e.*, row_number() OVER w AS position, count(*) OVER (PARTITION BY e.library_id) AS total
    FROM entities e
    WHERE e.org_id = $1 AND e.library_id = ANY($2::uuid[])
      AND ($3::uuid[] IS NULL OR e.id = ANY($3))
      AND ($4::boolean IS NULL OR e.is_published = $4)
      AND ($5::text IS NULL OR strpos(lower(e.name), lower($5)) > 0)
      AND ($6::text IS NULL OR EXISTS (
            SELECT 1 FROM entity_identifiers i WHERE i.entity_id = e.id AND i.identifier_type_id = $6))
    WINDOW w AS (PARTITION BY e.library_id ORDER BY e.{order} {direction}, e.id {direction})
) ranked
WHERE position > $7 AND position <= $7 + $8
ORDER BY library_id, position"""

UPDATE = """UPDATE entities SET
    name = coalesce($3, name),
    description = CASE WHEN $4 THEN $5 ELSE description END,
    jsondata = CASE WHEN $6 THEN $7 ELSE jsondata END,
    profile_image_url = CASE WHEN $8 THEN $9 ELSE profile_image_url END,
    profile_identifier_id = CASE WHEN $8 THEN NULL ELSE profile_identifier_id END,
    is_published = coalesce($10, is_published),
    modified_by = $11,
    modified_at = now()
WHERE org_id = $1 AND id = $2 RETURNING *"""

SET_PROFILE_IDENTIFIER = """-- profileUpdateMode: always ($5), or ifNotSet (only while the entity has no profile image)
UPDATE entities SET profile_identifier_id = $3, profile_image_url = NULL, modified_by = $4, modified_at = now()
WHERE org_id = $1 AND id = $2 AND ($5 OR (profile_image_url IS NULL AND profile_identifier_id IS NULL))"""

JSONDATA_OF_LIBRARY = "SELECT id, name, jsondata FROM entities WHERE org_id = $1 AND library_id = $2 ORDER BY created_at, id"

DELETE = "DELETE FROM entities WHERE org_id = $1 AND id = $2 RETURNING id"

STORAGE_KEYS = "SELECT storage_key FROM entity_identifiers WHERE entity_id = $1 AND storage_key IS NOT NULL"

IDENTIFIER_COUNTS = """SELECT entity_id, identifier_type_id, count(*) AS n FROM entity_identifiers
WHERE org_id = $1 AND entity_id = ANY($2::uuid[]) GROUP BY entity_id, identifier_type_id"""


async def insert(conn: asyncpg.Connection, **v: Any) -> Entity:
    return Entity.of(
        await conn.fetchrow(
            INSERT,
            v["id"],
            v["org_id"],
            v["library_id"],
            v["name"],
            v["description"],
            v["jsondata"],
            v["profile_image_url"],
            v["is_published"],
            v.get("actor"),
        )
    )


async def set_profile_identifier(
    conn: asyncpg.Connection, org_id: UUID, entity_id: UUID, identifier_id: UUID, actor: str | None, *, always: bool
) -> None:
    await conn.execute(SET_PROFILE_IDENTIFIER, org_id, entity_id, identifier_id, actor, always)


async def jsondata_of_library(conn: asyncpg.Connection, org_id: UUID, library_id: UUID) -> list[asyncpg.Record]:
    return list(await conn.fetch(JSONDATA_OF_LIBRARY, org_id, library_id))


async def by_id(conn: asyncpg.Connection, org_id: UUID, entity_id: UUID) -> Entity | None:
    return Entity.maybe(await conn.fetchrow(BY_ID, org_id, entity_id))


async def by_ids(conn: asyncpg.Connection, org_id: UUID, ids: list[UUID]) -> list[Entity]:
    return [Entity.of(r) for r in await conn.fetch(BY_IDS, org_id, ids)]


async def page(
    conn: asyncpg.Connection,
    org_id: UUID,
    *,
    library_ids: list[UUID] | None,
    ids: list[UUID] | None,
    is_published: bool | None,
    name: str | None,
    identifier_type_id: str | None,
    order_by: str,
    descending: bool,
    offset: int,
    limit: int,
) -> tuple[list[Entity], int]:
    sql = LIST.format(order=ORDER_COLUMNS[order_by], direction="DESC" if descending else "ASC")
    args = (org_id, library_ids, ids, is_published, name, identifier_type_id)
    records, total = await fetch_page(conn, sql, args, offset, limit)
    return [Entity.of(r) for r in records], total


async def update(conn: asyncpg.Connection, org_id: UUID, entity_id: UUID, changes: dict[str, Any]) -> Entity | None:
    return Entity.maybe(
        await conn.fetchrow(
            UPDATE,
            org_id,
            entity_id,
            changes.get("name"),
            "description" in changes,
            changes.get("description"),
            "jsondata" in changes,
            changes.get("jsondata"),
            "profile_image_url" in changes,
            changes.get("profile_image_url"),
            changes.get("is_published"),
            changes.get("actor"),
        )
    )


async def delete(conn: asyncpg.Connection, org_id: UUID, entity_id: UUID) -> bool:
    return await conn.fetchval(DELETE, org_id, entity_id) is not None


async def storage_keys(conn: asyncpg.Connection, entity_id: UUID) -> list[str]:
    return [r["storage_key"] for r in await conn.fetch(STORAGE_KEYS, entity_id)]


async def identifier_counts(conn: asyncpg.Connection, org_id: UUID, ids: list[UUID]) -> dict[UUID, dict[str, int]]:
    counts: dict[UUID, dict[str, int]] = {i: {} for i in ids}
    for r in await conn.fetch(IDENTIFIER_COUNTS, org_id, ids):
        counts[r["entity_id"]][r["identifier_type_id"]] = r["n"]
    return counts


async def pages_for_libraries(
    conn: asyncpg.Connection,
    org_id: UUID,
    library_ids: list[UUID],
    *,
    ids: list[UUID] | None,
    is_published: bool | None,
    name: str | None,
    identifier_type_id: str | None,
    order_by: str,
    descending: bool,
    offset: int,
    limit: int,
) -> tuple[dict[UUID, list[Entity]], dict[UUID, int]]:
    sql = PAGES_FOR_LIBRARIES.format(order=ORDER_COLUMNS[order_by], direction="DESC" if descending else "ASC")
    filters = (ids, is_published, name, identifier_type_id)
    return await fetch_pages_by_parent(conn, sql, org_id, library_ids, filters, offset, limit, parent="library_id", row=Entity.of)
