"""Organizations and API tokens (hashes only)."""

from __future__ import annotations

from uuid import UUID, uuid4

import asyncpg

from storage.rows import ApiToken, ListedToken, Organization

ENSURE_ORG = """-- create the organization unless it exists; return it either way
INSERT INTO organizations (id, name) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
RETURNING id, name, created_at"""

ORG_BY_NAME = "SELECT id, name, created_at FROM organizations WHERE name = $1"

INSERT_TOKEN = """INSERT INTO api_tokens (id, org_id, token_hash, scope, engine_id, task_id, label, expires_at, lease_owner)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING id, org_id, scope, engine_id, task_id, lease_owner, expires_at, revoked_at"""

TOKEN_BY_HASH = """-- a live token: not revoked, not expired
SELECT id, org_id, scope, engine_id, task_id, lease_owner, expires_at, revoked_at FROM api_tokens
WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"""

TASK_FOR_TOKEN = "SELECT payload, status, lease_owner, job_id FROM tasks WHERE id = $1 AND org_id = $2"

LISTED_COLUMNS = "id, scope, engine_id, label, created_at, revoked_at"

INSERT_LISTED = f"""INSERT INTO api_tokens (id, org_id, token_hash, scope, engine_id, label)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING {LISTED_COLUMNS}"""

ORG_TOKENS = f"""-- the organization's own tokens, oldest first; task tokens (one per claim, short-lived) are not listed
SELECT {LISTED_COLUMNS}, count(*) OVER () AS total FROM api_tokens
WHERE org_id = $1 AND scope <> 'task'
ORDER BY created_at, id OFFSET $2 LIMIT $3"""

REVOKE = f"""-- revoking twice keeps the first revocation's time; another organization's or a task token's id matches nothing
UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())
WHERE id = $1 AND org_id = $2 AND scope <> 'task'
RETURNING {LISTED_COLUMNS}"""

REVOKE_TASK_TOKENS = "UPDATE api_tokens SET revoked_at = now() WHERE task_id = $1 AND revoked_at IS NULL"


async def ensure_org(conn: asyncpg.Connection, name: str) -> Organization:
    return Organization.of(await conn.fetchrow(ENSURE_ORG, uuid4(), name))


async def org_by_name(conn: asyncpg.Connection, name: str) -> Organization | None:
    return Organization.maybe(await conn.fetchrow(ORG_BY_NAME, name))


async def insert_token(
    conn: asyncpg.Connection,
    *,
    org_id: UUID,
    token_hash: bytes,
    scope: str,
    engine_id: str | None = None,
    task_id: UUID | None = None,
    label: str | None = None,
    expires_at=None,
    lease_owner: str | None = None,
) -> ApiToken:
    record = await conn.fetchrow(
        INSERT_TOKEN, uuid4(), org_id, token_hash, scope, engine_id, task_id, label, expires_at, lease_owner
    )
    return ApiToken.of(record)


async def token_by_hash(conn: asyncpg.Connection, token_hash: bytes) -> ApiToken | None:
    return ApiToken.maybe(await conn.fetchrow(TOKEN_BY_HASH, token_hash))


async def revoke_task_tokens(conn: asyncpg.Connection, task_id: UUID) -> None:
    await conn.execute(REVOKE_TASK_TOKENS, task_id)


async def task_for_token(conn: asyncpg.Connection, task_id: UUID, org_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(TASK_FOR_TOKEN, task_id, org_id)


async def insert_listed(
    conn: asyncpg.Connection, *, org_id: UUID, token_hash: bytes, scope: str, engine_id: str | None, label: str | None
) -> ListedToken:
    return ListedToken.of(await conn.fetchrow(INSERT_LISTED, uuid4(), org_id, token_hash, scope, engine_id, label))


async def org_tokens(conn: asyncpg.Connection, org_id: UUID, *, offset: int, limit: int) -> tuple[list[ListedToken], int]:
    records = await conn.fetch(ORG_TOKENS, org_id, offset, limit)
    total = records[0]["total"] if records else 0
    return [ListedToken.of(r) for r in records], total


async def revoke(conn: asyncpg.Connection, token_id: UUID, org_id: UUID) -> ListedToken | None:
    return ListedToken.maybe(await conn.fetchrow(REVOKE, token_id, org_id))
