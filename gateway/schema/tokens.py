"""API tokens managed by an organization's admins: `tokens`, `createToken`, `revokeToken`.

`tokens` and `Token` (`id`, `applicationId`, `groupId`, `json { rights }`) are the established API's names;
creating and revoking take `label` and `revokedDateTime` from the established internal token operations
(docs/provenance.md).
"""

from __future__ import annotations

from enum import Enum
from typing import Optional

import strawberry

from gateway.schema.context import Info
from gateway.schema.scalars import DateTime
from gateway.services.access import tokens as token_service
from storage.rows import ListedToken


@strawberry.enum(description="What a token may do: admin (everything in the organization), read (queries only), "
                             "engine (claim the tasks of one external engine).")
class TokenScope(Enum):
    admin = "admin"
    read = "read"
    engine = "engine"


@strawberry.type
class TokenJson:
    rights: Optional[list[Optional[str]]] = strawberry.field(description="The token's scope, as a list of one.")


@strawberry.type(description="An API token of the organization. Its secret is never shown again after createToken.")
class Token:
    id: str
    label: Optional[str]
    scope: TokenScope
    engine_id: Optional[strawberry.ID] = strawberry.field(description="Engine tokens: the engine they act for.")
    created_date_time: DateTime
    revoked_date_time: Optional[DateTime] = strawberry.field(
        description="When it was revoked; from then on every request with it is authentication_error."
    )
    revoked: bool
    application_id: Optional[str] = strawberry.field(description="Always null: there are no applications here.")
    group_id: Optional[str] = strawberry.field(description="Always null: there are no groups here.")
    json: Optional[TokenJson]

    @classmethod
    def fields_of(cls, row: ListedToken) -> dict:
        return dict(
            id=str(row.id),
            label=row.label,
            scope=TokenScope(row.scope),
            engine_id=strawberry.ID(row.engine_id) if row.engine_id else None,
            created_date_time=row.created_at,
            revoked_date_time=row.revoked_at,
            revoked=row.revoked_at is not None,
            application_id=None,
            group_id=None,
            json=TokenJson(rights=[row.scope]),
        )

    @classmethod
    def from_row(cls, row: ListedToken) -> Token:
        return cls(**cls.fields_of(row))


@strawberry.type(description="A new token. `token` is the secret to send as `Authorization: Bearer <token>`: "
                             "shown only here (the gateway keeps only its hash).")
class CreatedToken(Token):
    token: str


@strawberry.input
class CreateToken:
    scope: TokenScope
    engine_id: Optional[strawberry.ID] = strawberry.field(default=None, description="Required for engine tokens, refused otherwise.")
    label: Optional[str] = strawberry.field(default=None, description="A name to recognize it by in `tokens` (at most 200 characters).")


@strawberry.type
class TokenQuery:
    @strawberry.field(description="The organization's API tokens (admin, read and engine), oldest first; admin tokens only.")
    async def tokens(self, info: Info, offset: Optional[int] = 0, limit: Optional[int] = 100) -> list[Token]:
        rows = await token_service.list_for_org(info.context.resources, info.context.principal, offset=offset, limit=limit)
        return [Token.from_row(r) for r in rows]


@strawberry.type
class TokenMutation:
    @strawberry.mutation(description="Create a token of the caller's organization; admin tokens only.")
    async def create_token(self, info: Info, input: CreateToken) -> CreatedToken:
        secret, row = await token_service.create_for_org(
            info.context.resources, info.context.principal, scope=input.scope.value,
            engine_id=input.engine_id, label=input.label,
        )
        return CreatedToken(token=secret, **Token.fields_of(row))

    @strawberry.mutation(description="Revoke a token of the caller's organization at once, in every gateway; admin "
                                     "tokens only. Revoking a revoked token answers it unchanged.")
    async def revoke_token(self, info: Info, id: strawberry.ID) -> Token:
        return Token.from_row(await token_service.revoke(info.context.resources, info.context.principal, id))
