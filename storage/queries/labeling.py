"""The labeling loop's identifier SQL: unassigned listings, job selections, hard flags, and moving
identifiers into an entity. Always filtered by organization."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg

from storage.rows import EngineModel, Identifier

UNASSIGNED_PAGE = """-- a library's unassigned identifiers (no entity); hard ones first by coefficient when asked for
SELECT i.*, count(*) OVER () AS total FROM entity_identifiers i
WHERE i.org_id = $1 AND i.library_id = $2 AND i.entity_id IS NULL
  AND ($3::boolean IS NULL OR i.hard = $3){conditions}
ORDER BY {order}
OFFSET ${offset} LIMIT ${limit}"""

SELECTION_PAGE = """-- keyset page of the identifiers a labeling job takes: some libraries (NULL: all of the organization's),
-- some identifier types, only unassigned ones or not, the caller's filter and query
SELECT i.id, i.library_id, i.entity_id, i.identifier_type_id, i.storage_key, i.reference_url, i.content_type,
       i.content_sha256
FROM entity_identifiers i LEFT JOIN entities e ON e.id = i.entity_id
WHERE i.org_id = $1 AND ($2::uuid[] IS NULL OR i.library_id = ANY($2)) AND i.identifier_type_id = ANY($3::text[])
  AND (NOT $4 OR i.entity_id IS NULL)
  AND ($5::text IS NULL OR e.name = $5)
  AND ($6::text IS NULL OR i.title = $6)
  AND ($7::text IS NULL OR i.content_type = $7)
  AND i.id > $8{conditions}
ORDER BY i.id LIMIT $9"""

SELECTION_COUNT = """SELECT count(*) FROM entity_identifiers i LEFT JOIN entities e ON e.id = i.entity_id
WHERE i.org_id = $1 AND ($2::uuid[] IS NULL OR i.library_id = ANY($2)) AND i.identifier_type_id = ANY($3::text[])
  AND (NOT $4 OR i.entity_id IS NULL)
  AND ($5::text IS NULL OR e.name = $5)
  AND ($6::text IS NULL OR i.title = $6)
  AND ($7::text IS NULL OR i.content_type = $7){conditions}"""

SET_HARD = """-- an active-learning run's verdict on the identifiers it scored: flagged or cleared, in one statement
UPDATE entity_identifiers i SET hard = v.hard, hard_coefficient = v.coefficient, modified_at = now()
FROM unnest($2::uuid[], $3::boolean[], $4::float8[]) AS v(id, hard, coefficient)
WHERE i.org_id = $1 AND i.id = v.id"""

MARK_MACHINE = """-- raw identifiers a model has now suggested an entity for
UPDATE entity_identifiers SET annotation_type = 'machine', modified_at = now()
WHERE org_id = $1 AND id = ANY($2::uuid[]) AND annotation_type = 'raw'"""

ASSIGN = """-- identifiers placed in an entity by a person (or by a person's accepting a suggestion)
UPDATE entity_identifiers SET entity_id = $3, annotation_type = 'human', hard = false, hard_coefficient = NULL,
    modified_at = now()
WHERE org_id = $1 AND id = ANY($2::uuid[]) RETURNING *"""

BACK_TO_RAW = """-- unassigned machine identifiers left with no pending suggestion are raw again
UPDATE entity_identifiers i SET annotation_type = 'raw', modified_at = now()
WHERE i.org_id = $1 AND i.id = ANY($2::uuid[]) AND i.entity_id IS NULL AND i.annotation_type = 'machine'
  AND NOT EXISTS (SELECT 1 FROM identifier_suggestions s WHERE s.identifier_id = i.id AND s.status = 'pending')"""

LOCK = """-- identifiers before their suggestions, in id order: every path that changes both takes them in this order
SELECT id FROM entity_identifiers WHERE org_id = $1 AND id = ANY($2::uuid[]) ORDER BY id FOR UPDATE"""

LOCK_OF_JOB = """-- a job's suggestions' identifiers, in id order, before the job (and with it its suggestions) is deleted:
-- the trigger identifier_suggestions_gone then updates identifiers already held, the order LOCK sets
SELECT i.id FROM entity_identifiers i
WHERE i.org_id = $1 AND i.id IN (SELECT s.identifier_id FROM identifier_suggestions s WHERE s.org_id = $1 AND s.job_id = $2)
ORDER BY i.id FOR UPDATE OF i"""

ORDERS = {
    "created": "i.created_at, i.id",
    "hardness": "i.hard_coefficient DESC NULLS LAST, i.id",  # least margin (hardest) first
}


async def unassigned_page(
    conn: asyncpg.Connection,
    org_id: UUID,
    library_id: UUID,
    *,
    hard: bool | None,
    conditions: tuple[str, list[Any]],
    order: str,
    offset: int,
    limit: int,
) -> tuple[list[Identifier], int]:
    extra, extra_args = conditions
    first = 4 + len(extra_args)
    sql = UNASSIGNED_PAGE.format(conditions=extra, order=ORDERS[order], offset=first, limit=first + 1)
    args = [org_id, library_id, hard, *extra_args]
    records = await conn.fetch(sql, *args, offset, limit)
    if records:
        return [Identifier.of(r) for r in records], records[0]["total"]
    again = await conn.fetch(sql, *args, 0, 1)
    return [], again[0]["total"] if again else 0


def _selection_args(
    org_id: UUID, library_ids: Sequence[UUID] | None, type_ids: Sequence[str], unassigned_only: bool, query: dict[str, str]
) -> list[Any]:
    return [org_id, list(library_ids) if library_ids is not None else None, list(type_ids), unassigned_only,
            query.get("entity_name"), query.get("title"), query.get("content_type")]


async def selection_page(
    conn: asyncpg.Connection,
    org_id: UUID,
    *,
    library_ids: Sequence[UUID] | None,
    type_ids: Sequence[str],
    unassigned_only: bool,
    query: dict[str, str],
    conditions_at: Any,
    after: UUID,
    limit: int,
) -> list[asyncpg.Record]:
    """``conditions_at(first_param)`` gives the filter's `AND …` SQL and arguments numbered from there."""
    extra, extra_args = conditions_at(10)
    sql = SELECTION_PAGE.format(conditions=extra)
    return list(await conn.fetch(sql, *_selection_args(org_id, library_ids, type_ids, unassigned_only, query), after, limit,
                                 *extra_args))


async def selection_count(
    conn: asyncpg.Connection,
    org_id: UUID,
    *,
    library_ids: Sequence[UUID] | None,
    type_ids: Sequence[str],
    unassigned_only: bool,
    query: dict[str, str],
    conditions_at: Any,
) -> int:
    extra, extra_args = conditions_at(8)
    sql = SELECTION_COUNT.format(conditions=extra)
    return await conn.fetchval(sql, *_selection_args(org_id, library_ids, type_ids, unassigned_only, query), *extra_args)


async def lock(conn: asyncpg.Connection, org_id: UUID, ids: list[UUID]) -> None:
    await conn.execute(LOCK, org_id, ids)


async def lock_of_job(conn: asyncpg.Connection, org_id: UUID, job_id: UUID) -> None:
    """Lock the identifiers a job's suggestions name, in id order (see LOCK)."""
    await conn.execute(LOCK_OF_JOB, org_id, job_id)


async def set_hard(conn: asyncpg.Connection, org_id: UUID, ids: list[UUID], hard: list[bool], coefficients: list[float | None]) -> None:
    await conn.execute(SET_HARD, org_id, ids, hard, coefficients)


async def mark_machine(conn: asyncpg.Connection, org_id: UUID, ids: list[UUID]) -> None:
    await conn.execute(MARK_MACHINE, org_id, ids)


async def assign(conn: asyncpg.Connection, org_id: UUID, ids: list[UUID], entity_id: UUID) -> list[Identifier]:
    return [Identifier.of(r) for r in await conn.fetch(ASSIGN, org_id, ids, entity_id)]


async def back_to_raw(conn: asyncpg.Connection, org_id: UUID, ids: list[UUID]) -> None:
    await conn.execute(BACK_TO_RAW, org_id, ids)


DEFAULT_MODEL = """-- a labeling job's model when none is named: the default model of the library's default engine, else
-- any engine's default model, else the newest complete one; only models of the engines installed here
SELECT * FROM library_engine_models WHERE org_id = $1 AND library_id = $2 AND train_status = 'complete'
  AND storage_key IS NOT NULL AND engine_id = ANY($4::text[])
ORDER BY (is_default AND engine_id IS NOT DISTINCT FROM $3::text) DESC, is_default DESC, created_at DESC, id DESC LIMIT 1"""


async def default_model(
    conn: asyncpg.Connection, org_id: UUID, library_id: UUID, default_engine_id: str | None, installed: list[str]
) -> EngineModel | None:
    """The model a labeling job runs when it names none: a rolled-back or unpromoted newer model is not it."""
    return EngineModel.maybe(await conn.fetchrow(DEFAULT_MODEL, org_id, library_id, default_engine_id, installed))


KEEP_MODEL_VERSION = """-- a job about to pin this version: deleteModelVersion waits for it, or it is gone already
SELECT id FROM model_versions WHERE id = $1 FOR KEY SHARE"""


async def keep_model_version(conn: asyncpg.Connection, version_id: UUID) -> bool:
    """Holds the version until the transaction ends; False when it no longer exists."""
    return await conn.fetchval(KEEP_MODEL_VERSION, version_id) is not None
