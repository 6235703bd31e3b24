"""Suggestions (auto-tag, pre-label, active learning) and the groups of auto-grouping: named SQL, always
filtered by organization."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from storage.rows import Row

# A job's suggestions arrive in one statement at its end (with the task's completion, in one transaction), so a
# job cancelled or failed mid-run has written none. The entity is the one the model named when it is in the
# identifier's library, else the library's entity of the label's name, else none (accepting creates it). An entity
# a person marked the identifier not to be (identifier_negatives) is never suggested for it.
INSERT_MANY = """INSERT INTO identifier_suggestions (id, org_id, job_id, identifier_id, library_id, entity_id, label,
                                    confidence, model_version)
SELECT v.id, $1, $2, i.id, i.library_id, t.entity_id, v.label, v.confidence, $3
FROM unnest($4::uuid[], $5::uuid[], $6::uuid[], $7::text[], $8::float8[]) AS v(id, identifier_id, entity_id, label, confidence)
JOIN entity_identifiers i ON i.id = v.identifier_id AND i.org_id = $1
LEFT JOIN entities named ON named.id = v.entity_id AND named.library_id = i.library_id
CROSS JOIN LATERAL (SELECT coalesce(
    named.id, (SELECT e.id FROM entities e WHERE e.library_id = i.library_id AND e.name = v.label)) AS entity_id) t
WHERE NOT EXISTS (SELECT 1 FROM identifier_negatives n WHERE n.identifier_id = i.id AND n.entity_id = t.entity_id)
RETURNING identifier_id"""

PAGE = """-- suggestions by job, identifier, library and status; the most confident first
SELECT s.*, count(*) OVER () AS total FROM identifier_suggestions s
WHERE s.org_id = $1 AND ($2::uuid IS NULL OR s.job_id = $2) AND ($3::uuid IS NULL OR s.identifier_id = $3)
  AND ($4::uuid IS NULL OR s.library_id = $4) AND ($5::text IS NULL OR s.status = $5)
ORDER BY s.confidence DESC, s.id
OFFSET $6 LIMIT $7"""

FOR_IDENTIFIERS = """SELECT * FROM identifier_suggestions WHERE org_id = $1 AND identifier_id = ANY($2::uuid[])
ORDER BY identifier_id, confidence DESC, id"""

BY_IDS = "SELECT * FROM identifier_suggestions WHERE org_id = $1 AND id = ANY($2::uuid[])"

LOCK_BY_IDS = """SELECT * FROM identifier_suggestions WHERE org_id = $1 AND id = ANY($2::uuid[]) ORDER BY id FOR UPDATE"""

SET_STATUS = """UPDATE identifier_suggestions SET status = $3, decided_by = $4, modified_at = now()
WHERE org_id = $1 AND id = ANY($2::uuid[]) RETURNING *"""

SET_ENTITY = "UPDATE identifier_suggestions SET entity_id = $3 WHERE org_id = $1 AND id = $2"

SUPERSEDE = """-- an identifier decided by one accepted suggestion: its other pending ones are rejected with it
UPDATE identifier_suggestions SET status = 'rejected', decided_by = $3, modified_at = now()
WHERE org_id = $1 AND identifier_id = ANY($2::uuid[]) AND status = 'pending'"""

ENTITY_BY_NAME = "SELECT id FROM entities WHERE org_id = $1 AND library_id = $2 AND name = $3"

# -- groups --

INSERT_GROUPS = """INSERT INTO identifier_groups (id, org_id, job_id, library_id, position, representative_id)
SELECT g.id, $1, $2, $3, g.position, g.representative FROM unnest($4::uuid[], $5::int[], $6::uuid[]) AS g(id, position, representative)"""

INSERT_MEMBERS = """INSERT INTO identifier_group_members (group_id, identifier_id, distance)
SELECT m.group_id, m.identifier_id, m.distance FROM unnest($1::uuid[], $2::uuid[], $3::float8[]) AS m(group_id, identifier_id, distance)"""

GROUP_PAGE = """-- a job's groups with their live size (members deleted since are gone)
SELECT g.*, (SELECT count(*) FROM identifier_group_members m WHERE m.group_id = g.id) AS size,
       count(*) OVER () AS total
FROM identifier_groups g WHERE g.org_id = $1 AND g.job_id = $2
ORDER BY g.position OFFSET $3 LIMIT $4"""

GROUP_BY_ID = """SELECT g.*, (SELECT count(*) FROM identifier_group_members m WHERE m.group_id = g.id) AS size
FROM identifier_groups g WHERE g.org_id = $1 AND g.id = $2"""

GROUP_MEMBERS_PAGE = """-- a group's members, nearest the centre first
SELECT i.*, count(*) OVER () AS total FROM identifier_group_members m
JOIN entity_identifiers i ON i.id = m.identifier_id
WHERE m.group_id = $1 AND i.org_id = $2
ORDER BY m.distance, i.id OFFSET $3 LIMIT $4"""

UNASSIGNED_MEMBERS = """-- the members still unassigned, locked while they are moved; with an entity ($3), not those a person marked
-- not that entity (they stay unassigned)
SELECT i.id FROM identifier_group_members m JOIN entity_identifiers i ON i.id = m.identifier_id
WHERE m.group_id = $1 AND i.org_id = $2 AND i.entity_id IS NULL
  AND NOT EXISTS (SELECT 1 FROM identifier_negatives n WHERE n.identifier_id = i.id AND n.entity_id = $3::uuid)
ORDER BY i.id FOR UPDATE OF i"""


@dataclass(frozen=True, slots=True)
class Suggestion(Row):
    id: UUID
    org_id: UUID
    job_id: UUID
    identifier_id: UUID
    library_id: UUID
    entity_id: UUID | None
    label: str
    confidence: float
    model_version: str | None
    status: str
    decided_by: str | None
    created_at: datetime
    modified_at: datetime


@dataclass(frozen=True, slots=True)
class Group(Row):
    id: UUID
    org_id: UUID
    job_id: UUID
    library_id: UUID
    position: int
    representative_id: UUID | None
    size: int
    created_at: datetime


REPLACE_PENDING = """-- the pending suggestions other jobs made for these identifiers: a newer one takes their place
DELETE FROM identifier_suggestions
WHERE org_id = $1 AND identifier_id = ANY($3::uuid[]) AND status = 'pending' AND job_id <> $2"""


async def replace_pending(conn: asyncpg.Connection, org_id: UUID, job_id: UUID, identifier_ids: list[UUID]) -> None:
    """Each identifier keeps at most one pending suggestion: the newest job's. Without this, every pre-label or
    active-learning run over the same identifiers would stack another copy for a person to review."""
    if identifier_ids:
        await conn.execute(REPLACE_PENDING, org_id, job_id, identifier_ids)


async def insert_many(
    conn: asyncpg.Connection, org_id: UUID, job_id: UUID, model_version: str | None, rows: list[tuple[UUID, UUID, UUID | None, str, float]]
) -> list[UUID]:
    """rows: (suggestion id, identifier id, entity id or None, label, confidence); the identifier ids written
    (an identifier deleted meanwhile is skipped, and so is an entity the identifier is marked not to be)."""
    if not rows:
        return []
    columns = list(zip(*rows, strict=True))
    records = await conn.fetch(INSERT_MANY, org_id, job_id, model_version, *[list(c) for c in columns])
    return [r["identifier_id"] for r in records]


async def page(
    conn: asyncpg.Connection, org_id: UUID, *, job_id: UUID | None, identifier_id: UUID | None, library_id: UUID | None,
    status: str | None, offset: int, limit: int,
) -> tuple[list[Suggestion], int]:
    args = (org_id, job_id, identifier_id, library_id, status)
    records = await conn.fetch(PAGE, *args, offset, limit)
    if records:
        return [Suggestion.of(r) for r in records], records[0]["total"]
    again = await conn.fetch(PAGE, *args, 0, 1)
    return [], again[0]["total"] if again else 0


async def for_identifiers(conn: asyncpg.Connection, org_id: UUID, ids: list[UUID]) -> dict[UUID, list[Suggestion]]:
    found: dict[UUID, list[Suggestion]] = {i: [] for i in ids}
    for r in await conn.fetch(FOR_IDENTIFIERS, org_id, ids):
        found[r["identifier_id"]].append(Suggestion.of(r))
    return found


async def by_ids(conn: asyncpg.Connection, org_id: UUID, ids: list[UUID]) -> list[Suggestion]:
    return [Suggestion.of(r) for r in await conn.fetch(BY_IDS, org_id, ids)]


async def lock_by_ids(conn: asyncpg.Connection, org_id: UUID, ids: list[UUID]) -> list[Suggestion]:
    return [Suggestion.of(r) for r in await conn.fetch(LOCK_BY_IDS, org_id, ids)]


async def set_status(conn: asyncpg.Connection, org_id: UUID, ids: list[UUID], status: str, actor: str | None) -> list[Suggestion]:
    return [Suggestion.of(r) for r in await conn.fetch(SET_STATUS, org_id, ids, status, actor)]


async def set_entity(conn: asyncpg.Connection, org_id: UUID, suggestion_id: UUID, entity_id: UUID) -> None:
    await conn.execute(SET_ENTITY, org_id, suggestion_id, entity_id)


async def supersede(conn: asyncpg.Connection, org_id: UUID, identifier_ids: list[UUID], actor: str | None) -> None:
    await conn.execute(SUPERSEDE, org_id, identifier_ids, actor)


async def entity_by_name(conn: asyncpg.Connection, org_id: UUID, library_id: UUID, name: str) -> UUID | None:
    return await conn.fetchval(ENTITY_BY_NAME, org_id, library_id, name)


async def insert_groups(
    conn: asyncpg.Connection, org_id: UUID, job_id: UUID, library_id: UUID,
    groups: list[tuple[UUID, int, UUID | None]], members: list[tuple[UUID, UUID, float]],
) -> None:
    """groups: (id, position, representative id); members: (group id, identifier id, distance to the centre)."""
    if not groups:
        return
    g = list(zip(*groups, strict=True))
    await conn.execute(INSERT_GROUPS, org_id, job_id, library_id, list(g[0]), list(g[1]), list(g[2]))
    if members:
        m = list(zip(*members, strict=True))
        await conn.execute(INSERT_MEMBERS, list(m[0]), list(m[1]), list(m[2]))


async def group_page(conn: asyncpg.Connection, org_id: UUID, job_id: UUID, offset: int, limit: int) -> tuple[list[Group], int]:
    records = await conn.fetch(GROUP_PAGE, org_id, job_id, offset, limit)
    if records:
        return [Group.of(r) for r in records], records[0]["total"]
    again = await conn.fetch(GROUP_PAGE, org_id, job_id, 0, 1)
    return [], again[0]["total"] if again else 0


async def group_by_id(conn: asyncpg.Connection, org_id: UUID, group_id: UUID) -> Group | None:
    return Group.maybe(await conn.fetchrow(GROUP_BY_ID, org_id, group_id))


async def group_members(conn: asyncpg.Connection, org_id: UUID, group_id: UUID, offset: int, limit: int) -> tuple[list[asyncpg.Record], int]:
    records = await conn.fetch(GROUP_MEMBERS_PAGE, group_id, org_id, offset, limit)
    if records:
        return list(records), records[0]["total"]
    again = await conn.fetch(GROUP_MEMBERS_PAGE, group_id, org_id, 0, 1)
    return [], again[0]["total"] if again else 0


async def unassigned_members(conn: asyncpg.Connection, org_id: UUID, group_id: UUID, entity_id: UUID | None = None) -> list[UUID]:
    return [r["id"] for r in await conn.fetch(UNASSIGNED_MEMBERS, group_id, org_id, entity_id)]
