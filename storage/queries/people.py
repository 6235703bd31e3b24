"""People change: merging entities, moving identifiers between them, and the negatives ("identifier X is not
entity E") a person records. Named SQL, always filtered by organization."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from storage.rows import Entity, Identifier, Row

LOCK_ENTITIES = """-- the entities of a merge, locked in id order (two merges over the same entities never deadlock)
SELECT * FROM entities WHERE org_id = $1 AND id = ANY($2::uuid[]) ORDER BY id FOR UPDATE"""

LOCK_IDENTIFIERS_OF = """-- the identifiers of some entities, in id order: the order every path that moves identifiers takes
SELECT id FROM entity_identifiers WHERE org_id = $1 AND entity_id = ANY($2::uuid[]) ORDER BY id FOR UPDATE"""

CONFLICTS = """-- negatives that a merge would contradict: an identifier of one of the entities marked not another of them
SELECT n.identifier_id, n.entity_id, i.entity_id AS holder FROM identifier_negatives n
JOIN entity_identifiers i ON i.id = n.identifier_id
WHERE n.org_id = $1 AND n.entity_id = ANY($2::uuid[]) AND i.entity_id = ANY($2::uuid[])
ORDER BY n.identifier_id, n.entity_id LIMIT 1"""

MOVE_IDENTIFIERS = """-- a merge: every identifier of the sources into the target, as a person placed them
UPDATE entity_identifiers SET entity_id = $3, modified_at = now()
WHERE org_id = $1 AND entity_id = ANY($2::uuid[]) RETURNING id"""

MOVE_SUGGESTIONS = """-- suggestions (pending or decided) that named a source name the target
UPDATE identifier_suggestions SET entity_id = $3, modified_at = now()
WHERE org_id = $1 AND entity_id = ANY($2::uuid[])"""

MOVE_NEGATIVES = """-- "X is not a source" becomes "X is not the target" (one negative per pair)
INSERT INTO identifier_negatives (org_id, identifier_id, entity_id, library_id, created_by, created_at)
SELECT org_id, identifier_id, $3, library_id, created_by, created_at FROM identifier_negatives
WHERE org_id = $1 AND entity_id = ANY($2::uuid[]) ORDER BY created_at
ON CONFLICT (identifier_id, entity_id) DO NOTHING"""

RECORD_MERGES = """-- what each source was, kept under the target; the sources' own records (earlier merges) move with them
WITH moved AS (
    UPDATE entity_merges SET entity_id = $3 WHERE org_id = $1 AND entity_id = ANY($2::uuid[])
)
INSERT INTO entity_merges (id, org_id, entity_id, merged_entity_id, name, description, jsondata, identifiers_moved,
                           position, merged_by)
SELECT v.id, $1, $3, e.id, e.name, e.description, e.jsondata, v.moved, v.position, $4
FROM unnest($2::uuid[], $5::uuid[], $6::int[]) WITH ORDINALITY AS v(entity_id, id, moved, position)
JOIN entities e ON e.id = v.entity_id"""

COUNT_BY_ENTITY = """SELECT entity_id, count(*) AS n FROM entity_identifiers
WHERE org_id = $1 AND entity_id = ANY($2::uuid[]) GROUP BY entity_id"""

KEEP_PROFILE = """-- a target with no profile image takes the first source's that has one
UPDATE entities t SET profile_identifier_id = s.profile_identifier_id, profile_image_url = s.profile_image_url
FROM (SELECT profile_identifier_id, profile_image_url FROM entities
      WHERE org_id = $1 AND id = ANY($2::uuid[]) AND (profile_identifier_id IS NOT NULL OR profile_image_url IS NOT NULL)
      ORDER BY array_position($2::uuid[], id) LIMIT 1) s
WHERE t.org_id = $1 AND t.id = $3 AND t.profile_identifier_id IS NULL AND t.profile_image_url IS NULL"""

DELETE_ENTITIES = "DELETE FROM entities WHERE org_id = $1 AND id = ANY($2::uuid[])"

TOUCH = "UPDATE entities SET modified_by = $3, modified_at = now() WHERE org_id = $1 AND id = $2 RETURNING *"

LOCK_IDENTIFIER = "SELECT * FROM entity_identifiers WHERE org_id = $1 AND id = $2 FOR UPDATE"

PLACE = """-- one identifier placed by a person: into an entity (human), or back among the unassigned (machine while a
-- pending suggestion is left for it, else raw)
UPDATE entity_identifiers i SET entity_id = $3, annotation_type = CASE
        WHEN $3::uuid IS NOT NULL THEN 'human'
        WHEN EXISTS (SELECT 1 FROM identifier_suggestions s WHERE s.identifier_id = i.id AND s.status = 'pending') THEN 'machine'
        ELSE 'raw' END,
    hard = false, hard_coefficient = NULL, modified_at = now()
WHERE i.org_id = $1 AND i.id = $2 RETURNING *"""

DROP_PROFILE = """-- an entity whose profile image was an identifier that left it shows none
UPDATE entities SET profile_identifier_id = NULL, modified_at = now()
WHERE org_id = $1 AND profile_identifier_id = $2 AND id IS DISTINCT FROM $3"""

INSERT_NEGATIVE = """INSERT INTO identifier_negatives (org_id, identifier_id, entity_id, library_id, created_by)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (identifier_id, entity_id) DO NOTHING"""

DELETE_NEGATIVE = "DELETE FROM identifier_negatives WHERE org_id = $1 AND identifier_id = $2 AND entity_id = $3"

REJECT_PENDING = """-- the pending suggestions of that entity for that identifier, rejected by the person who said no
UPDATE identifier_suggestions SET status = 'rejected', decided_by = $4, modified_at = now()
WHERE org_id = $1 AND identifier_id = $2 AND entity_id = $3 AND status = 'pending' RETURNING id"""

NOT_ENTITIES = """SELECT e.* FROM identifier_negatives n JOIN entities e ON e.id = n.entity_id
WHERE n.org_id = $1 AND n.identifier_id = $2 ORDER BY n.created_at, e.id"""

REJECTED_IDENTIFIERS = """SELECT i.*, count(*) OVER () AS total FROM identifier_negatives n
JOIN entity_identifiers i ON i.id = n.identifier_id
WHERE n.org_id = $1 AND n.entity_id = $2 ORDER BY n.created_at, i.id OFFSET $3 LIMIT $4"""

MERGES_OF = "SELECT * FROM entity_merges WHERE org_id = $1 AND entity_id = $2 ORDER BY merged_at, position"

CANNOT_LINK = """-- pairs of the given identifiers that may not share a group: the first is marked not the entity the second
-- belongs to (cannot-link)
SELECT a.id AS first, b.id AS second FROM identifier_negatives n
JOIN entity_identifiers a ON a.id = n.identifier_id
JOIN entity_identifiers b ON b.entity_id = n.entity_id
WHERE n.org_id = $1 AND a.id = ANY($2::uuid[]) AND b.id = ANY($2::uuid[])"""

NEGATIVE_PAIRS = """-- which of (identifier, entity) pairs are negatives
SELECT v.identifier_id, v.entity_id FROM unnest($2::uuid[], $3::uuid[]) AS v(identifier_id, entity_id)
JOIN identifier_negatives n ON n.identifier_id = v.identifier_id AND n.entity_id = v.entity_id AND n.org_id = $1"""


@dataclass(frozen=True, slots=True)
class Merge(Row):
    id: UUID
    org_id: UUID
    entity_id: UUID
    merged_entity_id: UUID
    name: str
    description: str | None
    jsondata: Any
    identifiers_moved: int
    position: int
    merged_by: str | None
    merged_at: datetime


async def lock_entities(conn: asyncpg.Connection, org_id: UUID, ids: list[UUID]) -> list[Entity]:
    return [Entity.of(r) for r in await conn.fetch(LOCK_ENTITIES, org_id, ids)]


async def lock_identifiers_of(conn: asyncpg.Connection, org_id: UUID, entity_ids: list[UUID]) -> None:
    await conn.execute(LOCK_IDENTIFIERS_OF, org_id, entity_ids)


async def conflict(conn: asyncpg.Connection, org_id: UUID, entity_ids: list[UUID]) -> asyncpg.Record | None:
    return await conn.fetchrow(CONFLICTS, org_id, entity_ids)


async def identifier_counts(conn: asyncpg.Connection, org_id: UUID, entity_ids: list[UUID]) -> dict[UUID, int]:
    return {r["entity_id"]: r["n"] for r in await conn.fetch(COUNT_BY_ENTITY, org_id, entity_ids)}


async def merge(
    conn: asyncpg.Connection, org_id: UUID, sources: list[UUID], target: UUID, counts: dict[UUID, int],
    record_ids: list[UUID], actor: str | None,
) -> tuple[Entity, int]:
    """Move everything of the sources into the target, record them, delete them; the target and how many
    identifiers moved. Run inside the caller's transaction, with the entities and identifiers locked."""
    moved = await conn.fetch(MOVE_IDENTIFIERS, org_id, sources, target)
    await conn.execute(MOVE_SUGGESTIONS, org_id, sources, target)
    await conn.execute(MOVE_NEGATIVES, org_id, sources, target)
    await conn.execute(RECORD_MERGES, org_id, sources, target, actor, record_ids, [counts.get(s, 0) for s in sources])
    await conn.execute(KEEP_PROFILE, org_id, sources, target)
    await conn.execute(DELETE_ENTITIES, org_id, sources)
    row = await conn.fetchrow(TOUCH, org_id, target, actor)
    return Entity.of(row), len(moved)


async def lock_identifier(conn: asyncpg.Connection, org_id: UUID, identifier_id: UUID) -> Identifier | None:
    return Identifier.maybe(await conn.fetchrow(LOCK_IDENTIFIER, org_id, identifier_id))


async def place(conn: asyncpg.Connection, org_id: UUID, identifier_id: UUID, entity_id: UUID | None) -> Identifier:
    """Put the identifier into ``entity_id`` (None: unassigned); the entity it left loses it as profile image."""
    row = Identifier.of(await conn.fetchrow(PLACE, org_id, identifier_id, entity_id))
    await conn.execute(DROP_PROFILE, org_id, identifier_id, entity_id)
    return row


async def insert_negative(
    conn: asyncpg.Connection, org_id: UUID, identifier_id: UUID, entity_id: UUID, library_id: UUID, actor: str | None
) -> None:
    await conn.execute(INSERT_NEGATIVE, org_id, identifier_id, entity_id, library_id, actor)


async def delete_negative(conn: asyncpg.Connection, org_id: UUID, identifier_id: UUID, entity_id: UUID) -> bool:
    return await conn.execute(DELETE_NEGATIVE, org_id, identifier_id, entity_id) != "DELETE 0"


async def reject_pending(
    conn: asyncpg.Connection, org_id: UUID, identifier_id: UUID, entity_id: UUID, actor: str | None
) -> list[UUID]:
    return [r["id"] for r in await conn.fetch(REJECT_PENDING, org_id, identifier_id, entity_id, actor)]


async def not_entities(conn: asyncpg.Connection, org_id: UUID, identifier_id: UUID) -> list[Entity]:
    return [Entity.of(r) for r in await conn.fetch(NOT_ENTITIES, org_id, identifier_id)]


async def rejected_identifiers(
    conn: asyncpg.Connection, org_id: UUID, entity_id: UUID, offset: int, limit: int
) -> tuple[list[Identifier], int]:
    records = await conn.fetch(REJECTED_IDENTIFIERS, org_id, entity_id, offset, limit)
    if records:
        return [Identifier.of(r) for r in records], records[0]["total"]
    again = await conn.fetch(REJECTED_IDENTIFIERS, org_id, entity_id, 0, 1)
    return [], again[0]["total"] if again else 0


async def merges_of(conn: asyncpg.Connection, org_id: UUID, entity_id: UUID) -> list[Merge]:
    return [Merge.of(r) for r in await conn.fetch(MERGES_OF, org_id, entity_id)]


async def cannot_link(conn: asyncpg.Connection, org_id: UUID, identifier_ids: list[UUID]) -> list[tuple[UUID, UUID]]:
    """Pairs among ``identifier_ids`` that may not share a group: the first is marked not the entity the second
    belongs to."""
    return [(r["first"], r["second"]) for r in await conn.fetch(CANNOT_LINK, org_id, identifier_ids)]


async def negative_pairs(
    conn: asyncpg.Connection, org_id: UUID, pairs: list[tuple[UUID, UUID]]
) -> set[tuple[UUID, UUID]]:
    """Which (identifier, entity) pairs are negatives."""
    if not pairs:
        return set()
    ids, entities = (list(c) for c in zip(*pairs, strict=True))
    return {(r["identifier_id"], r["entity_id"]) for r in await conn.fetch(NEGATIVE_PAIRS, org_id, ids, entities)}
