"""Entity identifiers: named SQL, always filtered by organization."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from storage.rows import Identifier

INSERT = """INSERT INTO entity_identifiers (id, org_id, library_id, entity_id, identifier_type_id, title, is_priority,
    storage_key, reference_url, content_type, content_length, content_sha256, jsondata, unique_name, annotation_type)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
        -- an identifier with no entity is unassigned: raw until a model or a person labels it
        CASE WHEN $4::uuid IS NULL THEN 'raw' ELSE 'human' END) RETURNING *"""

BY_ID = "SELECT * FROM entity_identifiers WHERE org_id = $1 AND id = $2"
BY_IDS = "SELECT * FROM entity_identifiers WHERE org_id = $1 AND id = ANY($2::uuid[])"

# The model versions a new identifier is embedded by on ingest, in the same round trip as the checks: the
# system embedding default named $4 (its `default` alias, ready, with a dimension) and the versions the
# library's engine models use. Whether any apply at all (image types, ENGINESHED_EMBED_ON_INGEST) the service
# decides (gateway/services/embeddings/vectors.py ingest_versions).
_INGEST_VERSIONS = """ARRAY(
           SELECT v.id FROM model_versions v JOIN models m ON m.id = v.model_id
           JOIN model_aliases a ON a.version_id = v.id AND a.alias = 'default'
           WHERE m.org_id IS NULL AND m.name = $4 AND v.status = 'ready' AND coalesce(v.dimension, 0) > 0
           UNION ALL
           SELECT DISTINCT lm.model_version_id FROM library_engine_models lm
           JOIN model_versions v ON v.id = lm.model_version_id AND v.status = 'ready'
           WHERE lm.org_id = $1 AND lm.library_id = l.id AND lm.model_version_id IS NOT NULL
       ) AS ingest_versions"""

TARGET = """-- where a new identifier of type $3 goes: its entity's library, and whether that type exists for the
-- organization (built-in or its own), its data type, whether the library's type takes it, and the model
-- versions that embed it (one round trip where an upload made six)
SELECT e.library_id, l.library_type_id, lt.identifier_type_ids,
       EXISTS (SELECT 1 FROM entity_identifier_types t WHERE t.id = $3 AND (t.org_id IS NULL OR t.org_id = $1)) AS type_known,
       (SELECT t.data_type FROM entity_identifier_types t WHERE t.id = $3 AND (t.org_id IS NULL OR t.org_id = $1)) AS data_type,
       """ + _INGEST_VERSIONS + """
FROM entities e
JOIN libraries l ON l.id = e.library_id AND l.org_id = e.org_id
JOIN library_types lt ON lt.id = l.library_type_id
WHERE e.org_id = $1 AND e.id = $2"""

TARGET_LIBRARY = """-- where a new unassigned identifier of type $3 goes: the library $2 itself (same answer as TARGET)
SELECT l.id AS library_id, l.library_type_id, lt.identifier_type_ids,
       EXISTS (SELECT 1 FROM entity_identifier_types t WHERE t.id = $3 AND (t.org_id IS NULL OR t.org_id = $1)) AS type_known,
       (SELECT t.data_type FROM entity_identifier_types t WHERE t.id = $3 AND (t.org_id IS NULL OR t.org_id = $1)) AS data_type,
       """ + _INGEST_VERSIONS + """
FROM libraries l
JOIN library_types lt ON lt.id = l.library_type_id
WHERE l.org_id = $1 AND l.id = $2"""

INSERT_NEW = """-- a new identifier in one statement, so one round trip and atomic without a transaction block: the row;
-- when $15 (keep) the cancelled deletion of its object recorded before the upload; its embedding queue
-- entries for the model versions $16, with the notification the ingest workers listen for (sent on commit)
WITH kept AS (DELETE FROM blob_deletions WHERE $15 AND storage_key = $8),
new_row AS (""" + INSERT + """),
queued AS (
    INSERT INTO embedding_queue (identifier_id, model_version_id, org_id, library_id)
    SELECT r.id, v, r.org_id, r.library_id FROM new_row r, unnest($16::uuid[]) AS v
    ON CONFLICT DO NOTHING
)
SELECT r.*, (SELECT count(*) FROM (SELECT pg_notify($17, '') WHERE cardinality($16::uuid[]) > 0) n) AS notified
FROM new_row r"""

PAGES_FOR_ENTITIES = """-- the same page of identifiers for many entities at once (the DataLoader's one query)
SELECT * FROM (
    SELECT i.*,
           row_number() OVER w AS position,
           count(*) OVER (PARTITION BY i.entity_id) AS total
    FROM entity_identifiers i
    WHERE i.org_id = $1 AND i.entity_id = ANY($2::uuid[])
      AND ($3::text IS NULL OR i.identifier_type_id = $3)
      AND ($4::uuid IS NULL OR i.id = $4)
    WINDOW w AS (PARTITION BY i.entity_id ORDER BY i.is_priority DESC, i.created_at, i.id)
) ranked
WHERE position > $5 AND position <= $5 + $6
ORDER BY entity_id, position"""

TOTALS_FOR_ENTITIES = """SELECT entity_id, count(*) AS total FROM entity_identifiers
WHERE org_id = $1 AND entity_id = ANY($2::uuid[]) AND ($3::text IS NULL OR identifier_type_id = $3)
  AND ($4::uuid IS NULL OR id = $4)
GROUP BY entity_id"""

FOR_TRAINING = """-- keyset page of a library's identifiers of some types, with their entity's name (engines read these);
-- the inner join leaves unassigned identifiers (no entity) out, and the keyset starts above the nil UUID; an
-- identifier a person marked not its entity (identifier_negatives) is never that entity's example
SELECT i.*, e.name AS entity_name FROM entity_identifiers i JOIN entities e ON e.id = i.entity_id
WHERE i.org_id = $1 AND i.library_id = $2 AND i.identifier_type_id = ANY($3::text[])
  AND (i.entity_id, i.id) > ($4::uuid, $5::uuid)
  AND NOT EXISTS (SELECT 1 FROM identifier_negatives n WHERE n.identifier_id = i.id AND n.entity_id = i.entity_id)
ORDER BY i.entity_id, i.id LIMIT $6"""

FOR_TRAINING_WITH_VECTORS = """-- a library's identifiers of some types in training order, each with its stored vector of model version $4
-- (NULL where it has none yet), read through a server-side cursor; only what training reads, and of jsondata only
-- the split mark under key $5 (a library's whole jsondata, decoded per row, was a tenth of an incremental training)
SELECT i.id, i.entity_id, i.identifier_type_id, i.content_type, i.content_sha256, i.storage_key, i.reference_url,
       CASE WHEN $5::text IS NOT NULL THEN i.jsondata -> $5::text END AS split_mark, i.jsondata -> 'faceBox' AS face_box,
       e.name AS entity_name, vector_send(v.embedding) AS stored_embedding
FROM entity_identifiers i JOIN entities e ON e.id = i.entity_id
LEFT JOIN identifier_embeddings v ON v.identifier_id = i.id AND v.model_version_id = $4
WHERE i.org_id = $1 AND i.library_id = $2 AND i.identifier_type_id = ANY($3::text[])
  AND NOT EXISTS (SELECT 1 FROM identifier_negatives n WHERE n.identifier_id = i.id AND n.entity_id = i.entity_id)
ORDER BY i.entity_id, i.id"""

COUNT_FOR_TRAINING = """-- unassigned identifiers (no entity) are not trained on, nor ones marked not their entity
SELECT count(*) FROM entity_identifiers i
WHERE i.org_id = $1 AND i.library_id = $2 AND i.identifier_type_id = ANY($3::text[]) AND i.entity_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM identifier_negatives n WHERE n.identifier_id = i.id AND n.entity_id = i.entity_id)"""

UPDATE = """UPDATE entity_identifiers SET
    title = CASE WHEN $3 THEN $4 ELSE title END,
    is_priority = coalesce($5, is_priority),
    jsondata = CASE WHEN $6 THEN $7 ELSE jsondata END,
    modified_at = now()
WHERE org_id = $1 AND id = $2 RETURNING *"""

REPLACE_CONTENT = """-- UpdateEntityIdentifier.url: new content, only if the content is still the one the caller replaced
UPDATE entity_identifiers SET
    storage_key = $4, reference_url = $5, content_type = $6, content_length = $7, content_sha256 = $8,
    modified_at = now()
WHERE org_id = $1 AND id = $2 AND storage_key IS NOT DISTINCT FROM $3 RETURNING *"""

BY_UNIQUE_NAMES = """-- the identifiers some unique names name, in one library or across the organization
SELECT id, library_id, unique_name, identifier_type_id FROM entity_identifiers
WHERE org_id = $1 AND unique_name = ANY($2::text[]) AND ($3::uuid IS NULL OR library_id = $3)"""

UNIQUE_NAME_TAKEN = """SELECT EXISTS (SELECT 1 FROM entity_identifiers WHERE library_id = $1 AND unique_name = $2)"""

DELETE = "DELETE FROM entity_identifiers WHERE org_id = $1 AND id = $2 RETURNING storage_key"


_COLUMNS = ("id", "org_id", "library_id", "entity_id", "identifier_type_id", "title", "is_priority", "storage_key",
            "reference_url", "content_type", "content_length", "content_sha256", "jsondata", "unique_name")


def _values(v: dict[str, Any]) -> list[Any]:
    return [v[name] for name in _COLUMNS]


async def target(
    conn: asyncpg.Connection, org_id: UUID, entity_id: UUID, type_id: str, default_embedder: str | None
) -> asyncpg.Record | None:
    return await conn.fetchrow(TARGET, org_id, entity_id, type_id, default_embedder)


async def target_library(
    conn: asyncpg.Connection, org_id: UUID, library_id: UUID, type_id: str, default_embedder: str | None
) -> asyncpg.Record | None:
    return await conn.fetchrow(TARGET_LIBRARY, org_id, library_id, type_id, default_embedder)


async def insert_new(
    conn: asyncpg.Connection, *, keep_blob: bool, embed_versions: list[UUID], channel: str, **v: Any
) -> Identifier:
    """INSERT_NEW: the row, its kept object and its embedding queue entries, atomically in one statement."""
    return Identifier.of(await conn.fetchrow(INSERT_NEW, *_values(v), keep_blob, list(embed_versions), channel))


async def by_unique_names(
    conn: asyncpg.Connection, org_id: UUID, names: list[str], library_id: UUID | None
) -> list[asyncpg.Record]:
    return await conn.fetch(BY_UNIQUE_NAMES, org_id, names, library_id)


async def unique_name_taken(conn: asyncpg.Connection, library_id: UUID, name: str) -> bool:
    return await conn.fetchval(UNIQUE_NAME_TAKEN, library_id, name)


async def by_ids(conn: asyncpg.Connection, org_id: UUID, ids: list[UUID]) -> list[Identifier]:
    return [Identifier.of(r) for r in await conn.fetch(BY_IDS, org_id, ids)]


async def by_id(conn: asyncpg.Connection, org_id: UUID, identifier_id: UUID) -> Identifier | None:
    return Identifier.maybe(await conn.fetchrow(BY_ID, org_id, identifier_id))


async def pages_for_entities(
    conn: asyncpg.Connection,
    org_id: UUID,
    entity_ids: list[UUID],
    *,
    identifier_type_id: str | None,
    identifier_id: UUID | None,
    offset: int,
    limit: int,
) -> tuple[dict[UUID, list[Identifier]], dict[UUID, int]]:
    records = await conn.fetch(PAGES_FOR_ENTITIES, org_id, entity_ids, identifier_type_id, identifier_id, offset, limit)
    pages: dict[UUID, list[Identifier]] = {i: [] for i in entity_ids}
    totals: dict[UUID, int] = {i: 0 for i in entity_ids}
    for r in records:
        pages[r["entity_id"]].append(Identifier.of(r))
        totals[r["entity_id"]] = r["total"]
    if offset > 0:
        # Entities whose page is past their end still need a total: one more query, only when paging.
        for r in await conn.fetch(TOTALS_FOR_ENTITIES, org_id, entity_ids, identifier_type_id, identifier_id):
            totals[r["entity_id"]] = r["total"]
    return pages, totals


async def for_training(
    conn: asyncpg.Connection,
    org_id: UUID,
    library_id: UUID,
    type_ids: list[str],
    after: tuple[UUID, UUID],
    limit: int,
) -> list[tuple[Identifier, str]]:
    records = await conn.fetch(FOR_TRAINING, org_id, library_id, type_ids, after[0], after[1], limit)
    return [(Identifier.of(r), r["entity_name"]) for r in records]


def for_training_with_vectors(
    conn: asyncpg.Connection, org_id: UUID, library_id: UUID, type_ids: list[str], version_id: UUID, prefetch: int,
    split_key: str | None = None,
) -> Any:
    """A cursor (iterate it inside a transaction) over the library with stored vectors in vector_send form, and
    each identifier's ``jsondata[split_key]`` as ``split_mark`` (decoded JSON; NULL without a key)."""
    return conn.cursor(FOR_TRAINING_WITH_VECTORS, org_id, library_id, type_ids, version_id, split_key, prefetch=prefetch)


async def count_for_training(conn: asyncpg.Connection, org_id: UUID, library_id: UUID, type_ids: list[str]) -> int:
    return await conn.fetchval(COUNT_FOR_TRAINING, org_id, library_id, type_ids)


async def update(conn: asyncpg.Connection, org_id: UUID, identifier_id: UUID, changes: dict[str, Any]) -> Identifier | None:
    return Identifier.maybe(
        await conn.fetchrow(
            UPDATE,
            org_id,
            identifier_id,
            "title" in changes,
            changes.get("title"),
            changes.get("is_priority"),
            "jsondata" in changes,
            changes.get("jsondata"),
        )
    )


async def replace_content(
    conn: asyncpg.Connection, org_id: UUID, identifier_id: UUID, previous_key: str | None, **v: Any
) -> Identifier | None:
    return Identifier.maybe(
        await conn.fetchrow(
            REPLACE_CONTENT, org_id, identifier_id, previous_key, v["storage_key"], v["reference_url"],
            v["content_type"], v["content_length"], v["content_sha256"],
        )
    )


async def delete(conn: asyncpg.Connection, org_id: UUID, identifier_id: UUID) -> tuple[bool, str | None]:
    record = await conn.fetchrow(DELETE, org_id, identifier_id)
    return (record is not None, record["storage_key"] if record else None)
