"""Bearer tokens: random, shown once, stored as SHA-256 hashes, tied to an organization and a scope."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from uuid import UUID

import asyncpg

from gateway.errors import AuthenticationError, InvalidInput, NotFound
from gateway.resources import Resources
from gateway.services.access.ids import parse_id
from gateway.services.access.paging import check_page
from gateway.services.access.principal import Principal
from storage.queries import engines as engine_q
from storage.queries import tokens as q
from storage.rows import ListedToken

SCOPES = ("admin", "read", "engine")
PREFIX = "es_"
LABEL_MAX = 200


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


async def create_for_org(
    res: Resources, principal: Principal, *, scope: str, engine_id: str | None, label: str | None
) -> tuple[str, ListedToken]:
    """A new token of the caller's organization (admin tokens only); the secret is returned here and never again."""
    principal.require_admin()
    if scope not in SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}")
    engine_id = (engine_id or "").strip() or None
    if scope == "engine" and engine_id is None:
        raise InvalidInput("an engine token needs engineId: the external engine it claims tasks for")
    if scope != "engine" and engine_id is not None:
        raise InvalidInput(f"engineId is only for engine tokens, not {scope} tokens")
    label = (label or "").strip() or None
    if label is not None and len(label) > LABEL_MAX:
        raise InvalidInput(f"label must be at most {LABEL_MAX} characters")
    token = new_token()
    async with res.pool.acquire() as conn, conn.transaction():
        if engine_id is not None:
            engine = await engine_q.by_id(conn, principal.org_id, engine_id)
            if engine is None:
                raise NotFound()
            if engine.builtin:
                raise InvalidInput(f"{engine_id} is a built-in engine: engine tokens are for the organization's external engines")
        row = await q.insert_listed(
            conn, org_id=principal.org_id, token_hash=hash_token(token), scope=scope, engine_id=engine_id, label=label
        )
    return token, row


async def operator(pool: asyncpg.Pool, org_name: str) -> Principal:
    """The organization's admin as the command line acts for it (whoever runs `engineshed token` can reach the
    database, which is more than any token allows)."""
    async with pool.acquire() as conn:
        org = await q.org_by_name(conn, org_name)
    if org is None:
        raise NotFound(f"there is no organization named {org_name!r}")
    return Principal(org_id=org.id, scope="admin")


async def list_for_org(res: Resources, principal: Principal, *, offset: int | None, limit: int | None) -> list[ListedToken]:
    """The organization's admin, read and engine tokens, oldest first (admin tokens only)."""
    principal.require_admin()
    offset, limit = check_page(offset, limit, res.settings.max_page_size)
    async with res.pool.acquire() as conn:
        records, _ = await q.org_tokens(conn, principal.org_id, offset=offset, limit=limit)
    return records


async def revoke(res: Resources, principal: Principal, token_id: object) -> ListedToken:
    """Revoke one of the organization's tokens (admin tokens only). It fails authentication from the next request
    on, in every process (tokens are looked up in PostgreSQL on each request). Revoking again changes nothing."""
    principal.require_admin()
    tid = parse_id(token_id)
    async with res.pool.acquire() as conn:
        row = await q.revoke(conn, tid, principal.org_id)
    if row is None:
        raise NotFound()
    return row


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
