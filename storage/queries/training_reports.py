"""What a training report and promotion read beside a model's jsondata: the library's entities a model does not
know, and which of a model's entities are still in the library."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

ENTITIES_NOT_IN_MODEL = """-- entities the library held by $4 that the model does not know ($5: its entity ids), each with the
-- identifiers of the engine's types ($6) it held by then; the whole count rides on every row
SELECT e.id, e.name,
       count(i.id) FILTER (WHERE i.identifier_type_id = ANY($6::text[])) AS readable,
       count(*) OVER () AS total
FROM entities e LEFT JOIN entity_identifiers i ON i.entity_id = e.id AND i.created_at <= $4
WHERE e.org_id = $1 AND e.library_id = $2 AND e.created_at <= $4 AND NOT (e.id = ANY($5::uuid[]))
GROUP BY e.id, e.name
ORDER BY e.name, e.id LIMIT $3"""

STILL_IN_LIBRARY = """-- which of these entities the library still holds
SELECT id FROM entities WHERE org_id = $1 AND library_id = $2 AND id = ANY($3::uuid[])"""


async def entities_not_in_model(
    conn: asyncpg.Connection, org_id: UUID, library_id: UUID, limit: int, read_at: datetime,
    known: list[UUID], type_ids: list[str],
) -> tuple[list[asyncpg.Record], int]:
    """Up to ``limit`` entities (id, name, readable) and how many there are in all."""
    rows = list(await conn.fetch(ENTITIES_NOT_IN_MODEL, org_id, library_id, limit, read_at, known, type_ids))
    return rows, int(rows[0]["total"]) if rows else 0


async def still_in_library(conn: asyncpg.Connection, org_id: UUID, library_id: UUID, entity_ids: list[UUID]) -> set[UUID]:
    return {r["id"] for r in await conn.fetch(STILL_IN_LIBRARY, org_id, library_id, entity_ids)}
