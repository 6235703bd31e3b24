"""The model registry: models, versions, aliases and the content-addressed blobs versions share."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from storage.queries.paging import fetch_page
from storage.rows import ModelVersion

# A version row as services see it: the model's name, application and labels, and the version's aliases.
VERSION_COLUMNS = """v.id, m.org_id AS organization_id, m.name, v.version, m.application, v.status, v.error,
    v.sha256, v.size_bytes, b.blob_key, v.manifest, v.dimension, v.labels, v.source,
    coalesce((SELECT array_agg(a.alias ORDER BY a.alias) FROM model_aliases a WHERE a.version_id = v.id), '{}') AS aliases,
    v.created_at, v.modified_at, v.model_id, m.description, m.tags, v.throughput, v.throughput_batch, v.provider,
    v.validation"""
VERSION_FROM = """model_versions v JOIN models m ON m.id = v.model_id JOIN model_blobs b ON b.sha256 = v.sha256"""

# Visible to an organization: its own models and the system models (org_id NULL).
VISIBLE = "(m.org_id = $1 OR m.org_id IS NULL)"

MODEL_BY_NAME = """SELECT * FROM models WHERE org_id IS NOT DISTINCT FROM $1 AND name = $2"""
MODEL_BY_NAME_FOR_UPDATE = MODEL_BY_NAME + " FOR UPDATE"

INSERT_MODEL = """INSERT INTO models (id, org_id, name, application, description, tags)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT DO NOTHING RETURNING *"""

UPDATE_MODEL = """UPDATE models SET
    description = coalesce($2, description),
    tags = coalesce($3, tags),
    modified_at = now()
WHERE id = $1 RETURNING *"""

# The next number under the name: past every number it ever gave out, deleted versions' included (the
# counter), and past every version the model holds (the model's row is locked by the caller).
NEXT_VERSION = """INSERT INTO model_version_counters AS c (owner, name, last_version)
VALUES (coalesce($1::uuid, '00000000-0000-0000-0000-000000000000'::uuid), $2,
        (SELECT coalesce(max(version), 0) + 1 FROM model_versions WHERE model_id = $3))
ON CONFLICT (owner, name) DO UPDATE SET last_version = greatest(c.last_version + 1, EXCLUDED.last_version)
RETURNING last_version"""

INSERT_VERSION = """INSERT INTO model_versions (id, model_id, org_id, version, status, error, sha256, size_bytes,
    manifest, dimension, labels, source, validation, throughput, throughput_batch, provider)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"""

VERSION_BY_ID = f"SELECT {VERSION_COLUMNS} FROM {VERSION_FROM} WHERE v.id = $1"

VERSION_BY_NUMBER = f"""SELECT {VERSION_COLUMNS} FROM {VERSION_FROM}
WHERE m.org_id IS NOT DISTINCT FROM $1 AND m.name = $2 AND v.version = $3"""

VERSION_BY_ALIAS = f"""SELECT {VERSION_COLUMNS} FROM {VERSION_FROM}
JOIN model_aliases a ON a.version_id = v.id
WHERE m.org_id IS NOT DISTINCT FROM $1 AND m.name = $2 AND a.alias = $3"""

SAME_BYTES = f"""SELECT {VERSION_COLUMNS} FROM {VERSION_FROM}
WHERE m.org_id IS NOT DISTINCT FROM $1 AND m.name = $2 AND v.sha256 = $3 ORDER BY v.version LIMIT 1"""

VERSION_PAGE = f"""-- the visible model versions, filtered, with the total in a window count
SELECT {VERSION_COLUMNS}, count(*) OVER () AS total FROM {VERSION_FROM}
WHERE {VISIBLE}
  AND ($2::text IS NULL OR m.application = $2)
  AND ($3::text IS NULL OR m.name = $3)
  AND ($4::jsonb IS NULL OR m.tags @> $4)
  AND ($5::text IS NULL OR v.status = $5)
  AND ($6::boolean IS NULL OR (m.org_id IS NULL) = $6)
  AND ($7::text IS NULL OR EXISTS (SELECT 1 FROM model_aliases a WHERE a.version_id = v.id AND a.alias = $7))
ORDER BY <order>, v.id
OFFSET $8 LIMIT $9"""

ORDERS = {
    "name": "m.name {d}, v.version {d}",
    "version": "v.version {d}, m.name",
    "createdDateTime": "v.created_at {d}",
    "modifiedDateTime": "v.modified_at {d}",
    "throughput": "v.throughput {d} NULLS LAST",
}

SET_ALIAS = """INSERT INTO model_aliases (model_id, alias, version_id) VALUES ($1, $2, $3)
ON CONFLICT (model_id, alias) DO UPDATE SET version_id = EXCLUDED.version_id"""
ADD_MISSING_ALIASES = """-- each alias the version's model does not have yet points at the version; an alias the model has stays
INSERT INTO model_aliases (model_id, alias, version_id)
SELECT v.model_id, a, v.id FROM model_versions v, unnest($2::text[]) AS a WHERE v.id = $1
ON CONFLICT (model_id, alias) DO NOTHING"""

BLOB_BY_SHA = "SELECT * FROM model_blobs WHERE sha256 = $1"
INSERT_BLOB = """INSERT INTO model_blobs (sha256, blob_key, size_bytes) VALUES ($1, $2, $3)
ON CONFLICT (sha256) DO NOTHING"""
BLOB_STILL_USED = "SELECT EXISTS (SELECT 1 FROM model_versions WHERE sha256 = $1)"
DELETE_BLOB = "DELETE FROM model_blobs WHERE sha256 = $1 RETURNING blob_key"

# What keeps a version from being deleted (besides its aliases).
REFERENCES = """SELECT
    (SELECT count(*) FROM library_engine_models WHERE model_version_id = $1) AS engine_models,
    (SELECT count(*) FROM jobs WHERE model_version_id = $1) AS jobs,
    coalesce((SELECT array_agg(alias ORDER BY alias) FROM model_aliases WHERE version_id = $1), '{}') AS aliases"""

DELETE_ALIASES_OF_VERSION = "DELETE FROM model_aliases WHERE version_id = $1"
DELETE_VERSION = "DELETE FROM model_versions WHERE id = $1 RETURNING sha256"
VERSIONS_LEFT = "SELECT count(*) FROM model_versions WHERE model_id = $1"
DELETE_MODEL = "DELETE FROM models WHERE id = $1"

# ---- the trial inference queue ----
CLAIM_TRIAL = """-- one validating version nobody holds (or whose holder's lease ran out); others' rows are skipped
WITH picked AS (SELECT id FROM model_versions
    WHERE status = 'validating' AND (trial_owner IS NULL OR trial_expires_at < now())
    ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
UPDATE model_versions v SET trial_owner = $1, trial_expires_at = now() + make_interval(secs => $2),
    trial_attempts = v.trial_attempts + 1, modified_at = now()
FROM picked WHERE v.id = picked.id RETURNING v.id, v.trial_attempts"""

FINISH_TRIAL = """UPDATE model_versions SET status = $3, error = $4, throughput = $5, throughput_batch = $6,
    provider = $7, validation = validation || $8::jsonb, trial_owner = NULL, trial_expires_at = NULL,
    modified_at = now()
WHERE id = $1 AND status = 'validating' AND trial_owner IS NOT DISTINCT FROM $2 RETURNING id"""

DEFAULT_OFF_FAILED = """-- a version that failed its trial gives up `default` to the newest ready version of its model, if any
UPDATE model_aliases a SET version_id = (
    SELECT v.id FROM model_versions v WHERE v.model_id = a.model_id AND v.status = 'ready' ORDER BY v.version DESC LIMIT 1)
WHERE a.version_id = $1 AND a.alias = 'default'
  AND EXISTS (SELECT 1 FROM model_versions v WHERE v.model_id = a.model_id AND v.status = 'ready')"""

DEFAULT_ONTO_READY = """-- a version that passed its trial takes `default` from a failed version of its model (the newest ready one
-- wins: a later version that passes moves it on)
UPDATE model_aliases a SET version_id = $1
FROM model_versions now_ready, model_versions held
WHERE now_ready.id = $1 AND a.model_id = now_ready.model_id AND a.alias = 'default'
  AND held.id = a.version_id AND held.status = 'failed'"""

LOCK_VERSION_STATUS = "SELECT status FROM model_versions WHERE id = $1 FOR SHARE"


async def model_by_name(conn: asyncpg.Connection, org_id: UUID | None, name: str, *, for_update: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(MODEL_BY_NAME_FOR_UPDATE if for_update else MODEL_BY_NAME, org_id, name)


async def insert_model(conn: asyncpg.Connection, **v: Any) -> asyncpg.Record | None:
    """None when another transaction created the name first (the caller reads that one)."""
    return await conn.fetchrow(
        INSERT_MODEL, v["id"], v["org_id"], v["name"], v["application"], v.get("description") or "", v.get("tags") or {}
    )


async def update_model(conn: asyncpg.Connection, model_id: UUID, *, description: str | None, tags: dict | None) -> None:
    await conn.execute(UPDATE_MODEL, model_id, description, tags)


async def next_version(conn: asyncpg.Connection, org_id: UUID | None, name: str, model_id: UUID) -> int:
    return await conn.fetchval(NEXT_VERSION, org_id, name, model_id)


async def insert_version(conn: asyncpg.Connection, **v: Any) -> ModelVersion:
    await conn.execute(
        INSERT_VERSION, v["id"], v["model_id"], v["org_id"], v["version"], v["status"], v.get("error"), v["sha256"],
        v["size_bytes"], v["manifest"], v.get("dimension"), v.get("labels"), v.get("source") or {},
        v.get("validation") or {}, v.get("throughput"), v.get("throughput_batch"), v.get("provider"),
    )
    return await version_by_id(conn, v["id"])


async def version_by_id(conn: asyncpg.Connection, version_id: UUID) -> ModelVersion | None:
    return ModelVersion.maybe(await conn.fetchrow(VERSION_BY_ID, version_id))


async def version_by_number(conn: asyncpg.Connection, org_id: UUID | None, name: str, version: int) -> ModelVersion | None:
    return ModelVersion.maybe(await conn.fetchrow(VERSION_BY_NUMBER, org_id, name, version))


async def version_by_alias(conn: asyncpg.Connection, org_id: UUID | None, name: str, alias: str) -> ModelVersion | None:
    return ModelVersion.maybe(await conn.fetchrow(VERSION_BY_ALIAS, org_id, name, alias))


async def version_with_bytes(conn: asyncpg.Connection, org_id: UUID | None, name: str, sha256: str) -> ModelVersion | None:
    return ModelVersion.maybe(await conn.fetchrow(SAME_BYTES, org_id, name, sha256))


async def version_page(
    conn: asyncpg.Connection, org_id: UUID, *, application: str | None, name: str | None, tags: dict | None,
    status: str | None, system: bool | None, alias: str | None, order: str, descending: bool, offset: int, limit: int,
) -> tuple[list[ModelVersion], int]:
    # replace, not format: the column list holds a literal '{}' (an empty text array)
    sql = VERSION_PAGE.replace("<order>", ORDERS[order].format(d="DESC" if descending else "ASC"))
    records, total = await fetch_page(conn, sql, (org_id, application, name, tags, status, system, alias), offset, limit)
    return [ModelVersion.of(r) for r in records], total


async def set_alias(conn: asyncpg.Connection, model_id: UUID, alias: str, version_id: UUID) -> None:
    await conn.execute(SET_ALIAS, model_id, alias, version_id)


async def add_missing_aliases(conn: asyncpg.Connection, version_id: UUID, aliases: list[str]) -> None:
    await conn.execute(ADD_MISSING_ALIASES, version_id, aliases)


async def blob_by_sha(conn: asyncpg.Connection, sha256: str) -> asyncpg.Record | None:
    return await conn.fetchrow(BLOB_BY_SHA, sha256)


async def insert_blob(conn: asyncpg.Connection, sha256: str, blob_key: str, size_bytes: int) -> None:
    await conn.execute(INSERT_BLOB, sha256, blob_key, size_bytes)


async def references(conn: asyncpg.Connection, version_id: UUID) -> asyncpg.Record:
    return await conn.fetchrow(REFERENCES, version_id)


async def delete_version(conn: asyncpg.Connection, version_id: UUID) -> str | None:
    """Deletes the version; returns the blob key to delete when no other version shares its bytes."""
    sha = await conn.fetchval(DELETE_VERSION, version_id)
    if sha is None or await conn.fetchval(BLOB_STILL_USED, sha):
        return None
    return await conn.fetchval(DELETE_BLOB, sha)


async def delete_aliases_of_version(conn: asyncpg.Connection, version_id: UUID) -> None:
    await conn.execute(DELETE_ALIASES_OF_VERSION, version_id)


async def versions_left(conn: asyncpg.Connection, model_id: UUID) -> int:
    return await conn.fetchval(VERSIONS_LEFT, model_id)


async def delete_model(conn: asyncpg.Connection, model_id: UUID) -> None:
    await conn.execute(DELETE_MODEL, model_id)


async def claim_trial(conn: asyncpg.Connection, owner: str, lease_seconds: float) -> asyncpg.Record | None:
    return await conn.fetchrow(CLAIM_TRIAL, owner, float(lease_seconds))


async def finish_trial(
    conn: asyncpg.Connection, version_id: UUID, owner: str | None, *, status: str, error: str | None,
    throughput: float | None, batch: int | None, provider: str | None, validation: dict,
) -> bool:
    async with conn.transaction():
        finished = await conn.fetchval(FINISH_TRIAL, version_id, owner, status, error, throughput, batch, provider, validation) is not None
        if finished and status == "failed":
            await conn.execute(DEFAULT_OFF_FAILED, version_id)
        elif finished and status == "ready":
            await conn.execute(DEFAULT_ONTO_READY, version_id)
    return finished


async def locked_status(conn: asyncpg.Connection, version_id: UUID) -> str | None:
    """The version's status, its row share-locked to the end of the transaction: a trial finishing meanwhile
    (finish_trial, in another process) waits, and then sees the alias this transaction set."""
    return await conn.fetchval(LOCK_VERSION_STATUS, version_id)


SYSTEM_MODEL_STATES = """-- each named system model's state: ready if a version serves, else validating while its trial runs, else failed
SELECT m.name, CASE WHEN bool_or(v.status = 'ready') THEN 'ready'
                    WHEN bool_or(v.status = 'validating') THEN 'validating' ELSE 'failed' END AS status
FROM models m JOIN model_versions v ON v.model_id = m.id
WHERE m.org_id IS NULL AND m.name = ANY($1::text[]) GROUP BY m.name"""


async def system_model_states(conn: asyncpg.Connection, names: list[str]) -> dict[str, str]:
    """name -> ready | validating | failed, for the named system models that have a version (others are absent)."""
    return {r["name"]: r["status"] for r in await conn.fetch(SYSTEM_MODEL_STATES, names)}
