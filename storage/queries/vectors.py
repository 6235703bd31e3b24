"""Identifier embeddings (pgvector) and their ingest queue: named SQL, always filtered by organization.

Vectors travel as ``float4[]`` into PostgreSQL (cast to ``vector`` there) and come back as pgvector's binary
send format (``vector_send``: int16 dimension, int16 unused, float32 big-endian values), which numpy reads
without a per-value Python object; no connection needs a codec for the extension's type.

Search has two plans. A model version's vectors of one organization have a partial HNSW index on
``embedding::vector(dim)`` (pgvector cannot index a column of mixed dimensions, and a per-tenant graph means
one organization's results are never crowded out of the index scan by another's rows). The planner matches a
partial index only against constants, so the version, organization and dimension are written into that
statement as literals; they come from our own rows (UUIDs and an int), never from the caller's text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np

EMBED_CHANNEL = "engineshed_embed"  # payload: nothing; the ingest queue has new rows

_HEADER = 4  # vector_send's int16 dimension + int16 unused


def decode(data: bytes) -> np.ndarray:
    """A ``vector_send`` value as float32."""
    return np.frombuffer(data, dtype=">f4", offset=_HEADER).astype(np.float32)


# ------------------------------------------------------------------ vectors

UPSERT_INSERTED = """-- insertEmbeddings: the caller's vector replaces whatever the pair held
INSERT INTO identifier_embeddings (identifier_id, model_version_id, org_id, library_id, dimension, embedding, source)
VALUES ($1, $2, $3, $4, $5, $6::float4[]::vector, 'inserted')
ON CONFLICT (identifier_id, model_version_id) DO UPDATE SET
    embedding = EXCLUDED.embedding, dimension = EXCLUDED.dimension, source = 'inserted', created_at = now()"""

DROP_QUEUED = """DELETE FROM embedding_queue WHERE identifier_id = ANY($1::uuid[]) AND model_version_id = $2"""

FINISH_BATCH = """-- a batch's results, only for the pairs this worker still leases (a lease lost to another worker: nothing
-- here, the other writes them); ON CONFLICT keeps a vector that insertEmbeddings wrote meanwhile
WITH mine AS (
    DELETE FROM embedding_queue q
    USING unnest($2::uuid[]) AS done(identifier_id)
    WHERE q.identifier_id = done.identifier_id AND q.model_version_id = $3 AND q.lease_owner = $1
    RETURNING q.identifier_id, q.org_id, q.library_id
), vectors AS (
    SELECT v.identifier_id, v.embedding FROM unnest($2::uuid[], $4::text[]) AS v(identifier_id, embedding)
)
INSERT INTO identifier_embeddings (identifier_id, model_version_id, org_id, library_id, dimension, embedding, source)
SELECT m.identifier_id, $3, m.org_id, m.library_id, $5, v.embedding::vector, 'computed'
FROM mine m JOIN vectors v USING (identifier_id)
ON CONFLICT (identifier_id, model_version_id) DO NOTHING
RETURNING identifier_id"""

STORE_COMPUTED = """-- vectors a training computed for identifiers that had none for its model version
INSERT INTO identifier_embeddings (identifier_id, model_version_id, org_id, library_id, dimension, embedding, source)
SELECT i.id, $2, i.org_id, i.library_id, $4, v.embedding::vector, 'computed'
FROM unnest($3::uuid[], $5::text[]) AS v(identifier_id, embedding)
JOIN entity_identifiers i ON i.id = v.identifier_id AND i.org_id = $1
ON CONFLICT (identifier_id, model_version_id) DO NOTHING"""

OF_IDENTIFIERS = """-- EntityIdentifier.embeddings for many identifiers at once (the DataLoader's one query)
SELECT e.identifier_id, e.model_version_id, e.dimension, e.created_at, e.source,
       m.name || '@' || v.version AS model
FROM identifier_embeddings e
JOIN model_versions v ON v.id = e.model_version_id
JOIN models m ON m.id = v.model_id
WHERE e.org_id = $1 AND e.identifier_id = ANY($2::uuid[])
ORDER BY e.identifier_id, e.created_at, e.model_version_id"""

VECTORS_BY_IDS = """SELECT identifier_id, vector_send(embedding) AS embedding FROM identifier_embeddings
WHERE org_id = $1 AND model_version_id = $2 AND identifier_id = ANY($3::uuid[])"""

LIBRARY_VECTORS = """-- a library's vectors of one model version, with the entity each identifier belongs to
SELECT e.identifier_id, i.entity_id, vector_send(e.embedding) AS embedding
FROM identifier_embeddings e JOIN entity_identifiers i ON i.id = e.identifier_id
WHERE e.org_id = $1 AND e.library_id = $2 AND e.model_version_id = $3
ORDER BY e.identifier_id"""

LIBRARY_MODEL_VERSIONS = """-- the model versions a library's identifiers have vectors of, most vectors first
SELECT model_version_id, count(*) AS n FROM identifier_embeddings
WHERE org_id = $1 AND library_id = $2 GROUP BY model_version_id ORDER BY n DESC, model_version_id"""

MORE_CANDIDATES_THAN = """-- whether there are more than $4 candidates, reading at most $4 + 1 rows (a count at a million rows is
-- a scan of a million rows: the decision between the exact scan and the index must not cost more than either)
SELECT count(*) > $4 FROM (
    SELECT 1 FROM identifier_embeddings
    WHERE org_id = $1 AND model_version_id = $2 AND ($3::uuid IS NULL OR library_id = $3)
    LIMIT $4 + 1
) s"""

EXACT_SEARCH = """-- exact cosine ranking: a scan of the organization's (or library's) vectors of one model version. $4 is
-- the unit query, so the cosine is the inner product times the row's inverse norm (migration 0020): one pass
-- over the vector instead of pgvector's three; `<#>` is the negative inner product, best first ascending
SELECT identifier_id, (embedding <#> $4::float4[]::vector) * inverse_norm AS negative_cosine
FROM identifier_embeddings
WHERE org_id = $1 AND model_version_id = $2 AND ($3::uuid IS NULL OR library_id = $3)
  AND ($5::uuid IS NULL OR identifier_id <> $5)
ORDER BY negative_cosine, identifier_id
LIMIT $6"""

INDEXED_SEARCH = """-- the HNSW index of (model version {version}, organization {org}); see the module docstring for the literals
SELECT identifier_id, embedding::vector({dim}) <=> $3::float4[]::vector({dim}) AS distance
FROM identifier_embeddings
WHERE model_version_id = '{version}'::uuid AND org_id = '{org}'::uuid
  AND ($1::uuid IS NULL OR library_id = $1) AND ($2::uuid IS NULL OR identifier_id <> $2)
ORDER BY distance
LIMIT $4"""

WANT_INDEX = """INSERT INTO embedding_indexes (model_version_id, org_id, dimension, index_name) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING"""

INDEX_BUILT = "SELECT built FROM embedding_indexes WHERE model_version_id = $1 AND org_id = $2"

UNBUILT = """SELECT model_version_id, org_id, dimension, index_name FROM embedding_indexes WHERE NOT built
ORDER BY created_at LIMIT 1"""

CREATE_INDEX = """CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON identifier_embeddings
USING hnsw ((embedding::vector({dim})) vector_cosine_ops)
WHERE model_version_id = '{version}'::uuid AND org_id = '{org}'::uuid"""

INDEX_VALID = """SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1"""

DROP_INDEX = "DROP INDEX CONCURRENTLY IF EXISTS {name}"

MARK_BUILT = "UPDATE embedding_indexes SET built = true WHERE model_version_id = $1 AND org_id = $2"

# An index build at millions of rows takes far longer than the pool's 60 s command timeout, which would cancel
# it (and leave an invalid index to rebuild, forever).
INDEX_BUILD_TIMEOUT = 12 * 3600.0
# The memory an HNSW build may hold its graph in (maintenance_work_mem, a ceiling, not an allocation). Past it
# pgvector goes on building on disk, far slower: with the server's default 64 MB a 1024-d build slowed from
# ~200 to ~40 vectors a second after 14,000 vectors (bench/similar_scale.py). 1 GB holds ~200,000 such vectors.
INDEX_BUILD_MEMORY_MB = 1024


def index_name(version_id: UUID, org_id: UUID) -> str:
    """The partial index of one (model version, organization); a valid identifier of at most 63 bytes."""
    return f"ie_hnsw_{version_id.hex[:24]}_{org_id.hex[:24]}"


def _text(vectors: np.ndarray) -> list[str]:
    # pgvector's text form; unnest over a 2-D array would flatten it, so each row is one text value.
    return ["[" + ",".join(map(repr, row)) + "]" for row in np.asarray(vectors, np.float32).tolist()]


async def upsert_inserted(
    conn: asyncpg.Connection, org_id: UUID, version_id: UUID, dimension: int,
    rows: Sequence[tuple[UUID, UUID, list[float]]],
) -> None:
    """``rows``: (identifier id, library id, values)."""
    await conn.executemany(
        UPSERT_INSERTED, [(iid, version_id, org_id, lid, dimension, values) for iid, lid, values in rows]
    )
    await conn.execute(DROP_QUEUED, [iid for iid, _, _ in rows], version_id)


async def finish_batch(
    conn: asyncpg.Connection, owner: str, version_id: UUID, dimension: int, ids: Sequence[UUID], vectors: np.ndarray
) -> int:
    """Store a claimed batch's vectors and dequeue it; returns how many vectors were written now."""
    if not ids:
        return 0
    written = await conn.fetch(FINISH_BATCH, owner, list(ids), version_id, _text(vectors), dimension)
    return len(written)


async def store_computed(
    conn: asyncpg.Connection, org_id: UUID, version_id: UUID, dimension: int, ids: Sequence[UUID], vectors: np.ndarray
) -> None:
    await conn.execute(STORE_COMPUTED, org_id, version_id, list(ids), dimension, _text(vectors))
    await conn.execute(DROP_QUEUED, list(ids), version_id)


async def of_identifiers(conn: asyncpg.Connection, org_id: UUID, ids: Sequence[UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(OF_IDENTIFIERS, org_id, list(ids))


async def vectors_by_ids(conn: asyncpg.Connection, org_id: UUID, version_id: UUID, ids: Sequence[UUID]) -> dict[UUID, np.ndarray]:
    return {r["identifier_id"]: decode(r["embedding"]) for r in await conn.fetch(VECTORS_BY_IDS, org_id, version_id, list(ids))}


async def library_model_versions(conn: asyncpg.Connection, org_id: UUID, library_id: UUID) -> list[UUID]:
    return [r["model_version_id"] for r in await conn.fetch(LIBRARY_MODEL_VERSIONS, org_id, library_id)]


async def library_vectors(
    conn: asyncpg.Connection, org_id: UUID, library_id: UUID, version_id: UUID, prefetch: int = 2000,
) -> tuple[list[UUID], list[UUID], np.ndarray]:
    """(identifier ids, entity ids, [N, D] vectors), read through a server-side cursor in binary."""
    ids: list[UUID] = []
    entities: list[UUID] = []
    rows: list[np.ndarray] = []
    async with conn.transaction(readonly=True):
        async for r in conn.cursor(LIBRARY_VECTORS, org_id, library_id, version_id, prefetch=prefetch):
            ids.append(r["identifier_id"])
            entities.append(r["entity_id"])
            rows.append(decode(r["embedding"]))
    matrix = np.stack(rows) if rows else np.zeros((0, 0), np.float32)
    return ids, entities, matrix


async def more_candidates_than(
    conn: asyncpg.Connection, org_id: UUID, version_id: UUID, library_id: UUID | None, bound: int,
) -> bool:
    return bool(await conn.fetchval(MORE_CANDIDATES_THAN, org_id, version_id, library_id, int(bound)))


async def exact_search(
    conn: asyncpg.Connection, org_id: UUID, version_id: UUID, library_id: UUID | None, query: list[float],
    exclude: UUID | None, limit: int, threshold: float | None,
) -> list[tuple[UUID, float]]:
    q = np.asarray(query, np.float32)
    norm = float(np.linalg.norm(q))
    unit = (q / norm if norm > 0 else q).tolist()  # a zero query has no direction: every cosine reads 0
    records = await conn.fetch(EXACT_SEARCH, org_id, version_id, library_id, unit, exclude, limit)
    # The ranking is by cosine, so the best ``limit`` above a threshold are the best ``limit``, cut.
    hits = [(r["identifier_id"], -float(r["negative_cosine"])) for r in records]
    return hits if threshold is None else [(i, s) for i, s in hits if s >= threshold]


async def indexed_search(
    conn: asyncpg.Connection, org_id: UUID, version_id: UUID, dimension: int, library_id: UUID | None,
    query: list[float], exclude: UUID | None, limit: int, ef_search: int,
) -> list[tuple[UUID, float]]:
    sql = INDEXED_SEARCH.format(version=UUID(str(version_id)), org=UUID(str(org_id)), dim=int(dimension))
    async with conn.transaction(readonly=True):
        # SET LOCAL takes no parameters; ef_search is an int we computed.
        await conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
        records = await conn.fetch(sql, library_id, exclude, query, limit)
    return [(r["identifier_id"], 1.0 - float(r["distance"])) for r in records]


async def want_index(conn: asyncpg.Connection, org_id: UUID, version_id: UUID, dimension: int) -> None:
    """Ask for the (version, organization) index; a worker builds it (:func:`build_next_index`)."""
    await conn.execute(WANT_INDEX, version_id, org_id, int(dimension), index_name(version_id, org_id))


async def index_built(conn: asyncpg.Connection, org_id: UUID, version_id: UUID) -> bool:
    return bool(await conn.fetchval(INDEX_BUILT, version_id, org_id))


async def build_next_index(conn: asyncpg.Connection) -> str | None:
    """Build one wanted index; returns its name, or None when none is wanted or another worker builds it.

    CONCURRENTLY, so writers are not blocked while it builds; it cannot run in a transaction, so ``conn``
    must not be in one. A session advisory lock keeps two workers off the same index; a build that died
    leaves an invalid index, which is dropped and built again.
    """
    row = await conn.fetchrow(UNBUILT)
    if row is None:
        return None
    name = row["index_name"]
    if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", name):
        return None
    try:
        if await conn.fetchval(INDEX_VALID, name) is False:
            await conn.execute(DROP_INDEX.format(name=name), timeout=INDEX_BUILD_TIMEOUT)
        # SET, not SET LOCAL: CONCURRENTLY runs outside a transaction; RESET below, and the pool resets too.
        await conn.execute(f"SET maintenance_work_mem = '{int(INDEX_BUILD_MEMORY_MB)}MB'")
        await conn.execute(CREATE_INDEX.format(
            name=name, dim=int(row["dimension"]), version=UUID(str(row["model_version_id"])), org=UUID(str(row["org_id"]))),
            timeout=INDEX_BUILD_TIMEOUT)
        await conn.execute(MARK_BUILT, row["model_version_id"], row["org_id"])
        # An index is wanted once vectors arrive in numbers, often in bulk, faster than autovacuum analyzes
        # (a minute apart at best): with statistics that still say a library has one row, the planner sorts
        # the library's 100,000 vectors instead of asking the index (bench embeddings: 100 ms against 2).
        await conn.execute("ANALYZE identifier_embeddings", timeout=INDEX_BUILD_TIMEOUT)
    finally:
        await conn.execute("RESET maintenance_work_mem")
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", name)
    return name


# ------------------------------------------------------------------ the ingest queue

ENQUEUE_SELECTION = """-- generateEmbeddings: the selection's identifiers without a vector of the version, queued again if they failed
INSERT INTO embedding_queue AS q (identifier_id, model_version_id, org_id, library_id)
SELECT i.id, $2, i.org_id, i.library_id FROM entity_identifiers i
WHERE i.org_id = $1 AND i.library_id = ANY($3::uuid[]) AND i.identifier_type_id = ANY($4::text[]){conditions}
  AND NOT EXISTS (SELECT 1 FROM identifier_embeddings e WHERE e.identifier_id = i.id AND e.model_version_id = $2)
ON CONFLICT (identifier_id, model_version_id) DO UPDATE SET status = 'pending', attempts = 0, failure = NULL
    WHERE q.status = 'failed'"""

SELECTION_COUNTS = """-- how much of a selection is embedded, queued and failed
SELECT count(*) AS total,
       count(*) FILTER (WHERE e.identifier_id IS NOT NULL) AS embedded,
       count(*) FILTER (WHERE e.identifier_id IS NULL AND q.status = 'failed') AS failed
FROM entity_identifiers i
LEFT JOIN identifier_embeddings e ON e.identifier_id = i.id AND e.model_version_id = $2
LEFT JOIN embedding_queue q ON q.identifier_id = i.id AND q.model_version_id = $2
WHERE i.org_id = $1 AND i.library_id = ANY($3::uuid[]) AND i.identifier_type_id = ANY($4::text[]){conditions}"""

CLAIM = """-- up to $3 due pairs of one model version (the oldest pending one's, or $4), leased to $1 for $2 seconds
WITH version AS (
    SELECT model_version_id FROM embedding_queue
    WHERE status = 'pending' AND (lease_expires_at IS NULL OR lease_expires_at < now())
      AND ($4::uuid IS NULL OR model_version_id = $4) AND ($5::uuid IS NULL OR org_id = $5)
    ORDER BY created_at LIMIT 1
), picked AS (
    SELECT q.identifier_id, q.model_version_id FROM embedding_queue q, version
    WHERE q.model_version_id = version.model_version_id AND q.status = 'pending'
      AND (q.lease_expires_at IS NULL OR q.lease_expires_at < now()) AND ($5::uuid IS NULL OR q.org_id = $5)
    ORDER BY q.created_at, q.identifier_id LIMIT $3
    FOR UPDATE OF q SKIP LOCKED
)
UPDATE embedding_queue q SET lease_owner = $1, lease_expires_at = now() + make_interval(secs => $2),
    attempts = q.attempts + 1
FROM picked, entity_identifiers i
WHERE q.identifier_id = picked.identifier_id AND q.model_version_id = picked.model_version_id AND i.id = q.identifier_id
RETURNING q.identifier_id, q.model_version_id, q.org_id, q.attempts, i.storage_key, i.reference_url,
          i.content_sha256, i.identifier_type_id"""

EXTEND = """UPDATE embedding_queue SET lease_expires_at = now() + make_interval(secs => $3)
WHERE identifier_id = ANY($2::uuid[]) AND lease_owner = $1 AND model_version_id = $4"""

FAIL = """-- pairs that cannot be embedded (undecodable, fetch refused, tried too often): kept with the reason
UPDATE embedding_queue SET status = 'failed', failure = f.reason, lease_owner = NULL, lease_expires_at = NULL
FROM unnest($2::uuid[], $3::text[]) AS f(identifier_id, reason)
WHERE embedding_queue.identifier_id = f.identifier_id AND embedding_queue.model_version_id = $4
  AND embedding_queue.lease_owner = $1"""

RELEASE = """UPDATE embedding_queue SET lease_owner = NULL, lease_expires_at = NULL
WHERE identifier_id = ANY($2::uuid[]) AND lease_owner = $1 AND model_version_id = $3"""


LIBRARIES_HOLDING_TYPE = """SELECT l.id FROM libraries l JOIN library_types lt ON lt.id = l.library_type_id
WHERE l.org_id = $1 AND $2 = ANY(lt.identifier_type_ids) ORDER BY l.id"""

IMAGE_TYPES_OF_LIBRARY = """-- the image identifier types a library takes (the ones a whole-image embedding model reads)
SELECT t.id FROM libraries l
JOIN library_types lt ON lt.id = l.library_type_id
JOIN entity_identifier_types t ON t.id = ANY(lt.identifier_type_ids) AND (t.org_id IS NULL OR t.org_id = l.org_id)
WHERE l.org_id = $1 AND l.id = $2 AND t.data_type = 'image' ORDER BY t.id"""

IDENTIFIER_TYPE_DATA = """SELECT data_type FROM entity_identifier_types WHERE id = $2 AND (org_id IS NULL OR org_id = $1)"""

SAME_CONTENT = """-- identifiers of a library with byte-identical content under different entities (no vectors needed)
SELECT a.id AS first_id, b.id AS second_id FROM entity_identifiers a
JOIN entity_identifiers b ON b.library_id = a.library_id AND b.content_sha256 = a.content_sha256
    AND b.entity_id <> a.entity_id AND b.id > a.id
WHERE a.org_id = $1 AND a.library_id = $2 AND a.content_sha256 IS NOT NULL
ORDER BY a.id, b.id LIMIT $3"""


async def libraries_holding_type(conn: asyncpg.Connection, org_id: UUID, type_id: str) -> list[UUID]:
    return [r["id"] for r in await conn.fetch(LIBRARIES_HOLDING_TYPE, org_id, type_id)]


async def image_types_of_library(conn: asyncpg.Connection, org_id: UUID, library_id: UUID) -> list[str]:
    return [r["id"] for r in await conn.fetch(IMAGE_TYPES_OF_LIBRARY, org_id, library_id)]


async def identifier_type_data(conn: asyncpg.Connection, org_id: UUID, type_id: str) -> str | None:
    return await conn.fetchval(IDENTIFIER_TYPE_DATA, org_id, type_id)


async def same_content(conn: asyncpg.Connection, org_id: UUID, library_id: UUID, limit: int) -> list[tuple[UUID, UUID]]:
    return [(r["first_id"], r["second_id"]) for r in await conn.fetch(SAME_CONTENT, org_id, library_id, limit)]


async def enqueue_selection(
    conn: asyncpg.Connection, org_id: UUID, version_id: UUID, library_ids: Sequence[UUID], type_ids: Sequence[str],
    conditions: tuple[str, list[Any]],
) -> None:
    sql, args = conditions
    await conn.execute(ENQUEUE_SELECTION.format(conditions=sql), org_id, version_id, list(library_ids), list(type_ids), *args)
    await conn.execute("SELECT pg_notify($1, '')", EMBED_CHANNEL)


async def selection_counts(
    conn: asyncpg.Connection, org_id: UUID, version_id: UUID, library_ids: Sequence[UUID], type_ids: Sequence[str],
    conditions: tuple[str, list[Any]],
) -> asyncpg.Record:
    sql, args = conditions
    return await conn.fetchrow(SELECTION_COUNTS.format(conditions=sql), org_id, version_id, list(library_ids), list(type_ids), *args)


async def claim(
    conn: asyncpg.Connection, owner: str, lease_seconds: float, limit: int,
    version_id: UUID | None = None, org_id: UUID | None = None,
) -> list[asyncpg.Record]:
    return await conn.fetch(CLAIM, owner, float(lease_seconds), limit, version_id, org_id)


async def extend(conn: asyncpg.Connection, owner: str, version_id: UUID, ids: Sequence[UUID], lease_seconds: float) -> None:
    await conn.execute(EXTEND, owner, list(ids), float(lease_seconds), version_id)


async def fail(conn: asyncpg.Connection, owner: str, version_id: UUID, failures: dict[UUID, str]) -> None:
    if failures:
        await conn.execute(FAIL, owner, list(failures), [r[:500] for r in failures.values()], version_id)


async def release(conn: asyncpg.Connection, owner: str, version_id: UUID, ids: Sequence[UUID]) -> None:
    if ids:
        await conn.execute(RELEASE, owner, list(ids), version_id)


# ------------------------------------------------------------------ recognition from the index

BEST_PER_ENTITY = """-- a gallery answering from its library's vectors: each entity's best identifier (exact cosine), best first
SELECT best.entity_id, n.name AS entity_name, best.identifier_id, best.score FROM (
    SELECT DISTINCT ON (i.entity_id) i.entity_id, e.identifier_id, 1 - (e.embedding <=> $4::float4[]::vector) AS score
    FROM identifier_embeddings e JOIN entity_identifiers i ON i.id = e.identifier_id AND i.org_id = e.org_id
    WHERE e.org_id = $1 AND e.library_id = $2 AND e.model_version_id = $3
    ORDER BY i.entity_id, e.embedding <=> $4::float4[]::vector, e.identifier_id
) best JOIN entities n ON n.id = best.entity_id
ORDER BY best.score DESC, best.entity_id
LIMIT $5"""

ENTITIES_OF_IDENTIFIERS = """SELECT i.id AS identifier_id, i.entity_id, n.name AS entity_name
FROM entity_identifiers i JOIN entities n ON n.id = i.entity_id
WHERE i.org_id = $1 AND i.id = ANY($2::uuid[])"""


async def best_per_entity(
    conn: asyncpg.Connection, org_id: UUID, library_id: UUID, version_id: UUID, query: list[float], limit: int,
) -> list[asyncpg.Record]:
    """(entity_id, entity_name, identifier_id, score) of the ``limit`` entities nearest to ``query``."""
    return await conn.fetch(BEST_PER_ENTITY, org_id, library_id, version_id, query, limit)


async def entities_of_identifiers(conn: asyncpg.Connection, org_id: UUID, ids: Sequence[UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(ENTITIES_OF_IDENTIFIERS, org_id, list(ids))
