"""Embeddings as data: the seed's insert / get / generate operations, similarity search and duplicates.

Vectors live in ``identifier_embeddings`` (pgvector), one per (identifier, model version). They are made at
ingest by workers (gateway/worker/embedding.py) for the identifier type's default model and for every model a
LibraryEngineModel of the library uses, by ``generateEmbeddings`` jobs, by training, or inserted by clients.
Only image identifier types are embedded here: a registered embedding model reads whole images.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit
from uuid import UUID, uuid4

import numpy as np

from engines.embedding import embedder
from engines.interface import EngineError
from gateway.errors import CapacityExceeded, InvalidInput, NotFound, PayloadTooLarge
from gateway.services import engine_backbones, models
from gateway.services.identifier_filter import IdentifierSelection
from gateway.services.ids import parse_id
from gateway.services.principal import Principal
from storage.queries import identifiers as identifier_q
from storage.queries import jobs as job_q
from storage.queries import libraries as library_q
from storage.queries import vectors as q
from storage.rows import Identifier, Job, ModelVersion

EMBEDDING = "embedding"
ENGINE_ID = "engineshed-embeddings"  # the internal engine generateEmbeddings tasks run under (migration 0009)
MAX_INSERT = 100  # insertEmbeddings takes fewer than this many per call (the seed's limit)
MAX_UNIQUE_NAMES = 1000  # embeddingVectors per call: each answer carries a whole vector
MAX_SIMILAR = 100  # similarIdentifiers' largest limit
EF_SEARCH_MIN = 64  # hnsw.ef_search floor; raised with the limit (pgvector filters after the index scan)
EF_SEARCH_MAX = 1000  # pgvector's own ceiling for hnsw.ef_search; a library search past it scans the library
MAX_DUPLICATE_SCAN = 50_000  # vectors a duplicate scan compares pairwise, in blocks
DUPLICATE_THRESHOLD = 0.97  # cosine at which two images count as the same picture
MAX_DUPLICATES = 1000


@dataclass(frozen=True, slots=True)
class StoredEmbedding:
    """One EntityIdentifier.embeddings entry."""

    model: str
    model_version_id: UUID
    dimension: int
    created_at: datetime
    source: str


@dataclass(frozen=True, slots=True)
class VectorOf:
    """One embeddingVectors answer."""

    unique_name: str
    identifier_id: UUID
    library_id: UUID
    model: str
    vector: np.ndarray


@dataclass(frozen=True, slots=True)
class Similar:
    identifier: Identifier
    score: float


@dataclass(frozen=True, slots=True)
class DuplicatePair:
    """Two identifiers under different entities holding the same (or a near-identical) picture."""

    first: Identifier
    second: Identifier
    score: float
    reason: str  # same-content (identical bytes) | near-identical (cosine over the threshold)


# ------------------------------------------------------------------ models


async def resolve_version(res: Any, org_id: UUID, ref: str | None, identifier_type: str | None = None) -> ModelVersion:
    """The embedding model version ``ref`` names, or the system default for ``identifier_type``."""
    if ref:
        version = await models.resolve_model(res, org_id, ref, EMBEDDING)
    else:
        version = await models.default_model(res, org_id, EMBEDDING, identifier_type)
        if version is None:
            kind = identifier_type or "image"
            raise InvalidInput(
                f"no modelId was given and no default embedding model for {kind} identifiers is registered; "
                "name a registered embedding model (modelId) or pull a default (engineshed models pull)"
            )
    if not version.dimension or version.dimension <= 0:
        raise InvalidInput(f"model {version.ref} declares no output dimension")
    return version


def ingest_default_name(type_id: str) -> str | None:
    """The system embedding model that embeds new identifiers of a type by default (see ingest_versions)."""
    return models.default_model_name(EMBEDDING, type_id)


def ingest_versions(res: Any, data_type: str | None, candidates: Sequence[UUID]) -> list[UUID]:
    """The model versions a new identifier is embedded by: the type's default and the library's models' own.

    ``candidates`` come with the upload's checks, in one query (storage/queries/identifiers.py TARGET):
    the default named by :func:`ingest_default_name` when it is ready, then the library's models' versions.
    Only image identifiers are embedded on ingest, and only while ENGINESHED_EMBED_ON_INGEST is on.
    """
    if data_type != "image" or not res.settings.embed_on_ingest:
        return []
    return list(dict.fromkeys(candidates))


async def _existing_library(res: Any, principal: Principal, library_id: object | None) -> UUID | None:
    """:func:`_scoped_library`, and not_found for a library the organization does not have."""
    lid = _scoped_library(principal, library_id)
    if lid is not None and library_id is not None:
        async with res.pool.acquire() as conn:
            if await library_q.by_id(conn, principal.org_id, lid) is None:
                raise NotFound()
    return lid


def _scoped_library(principal: Principal, library_id: object | None) -> UUID | None:
    """The library a call is limited to: the one given, or a task token's own."""
    lid = parse_id(library_id) if library_id is not None else None
    if principal.is_task:
        if lid is None:
            return principal.library_id
        principal.check_library(lid)
    return lid


# ------------------------------------------------------------------ the seed's operations


def _check_vector(values: Sequence[float], dimension: int, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size != dimension:
        raise InvalidInput(f"{what} has {array.size} values; the model's dimension is {dimension}")
    if not np.isfinite(array).all():
        raise InvalidInput(f"{what} holds a value that is not a finite number")
    if not np.any(array):
        raise InvalidInput(f"{what} is all zeros, which has no direction to compare by cosine")
    if np.abs(array).max() > 3.4e38:
        raise InvalidInput(f"{what} holds a value outside the float32 range")
    return array.astype(np.float32)


async def insert(
    res: Any, principal: Principal, model_ref: str, vector_dimension: Sequence[int],
    records: Sequence[tuple[str, Sequence[float]]], library_id: object | None,
) -> int:
    """insertEmbeddings: all of ``records`` (unique name, vector) or none; returns how many were stored."""
    principal.require_write()
    if not isinstance(model_ref, str) or not model_ref.strip():
        raise InvalidInput("modelId is required: the registered embedding model the vectors came from")
    dims = list(vector_dimension)
    if len(dims) != 1 or dims[0] <= 0:
        raise InvalidInput(f"vectorDimension must be one positive number, such as [2048], not {dims}")
    if not records:
        raise InvalidInput("embeddings is empty")
    if len(records) >= MAX_INSERT:
        raise InvalidInput(
            f"insertEmbeddings takes fewer than {MAX_INSERT} embeddings per call (got {len(records)}); split the batch",
            data={"limit": MAX_INSERT - 1},
        )
    lid = await _existing_library(res, principal, library_id)
    version = await resolve_version(res, principal.org_id, model_ref)
    dimension = dims[0]
    if dimension != version.dimension:
        raise InvalidInput(f"vectorDimension [{dimension}] is not the dimension of model {version.ref} ({version.dimension})")
    names: list[str] = []
    for position, (name, _) in enumerate(records):
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput(f"embeddings[{position}].uniqueName is empty")
        names.append(name)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidInput(f"uniqueName given more than once in one call: {', '.join(repeated[:10])}")
    vectors = [
        _check_vector(values, dimension, f"embeddings[{position}] ({name})")
        for position, (name, values) in enumerate(records)
    ]
    async with res.pool.acquire() as conn, conn.transaction():
        found = await identifier_q.by_unique_names(conn, principal.org_id, names, lid)
        by_name: dict[str, list[Any]] = {}
        for row in found:
            by_name.setdefault(row["unique_name"], []).append(row)
        missing = [n for n in names if n not in by_name]
        if missing:
            raise NotFound(
                f"no identifier has the uniqueName {', '.join(map(repr, missing))}",
                data={"objectType": "entityIdentifier", "uniqueNames": missing},
            )
        ambiguous = [n for n in names if len(by_name[n]) > 1]
        if ambiguous:
            raise InvalidInput(
                f"uniqueName {', '.join(map(repr, ambiguous[:10]))} is used in several libraries; give libraryId"
            )
        rows = [(by_name[n][0]["id"], by_name[n][0]["library_id"], v.tolist()) for n, v in zip(names, vectors, strict=True)]
        await q.upsert_inserted(conn, principal.org_id, version.id, dimension, rows)
        await q.want_index(conn, principal.org_id, version.id, dimension)
    return len(rows)


async def vectors(
    res: Any, principal: Principal, unique_names: Sequence[str], model_ref: str | None, library_id: object | None,
) -> list[VectorOf]:
    """embeddingVectors: the vectors of the named identifiers (names without one are left out)."""
    principal.require_read()
    names = list(dict.fromkeys(unique_names))
    if len(names) > MAX_UNIQUE_NAMES:
        raise InvalidInput(f"embeddingVectors takes at most {MAX_UNIQUE_NAMES} uniqueNames per call")
    lid = await _existing_library(res, principal, library_id)
    if not names:
        return []
    async with res.pool.acquire() as conn:
        found = await identifier_q.by_unique_names(conn, principal.org_id, names, lid)
    versions: dict[str | None, ModelVersion] = {}
    by_version: dict[UUID, list[Any]] = {}
    for row in found:
        key = None if model_ref else row["identifier_type_id"]
        if key not in versions:
            versions[key] = await resolve_version(res, principal.org_id, model_ref, row["identifier_type_id"])
        by_version.setdefault(versions[key].id, []).append(row)
    refs = {v.id: v.ref for v in versions.values()}
    out: list[VectorOf] = []
    async with res.pool.acquire() as conn:
        for version_id, rows in by_version.items():
            got = await q.vectors_by_ids(conn, principal.org_id, version_id, [r["id"] for r in rows])
            for r in rows:
                if r["id"] in got:
                    out.append(VectorOf(r["unique_name"], r["id"], r["library_id"], refs[version_id], got[r["id"]]))
    order = {n: i for i, n in enumerate(names)}
    out.sort(key=lambda v: (order[v.unique_name], str(v.library_id)))
    return out


async def of_identifiers(res: Any, org_id: UUID, ids: Sequence[UUID]) -> dict[UUID, list[StoredEmbedding]]:
    """EntityIdentifier.embeddings for many identifiers (one query)."""
    out: dict[UUID, list[StoredEmbedding]] = {i: [] for i in ids}
    async with res.pool.acquire() as conn:
        for r in await q.of_identifiers(conn, org_id, list(ids)):
            out[r["identifier_id"]].append(
                StoredEmbedding(r["model"], r["model_version_id"], r["dimension"], r["created_at"], r["source"]))
    return out


async def generate(
    res: Any, principal: Principal, *, library_id: object | None, identifier_type_id: str | None,
    model_ref: str | None, selection: IdentifierSelection, query: str | None = None,
) -> Job:
    """generateEmbeddings: a job whose tasks embed the selection's identifiers that lack a vector (one task
    per model version: without modelId a people library's faces take the face default, its images the image one).
    ``query``: autoTag's query language (labeling_jobs.parse_query), checked here."""
    from gateway.services.labeling_jobs import parse_query  # labeling_jobs reaches embeddings through models

    principal.require_write()
    conditions = parse_query(query)
    if (library_id is None) == (identifier_type_id is None):
        raise InvalidInput("give exactly one of libraryId (one library) or identifierTypeId (every library holding it)")
    org = principal.org_id
    async with res.pool.acquire() as conn:
        if library_id is not None:
            lid = parse_id(library_id)
            principal.check_library(lid)
            if await library_q.by_id(conn, org, lid) is None:
                raise NotFound()
            libraries = [lid]
            types = await q.image_types_of_library(conn, org, lid)
            if not types:
                raise InvalidInput("this library takes no image identifiers; embedding models read images")
        else:
            type_id = str(identifier_type_id)
            data_type = await q.identifier_type_data(conn, org, type_id)
            if data_type is None:
                raise NotFound(f"no identifier type {type_id!r}", data={"objectType": "entityIdentifierType"})
            if data_type != "image":
                raise InvalidInput(f"identifier type {type_id} holds {data_type}; embedding models read images")
            libraries = await q.libraries_holding_type(conn, org, type_id)
            if principal.is_task:
                libraries = [lid for lid in libraries if lid == principal.library_id]
            types = [type_id]
    groups: dict[UUID, tuple[ModelVersion, list[str]]] = {}
    for type_id in types:
        version = await resolve_version(res, org, model_ref, type_id)
        groups.setdefault(version.id, (version, []))[1].append(type_id)
    async with res.pool.acquire() as conn, conn.transaction():
        job = await job_q.insert_job(
            conn, id=uuid4(), org_id=org, name="generateEmbeddings", cluster_id=None,
            library_id=libraries[0] if len(libraries) == 1 else None, actor=principal.actor,
            model_version_id=next(iter(groups)) if len(groups) == 1 else None,
        )
        for position, (version, type_ids) in enumerate(groups.values()):
            payload = {
                "mode": "embed", "modelVersionId": str(version.id), "model": version.ref,
                "libraryIds": [str(lid) for lid in libraries], "identifierTypeIds": type_ids,
                "filter": selection.as_json(), "query": conditions,
            }
            await job_q.insert_task(
                conn, id=uuid4(), org_id=org, job_id=job.id, engine_id=ENGINE_ID, position=position,
                payload=payload, max_attempts=res.settings.max_attempts, test_task=False,
            )
        await job_q.notify(conn, job_q.WAKE_CHANNEL, ENGINE_ID)
        await job_q.notify(conn, job_q.EVENT_CHANNEL, str(job.id))
    return job


# ------------------------------------------------------------------ search


async def _query_vector(
    res: Any, principal: Principal, version: ModelVersion, identifier: Identifier | None, file: Any, vector: Any,
) -> np.ndarray:
    if identifier is not None:
        async with res.pool.acquire() as conn:
            got = await q.vectors_by_ids(conn, principal.org_id, version.id, [identifier.id])
        if identifier.id not in got:
            raise InvalidInput(
                f"identifier {identifier.id} has no embedding of model {version.ref} yet (see EntityIdentifier.embeddings; "
                "generateEmbeddings makes it)"
            )
        return got[identifier.id]
    if vector is not None:
        return _check_vector(vector, version.dimension, "vector")
    data = await _read_upload(res, file)
    model = await engine_backbones.engine_model(res, version)
    try:
        emb = await embedder(model, res.settings.onnx_provider)
        (decoded, skip), = await emb.decode([data], None)
        if skip is not None:
            raise InvalidInput(f"the file cannot be read as an image: {skip.get('detail') or skip['reason']}")
        return (await emb.embed([decoded]))[0]
    except EngineError as exc:
        raise InvalidInput(str(exc)) from exc


async def _read_upload(res: Any, upload: Any) -> bytes:
    data = bytearray()
    while chunk := await upload.read(256 * 1024):
        data += chunk
        if len(data) > res.settings.max_upload_bytes:
            raise PayloadTooLarge()
    return bytes(data)


async def similar(
    res: Any, principal: Principal, *, library_id: object | None, identifier_id: object | None, file: Any,
    vector: Sequence[float] | None, model_ref: str | None, limit: int, threshold: float | None,
) -> list[Similar]:
    """similarIdentifiers: the organization's (or library's) identifiers nearest by cosine, best first."""
    principal.require_read()
    given = [x is not None for x in (identifier_id, file, vector)]
    if sum(given) != 1:
        raise InvalidInput("give exactly one of identifierId, file or vector")
    if not 1 <= limit <= MAX_SIMILAR:
        raise InvalidInput(f"limit must be between 1 and {MAX_SIMILAR}")
    if threshold is not None and not (math.isfinite(threshold) and -1.0 <= threshold <= 1.0):
        raise InvalidInput("threshold is a cosine similarity between -1 and 1")
    lid = await _existing_library(res, principal, library_id)
    identifier = None
    if identifier_id is not None:
        async with res.pool.acquire() as conn:
            identifier = await identifier_q.by_id(conn, principal.org_id, parse_id(identifier_id))
        if identifier is None:
            raise NotFound()
        principal.check_library(identifier.library_id)
    version = await resolve_version(res, principal.org_id, model_ref, identifier.identifier_type_id if identifier else None)
    values = (await _query_vector(res, principal, version, identifier, file, vector)).astype(np.float32).tolist()
    exclude = identifier.id if identifier is not None else None
    hits = await search(res, principal.org_id, version, lid, values, exclude, limit, threshold)
    async with res.pool.acquire() as conn:
        rows = {r.id: r for r in await identifier_q.by_ids(conn, principal.org_id, [i for i, _ in hits])}
    return [Similar(rows[i], min(score, 1.0)) for i, score in hits if i in rows]  # a cosine: float32 rounding aside, ≤ 1


async def search(
    res: Any, org_id: UUID, version: ModelVersion, library_id: UUID | None, query: list[float],
    exclude: UUID | None, limit: int, threshold: float | None,
) -> list[tuple[UUID, float]]:
    """Nearest vectors by cosine: an exact scan over few candidates, the HNSW index over many.

    pgvector applies the library filter after the index scan, which yields ``hnsw.ef_search`` candidates: a
    library holding a small share of the organization's vectors can leave fewer than ``limit`` of them. The
    search then asks again with a wider ef_search, and past EF_SEARCH_MAX scans the library exactly (its
    btree index finds its rows). Nothing is counted first: a count at a million rows is a scan of a million.
    """
    async with res.pool.acquire() as conn:
        many = await q.more_candidates_than(conn, org_id, version.id, library_id, res.settings.search_exact_below)
        # Up to ENGINESHED_SEARCH_EXACT_BELOW candidates an exact scan is cheap and has recall 1.
        if not many or not await q.index_built(conn, org_id, version.id):
            return await q.exact_search(conn, org_id, version.id, library_id, query, exclude, limit, threshold)
        ef = min(EF_SEARCH_MAX, max(EF_SEARCH_MIN, 2 * (limit + 1)))
        while True:
            hits = await q.indexed_search(conn, org_id, version.id, version.dimension, library_id, query, exclude,
                                          limit, ef)
            if len(hits) >= limit or library_id is None:
                break
            if ef >= EF_SEARCH_MAX:
                return await q.exact_search(conn, org_id, version.id, library_id, query, exclude, limit, threshold)
            ef = min(EF_SEARCH_MAX, ef * 4)
    if threshold is not None:
        hits = [(i, s) for i, s in hits if s >= threshold]
    return hits


async def duplicates(
    res: Any, principal: Principal, library_id: object, *, model_ref: str | None = None,
    threshold: float = DUPLICATE_THRESHOLD, limit: int = MAX_DUPLICATES,
) -> list[DuplicatePair]:
    """Pairs of identifiers under different entities of a library holding the same picture: identical bytes,
    or vectors (of ``model_ref``, else the version the library has most vectors of) at cosine ≥ ``threshold``.

    This is what ``Library.issues`` reports as duplicates; ``Library.duplicateIdentifiers`` serves it directly.
    """
    principal.require_read()
    lid = parse_id(library_id)
    principal.check_library(lid)
    if not (math.isfinite(threshold) and 0.0 < threshold <= 1.0):
        raise InvalidInput("threshold is a cosine similarity in (0, 1]")
    if not 1 <= limit <= MAX_DUPLICATES:
        raise InvalidInput(f"limit must be between 1 and {MAX_DUPLICATES}")
    org = principal.org_id
    async with res.pool.acquire() as conn:
        if await library_q.by_id(conn, org, lid) is None:
            raise NotFound()
        pairs: dict[tuple[UUID, UUID], tuple[float, str]] = {
            pair: (1.0, "same-content") for pair in await q.same_content(conn, org, lid, limit)
        }
        if model_ref:
            version_id: UUID | None = (await resolve_version(res, org, model_ref)).id
        else:
            in_library = await q.library_model_versions(conn, org, lid)
            version_id = in_library[0] if in_library else None
        if version_id is not None:
            if await q.more_candidates_than(conn, org, version_id, lid, MAX_DUPLICATE_SCAN):
                raise CapacityExceeded(
                    f"a duplicate scan compares at most {MAX_DUPLICATE_SCAN} vectors; this library has more than that")
            ids, entities, matrix = await q.library_vectors(conn, org, lid, version_id)
            near = await asyncio.to_thread(_near_pairs, matrix, entities, threshold, limit)
            for a, b, score in near:
                key = (ids[a], ids[b]) if str(ids[a]) < str(ids[b]) else (ids[b], ids[a])
                pairs.setdefault(key, (score, "near-identical"))
        wanted = sorted({i for pair in pairs for i in pair})
        rows = {r.id: r for r in await identifier_q.by_ids(conn, org, wanted)}
    ordered = sorted(pairs.items(), key=lambda item: (-item[1][0], str(item[0][0]), str(item[0][1])))[:limit]
    return [DuplicatePair(rows[a], rows[b], score, reason) for (a, b), (score, reason) in ordered if a in rows and b in rows]


def _near_pairs(
    matrix: np.ndarray, entities: list[UUID | None], threshold: float, limit: int,
) -> list[tuple[int, int, float]]:
    """(i, j, cosine) with i < j, different entities, cosine ≥ threshold; blockwise, so memory is [B, N].

    Unassigned identifiers (no entity, #14) are left out: a picture not labelled yet is no labelling error (as
    for identical bytes, whose SQL compares entities and so never pairs a NULL one).
    """
    keep = np.flatnonzero(np.asarray([e is not None for e in entities], dtype=bool))
    if keep.size < 2:
        return []
    found = _assigned_pairs(matrix[keep], [entities[i] for i in keep], threshold, limit)
    return [(int(keep[i]), int(keep[j]), score) for i, j, score in found]


def _assigned_pairs(matrix: np.ndarray, entities: list[Any], threshold: float, limit: int) -> list[tuple[int, int, float]]:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = matrix / np.maximum(norms, 1e-12)
    labels = np.unique(np.asarray([e.int for e in entities], dtype=object), return_inverse=True)[1]
    found: list[tuple[int, int, float]] = []
    block = 1024
    for start in range(0, unit.shape[0], block):
        sims = unit[start:start + block] @ unit.T
        rows, cols = np.nonzero(sims >= threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i = start + r
            if c > i and labels[i] != labels[c]:
                found.append((i, c, float(sims[r, c])))
        if len(found) >= 4 * limit:
            break
    found.sort(key=lambda t: -t[2])
    return found[:limit]


def default_unique_name(filename: str | None, url: str | None) -> str | None:
    """What uniqueName defaults to: the uploaded file's name, else the last segment of the URL's path."""
    name = filename or (unquote(urlsplit(url).path.rsplit("/", 1)[-1]) if url else None)
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ord(ch) >= 32 and ord(ch) != 127).strip()[:255]
    return name or None


def check_unique_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("uniqueName must not be empty")
    if len(name) > 512:
        raise InvalidInput("uniqueName is at most 512 characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise InvalidInput("uniqueName must not contain control characters")
    return name


__all__ = [
    "DuplicatePair", "MAX_INSERT", "Similar", "StoredEmbedding", "VectorOf", "default_unique_name", "duplicates",
    "generate", "insert", "of_identifiers", "resolve_version", "similar", "vectors",
]
