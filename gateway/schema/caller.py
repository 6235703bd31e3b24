"""`me`: the caller. Here every caller is an API token acting for one organization, so the User
fields that describe a person (email, names, password and login times, MFA, settings) are left out."""

from __future__ import annotations

from enum import Enum
from typing import Optional

import strawberry

from gateway.schema.context import Info
from gateway.schema.scalars import DateTime, JSONData
from gateway.services.access import caller as caller_service
from storage import rows


@strawberry.enum
class UserStatus(Enum):
    active = "active"
    suspended = "suspended"
    deleted = "deleted"


@strawberry.enum
class OrganizationStatus(Enum):
    active = "active"
    deleted = "deleted"


@strawberry.type
class Organization:
    id: strawberry.ID
    name: str
    created_date_time: DateTime

    @strawberry.field(description="Active: an organization that can authenticate exists, and none is ever deleted through the API.")
    def status(self) -> OrganizationStatus:
        return OrganizationStatus.active

    @classmethod
    def from_row(cls, row: rows.Organization) -> Organization:
        return cls(id=strawberry.ID(str(row.id)), name=row.name, created_date_time=row.created_at)


@strawberry.type(description="The caller: the API token of this request.")
class User:
    id: strawberry.ID = strawberry.field(description="The token's ID (never the secret).")
    name: str = strawberry.field(description="The token's label, or its scope: `admin token`, `engine token` ...")
    organization_id: strawberry.ID
    jsondata: JSONData = strawberry.field(description="What the token may do: {scope, engineId, taskId, expiresDateTime}.")
    created_date_time: DateTime
    status: UserStatus = strawberry.field(description="Active: only a live token authenticates.")

    @strawberry.field
    async def organization(self, info: Info) -> Optional[Organization]:
        from uuid import UUID

        row = await info.context.loaders.organization.load(UUID(str(self.organization_id)))
        return Organization.from_row(row) if row else None


@strawberry.type
class CallerQuery:
    @strawberry.field(description="The caller: this request's token and its organization.")
    async def me(self, info: Info) -> User:
        caller = await caller_service.me(info.context.resources, info.context.principal)
        expires = caller.expires_at.isoformat().replace("+00:00", "Z") if caller.expires_at else None
        return User(
            id=strawberry.ID(str(caller.token_id)),
            name=caller.label or f"{caller.scope} token",
            organization_id=strawberry.ID(str(caller.org_id)),
            jsondata={"scope": caller.scope, "engineId": caller.engine_id,
                      "taskId": str(caller.task_id) if caller.task_id else None, "expiresDateTime": expires},
            created_date_time=caller.created_at,
            status=UserStatus.active,
        )
