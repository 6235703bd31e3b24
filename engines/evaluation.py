"""Accuracy measurements reported in an artifact's ``jsondata.evaluation``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LeaveOneOut", "against_gallery", "l2_normalise", "leave_one_out", "per_entity"]

MAX_QUERIES = 4096  # leave-one-out over more rows samples this many queries (cost is queries × rows × D)
# Scores computed at once, as (queries in a chunk) × rows: a fixed budget, so the evaluation's memory
# does not grow with the library (1,024 queries a chunk made it 110 MiB at 10,000 rows; this is ~12 MiB).
CHUNK_ELEMENTS = 2_000_000


def l2_normalise(vectors: np.ndarray, *, in_place: bool = False) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as the artifact heads do; ``in_place`` scales a float32
    array the caller owns instead of making another [R, D] copy."""
    vectors = np.asarray(vectors, np.float32)
    norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-6)
    if in_place:
        vectors /= norms
        return vectors
    return vectors / norms


@dataclass(frozen=True, slots=True)
class LeaveOneOut:
    """Leave-one-out nearest-neighbour results over a gallery."""

    top1: float | None  # None when no row has a same-entity neighbour
    queries: np.ndarray  # row indices evaluated
    correct: np.ndarray  # bool per query
    genuine: np.ndarray  # best same-entity cosine per query
    impostor: np.ndarray  # best other-entity cosine per query (-inf with a single entity)


def leave_one_out(vectors: np.ndarray, labels: np.ndarray, *, seed: int = 0, normalised: bool = False) -> LeaveOneOut:
    """Top-1 nearest neighbour of each row among all other rows (cosine), vectorised in chunks.

    Rows whose entity has no other row cannot be recognised without themselves and are not
    evaluated. Above MAX_QUERIES evaluable rows a seeded sample of them is used. ``normalised``: the rows
    are unit length already (saves a copy of them).
    """
    x = np.asarray(vectors, np.float32) if normalised else l2_normalise(vectors)
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    queries = np.flatnonzero(counts[labels] > 1)
    if queries.size > MAX_QUERIES:
        queries = np.sort(np.random.default_rng(seed).choice(queries, MAX_QUERIES, replace=False))
    genuine = np.empty(queries.size, np.float32)
    impostor = np.empty(queries.size, np.float32)
    # Each query's same-entity columns, found through the rows sorted by entity: gathering those few scores and
    # masking them out before a plain row max costs far less than two masked reductions over [chunk, N].
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    chunk = max(1, CHUNK_ELEMENTS // max(1, x.shape[0]))
    for start in range(0, queries.size, chunk):
        rows = queries[start : start + chunk]
        scores = x[rows] @ x.T
        scores[np.arange(rows.size), rows] = -np.inf  # leave the query itself out
        mates = counts[labels[rows]]  # >= 2: a query's entity has another row
        first = np.cumsum(mates) - mates
        which = np.repeat(np.arange(rows.size), mates)
        cols = order[np.repeat(starts[labels[rows]] - first, mates) + np.arange(int(mates.sum()))]
        genuine[start : start + rows.size] = np.maximum.reduceat(scores[which, cols], first)
        scores[which, cols] = -np.inf
        impostor[start : start + rows.size] = scores.max(axis=1)
    correct = genuine > impostor
    top1 = float(correct.mean()) if queries.size else None
    return LeaveOneOut(top1, queries, correct, genuine, impostor)


def against_gallery(
    gallery: np.ndarray, gallery_labels: np.ndarray, queries: np.ndarray, query_labels: np.ndarray
) -> LeaveOneOut:
    """Top-1 nearest neighbour of each held-out query row among the gallery rows (all unit length, cosine).

    A query whose entity has no gallery row cannot be recognised and counts as wrong (its genuine score is
    -inf). The result has the LeaveOneOut form, ``queries`` indexing the query rows.
    """
    gallery_labels, query_labels = np.asarray(gallery_labels), np.asarray(query_labels)
    n = query_labels.size
    genuine = np.full(n, -np.inf, np.float32)
    impostor = np.full(n, -np.inf, np.float32)
    chunk = max(1, CHUNK_ELEMENTS // max(1, gallery.shape[0]))
    for start in range(0, n, chunk):
        rows = slice(start, min(n, start + chunk))
        scores = queries[rows] @ gallery.T
        same = query_labels[rows][:, None] == gallery_labels[None, :]
        genuine[rows] = np.max(scores, axis=1, where=same, initial=-np.inf)
        np.logical_not(same, out=same)
        impostor[rows] = np.max(scores, axis=1, where=same, initial=-np.inf)
    correct = (genuine > impostor) & np.isfinite(genuine)
    top1 = float(correct.mean()) if n else None
    return LeaveOneOut(top1, np.arange(n), correct, genuine, impostor)


def per_entity(entity_ids: Sequence[str], labels: np.ndarray, correct: np.ndarray) -> dict[str, dict[str, Any]]:
    """``{entityId: {count, correct}}`` for the evaluated rows with entity index ``labels``."""
    n = len(entity_ids)
    count = np.bincount(labels, minlength=n)
    right = np.bincount(labels, weights=correct.astype(np.float64), minlength=n)
    return {entity_ids[e]: {"count": int(count[e]), "correct": int(right[e])} for e in range(n) if count[e]}
