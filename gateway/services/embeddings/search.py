"""Similarity search over stored vectors: similarIdentifiers, and the nearest-vector search recognition by index uses."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import numpy as np

from engines.embedding import embedder
from engines.interface import EngineError
from gateway.errors import InvalidInput, NotFound
from gateway.resources import Resources
from gateway.services.access.ids import parse_id
from gateway.services.access.principal import Principal
from gateway.services.embeddings.vectors import (
    check_vector,
    existing_library,
    library_default_version,
    resolve_version,
)
from gateway.services.ingest.uploads import read_limited
from gateway.services.models import backbones as engine_backbones
from storage.queries import identifiers as identifier_q
from storage.queries import vectors as q
from storage.rows import Identifier, ModelVersion

MAX_SIMILAR = 100  # similarIdentifiers' largest limit
EF_SEARCH_MIN = 64  # hnsw.ef_search floor; raised with the limit (pgvector filters after the index scan)
EF_SEARCH_MAX = 1000  # pgvector's own ceiling for hnsw.ef_search; a library search past it scans the library


@dataclass(frozen=True, slots=True)
class Similar:
    identifier: Identifier
    score: float


async def _query_vector(
    res: Resources, principal: Principal, version: ModelVersion, identifier: Identifier | None, file: Any, vector: Any,
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
        return check_vector(vector, version.dimension, "vector")
    data = await read_limited(file, res.settings.max_upload_bytes)
    model = await engine_backbones.engine_model(res, version)
    try:
        emb = await embedder(model, res.settings.onnx_provider)
        (decoded, skip), = await emb.decode([data], None)
        if skip is not None:
            raise InvalidInput(f"the file cannot be read as an image: {skip.get('detail') or skip['reason']}")
        return (await emb.embed([decoded]))[0]
    except EngineError as exc:
        raise InvalidInput(str(exc)) from exc


async def similar(
    res: Resources, principal: Principal, *, library_id: object | None, identifier_id: object | None, file: Any,
    vector: Sequence[float] | None, model_ref: str | None, limit: int, threshold: float | None,
) -> list[Similar]:
    """similarIdentifiers: the organization's (or library's) identifiers nearest by cosine, best first.

    Without ``model_ref`` the model is the default for the identifier's type (``identifier_id``), else the one
    the library's type picks (vectors.library_default_version), else the image default."""
    principal.require_read()
    given = [x is not None for x in (identifier_id, file, vector)]
    if sum(given) != 1:
        raise InvalidInput("give exactly one of identifierId, file or vector")
    if not 1 <= limit <= MAX_SIMILAR:
        raise InvalidInput(f"limit must be between 1 and {MAX_SIMILAR}")
    if threshold is not None and not (math.isfinite(threshold) and -1.0 <= threshold <= 1.0):
        raise InvalidInput("threshold is a cosine similarity between -1 and 1")
    lid = await existing_library(res, principal, library_id)
    identifier = None
    if identifier_id is not None:
        async with res.pool.acquire() as conn:
            identifier = await identifier_q.by_id(conn, principal.org_id, parse_id(identifier_id))
        if identifier is None:
            raise NotFound()
        principal.check_library(identifier.library_id)
    version = None
    if model_ref is None and identifier is None and lid is not None:
        version = await library_default_version(res, principal.org_id, lid)  # the library's type picks the model
    if version is None:
        version = await resolve_version(res, principal.org_id, model_ref, identifier.identifier_type_id if identifier else None)
    values = (await _query_vector(res, principal, version, identifier, file, vector)).astype(np.float32).tolist()
    exclude = identifier.id if identifier is not None else None
    hits = await search(res, principal.org_id, version, lid, values, exclude, limit, threshold)
    async with res.pool.acquire() as conn:
        rows = {r.id: r for r in await identifier_q.by_ids(conn, principal.org_id, [i for i, _ in hits])}
    return [Similar(rows[i], min(score, 1.0)) for i, score in hits if i in rows]  # a cosine: float32 rounding aside, ≤ 1


async def search(
    res: Resources, org_id: UUID, version: ModelVersion, library_id: UUID | None, query: list[float],
    exclude: UUID | None, limit: int, threshold: float | None,
) -> list[tuple[UUID, float]]:
    """Nearest vectors by cosine: an exact scan over few candidates, the HNSW index over many.

    pgvector applies the library filter after the index scan, which yields ``hnsw.ef_search`` candidates: a
    library holding a small share of the organization's vectors can leave fewer than ``limit`` of them. The
    search then asks again with a wider ef_search, and past EF_SEARCH_MAX scans the library exactly (its
    btree index finds its rows). Nothing is counted first: a count at a million rows is a scan of a million.

    The exact scan is the fast path for a library of a few thousand vectors (vectors stored inline, migration
    0020: ~2.5 µs a candidate when cached); the pgvector the stack ships (0.6) has no iterative index scan
    (0.8's ``hnsw.iterative_scan``), so a filtered index scan can only widen ef_search.
    """
    async with res.pool.acquire() as conn:
        # Up to ENGINESHED_SEARCH_EXACT_BELOW candidates an exact scan is cheap and has recall 1. Without an
        # index there is no other way, and nothing to count (the count reads up to that many rows).
        if not await q.index_built(conn, org_id, version.id) or not await q.more_candidates_than(
                conn, org_id, version.id, library_id, res.settings.search_exact_below):
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


