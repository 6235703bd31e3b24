"""Library engine models: a library version trained by an engine, and the artifact it produced."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from storage.queries.paging import fetch_pages_by_parent
from storage.rows import EngineModel

INSERT = """INSERT INTO library_engine_models (id, org_id, library_id, engine_id, library_version, train_job_id,
    train_status, data_url, jsondata, accuracy)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *"""

BY_ID = "SELECT * FROM library_engine_models WHERE org_id = $1 AND id = $2"
BY_ID_FOR_UPDATE = "SELECT * FROM library_engine_models WHERE org_id = $1 AND id = $2 FOR UPDATE"
BY_IDS = "SELECT * FROM library_engine_models WHERE org_id = $1 AND id = ANY($2::uuid[])"

PAGES_FOR_LIBRARIES = """-- the same page of models for many libraries at once, newest first (Library.engineModels' one query)
SELECT * FROM (
    SELECT m.*, row_number() OVER w AS position, count(*) OVER (PARTITION BY m.library_id) AS total
    FROM library_engine_models m JOIN libraries l ON l.id = m.library_id
    WHERE m.org_id = $1 AND m.library_id = ANY($2::uuid[])
      AND ($3::uuid IS NULL OR m.id = $3)
      AND ($4::text IS NULL OR m.engine_id = $4)
      AND ($5::text IS NULL OR m.train_status = $5)
      AND ($6::integer IS NULL OR m.library_version = $6)
      AND ($7::boolean IS NULL OR (m.library_version = l.version) = $7)
    WINDOW w AS (PARTITION BY m.library_id ORDER BY {order} DESC, m.id DESC)
) ranked
WHERE position > $8 AND position <= $8 + $9
ORDER BY library_id, position"""

NEWEST_COMPLETE = """-- the model a library-run without a model uses: the default, else the newest complete one
SELECT * FROM library_engine_models
WHERE org_id = $1 AND library_id = $2 AND engine_id = $3 AND train_status = 'complete'
ORDER BY is_default DESC, created_at DESC, id DESC LIMIT 1"""

SET_FIELDS = """UPDATE library_engine_models SET
    train_job_id = CASE WHEN $3 THEN $4 ELSE train_job_id END,
    train_status = coalesce($5, train_status),
    storage_key = CASE WHEN $6 THEN $7 ELSE storage_key END,
    data_url = CASE WHEN $8 THEN $9 ELSE data_url END,
    content_type = CASE WHEN $10 THEN $11 ELSE content_type END,
    jsondata = CASE WHEN $12 THEN $13 ELSE jsondata END,
    accuracy = CASE WHEN $14 THEN $15 ELSE accuracy END,
    model_version_id = CASE WHEN $16 THEN $17 ELSE model_version_id END,
    modified_at = now()
WHERE org_id = $1 AND id = $2 RETURNING *"""

DELETE = "DELETE FROM library_engine_models WHERE org_id = $1 AND id = $2 RETURNING storage_key"


async def insert(conn: asyncpg.Connection, **v: Any) -> EngineModel:
    return EngineModel.of(
        await conn.fetchrow(
            INSERT,
            v["id"],
            v["org_id"],
            v["library_id"],
            v["engine_id"],
            v["library_version"],
            v.get("train_job_id"),
            v.get("train_status", "pending"),
            v.get("data_url"),
            v.get("jsondata") or {},
            v.get("accuracy"),
        )
    )


async def by_id(conn: asyncpg.Connection, org_id: UUID, model_id: UUID, *, for_update: bool = False) -> EngineModel | None:
    return EngineModel.maybe(await conn.fetchrow(BY_ID_FOR_UPDATE if for_update else BY_ID, org_id, model_id))


async def by_ids(conn: asyncpg.Connection, org_id: UUID, ids: list[UUID]) -> list[EngineModel]:
    return [EngineModel.of(r) for r in await conn.fetch(BY_IDS, org_id, ids)]


async def pages_for_libraries(
    conn: asyncpg.Connection,
    org_id: UUID,
    library_ids: list[UUID],
    *,
    model_id: UUID | None,
    engine_id: str | None,
    train_status: str | None,
    library_version: int | None,
    current_version: bool | None,
    by_modified: bool,
    offset: int,
    limit: int,
) -> tuple[dict[UUID, list[EngineModel]], dict[UUID, int]]:
    sql = PAGES_FOR_LIBRARIES.format(order="m.modified_at" if by_modified else "m.created_at")
    filters = (model_id, engine_id, train_status, library_version, current_version)
    return await fetch_pages_by_parent(
        conn, sql, org_id, library_ids, filters, offset, limit, parent="library_id", row=EngineModel.of
    )


async def newest_complete(conn: asyncpg.Connection, org_id: UUID, library_id: UUID, engine_id: str) -> EngineModel | None:
    return EngineModel.maybe(await conn.fetchrow(NEWEST_COMPLETE, org_id, library_id, engine_id))


async def set_fields(conn: asyncpg.Connection, org_id: UUID, model_id: UUID, changes: dict[str, Any]) -> EngineModel | None:
    def pair(name: str) -> tuple[bool, Any]:
        return name in changes, changes.get(name)

    return EngineModel.maybe(
        await conn.fetchrow(
            SET_FIELDS,
            org_id,
            model_id,
            *pair("train_job_id"),
            changes.get("train_status"),
            *pair("storage_key"),
            *pair("data_url"),
            *pair("content_type"),
            *pair("jsondata"),
            *pair("accuracy"),
            *pair("model_version_id"),
        )
    )


async def delete(conn: asyncpg.Connection, org_id: UUID, model_id: UUID) -> tuple[bool, str | None]:
    record = await conn.fetchrow(DELETE, org_id, model_id)
    return (record is not None, record["storage_key"] if record else None)
