"""Organizations and API tokens (hashes only)."""

from __future__ import annotations

from uuid import UUID, uuid4

import asyncpg

from storage.rows import ApiToken, Organization

ENSURE_ORG = """-- create the organization unless it exists; return it either way
INSERT INTO organizations (id, name) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
RETURNING id, name, created_at"""

INSERT_TOKEN = """INSERT INTO api_tokens (id, org_id, token_hash, scope, engine_id, task_id, label, expires_at, lease_owner)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING id, org_id, scope, engine_id, task_id, lease_owner, expires_at, revoked_at"""

TOKEN_BY_HASH = """-- a live token: not revoked, not expired
SELECT id, org_id, scope, engine_id, task_id, lease_owner, expires_at, revoked_at FROM api_tokens
WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"""

TASK_FOR_TOKEN = "SELECT payload, status, lease_owner, job_id FROM tasks WHERE id = $1 AND org_id = $2"

REVOKE_TASK_TOKENS = "UPDATE api_tokens SET revoked_at = now() WHERE task_id = $1 AND revoked_at IS NULL"


async def ensure_org(conn: asyncpg.Connection, name: str) -> Organization:
    return Organization.of(await conn.fetchrow(ENSURE_ORG, uuid4(), name))


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
