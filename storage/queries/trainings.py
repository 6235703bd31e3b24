"""Training jobs and model versions: job summaries from their tasks, the default model, library statistics."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from storage.queries.paging import fetch_page
from storage.rows import EngineModel, Job

JOB_SUMMARIES = """-- what a job's tasks say about it: progress, first start, last end (once all are finished), failure
SELECT t.job_id,
       avg(CASE WHEN t.status = 'complete' THEN 1.0 ELSE t.progress END) AS progress,
       min(t.started_at) AS started_at,
       CASE WHEN bool_and(t.status IN ('complete', 'failed', 'cancelled')) THEN max(t.completed_at) END AS completed_at,
       (array_agg(coalesce(t.failure_message, t.failure_reason) ORDER BY t.position, t.id)
            FILTER (WHERE t.status = 'failed'))[1] AS error,
       (array_agg(t.payload->>'trainingType' ORDER BY t.position, t.id))[1] AS training_type,
       (array_agg(t.payload->'config' ORDER BY t.position, t.id))[1] AS config
FROM tasks t WHERE t.org_id = $1 AND t.job_id = ANY($2::uuid[])
GROUP BY t.job_id"""

MODELS_BY_TRAIN_JOBS = """-- the model each training job produces (one library-train task per training job here)
SELECT DISTINCT ON (train_job_id) * FROM library_engine_models
WHERE org_id = $1 AND train_job_id = ANY($2::uuid[])
ORDER BY train_job_id, created_at, id"""

DEFAULT_MODEL = """SELECT * FROM library_engine_models
WHERE org_id = $1 AND library_id = $2 AND engine_id = $3 AND is_default"""

NEWEST_DEFAULT_MODEL = """-- the library's newest default model, whatever its engine
SELECT * FROM library_engine_models WHERE org_id = $1 AND library_id = $2 AND is_default
ORDER BY created_at DESC, id DESC LIMIT 1"""

# Clear the old default first: the partial unique index allows one default per (library, engine).
CLEAR_DEFAULT = """UPDATE library_engine_models SET is_default = false, modified_at = now()
WHERE org_id = $1 AND library_id = $2 AND engine_id = $3 AND is_default AND id <> $4"""

SET_DEFAULT = """UPDATE library_engine_models SET is_default = true, modified_at = now()
WHERE org_id = $1 AND id = $2 RETURNING *"""

SET_PROMOTION = """UPDATE library_engine_models SET promotion = $3, modified_at = now()
WHERE org_id = $1 AND id = $2 RETURNING *"""

SET_VERSION_FIELDS = """UPDATE library_engine_models SET
    name = CASE WHEN $3 THEN $4 ELSE name END,
    description = CASE WHEN $5 THEN $6 ELSE description END,
    changelog = CASE WHEN $7 THEN $8 ELSE changelog END,
    labels = CASE WHEN $9 THEN $10 ELSE labels END,
    parent_model_id = CASE WHEN $11 THEN $12 ELSE parent_model_id END,
    auto_promote = CASE WHEN $13 THEN $14 ELSE auto_promote END,
    modified_at = now()
WHERE org_id = $1 AND id = $2 RETURNING *"""

# An alias names one model of a (library, engine): setting it on one takes it off the others.
TAKE_ALIASES = """UPDATE library_engine_models SET aliases = ARRAY(SELECT unnest(aliases) EXCEPT SELECT unnest($5::text[])),
    modified_at = now()
WHERE org_id = $1 AND library_id = $2 AND engine_id = $3 AND id <> $4 AND aliases && $5::text[]"""

SET_ALIASES = """UPDATE library_engine_models SET aliases = $3, modified_at = now()
WHERE org_id = $1 AND id = $2 RETURNING *"""

LIBRARY_COUNTS = """-- entities, entities with identifiers, identifiers (assigned or not), assigned identifiers, per library
SELECT l.id,
       (SELECT count(*) FROM entities e WHERE e.library_id = l.id) AS entities,
       (SELECT count(DISTINCT i.entity_id) FROM entity_identifiers i WHERE i.library_id = l.id) AS active_entities,
       (SELECT count(*) FROM entity_identifiers i WHERE i.library_id = l.id) AS identifiers,
       (SELECT count(*) FROM entity_identifiers i WHERE i.library_id = l.id AND i.entity_id IS NOT NULL) AS assigned
FROM libraries l WHERE l.org_id = $1 AND l.id = ANY($2::uuid[])"""

LAST_TRAININGS = """-- each library's last finished training: a model that completed or failed, of the library's default engine
-- ($3 / $4: library IDs and their default engine, where known) before any other engine's, then the newest
-- by completion (its training task's end; a model's modified_at also moves when it is promoted, aliased or
-- renamed), then by creation and engine, so the models one publish creates never tie at random
SELECT DISTINCT ON (m.library_id) m.* FROM library_engine_models m
LEFT JOIN LATERAL (SELECT max(t.completed_at) AS completed_at FROM tasks t
                   WHERE t.job_id = m.train_job_id AND t.org_id = m.org_id) done ON true
LEFT JOIN unnest($3::uuid[], $4::text[]) AS d(library_id, engine_id) ON d.library_id = m.library_id
WHERE m.org_id = $1 AND m.library_id = ANY($2::uuid[]) AND m.train_status IN ('complete', 'failed')
  -- a training the user cancelled (its model is marked failed) is no outcome of the library: not an error
  AND NOT EXISTS (SELECT 1 FROM tasks c WHERE c.job_id = m.train_job_id AND c.org_id = m.org_id AND c.status = 'cancelled')
ORDER BY m.library_id, (m.engine_id = d.engine_id) IS TRUE DESC,
         coalesce(done.completed_at, m.created_at) DESC, m.created_at DESC, m.engine_id, m.id"""

DUPLICATES = """-- identifiers whose content another identifier of the same library has too (same sha256)
SELECT library_id, id, entity_id, content_sha256 FROM (
    SELECT i.library_id, i.id, i.entity_id, i.content_sha256,
           count(*) OVER (PARTITION BY i.library_id, i.content_sha256) AS n
    FROM entity_identifiers i
    WHERE i.org_id = $1 AND i.library_id = ANY($2::uuid[]) AND i.content_sha256 IS NOT NULL
) d WHERE n > 1 ORDER BY library_id, content_sha256, id LIMIT $3"""

PREVIEW_IDENTIFIERS = """-- the first few identifiers of each library (priority ones first), for previews
SELECT * FROM (
    SELECT i.*, row_number() OVER (PARTITION BY i.library_id ORDER BY i.is_priority DESC, i.created_at, i.id) AS rn
    FROM entity_identifiers i WHERE i.org_id = $1 AND i.library_id = ANY($2::uuid[])
) p WHERE rn <= $3 ORDER BY library_id, rn"""

TRAINING_JOBS = """-- one page of the organization's training jobs (jobs whose task trains a library), newest first
SELECT j.*, count(*) OVER () AS total FROM jobs j
WHERE j.org_id = $1 AND EXISTS (SELECT 1 FROM library_engine_models m WHERE m.train_job_id = j.id AND m.org_id = $1)
ORDER BY j.created_at DESC, j.id DESC OFFSET $2 LIMIT $3"""


async def job_summaries(conn: asyncpg.Connection, org_id: UUID, job_ids: list[UUID]) -> dict[UUID, asyncpg.Record]:
    return {r["job_id"]: r for r in await conn.fetch(JOB_SUMMARIES, org_id, job_ids)}


async def models_by_train_jobs(conn: asyncpg.Connection, org_id: UUID, job_ids: list[UUID]) -> dict[UUID, EngineModel]:
    return {r["train_job_id"]: EngineModel.of(r) for r in await conn.fetch(MODELS_BY_TRAIN_JOBS, org_id, job_ids)}


async def default_model(conn: asyncpg.Connection, org_id: UUID, library_id: UUID, engine_id: str) -> EngineModel | None:
    return EngineModel.maybe(await conn.fetchrow(DEFAULT_MODEL, org_id, library_id, engine_id))


async def newest_default_model(conn: asyncpg.Connection, org_id: UUID, library_id: UUID) -> EngineModel | None:
    return EngineModel.maybe(await conn.fetchrow(NEWEST_DEFAULT_MODEL, org_id, library_id))


async def set_default(conn: asyncpg.Connection, model: EngineModel) -> EngineModel:
    await conn.execute(CLEAR_DEFAULT, model.org_id, model.library_id, model.engine_id, model.id)
    return EngineModel.of(await conn.fetchrow(SET_DEFAULT, model.org_id, model.id))


async def set_promotion(conn: asyncpg.Connection, org_id: UUID, model_id: UUID, promotion: dict[str, Any]) -> EngineModel:
    return EngineModel.of(await conn.fetchrow(SET_PROMOTION, org_id, model_id, promotion))


async def set_version_fields(conn: asyncpg.Connection, org_id: UUID, model_id: UUID, changes: dict[str, Any]) -> EngineModel | None:
    def pair(name: str) -> tuple[bool, Any]:
        return name in changes, changes.get(name)

    return EngineModel.maybe(await conn.fetchrow(
        SET_VERSION_FIELDS, org_id, model_id, *pair("name"), *pair("description"), *pair("changelog"),
        *pair("labels"), *pair("parent_model_id"), *pair("auto_promote"),
    ))


async def set_aliases(conn: asyncpg.Connection, model: EngineModel, aliases: list[str]) -> EngineModel:
    await conn.execute(TAKE_ALIASES, model.org_id, model.library_id, model.engine_id, model.id, aliases)
    return EngineModel.of(await conn.fetchrow(SET_ALIASES, model.org_id, model.id, aliases))


async def library_counts(conn: asyncpg.Connection, org_id: UUID, library_ids: list[UUID]) -> dict[UUID, asyncpg.Record]:
    return {r["id"]: r for r in await conn.fetch(LIBRARY_COUNTS, org_id, library_ids)}


async def last_trainings(
    conn: asyncpg.Connection, org_id: UUID, library_ids: list[UUID], default_engines: dict[UUID, str] | None = None,
) -> dict[UUID, EngineModel]:
    """Each library's last finished training; ``default_engines`` (library -> its default engine) prefers that
    engine's models. Without it the newest by completion wins, ties broken by engine ID (never at random)."""
    engines = default_engines or {}
    return {r["library_id"]: EngineModel.of(r) for r in await conn.fetch(
        LAST_TRAININGS, org_id, library_ids, list(engines), list(engines.values()))}


async def duplicates(conn: asyncpg.Connection, org_id: UUID, library_ids: list[UUID], limit: int) -> list[asyncpg.Record]:
    return list(await conn.fetch(DUPLICATES, org_id, library_ids, limit))


async def preview_identifiers(conn: asyncpg.Connection, org_id: UUID, library_ids: list[UUID], per_library: int) -> list[asyncpg.Record]:
    return list(await conn.fetch(PREVIEW_IDENTIFIERS, org_id, library_ids, per_library))


async def training_jobs(conn: asyncpg.Connection, org_id: UUID, offset: int, limit: int) -> tuple[list[Job], int]:
    records, total = await fetch_page(conn, TRAINING_JOBS, (org_id,), offset, limit)
    return [Job.of(r) for r in records], int(total)


DEFAULT_LOCK = "SELECT pg_advisory_xact_lock(hashtext('engineshed-default-model'), hashtext($1))"


async def lock_default(conn: asyncpg.Connection, library_id: UUID, engine_id: str) -> None:
    """Serialise changes to the models of one (library, engine) until the transaction ends: completions,
    default moves, deletes and alias moves. Take it before any of those models' row locks."""
    await conn.execute(DEFAULT_LOCK, f"{library_id}/{engine_id}")


THIN_ENTITIES = """-- entities with fewer than 2 identifiers (nothing to evaluate them with)
SELECT e.library_id, e.id, e.name, count(i.id) AS n
FROM entities e LEFT JOIN entity_identifiers i ON i.entity_id = e.id
WHERE e.org_id = $1 AND e.library_id = ANY($2::uuid[])
GROUP BY e.library_id, e.id, e.name HAVING count(i.id) < 2
ORDER BY e.library_id, e.created_at, e.id LIMIT $3"""


async def thin_entities(conn: asyncpg.Connection, org_id: UUID, library_ids: list[UUID], limit: int) -> list[asyncpg.Record]:
    return list(await conn.fetch(THIN_ENTITIES, org_id, library_ids, limit))
