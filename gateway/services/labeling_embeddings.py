"""Embeddings for the labeling loop (auto-grouping), behind one function.

With a registered embedding model, the identifiers' stored vectors of that model version (identifier_embeddings,
made at ingest, by generateEmbeddings, by a training or inserted by the client) are read from PostgreSQL page by
page (one round trip per page, only the pages in flight held); only the identifiers that still lack one are fetched
and embedded by engines.pipeline, and what it computes is stored the way a training stores it, so the next
grouping reads it. With the built-in pixel projection (no model version) the pipeline embeds everything, with the
per-organization content cache (storage/queries/embeddings.py) sparing the inference of images seen before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any
from uuid import UUID

import numpy as np
import onnx

from engines.backbone import default_backbone
from engines.evaluation import l2_normalise
from engines.interface import EmbeddingModel, EngineError, FetchError, IdentifierRef
from engines.model_backbone import backbone_digest, model_backbone
from engines.pipeline import embed_library
from engines.runtime import get_runner
from gateway.services import identifiers
from gateway.services.remote_files import FetchRefused, fetch_bytes
from storage.blobs import BlobMissing
from storage.queries import content_measures as measures_q
from storage.queries import embeddings as embedding_q
from storage.queries import vectors as vector_q

BUILTIN_IMAGE_SIZE = 32  # the built-in backbone's default side (engines.options imageSize)
PAGE = 256


class _SelectionContext:
    """engines.interface.TrainingContext over a fixed list of identifier rows (no entities needed)."""

    def __init__(self, res: Any, org_id: UUID, rows: Sequence[Any], decode_pool: concurrent.futures.Executor,
                 on_progress: Callable[[float, str | None], Awaitable[None]] | None,
                 model: EmbeddingModel | None = None) -> None:
        self._res = res
        self._org_id = org_id
        self._rows = list(rows)
        self._sources = {str(r["id"]): (r["storage_key"], r["reference_url"]) for r in self._rows}
        self._on_progress = on_progress
        self.library_id = ""
        self.library_version = 0
        self.model_id = ""
        self.config: Mapping[str, Any] = {}
        self.execution_provider = res.settings.onnx_provider
        self.decode_pool = decode_pool
        self.total_identifiers = len(self._rows)
        self.inferences = 0
        self.fetches = 0  # identifier contents read (S3 GETs or URL fetches): the task output reports it
        self.stored_read = 0  # stored vectors used instead of fetching and embedding
        # The pipeline takes the stored vectors (engines.pipeline) only when its backbone's digest is this one.
        self._version_id = UUID(model.version_id) if model is not None and model.version_id else None
        self.stored_digest = backbone_digest(model.model, model.manifest) if self._version_id is not None else None
        self._stored: dict[str, np.ndarray] = {}

    async def pages(self, page_size: int) -> AsyncIterator[list[IdentifierRef]]:
        for start in range(0, len(self._rows), page_size):
            page = self._rows[start : start + page_size]
            if self._version_id is not None:
                async with self._res.pool.acquire() as conn:
                    found = await vector_q.vectors_by_ids(conn, self._org_id, self._version_id, [r["id"] for r in page])
                self._stored.update((str(i), v) for i, v in found.items())
            yield [
                IdentifierRef(str(r["id"]), "", "", r["identifier_type_id"], r["content_type"], r["content_sha256"])
                for r in page
            ]

    def stored_embedding(self, ref: IdentifierRef) -> np.ndarray | None:
        """The stored vector of ``ref`` for the model version (once; None when it has none)."""
        vector = self._stored.pop(ref.identifier_id, None)
        self.stored_read += vector is not None
        return vector

    async def store_identifier_embeddings(self, digest: str, vectors: Mapping[str, np.ndarray]) -> None:
        """Keep the vectors computed here (or found in the content cache) as the identifiers' own, as training does."""
        if not vectors or self._version_id is None or digest != self.stored_digest:
            return
        ids = [UUID(i) for i in vectors]
        matrix = np.stack([np.asarray(v, np.float32).reshape(-1) for v in vectors.values()])
        async with self._res.pool.acquire() as conn, conn.transaction():
            await vector_q.store_computed(conn, self._org_id, self._version_id, matrix.shape[1], ids, matrix)
            await vector_q.want_index(conn, self._org_id, self._version_id, matrix.shape[1])

    async def fetch(self, ref: IdentifierRef) -> bytes:
        storage_key, url = self._sources.get(ref.identifier_id, (None, None))
        self.fetches += 1
        if storage_key:
            try:
                return await self._res.blobs.get_bytes(storage_key, max_bytes=self._res.settings.fetch_max_bytes)
            except BlobMissing:
                if await identifiers.deleted_since(self._res, self._org_id, UUID(ref.identifier_id)):
                    raise FetchError(f"identifier {ref.identifier_id} was deleted while the job ran") from None
                raise
        if url:
            try:
                async with self._res.fetch_limiter:
                    data, _ = await fetch_bytes(self._res.http, url, self._res.fetch_policy)
                return data
            except FetchRefused as exc:
                raise FetchError(str(exc)) from exc
        raise FetchError(f"identifier {ref.identifier_id} has no content")

    async def progress(self, fraction: float, message: str | None = None) -> None:
        if self._on_progress is not None:
            await self._on_progress(fraction, message)

    async def cached_embeddings(self, backbone_digest: str, sha256s: Sequence[str]) -> dict[str, np.ndarray]:
        if not sha256s:
            return {}
        async with self._res.pool.acquire() as conn:
            found = await embedding_q.get_many(conn, self._org_id, backbone_digest, sha256s)
        return {h: np.frombuffer(v, dtype=np.float32) for h, v in found.items()}

    async def store_embeddings(self, backbone_digest: str, vectors: Mapping[str, np.ndarray]) -> None:
        if not vectors:
            return
        packed = {h: np.asarray(v, dtype=np.float32).tobytes() for h, v in vectors.items()}
        async with self._res.pool.acquire() as conn:
            await embedding_q.put_many(conn, self._org_id, backbone_digest, packed)

    async def store_content_measures(self, measures: Mapping[str, tuple[int, int, float | None]]) -> None:
        """Record what the decode measured, so a training's quality gates can read it instead of the bytes."""
        async with self._res.pool.acquire() as conn:
            await measures_q.put_many(conn, self._org_id, measures)

    def count_inference(self, n: int) -> None:
        self.inferences += int(n)


async def embeddings_for(
    res: Any,
    org_id: UUID,
    identifiers: Sequence[Any],
    model: EmbeddingModel | None,
    decode_pool: concurrent.futures.Executor,
    *,
    on_progress: Callable[[float, str | None], Awaitable[None]] | None = None,
    counts: dict[str, int] | None = None,
) -> tuple[list[UUID], np.ndarray]:
    """L2-normalised embeddings [N, D] of the identifiers (rows with id, identifier_type_id, storage_key,
    reference_url, content_type, content_sha256), and the ids they belong to, in that order.

    ``model`` None: the built-in pixel projection. Identifiers that cannot be fetched or decoded are left
    out (their ids are missing from the answer). ``counts``, when given, receives ``fetches`` (contents read),
    ``storedEmbeddings`` (stored vectors used) and ``inferences``.
    """
    if model is not None:
        try:
            spec = await asyncio.to_thread(model_backbone, model)
        except (ValueError, onnx.checker.ValidationError) as exc:
            raise EngineError(f"model {model.ref} cannot be used as a backbone: {exc}") from None
    else:
        spec = default_backbone(BUILTIN_IMAGE_SIZE, 1)
    runner = await asyncio.to_thread(get_runner, spec.model, res.settings.onnx_provider)
    ctx = _SelectionContext(res, org_id, identifiers, decode_pool, on_progress, model)
    embedded = await embed_library(
        ctx, spec, runner, page_size=PAGE, fetch_concurrency=32, batch_size=256, min_size=0, sharpness_threshold=0.0,
    )
    if counts is not None:
        counts.update(fetches=ctx.fetches, storedEmbeddings=ctx.stored_read, inferences=ctx.inferences)
    ids = [UUID(ref.identifier_id) for ref in embedded.refs]
    if not ids:
        return [], np.zeros((0, 0), np.float32)
    return ids, l2_normalise(embedded.embeddings)
