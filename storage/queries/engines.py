"""Engines: installed ones (global) and external ones (per organization)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from storage.queries.paging import fetch_page
from storage.rows import Engine

UPSERT_INSTALLED = """-- an engine installed in workers: refreshed at every start, visible to all organizations
INSERT INTO engines (id, org_id, name, category_id, identifier_type_ids, library_type_ids, modes, library_required,
                     concurrency_limit, builtin, version, config_schema)
VALUES ($1, NULL, $2, $3, $4, $5, $6, $7, $8, true, $9, $10)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, category_id = EXCLUDED.category_id,
    identifier_type_ids = EXCLUDED.identifier_type_ids, library_type_ids = EXCLUDED.library_type_ids,
    modes = EXCLUDED.modes, library_required = EXCLUDED.library_required,
    concurrency_limit = EXCLUDED.concurrency_limit, version = EXCLUDED.version,
    config_schema = EXCLUDED.config_schema, builtin = true, modified_at = now()
WHERE engines.org_id IS NULL
RETURNING *"""

INSERT_EXTERNAL = """INSERT INTO engines (id, org_id, name, category_id, identifier_type_ids, library_type_ids, modes,
                     library_required, concurrency_limit, builtin)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, false) RETURNING *"""

VISIBLE = "(org_id IS NULL OR org_id = $1)"
BY_ID = f"SELECT * FROM engines WHERE {VISIBLE} AND id = $2"
BY_IDS = f"SELECT * FROM engines WHERE {VISIBLE} AND id = ANY($2::text[])"

LIST = f"""SELECT *, count(*) OVER () AS total FROM engines
WHERE {VISIBLE} AND state = 'active'
  AND ($2::text[] IS NULL OR id = ANY($2))
  AND ($3::text IS NULL OR category_id = $3)
  AND ($4::boolean IS NULL OR library_required = $4)
  AND ($5::text IS NULL OR name ILIKE '%' || $5 || '%')
ORDER BY builtin DESC, name, id OFFSET $6 LIMIT $7"""

COMPATIBLE = """-- engines that take libraries of this type: their identifier types overlap the library type's
SELECT e.* FROM engines e JOIN library_types t ON t.id = $2
WHERE (e.org_id IS NULL OR e.org_id = $1) AND e.state = 'active' AND e.library_required
  AND 'library-train' = ANY(e.modes) AND e.identifier_type_ids && t.identifier_type_ids
ORDER BY e.id"""

CONCURRENCY_LIMIT = "SELECT concurrency_limit FROM engines WHERE id = $1"


async def upsert_installed(conn: asyncpg.Connection, **v: Any) -> Engine | None:
    return Engine.maybe(
        await conn.fetchrow(
            UPSERT_INSTALLED,
            v["id"],
            v["name"],
            v["category_id"],
            list(v["identifier_type_ids"]),
            list(v["library_type_ids"]),
            list(v["modes"]),
            v["library_required"],
            v["concurrency_limit"],
            v["version"],
            v["config_schema"],
        )
    )


async def insert_external(conn: asyncpg.Connection, org_id: UUID, **v: Any) -> Engine:
    return Engine.of(
        await conn.fetchrow(
            INSERT_EXTERNAL,
            v["id"],
            org_id,
            v["name"],
            v["category_id"],
            list(v["identifier_type_ids"]),
            list(v["library_type_ids"]),
            list(v["modes"]),
            v["library_required"],
            v["concurrency_limit"],
        )
    )


async def by_id(conn: asyncpg.Connection, org_id: UUID, engine_id: str) -> Engine | None:
    return Engine.maybe(await conn.fetchrow(BY_ID, org_id, engine_id))


async def by_ids(conn: asyncpg.Connection, org_id: UUID, ids: list[str]) -> list[Engine]:
    return [Engine.of(r) for r in await conn.fetch(BY_IDS, org_id, ids)]


async def page(
    conn: asyncpg.Connection,
    org_id: UUID,
    *,
    ids: list[str] | None,
    category_id: str | None,
    library_required: bool | None,
    name: str | None,
    offset: int,
    limit: int,
) -> tuple[list[Engine], int]:
    args = (org_id, ids, category_id, library_required, name)
    records, total = await fetch_page(conn, LIST, args, offset, limit)
    return [Engine.of(r) for r in records], total


async def compatible(conn: asyncpg.Connection, org_id: UUID, library_type_id: str) -> list[Engine]:
    return [Engine.of(r) for r in await conn.fetch(COMPATIBLE, org_id, library_type_id)]


async def concurrency_limit(conn: asyncpg.Connection, engine_id: str) -> int | None:
    return await conn.fetchval(CONCURRENCY_LIMIT, engine_id)
