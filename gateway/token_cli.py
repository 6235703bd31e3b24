"""`engineshed token list | revoke`: an organization's tokens from the command line, through the same services
as the API's `tokens` and `revokeToken` (for a leaked token when no admin token is at hand)."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import Any

from gateway.errors import ApiError
from gateway.settings import Settings


@dataclass(frozen=True)
class TokenResources:
    """What the token services use of the gateway's resources."""

    pool: Any
    settings: Settings


def _run(settings: Settings, org: str, action: Any) -> Any:
    from gateway.services.access import tokens
    from storage.db import connect_pool

    async def go() -> Any:
        async with connect_pool(settings.database_url, min_size=1, max_size=2) as pool:
            res = TokenResources(pool, settings)
            return await action(res, await tokens.operator(pool, org))

    try:
        return asyncio.run(go())
    except ApiError as exc:
        sys.exit(f"engineshed: {exc.message}")


def _line(row: Any) -> str:
    revoked = row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else "-"
    return "\t".join(
        [str(row.id), row.scope, row.engine_id or "-", row.created_at.isoformat(timespec="seconds"), revoked, row.label or ""]
    )


def list_tokens(settings: Settings, org: str) -> None:
    from gateway.services.access import tokens

    async def action(res: TokenResources, principal: Any) -> list[Any]:
        found, offset = [], 0
        while page := await tokens.list_for_org(res, principal, offset=offset, limit=settings.max_page_size):
            found += page
            offset += len(page)
        return found

    print("id\tscope\tengine\tcreated\trevoked\tlabel")
    for row in _run(settings, org, action):
        print(_line(row))


def revoke_token(settings: Settings, org: str, token_id: str) -> None:
    from gateway.services.access import tokens

    row = _run(settings, org, lambda res, principal: tokens.revoke(res, principal, token_id))
    print(_line(row))
