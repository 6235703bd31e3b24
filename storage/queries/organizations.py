"""Organizations and the token that calls (`me`): read-only lookups."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from storage.rows import Organization

BY_IDS = "SELECT id, name, created_at FROM organizations WHERE id = ANY($1::uuid[])"

CALLER = """-- the calling token and its organization (never the hash)
SELECT t.id, t.scope, t.engine_id, t.task_id, t.label, t.created_at, t.expires_at, o.id AS org_id
FROM api_tokens t JOIN organizations o ON o.id = t.org_id
WHERE t.id = $1 AND t.org_id = $2"""


async def by_ids(conn: asyncpg.Connection, ids: list[UUID]) -> list[Organization]:
    return [Organization.of(r) for r in await conn.fetch(BY_IDS, ids)]


async def caller(conn: asyncpg.Connection, token_id: UUID, org_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(CALLER, token_id, org_id)
