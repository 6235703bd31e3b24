"""Who is calling (`me`): the token, and the organization it acts for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from gateway.errors import AuthenticationError
from gateway.resources import Resources
from gateway.services.access.principal import Principal
from storage.queries import organizations as q
from storage.rows import Organization


@dataclass(frozen=True, slots=True)
class Caller:
    token_id: UUID
    scope: str
    label: str | None
    engine_id: str | None
    task_id: UUID | None
    created_at: datetime
    expires_at: datetime | None
    org_id: UUID


async def me(res: Resources, principal: Principal) -> Caller:
    async with res.pool.acquire() as conn:
        row = await q.caller(conn, principal.token_id, principal.org_id) if principal.token_id else None
    if row is None:  # the token row is gone since this request authenticated
        raise AuthenticationError("The token is not valid")
    return Caller(token_id=row["id"], scope=row["scope"], label=row["label"], engine_id=row["engine_id"], task_id=row["task_id"],
                  created_at=row["created_at"], expires_at=row["expires_at"], org_id=row["org_id"])


async def organizations(res: Resources, principal: Principal, ids: list[UUID]) -> dict[UUID, Organization]:
    """Only the caller's own organization is ever visible."""
    wanted = [i for i in ids if i == principal.org_id]
    if not wanted:
        return {}
    async with res.pool.acquire() as conn:
        return {o.id: o for o in await q.by_ids(conn, wanted)}
