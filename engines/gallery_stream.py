"""Gallery training streamed from stored vectors: memory bounded by a page and the identifiers' IDs, not by
the library's vectors.

Where every identifier of the library has a stored vector of the registered model (what the worker reads with
the pages) and nothing needs the images (no quality gate, no split, no backbone comparison), the gallery needs
no inference: the vectors go, a page at a time, normalised, to a float32 file on disk; the rows are then
ordered as :func:`engines.training.group` orders them (entities by name, an entity's rows by content digest),
which only reorders small per-row keys, since the gallery is flat and a row's place within its entity is its
``best_identifier`` slot; the evaluation reads the file in blocks; and the artifact's weights are written from
the file a batch at a time (engines.gallery_index). An identifier without a stored vector ends the streamed
pass (:class:`NotStreamable`) and the engine trains the usual way.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from engines.calibration import balanced_threshold
from engines.evaluation import CHUNK_ELEMENTS, MAX_QUERIES
from engines.interface import EmbeddingModel, NothingToTrain, TrainingContext

__all__ = ["NotStreamable", "StreamedGallery", "evaluate", "read_stream", "streamable"]

# Leave-one-out queries × gallery rows the evaluation may cost: past MAX_QUERIES × this many rows, fewer queries.
EVALUATION_BUDGET = 300_000_000
MIN_QUERIES = 256


class NotStreamable(Exception):
    """An identifier has no stored vector: the library needs the usual training."""


def streamable(config: Mapping[str, Any], model: EmbeddingModel | None, ctx: TrainingContext) -> bool:
    """Whether the training can read vectors only (module docstring)."""
    return (model is not None and ctx.stored is not None and not ctx.candidate_models
            and not config.get("minSize") and not config.get("sharpnessThreshold")
            and not config.get("validationFraction") and not config.get("testFraction")
            and not config.get("splitKey") and config.get("trainingFraction") in (None, 1.0))


@dataclass(slots=True)
class StreamedGallery:
    """The library's vectors on disk (``path``, float32 [rows, dim], unit length, in paging order) and per row
    its entity rank and slot, in the order the artifact's labels name them."""

    path: Path
    rows: int
    dim: int
    entity: np.ndarray  # [rows] int64: entity index (entities ordered by name, then ID)
    slot: np.ndarray  # [rows] int64: the row's index in its entity's identifierIds
    keep: np.ndarray  # [rows] bool: within maxGalleryPerEntity
    entity_ids: list[str]
    entity_names: list[str]
    identifier_ids: list[tuple[str, ...]]  # per entity, in slot order (kept rows only)
    seconds: float

    def block(self, start: int, end: int) -> np.ndarray:
        """Rows ``start:end``, read from the file (not mapped: mapped pages count in the process's RSS)."""
        with open(self.path, "rb") as f:
            f.seek(start * self.dim * 4)
            return np.frombuffer(f.read((end - start) * self.dim * 4), np.float32).reshape(end - start, self.dim)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The rows at ``rows`` (a sample), read one by one."""
        out = np.empty((rows.size, self.dim), np.float32)
        size = self.dim * 4
        with open(self.path, "rb") as f:
            for n, row in enumerate(rows):
                f.seek(int(row) * size)
                out[n] = np.frombuffer(f.read(size), np.float32)
        return out


async def read_stream(ctx: TrainingContext, digest: str, page_size: int, cap: int, directory: Path) -> StreamedGallery:
    """One pass over the context's pages, every vector to ``directory``/vectors.f32; raises NotStreamable at the
    first identifier without a stored vector of ``digest``, NothingToTrain for an empty library."""
    stored = ctx.stored
    if stored is None or stored.digest != digest:
        raise NotStreamable("no stored vectors of this backbone")
    started = time.perf_counter()
    path = directory / "vectors.f32"
    if callable(getattr(ctx, "read_stored_vectors", None)):
        return await _read_bulk(ctx, path, cap, started)
    ids: list[np.ndarray] = []
    entities: list[np.ndarray] = []
    shas: list[np.ndarray] = []
    names: dict[bytes, str] = {}
    dim = 0
    rows = 0
    out = await asyncio.to_thread(open, path, "wb")  # local scratch; each page's write runs off the loop too
    try:
        async for page in ctx.pages(page_size):
            vectors = []
            for ref in page:
                vector = stored.take(ref)
                if vector is None:
                    raise NotStreamable(f"identifier {ref.identifier_id} has no stored vector")
                vectors.append(vector)
                names.setdefault(ref.entity_id.encode(), ref.entity_name or "")
            if not page:
                continue
            block = np.asarray(np.stack(vectors), np.float32)
            block /= np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-6)
            dim = block.shape[1]
            await asyncio.to_thread(out.write, block.tobytes())
            ids.append(np.array([r.identifier_id for r in page], "S36"))
            entities.append(np.array([r.entity_id for r in page], "S36"))
            shas.append(np.array([r.content_sha256 or "" for r in page], "S64"))
            rows += len(page)
            total = ctx.total_identifiers
            await ctx.progress(0.5 * rows / total if total else 0.0, f"{rows} stored vectors read")
    finally:
        out.close()
    if not rows:
        raise NothingToTrain("no identifier passed the quality gates (0 skipped)")
    row_ids, row_entities, row_shas = np.concatenate(ids), np.concatenate(entities), np.concatenate(shas)
    del ids, entities, shas
    # Entities by (name, ID), an entity's rows by (content digest, identifier ID): engines.training.group's order.
    unique = np.unique(row_entities)
    by_name = sorted(range(unique.size), key=lambda i: (names[bytes(unique[i])], bytes(unique[i])))
    rank = np.empty(unique.size, np.int64)
    rank[by_name] = np.arange(unique.size)
    entity = rank[np.searchsorted(unique, row_entities)]
    del row_entities
    order = np.lexsort((row_ids, row_shas, entity))
    counts = np.bincount(entity, minlength=unique.size)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.empty(rows, np.int64)
    slot[order] = np.arange(rows) - starts[entity[order]]
    keep = slot < cap
    kept = order[keep[order]]
    bounds = np.cumsum(np.minimum(counts, cap))[:-1]
    identifier_ids = [tuple(x.decode() for x in part) for part in np.split(row_ids[kept], bounds)]
    entity_keys = [bytes(unique[i]) for i in by_name]
    return StreamedGallery(path, rows, dim, entity, slot, keep, [k.decode() for k in entity_keys],
                           [names[k] for k in entity_keys], identifier_ids, time.perf_counter() - started)


async def _read_bulk(ctx: Any, path: Path, cap: int, started: float) -> StreamedGallery:
    """read_stream where the context reads stored vectors in bulk (``read_stored_vectors``: blocks of rows with
    ``identifier_id``, ``entity_id`` (16 bytes each), ``content_sha256`` (S64) and ``vector``, and the entities
    in ranking order): IDs stay fixed-size arrays, no Python object per row until the labels are named."""
    ids: list[np.ndarray] = []
    entities: list[np.ndarray] = []
    shas: list[np.ndarray] = []
    state = {"rows": 0, "dim": 0}

    def write(out: Any, block: np.ndarray) -> None:
        vectors = np.asarray(block["vector"], np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-6)
        out.write(vectors.tobytes())
        ids.append(block["identifier_id"].copy())
        entities.append(block["entity_id"].copy())
        shas.append(block["content_sha256"].copy())
        state["dim"] = vectors.shape[1]

    out = await asyncio.to_thread(open, path, "wb")
    try:
        async def sink(block: np.ndarray) -> None:
            await asyncio.to_thread(write, out, block)
            state["rows"] += len(block)
            total = ctx.total_identifiers
            await ctx.progress(0.5 * state["rows"] / total if total else 0.0, f"{state['rows']} stored vectors read")

        found = await ctx.read_stored_vectors(sink)
    finally:
        out.close()
    if found is None:
        raise NotStreamable("an identifier has no stored vector of this model version")
    rows = state["rows"]
    if not rows:
        raise NothingToTrain("no identifier passed the quality gates (0 skipped)")
    return await asyncio.to_thread(_order, path, rows, state["dim"], cap, found, ids, entities, shas, started)


def _order(path: Path, rows: int, dim: int, cap: int, found: tuple[np.ndarray, list[str]], ids: list[np.ndarray],
           entities: list[np.ndarray], shas: list[np.ndarray], started: float) -> StreamedGallery:
    """Entities ranked as the context listed them (by name, then ID), an entity's rows by (content digest,
    identifier ID): engines.training.group's order, on fixed-size keys."""
    entity_keys, entity_names = found
    entity_keys = _uuid_order(entity_keys)
    row_ids, row_shas = _uuid_order(np.concatenate(ids)), np.concatenate(shas)
    row_entities = _uuid_order(np.concatenate(entities))
    del ids[:], entities[:], shas[:]
    listed = np.argsort(entity_keys)
    where = np.searchsorted(entity_keys[listed], row_entities)
    where = np.minimum(where, max(0, listed.size - 1))
    if not listed.size or (entity_keys[listed][where] != row_entities).any():
        raise NotStreamable("an identifier's entity is not among the library's entities")
    listed_rank = listed[where]  # the row's entity's place in the context's order
    present = np.zeros(entity_keys.size, bool)
    present[listed_rank] = True
    rank = np.cumsum(present) - 1
    entity = rank[listed_rank].astype(np.int64)
    del row_entities, listed_rank, where
    used = np.flatnonzero(present)
    order = np.lexsort((row_ids, row_shas, entity))
    counts = np.bincount(entity, minlength=used.size)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.empty(rows, np.int64)
    slot[order] = np.arange(rows) - starts[entity[order]]
    keep = slot < cap
    kept = order[keep[order]]
    bounds = np.cumsum(np.minimum(counts, cap))[:-1]
    kept_ids = _uuid_text(row_ids[kept]).tolist()
    identifier_ids = [tuple(kept_ids[a:b]) for a, b in zip(np.concatenate([[0], bounds]), np.append(bounds, kept.size),
                                                           strict=True)]
    del kept_ids
    names = [entity_names[int(i)] for i in used]
    return StreamedGallery(path, rows, dim, entity, slot, keep, _uuid_text(entity_keys[used]).tolist(), names,
                           identifier_ids, time.perf_counter() - started)


def _uuid_order(keys: np.ndarray) -> np.ndarray:
    """16-byte UUIDs as byte strings, which sort (and search) in their text order."""
    return np.ascontiguousarray(keys).view("S16")


def _uuid_text(keys: np.ndarray) -> np.ndarray:
    """16-byte UUIDs ([n] V16) as their canonical text ([n] str), without a Python object per step."""
    hexed = np.frombuffer(np.ascontiguousarray(keys).view("V16").tobytes().hex().encode(), "S1").reshape(-1, 32)
    text = np.full((hexed.shape[0], 36), b"-", "S1")
    for a, b, c in ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24)):
        text[:, c:c + b - a] = hexed[:, a:b]
    return np.ascontiguousarray(text).view("S36").reshape(-1).astype("U36")


@dataclass(frozen=True, slots=True)
class Evaluation:
    top1: float | None
    queries: int
    threshold: float
    calibration: dict[str, Any]
    per_entity: dict[str, dict[str, int]]


def evaluate(gallery: StreamedGallery, default_threshold: float, seed: int = 0) -> Evaluation:
    """Leave-one-out top-1 over a seeded sample of queries (rows whose entity has another kept row), each
    against every other kept row, reading the vectors in blocks; the threshold calibrated on the same scores
    (engines.calibration), as the in-memory training does."""
    kept_entity = np.where(gallery.keep, gallery.entity, -1)
    counts = np.bincount(gallery.entity[gallery.keep], minlength=len(gallery.entity_ids))
    candidates = np.flatnonzero(gallery.keep & (counts[gallery.entity] > 1))
    budget = max(MIN_QUERIES, min(MAX_QUERIES, EVALUATION_BUDGET // max(1, gallery.rows)))
    if candidates.size > budget:
        candidates = np.sort(np.random.default_rng(seed).choice(candidates, budget, replace=False))
    queries = gallery.take(candidates)
    labels = gallery.entity[candidates]
    genuine = np.full(candidates.size, -np.inf, np.float32)
    impostor = np.full(candidates.size, -np.inf, np.float32)
    block = max(64, CHUNK_ELEMENTS // max(1, candidates.size))  # scores held at once: queries × block
    for start in range(0, gallery.rows, block):
        end = min(gallery.rows, start + block)
        scores = queries @ gallery.block(start, end).T
        block_entity = kept_entity[start:end]
        scores[:, block_entity < 0] = -np.inf  # rows over maxGalleryPerEntity are not in the gallery
        self_rows = (candidates >= start) & (candidates < end)
        scores[np.flatnonzero(self_rows), candidates[self_rows] - start] = -np.inf
        same = labels[:, None] == block_entity[None, :]
        genuine = np.maximum(genuine, np.max(scores, axis=1, where=same, initial=-np.inf))
        impostor = np.maximum(impostor, np.max(scores, axis=1, where=~same, initial=-np.inf))
    correct = genuine > impostor
    calibration = balanced_threshold(genuine[np.isfinite(genuine)], impostor[np.isfinite(impostor)],
                                     default=default_threshold)
    n = len(gallery.entity_ids)
    count = np.bincount(labels, minlength=n)
    right = np.bincount(labels, weights=correct.astype(np.float64), minlength=n)
    per = {gallery.entity_ids[e]: {"count": int(count[e]), "correct": int(right[e])} for e in np.flatnonzero(count)}
    top1 = float(correct.mean()) if candidates.size else None
    return Evaluation(top1, int(candidates.size), calibration.threshold, calibration.as_json(), per)


def read_at() -> str:
    """When the library had been read (the coverage report's ``libraryReadAt``)."""
    return datetime.now(UTC).isoformat()


def scratch(directory: str | None = None) -> tempfile.TemporaryDirectory[str]:
    """A private temporary directory for the vector file and the artifact's weights."""
    return tempfile.TemporaryDirectory(prefix="engineshed-stream-", dir=directory)
