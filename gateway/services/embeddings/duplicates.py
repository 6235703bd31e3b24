"""Pairs of identifiers under different entities of a library that hold the same picture."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import numpy as np

from gateway.errors import CapacityExceeded, InvalidInput, NotFound
from gateway.resources import Resources
from gateway.services.access.ids import parse_id
from gateway.services.access.principal import Principal
from gateway.services.embeddings.vectors import library_default_version, resolve_version
from storage.queries import identifiers as identifier_q
from storage.queries import libraries as library_q
from storage.queries import vectors as q
from storage.rows import Identifier

MAX_DUPLICATE_SCAN = 50_000  # vectors a duplicate scan compares pairwise, in blocks
DUPLICATE_THRESHOLD = 0.97  # cosine at which two images count as the same picture
MAX_DUPLICATES = 1000


@dataclass(frozen=True, slots=True)
class DuplicatePair:
    """Two identifiers under different entities holding the same (or a near-identical) picture."""

    first: Identifier
    second: Identifier
    score: float
    reason: str  # same-content (identical bytes) | near-identical (cosine over the threshold)


async def duplicates(
    res: Resources, principal: Principal, library_id: object, *, model_ref: str | None = None,
    threshold: float = DUPLICATE_THRESHOLD, limit: int = MAX_DUPLICATES,
) -> list[DuplicatePair]:
    """Pairs of identifiers under different entities of a library holding the same picture: identical bytes,
    or vectors at cosine ≥ ``threshold``: of ``model_ref``, else of the model the library's type picks
    (vectors.library_default_version) when the library has vectors of it, else of the version it has most vectors of.

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
    preferred = None if model_ref else await library_default_version(res, org, lid)  # not_found for another's library
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
            if preferred is not None and preferred.id in in_library:
                version_id = preferred.id
            else:
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

    Unassigned identifiers (no entity) are left out: a picture not labelled yet is no labelling error (as
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
