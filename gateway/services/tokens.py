"""Bearer tokens: random, shown once, stored as SHA-256 hashes, tied to an organization and a scope."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from uuid import UUID

import asyncpg

from gateway.errors import AuthenticationError, InvalidInput
from gateway.services.principal import Principal
from storage.queries import tokens as q

SCOPES = ("admin", "read", "engine")
PREFIX = "es_"


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


async def create_token(
    pool: asyncpg.Pool,
    *,
    org_name: str,
    scope: str,
    engine_id: str | None = None,
    label: str | None = None,
) -> tuple[str, UUID]:
    """Create (or reuse) the organization and a token for it; returns the token text and the org id."""
    if scope not in SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}")
    if scope == "engine" and not engine_id:
        raise InvalidInput("an engine token needs the engine it acts for")
    token = new_token()
    async with pool.acquire() as conn, conn.transaction():
        org = await q.ensure_org(conn, org_name)
        await q.insert_token(conn, org_id=org.id, token_hash=hash_token(token), scope=scope, engine_id=engine_id, label=label)
    return token, org.id


async def create_task_token(
    conn: asyncpg.Connection, *, org_id: UUID, task_id: UUID, engine_id: str, expires_at: datetime, lease_owner: str
) -> str:
    token = new_token()
    await q.insert_token(
        conn, org_id=org_id, token_hash=hash_token(token), scope="task", engine_id=engine_id, task_id=task_id,
        expires_at=expires_at, lease_owner=lease_owner,
    )
    return token


async def authenticate(pool: asyncpg.Pool, header: str | None) -> Principal:
    if not header:
        raise AuthenticationError("The Authorization header with a bearer token is missing")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 512:
        raise AuthenticationError("The Authorization header must be 'Bearer <token>'")
    async with pool.acquire() as conn:
        row = await q.token_by_hash(conn, hash_token(token))
        if row is None:
            raise AuthenticationError("The token is not valid")
        library_id = model_id = job_id = None
        if row.scope == "task":
            task = await q.task_for_token(conn, row.task_id, row.org_id)
            # The token acts for the claim it was issued with, not for whoever holds the task now.
            if task is None or task["status"] != "running" or task["lease_owner"] != row.lease_owner:
                raise AuthenticationError("The task this token was issued for is no longer running under its claim")
            payload = task["payload"] or {}
            library_id = _uuid_or_none(payload.get("libraryId"))
            model_id = _uuid_or_none(payload.get("libraryEngineModelId"))
            job_id = task["job_id"]
    return Principal(
        org_id=row.org_id,
        scope=row.scope,
        token_id=row.id,
        engine_id=row.engine_id,
        task_id=row.task_id,
        library_id=library_id,
        model_id=model_id,
        job_id=job_id,
        lease_owner=row.lease_owner,
    )


def _uuid_or_none(value: object) -> UUID | None:
    try:
        return UUID(str(value))
    except (ValueError, TypeError):
        return None
