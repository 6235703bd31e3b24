"""Embeddings for the labeling loop (auto-grouping), behind one function.

With a registered embedding model, the identifiers' stored vectors of that model version (identifier_embeddings,
made at ingest, by generateEmbeddings, by a training or inserted by the client) are read from PostgreSQL page by
page (one round trip per page, only the pages in flight held); only the identifiers that still lack one are fetched
and embedded by engines.pipeline, and what it computes is stored the way a training stores it, so the next
grouping reads it. With the built-in pixel projection (no model version) the pipeline embeds everything, with the
per-organization content cache sparing the inference of images seen before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any
from uuid import UUID

import numpy as np
import onnx

from engines.backbone import default_backbone
from engines.evaluation import l2_normalise
from engines.interface import EmbeddingModel, EngineError, FetchError, IdentifierRef
from engines.model_backbone import model_backbone
from engines.pipeline import embed_library
from engines.runtime import get_runner
from gateway.resources import Resources
from gateway.services.library import identifiers
from gateway.worker.context import WorkerContext
from storage.blobs import BlobMissing
from storage.queries import vectors as vector_q

BUILTIN_IMAGE_SIZE = 32  # the built-in backbone's default side (engines.options imageSize)
PAGE = 256


class SelectionContext(WorkerContext):
    """The worker's TrainingContext over a fixed list of identifier rows (no entities needed)."""

    def __init__(self, res: Resources, org_id: UUID, rows: Sequence[Any], decode_pool: concurrent.futures.Executor,
                 on_progress: Callable[[float, str | None], Awaitable[None]] | None,
                 model: EmbeddingModel | None = None) -> None:
        super().__init__(res, org_id, config={}, decode_pool=decode_pool, total_identifiers=len(rows),
                         embedding_model=model)
        self._rows = list(rows)
        self._on_progress = on_progress

    async def pages(self, page_size: int) -> AsyncIterator[list[IdentifierRef]]:
        for start in range(0, len(self._rows), page_size):
            page = self._rows[start : start + page_size]
            if self.stored is not None:
                async with self._res.pool.acquire() as conn:
                    found = await vector_q.vectors_by_ids(conn, self._org_id, self.stored.version_id, [r["id"] for r in page])
                for identifier_id, vector in found.items():
                    self.stored.add(str(identifier_id), vector)
            self._sources.update((str(r["id"]), (r["storage_key"], r["reference_url"])) for r in page)
            yield [
                IdentifierRef(str(r["id"]), "", "", r["identifier_type_id"], r["content_type"], r["content_sha256"])
                for r in page
            ]

    async def fetch(self, ref: IdentifierRef) -> bytes:
        try:
            return await super().fetch(ref)
        except BlobMissing:
            # An identifier deleted while the job ran is skipped; a blob missing otherwise is S3's fault.
            if await identifiers.deleted_since(self._res, self._org_id, UUID(ref.identifier_id)):
                raise FetchError(f"identifier {ref.identifier_id} was deleted while the job ran") from None
            raise

    async def progress(self, fraction: float, message: str | None = None) -> None:
        await super().progress(fraction, message)
        if self._on_progress is not None:
            await self._on_progress(fraction, message)


async def embeddings_for(
    res: Resources,
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
    ctx = SelectionContext(res, org_id, identifiers, decode_pool, on_progress, model)
    embedded = await embed_library(
        ctx, spec, runner, page_size=PAGE, fetch_concurrency=32, batch_size=256, min_size=0, sharpness_threshold=0.0,
    )
    if counts is not None:
        counts.update(fetches=ctx.fetches, storedEmbeddings=ctx.stored_read, inferences=ctx.inferences)
    ids = [UUID(ref.identifier_id) for ref in embedded.refs]
    if not ids:
        return [], np.zeros((0, 0), np.float32)
    return ids, l2_normalise(embedded.embeddings)
